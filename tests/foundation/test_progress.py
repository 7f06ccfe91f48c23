"""Progress output (hfsmri.progress): live stage lines from pool workers, bars only on a terminal
(pseudo-terminal via the pty module), plain lines without control characters off it, repeated
messages collapsed into one summary line, --quiet."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.foundation._progress_jobs import SCRIPT

ROOT = Path(__file__).resolve().parents[2]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _timed_lines(fd, proc, timeout=120.0) -> list[tuple[float, str]]:
    """(arrival time, text) of every chunk read from ``fd`` until the process ends."""
    out, t0, buf = [], time.monotonic(), b""
    while time.monotonic() - t0 < timeout:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # pty closed
                break
            if not chunk:
                break
            out.append((time.monotonic() - t0, chunk.decode("utf-8", "replace")))
        elif proc.poll() is not None and not r:
            break
    return out


def _first(chunks, needle) -> float:
    acc = ""
    for t, c in chunks:
        acc += c
        if needle in acc:
            return t
    raise AssertionError(f"{needle!r} not in the output:\n{acc}")


def test_plain_lines_off_a_terminal_live_from_workers_and_repeats_collapsed():
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, env=_env(), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    chunks = _timed_lines(proc.stderr.fileno(), proc)
    proc.wait(timeout=30)
    text = "".join(c for _, c in chunks)
    assert proc.returncode == 0, text
    assert "\r" not in text and "\x1b" not in text  # no bar, no control characters
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for s in ("sub-01", "sub-02"):  # one line per stage as it ends
        assert sum(ln.endswith(f"{s} anat 0 s ✓") for ln in lines) == 1
        assert sum(ln.endswith(f"{s} func 2 s ✗") for ln in lines) == 1
        # printed when the stage ended in the worker, 2 s before the job's next stage ended
        assert _first(chunks, f"{s} func") - _first(chunks, f"{s} anat") > 1.0
    rep = [ln for ln in lines if "voxel-wise correlation with hamd skipped" in ln]
    assert len(rep) == 4 and "63 more like" in rep[-1]  # 3 shown, then one summary line
    warn = [ln for ln in lines if "voxel-wise correlation with severity not run" in ln]
    assert len(warn) == 4 and "2 more like" in warn[-1]  # warnings collapse too (one template, values differ)
    assert sum("a warning" in ln for ln in lines) == 1


def test_bar_on_a_pseudo_terminal_and_quiet():
    pid, fd = pty.fork()
    if pid == 0:  # child: the script on the pty
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-c", SCRIPT], _env())
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    chunks = _timed_lines(fd, type("P", (), {"poll": staticmethod(lambda: None)})())
    os.waitpid(pid, 0)
    text = "".join(c for _, c in chunks)
    assert "subjects:" in text and "2/2 [" in text and "\r" in text  # the tqdm bar: done/total
    assert "<" in text.split("2/2 [")[-1].split("]")[0]  # [elapsed<ETA, rate]
    assert "sub-01 func 2 s ✗" in text and "63 more like" in text

    quiet = subprocess.run([sys.executable, "-c", SCRIPT, "--quiet"], cwd=ROOT, env=_env(), capture_output=True,
                           text=True, timeout=120)
    assert quiet.returncode == 0
    assert "sub-01" not in quiet.stderr and "skipped" not in quiet.stderr and "a warning" in quiet.stderr
