"""Private temporary folders of hfsmri jobs, and the removal of those that killed runs left behind.

Every job (a participant job, the group level) runs with Python's :mod:`tempfile` and ``TMPDIR``
pointed at a folder of its own, ``<WORK_DIR>/tmp/hfsmri-<host>-<pid>-<random>/``, deleted when the
job ends. Everything that asks :mod:`tempfile` for a scratch name — ANTs registrations
(``hfsmri_antsreg_*``), Atropos, nilearn, our own temporary folders — therefore writes under the
work directory, never into the system ``TMPDIR``, and a killed job leaves one folder that
:func:`remove_stale_scratch` deletes at the next start:

* a folder of this host is removed when its process is no longer running (array jobs on the same
  node sharing the work directory keep theirs while they run);
* a folder of another host (a work directory shared by cluster nodes) is removed only when nothing
  in it was modified for :data:`STALE_FOREIGN_SECONDS` (its pid cannot be checked from here).

Only folders named ``hfsmri-<host>-<pid>-<random>`` directly in ``<WORK_DIR>/tmp`` are touched.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

from .derivatives import _host_tag, _pid_alive

#: prefix of the per-job temporary folders
PREFIX = "hfsmri-"
_DIR_RE = re.compile(r"^hfsmri-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[A-Za-z0-9_]{8}$")
#: a folder of another host is removed after this many seconds without any modification in it
STALE_FOREIGN_SECONDS = 2 * 24 * 3600.0

_lock = threading.RLock()
_active: dict = {"n": 0, "dir": None, "saved": None}


def scratch_root(work_dir: str | Path) -> Path:
    """``<WORK_DIR>/tmp``: where the per-job temporary folders are created."""
    return Path(work_dir) / "tmp"


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
    return newest


def remove_stale_scratch(root: str | Path, max_foreign_age: float = STALE_FOREIGN_SECONDS) -> list[Path]:
    """Delete the temporary folders of dead jobs in ``root`` (see the module docstring); returns them."""
    root = Path(root)
    if not root.is_dir():
        return []
    removed, host, now = [], _host_tag(), time.time()
    for d in sorted(root.iterdir()):
        m = _DIR_RE.match(d.name)
        if m is None or not d.is_dir() or d.is_symlink():
            continue
        if m.group("host") == host:
            pid = int(m.group("pid"))
            stale = pid != os.getpid() and not _pid_alive(pid)
        else:
            try:
                stale = now - _newest_mtime(d) > max_foreign_age
            except OSError:
                stale = False
        if stale:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


@contextlib.contextmanager
def job_tempdir(root: str | Path | None):
    """Run the block with :mod:`tempfile` and ``TMPDIR`` pointed at a new private folder under
    ``root`` (``<WORK_DIR>/tmp``); the folder is deleted afterwards. ``root`` None: no change.

    Nested or concurrent uses in one process (threads of a dask worker) share one folder, which is
    deleted when the last of them ends.
    """
    if root is None:
        yield None
        return
    with _lock:
        if _active["n"] == 0:
            base = Path(root)
            base.mkdir(parents=True, exist_ok=True)
            d = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{_host_tag()}-{os.getpid()}-", dir=base))
            _active["dir"] = d
            _active["saved"] = (tempfile.tempdir, os.environ.get("TMPDIR"))
            tempfile.tempdir = str(d)
            os.environ["TMPDIR"] = str(d)
        _active["n"] += 1
        d = _active["dir"]
    try:
        yield d
    finally:
        with _lock:
            _active["n"] -= 1
            if _active["n"] == 0:
                saved_tempdir, saved_env = _active["saved"]
                tempfile.tempdir = saved_tempdir
                if saved_env is None:
                    os.environ.pop("TMPDIR", None)
                else:
                    os.environ["TMPDIR"] = saved_env
                shutil.rmtree(_active["dir"], ignore_errors=True)
                _active["dir"] = _active["saved"] = None
