"""Generated fault cases of the run machinery (issue 20): each case sets up one fault a user or a
cluster produces, runs hfsmri, and checks what it gives.

Each case is a function ``check(env)`` registered with :func:`case` under the issue item it
covers, with a one-line description of the fault and of the expected outcome; ``test_faults.py``
runs every case, and ``docs/scaling.md`` lists them (a test checks that it lists every case).
Print the table for the docs with::

    python tests/robustness/fault_cases.py

``env`` gives a fresh ``env.tmp`` folder and the session fixtures (``env.fixture("func_study")``,
``env.fixture("reference_run")``: the tiny func study of ``conftest.py`` and its reference run).
Where a real full or read-only file system is needed, a private mount namespace is used
(``unshare -m``, root only); elsewhere the fault is simulated (stated per case).
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np

from hfsmri.runlog import run_records

HFSMRI = [sys.executable, "-m", "hfsmri.cli"]


@dataclass
class FaultCase:
    item: int          # issue 20 item
    name: str
    fault: str         # what goes wrong
    gives: str         # what hfsmri does (what the check asserts)
    check: Callable
    slow: bool = False


CASES: dict[str, FaultCase] = {}


def case(item: int, fault: str, gives: str, slow: bool = False):
    def deco(fn):
        CASES[fn.__name__] = FaultCase(item, fn.__name__, fault, gives, fn, slow)
        return fn
    return deco


# --------------------------------------------------------------------------- helpers
def _cli(*args, env: dict | None = None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """``hfsmri ARGS`` in a fresh process (stderr/stdout captured)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([*HFSMRI, *map(str, args)], capture_output=True, text=True, env=e, cwd=cwd,
                          timeout=timeout)


def _main(args, capsys=None) -> tuple[int, str]:
    """``hfsmri ARGS`` in this process; returns (exit code, stderr)."""
    import contextlib
    import io

    from hfsmri.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        code = main([str(a) for a in args])
    return code, buf.getvalue()


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("hfsmri: error:")]


def _assert_one_clean_error(stderr: str, *needles: str) -> str:
    lines = _error_lines(stderr)
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "Logging error" not in stderr, stderr[-3000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _temporaries(root: Path) -> list[Path]:
    """Hidden temporary files (any writer's naming) under ``root``."""
    return [p for p in Path(root).rglob(".*") if p.is_file() and ".tmp" in p.name]


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _host() -> str:
    """This host as temporary names spell it (letters and digits of the short host name)."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname().split(".")[0])[:40] or "host"


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return r.returncode == 0


def _in_mount_namespace(script: str, timeout=600) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace (mounts vanish with it)."""
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=timeout)


def _sh_cli(*args) -> str:
    import shlex

    env = f"PYTHONPATH={shlex.quote(os.environ.get('PYTHONPATH', ''))} " if os.environ.get("PYTHONPATH") else ""
    return env + " ".join(shlex.quote(str(a)) for a in [*HFSMRI, *args])


class Skip(Exception):
    """A case that cannot run here (e.g. needs root for a private mount)."""


# --------------------------------------------------------------------------- item 1
_NUMBA_JOB = r"""
import sys
order = sys.argv[1]
if order == "numba-first":
    import numba
    numba.get_num_threads()          # numba's thread pool starts here, at its default size
    import hfsmri.parallel
else:
    import hfsmri.parallel
    import numba
from hfsmri.parallel import Job, run_jobs

def job():
    @numba.njit(parallel=True)       # not cached: compiled now, inside the job
    def total(a):
        s = 0.0
        for i in numba.prange(a.shape[0]):
            s += a[i]
        return s
    import numpy as np
    return total(np.ones(1000)), numba.get_num_threads()

res = run_jobs([Job("j", job)], nprocs=1, omp_nthreads=1, progress=False)[0]
assert res.ok, res.error
assert res.value == (1000.0, 1), res.value
print("ok")
"""


@case(1, "numba compiles inside a job run in the main process (--nprocs 1 / one label) after its thread pool "
         "started, numba imported before or after hfsmri",
      "the job runs with numba capped to --omp-nthreads threads; no 'Cannot set NUMBA_NUM_THREADS'")
def numba_compile_inside_single_process_job(env):
    for order in ("numba-first", "hfsmri-first"):
        e = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
        e["NUMBA_CACHE_DIR"] = str(env.tmp / "nc")
        r = subprocess.run([sys.executable, "-c", _NUMBA_JOB, order], capture_output=True, text=True, env=e)
        assert r.returncode == 0 and r.stdout.strip() == "ok", (order, r.stderr[-2000:])


@case(1, "fresh install (empty numba cache), one participant in one process, as an HPC array job runs it",
      "exit 0; kernels compiled into the empty cache; outputs identical to the reference run")
def numba_cold_cache_array_job(env):
    bids, study = env.fixture("func_study")
    ref = env.fixture("reference_run")
    cache = env.tmp / "numba_cache"
    cache.mkdir()
    out = env.tmp / "out"
    r = _cli(bids, out, "participant", "--study", study, "--participant-label", "01", "--nprocs", "1",
             "--omp-nthreads", "1", env={"NUMBA_CACHE_DIR": str(cache)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "NUMBA_NUM_THREADS" not in r.stderr
    assert any(cache.rglob("*.nbi")), "nothing was compiled into the empty cache"
    from ._tree import derivative_files, same_content

    files = [f for f in derivative_files(ref, "participant") if f.parts[0] == "sub-01"]
    assert files and derivative_files(out, "participant") == files
    assert all(same_content(ref / f, out / f) for f in files)


# --------------------------------------------------------------------------- item 2
def _seed_study(env):
    """8 subjects (4 HFS, 4 HC: 70 distinct relabelings > 20 permutations, so the seed matters)
    with fabricated func group inputs; returns (bids, study.yaml, outputs folder)."""
    from tests.conftest import make_bids

    from ._tree import SEED_STUDY, fabricate_func_outputs

    labels = [f"{i:02d}" for i in range(1, 9)]
    groups = ["HFS"] * 4 + ["HC"] * 4
    bids = make_bids(env.tmp / "bids", subjects=labels, groups=groups, modalities=("func",))
    study = env.tmp / "study.yaml"
    study.write_text(SEED_STUDY)
    base = env.tmp / "base"
    fabricate_func_outputs(base, labels, groups)
    return bids, study, base


def _fwe_maps(out: Path) -> dict:
    gdir = out / "group" / "reho" / "reho"
    maps = {p.name: np.asarray(nib.load(str(p)).dataobj) for p in sorted(gdir.glob("*desc-fwe_logp.nii.gz"))}
    assert maps, f"no FWE p-maps in {gdir}"
    return maps


@case(2, "--random-seed N at the group level (study.yaml says random_seed: 0)",
      "the permutations use N: two seeds give different FWE p-maps, the same seed identical ones; run record, "
      "study.resolved.yaml, statistics sidecars and the methods text all say N")
def random_seed_flag_reaches_group_statistics(env):
    import yaml

    from hfsmri.report.methods import methods_sections

    bids, study, base = _seed_study(env)
    maps = {}
    for tag, seed in (("a", 1), ("b", 2), ("c", 1)):
        out = _copy_run(base, env.tmp / f"out_{tag}")
        code, err = _main([bids, out, "group", "--study", study, "--random-seed", seed, "--nprocs", "1",
                           "--no-report"])
        assert code == 0, err[-3000:]
        maps[tag] = _fwe_maps(out)
        info = json.loads((out / "logs" / "run_info.json").read_text())
        assert info["random_seed"] == seed
        resolved = yaml.safe_load((out / "study.resolved.yaml").read_text())
        assert resolved["stats"]["random_seed"] == seed
        sides = [json.loads(p.read_text()) for p in (out / "group" / "reho" / "reho").glob("*_statmap.json")]
        assert sides and all(s.get("RandomSeed") == seed for s in sides), [s.get("RandomSeed") for s in sides]
        sections, _ = methods_sections(resolved, ["reho"])
        assert f"random seed {seed}" in " ".join(sec["text"] for sec in sections)
    assert maps["a"].keys() == maps["b"].keys() == maps["c"].keys()
    assert all(np.array_equal(maps["a"][k], maps["c"][k]) for k in maps["a"])       # same seed: identical
    assert any(not np.array_equal(maps["a"][k], maps["b"][k]) for k in maps["a"])   # other seed: differs


# --------------------------------------------------------------------------- item 3
@case(3, "group level on an empty OUTPUT_DIR (participant level not run)",
      "exit 1, one error naming the folder; no report, no group/ folder, no done marker")
def group_on_output_dir_without_participant_outputs(env):
    bids, study = env.fixture("func_study")
    out = env.tmp / "out"
    out.mkdir()
    code, err = _main([bids, out, "group", "--study", study])
    _assert_one_clean_error(err, str(out), "no participant outputs")
    assert code == 1 and list(out.iterdir()) == []


@case(3, "group level on a mistyped OUTPUT_DIR that does not exist",
      "exit 1, one error naming the folder; the folder is not created")
def group_on_missing_output_dir(env):
    bids, study = env.fixture("func_study")
    out = env.tmp / "typo"
    code, err = _main([bids, out, "group", "--study", study])
    _assert_one_clean_error(err, str(out), "does not exist")
    assert code == 1 and not out.exists()


# --------------------------------------------------------------------------- item 4
@case(4, "disk full while an image is written (simulated: nibabel writes half the file, then ENOSPC)",
      "StorageError naming the output file ('no space left on device'); no partial or temporary file left")
def disk_full_during_image_write(env):
    from hfsmri.derivatives import Derivatives
    from hfsmri.errors import HfsmriError

    d = Derivatives(env.tmp / "out")
    p = d.path("01", None, "func", "reho", res=4, entities={"task": "rest"})
    img = nib.Nifti1Image(np.ones((10, 10, 10), np.float32), np.eye(4))
    real = nib.save

    def full(image, path):
        with open(path, "wb") as fh:
            fh.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    nib.save = full
    try:
        try:
            d.save_nifti(img, p)
        except HfsmriError as exc:
            assert str(p) in str(exc) and "no space left on device" in str(exc)
        else:
            raise AssertionError("no error")
    finally:
        nib.save = real
    assert not p.parent.exists() or list(p.parent.iterdir()) == []


class _FullDisk:
    """Simulated full disk inside this process: every gzip write and every write to a job's log
    file raises ENOSPC once ``on``; the first image written after that fails."""

    def __init__(self):
        import gzip
        import logging

        self.gzip, self.logging = gzip, logging
        self.saved = (gzip.GzipFile.write, logging.FileHandler._open)

    def __enter__(self):
        gzip_write, fh_open = self.saved

        def write(gz, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        class FullStream:
            def __init__(self, stream):
                self.stream = stream
                self.n = 0

            def write(self, text):
                self.n += 1
                if self.n > 2:  # the first lines get through, then the disk is full
                    raise OSError(errno.ENOSPC, "No space left on device")
                return self.stream.write(text)

            def __getattr__(self, name):
                return getattr(self.stream, name)

        def _open(handler):
            return FullStream(fh_open(handler))

        self.gzip.GzipFile.write = write
        self.logging.FileHandler._open = _open
        return self

    def __exit__(self, *exc):
        self.gzip.GzipFile.write, self.logging.FileHandler._open = self.saved


@case(4, "disk full during a participant run (simulated: every .nii.gz write and the job's log file fail with "
         "ENOSPC)",
      "exit 1 with one line naming the file and 'no space left on device'; no traceback, no 'Logging error' "
      "cascade, no temporary file anywhere in OUTPUT_DIR")
def disk_full_during_participant_run(env):
    bids, study = env.fixture("func_study")
    out = env.tmp / "out"
    with _FullDisk():
        code, err = _main([bids, out, "participant", "--study", study, "--participant-label", "01", "--nprocs", "1",
                           "--omp-nthreads", "1"])
    assert code == 1
    line = _assert_one_clean_error(err, "no space left on device", str(out))
    assert "free some space" in line
    assert err.count("No space left") + err.count("no space left") <= 3, err  # job log line, job error, final line
    assert _temporaries(out) == []


@case(4, "real full disk: OUTPUT_DIR on a 3 MB tmpfs (private mount namespace; root only)",
      "exit 1, one line 'no space left on device' naming the file; no traceback; no temporary file left")
def disk_full_real_tmpfs(env):
    if not _can_unshare():
        raise Skip("needs root and unshare -m for a private tmpfs")
    bids, study = env.fixture("func_study")
    mnt = env.tmp / "small"
    mnt.mkdir()
    script = (f"mount -t tmpfs -o size=3m tmpfs {mnt} && "
              + _sh_cli(bids, mnt / "out", "participant", "--study", study, "--participant-label", "01",
                        "--nprocs", "1", "--omp-nthreads", "1")
              + f"; echo EXIT=$?; find {mnt} -name '*.tmp*'")
    r = _in_mount_namespace(script)
    assert "EXIT=1" in r.stdout, (r.stdout, r.stderr[-3000:])
    _assert_one_clean_error(r.stderr, "no space left on device")
    assert ".tmp" not in r.stdout.split("EXIT=1", 1)[1], r.stdout


@case(4, "leftovers of killed runs: atomic-write temporaries of a dead process and an hour-old one of unknown "
         "owner, next to the temporary of a live writer",
      "removed at the next start (participant run), the live writer's file kept")
def killed_run_leftovers_removed_at_next_start(env):
    bids, study = env.fixture("func_study")
    out = _copy_run(env.fixture("reference_run"), env.tmp / "out")
    dead, host = _dead_pid(), _host()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        func = out / "sub-02" / "func"
        stale = [func / f".sub-02_x_bold.nii.gz.{host}-{dead}-abcd1234.tmp.nii.gz",
                 out / "logs" / f".run_info.json.{host}-{dead}-a_b3c4d5.tmp.json",
                 func / ".sub-02_old_bold.nii.gz.k2j4h5g6.tmp.nii"]  # older naming, no owner
        keep = [func / f".sub-02_y_bold.nii.gz.{host}-{live.pid}-zyxw9876.tmp.nii.gz",
                func / ".hidden_user_file.txt"]
        for p in stale + keep:
            p.write_bytes(b"partial")
        old = time.time() - 2 * 3600
        os.utime(stale[2], (old, old))
        code, err = _main([bids, out, "participant", "--study", study, "--participant-label", "01", "--nprocs", "1",
                           "--omp-nthreads", "1"])
        assert code == 0, err[-3000:]
        assert [p.exists() for p in stale] == [False] * 3
        assert all(p.exists() for p in keep)
    finally:
        live.kill()
        live.wait()


# --------------------------------------------------------------------------- item 5
def _read_only_run(env, which: str) -> subprocess.CompletedProcess:
    """Participant run with OUTPUT_DIR or the work dir read-only: a read-only bind mount in a private
    mount namespace when root (root ignores permission bits), else chmod 0555."""
    bids, study = env.fixture("func_study")
    ro = env.tmp / "ro"
    ro.mkdir()
    out = ro if which == "output" else env.tmp / "out"
    args = [bids, out, "participant", "--study", study, "--participant-label", "01", "--nprocs", "1",
            "--omp-nthreads", "1"]
    if which == "work":
        args += ["-w", ro]
    if os.geteuid() != 0:
        ro.chmod(0o555)
        try:
            return _cli(*args)
        finally:
            ro.chmod(0o755)
    if not _can_unshare():
        raise Skip("root without unshare -m: cannot make a folder read-only for root")
    return _in_mount_namespace(f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && " + _sh_cli(*args))


@case(5, "OUTPUT_DIR on a read-only file system (root: read-only bind mount; else chmod 0555)",
      "exit 1 before any job starts, one line 'OUTPUT_DIR is not writable (...)' naming the folder")
def read_only_output_dir(env):
    r = _read_only_run(env, "output")
    assert r.returncode == 1, r.stderr[-3000:]
    line = _assert_one_clean_error(r.stderr, "OUTPUT_DIR is not writable", str(env.tmp / "ro"))
    assert "read-only file system" in line or "permission denied" in line
    assert "sub-01: start" not in r.stderr


@case(5, "work directory (-w) read-only",
      "exit 1 before any job starts, one line 'the work directory (-w) is not writable (...)'")
def read_only_work_dir(env):
    r = _read_only_run(env, "work")
    assert r.returncode == 1, r.stderr[-3000:]
    _assert_one_clean_error(r.stderr, "work directory (-w) is not writable", str(env.tmp / "ro"))
    assert "sub-01: start" not in r.stderr


# --------------------------------------------------------------------------- item 6
def _reho_map(out: Path, sub: str, desc: str | None = None) -> Path:
    name = "_desc-" + desc if desc else ""
    hits = sorted((out / f"sub-{sub}" / "func").glob(f"*_res-4{name}_reho.nii.gz"))
    assert len(hits) == 1, hits
    return hits[0]


def _resume_after_damage(env, damage) -> None:
    bids, study = env.fixture("func_study")
    ref = env.fixture("reference_run")
    out = _copy_run(ref, env.tmp / "out")
    target = _reho_map(out, "01")
    damage(target)
    code, err = _main([bids, out, "participant", "--study", study, "--participant-label", "01", "--nprocs", "1",
                       "--omp-nthreads", "1"])
    assert code == 0, err[-3000:]
    assert target.read_bytes() == _reho_map(ref, "01").read_bytes()  # recomputed, identical to the reference
    assert "is recomputed" in (out / "logs" / "sub-01.log").read_text()


@case(6, "a participant output truncated after it was written (e.g. an interrupted copy), then the same "
         "participant command again",
      "the truncated file fails its recorded size check: the subject's stage is redone, the file is identical "
      "to the reference again")
def truncated_output_redone_on_resume(env):
    def truncate(p):
        raw = p.read_bytes()
        p.write_bytes(raw[: len(raw) // 2])
    _resume_after_damage(env, truncate)


@case(6, "a participant output with one corrupted byte (same size), then the same participant command again",
      "the file fails its recorded SHA-256: the subject's stage is redone")
def corrupt_output_redone_on_resume(env):
    def flip(p):
        raw = bytearray(p.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        p.write_bytes(bytes(raw))
    _resume_after_damage(env, flip)


@case(6, "group level with one participant input truncated",
      "exit 1, the error names the damaged file and says to re-run the participant level for that subject; "
      "no bare EOFError, no report")
def group_names_truncated_input(env):
    bids, study = env.fixture("func_study")
    out = _copy_run(env.fixture("reference_run"), env.tmp / "out")
    shutil.rmtree(out / "group")
    target = _reho_map(out, "02", "zsmooth")
    raw = target.read_bytes()
    target.write_bytes(raw[: len(raw) // 2])
    code, err = _main([bids, out, "group", "--study", study, "--nprocs", "1"])
    assert code == 1
    _assert_one_clean_error(err, str(target), "truncated", "sub-02")
    assert "EOFError" not in err and not (out / "report.html").exists()


@case(6, "a group input without an integrity record (written by an older version) truncated, read by the "
         "shared group reader",
      "InputDataError naming the file (gzip CRC/length check), not EOFError")
def shared_reader_names_damaged_file(env):
    from hfsmri.derivatives import read_derivative
    from hfsmri.errors import InputDataError

    p = env.tmp / "sub-03" / "func" / "sub-03_task-rest_reho.nii.gz"
    p.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32), np.eye(4)), p)
    assert np.asarray(read_derivative(p).dataobj).shape == (20, 20, 20)
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) - 100])
    try:
        read_derivative(p)
    except InputDataError as exc:
        assert str(p) in str(exc) and "sub-03" in str(exc)
    else:
        raise AssertionError("no error")


# --------------------------------------------------------------------------- item 7
@case(7, "-w inside BIDS_DIR, or equal to it",
      "exit 1, one error like OUTPUT_DIR inside BIDS_DIR; BIDS_DIR byte-identical afterwards")
def work_dir_inside_bids_refused(env):
    from tests.conftest import make_bids

    from ._tree import snapshot

    bids = make_bids(env.tmp / "bids")
    before = snapshot(bids)
    for w in (bids, bids / "sub-01" / "func", bids / "work"):
        code, err = _main([bids, env.tmp / "out", "participant", "-w", w, "--nprocs", "1"])
        assert code == 1
        _assert_one_clean_error(err, "inside BIDS_DIR", "-w")
    assert snapshot(bids) == before


@case(7, "participant + group level on a tiny study (the reference run)",
      "BIDS_DIR byte-identical afterwards (every file, hidden ones included, modes, no new entries)")
def bids_dir_untouched_by_a_run(env):
    from .conftest import BIDS_SNAPSHOTS
    from ._tree import snapshot

    bids, _ = env.fixture("func_study")
    env.fixture("reference_run")
    assert snapshot(bids) == BIDS_SNAPSHOTS[str(bids)]


# --------------------------------------------------------------------------- item 8
def _participants_with(env, column: str, values) -> Path:
    from tests.conftest import make_bids

    bids = make_bids(env.tmp / "bids", modalities=("func",))
    p = bids / "participants.tsv"
    lines = p.read_text().splitlines()
    lines[0] += f"\t{column}"
    for i, v in enumerate(values, start=1):
        lines[i] += f"\t{v}"
    p.write_text("\n".join(lines) + "\n")
    return bids


def _study_error(env, bids, yaml_text) -> str:
    study = env.tmp / "study.yaml"
    study.write_text(yaml_text)
    code, err = _main([bids, env.tmp / "out", "participant", "--study", study, "--nprocs", "1"])
    assert code == 1
    return _assert_one_clean_error(err, "participants.tsv")


@case(8, "a clinical score that is n/a for every participant",
      "exit 1: \"clinical score 'hama' has no values (n/a for every participant)\"")
def clinical_score_all_na(env):
    bids = _participants_with(env, "hama", ["n/a"] * 4)
    line = _study_error(env, bids, "group_column: group\nclinical: [hama]\n")
    assert "clinical score 'hama' has no values" in line


@case(8, "a clinical score with values only for controls",
      "exit 1: the score has no values for any patient")
def clinical_score_na_for_every_patient(env):
    bids = _participants_with(env, "hama", ["n/a", "n/a", "3", "4"])
    line = _study_error(env, bids, "group_column: group\nclinical: [hama]\n")
    assert "clinical score 'hama' has no values for any patient" in line


@case(8, "a covariate that is n/a for every participant",
      "exit 1: \"covariate 'iq' has no values (n/a for every participant)\"")
def covariate_all_na(env):
    bids = _participants_with(env, "iq", ["n/a"] * 4)
    line = _study_error(env, bids, "group_column: group\ncovariates: [iq]\n")
    assert "covariate 'iq' has no values" in line


# --------------------------------------------------------------------------- item 9
@case(9, "numba's compiled-kernel cache (cache=True kernels), NUMBA_CACHE_DIR not set",
      "goes to the hfsmri cache folder ($HFSMRI_CACHE/numba), not into the installed package tree")
def numba_cache_in_hfsmri_cache_folder(env):
    cache = env.tmp / "cache"
    code = ("import numpy as np, numba, hfsmri\n"
            "from hfsmri.func.reho import reho\n"
            "reho(np.random.default_rng(0).normal(size=(5, 5, 5, 12)), np.ones((5, 5, 5), bool))\n"
            "print(numba.config.CACHE_DIR)\n")
    e = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    e["HFSMRI_CACHE"] = str(cache)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == str(cache / "numba")
    assert any((cache / "numba").rglob("*.nbi")), list(cache.rglob("*"))


def _tempfile_job(tag: str, die: bool):
    import tempfile

    d = tempfile.mkdtemp(prefix="hfsmri_antsreg_")  # as hfsmri.spatial.registration does
    Path(d, f"{tag}.nii").write_bytes(b"x" * 100)
    f = tempfile.NamedTemporaryFile(delete=False, suffix="0GenericAffine.mat")  # as ANTsPy does
    f.close()
    if die:
        os._exit(9)  # killed mid-job
    return d


@case(9, "a job's temporary files (ANTs registrations, ANTsPy outputs), one job killed mid-way; TMPDIR set",
      "they go to a private folder <WORK_DIR>/tmp/hfsmri-<host>-<pid>-*, deleted when the job ends; the killed "
      "job's folder is removed by the next start; nothing is written to TMPDIR")
def job_temporaries_in_private_work_folder(env):
    import tempfile

    from hfsmri.parallel import Job, run_jobs
    from hfsmri.scratch import remove_stale_scratch

    tmpdir = env.tmp / "TMPDIR"
    tmpdir.mkdir()
    scratch = env.tmp / "work" / "tmp"
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = str(tmpdir), None
    try:
        res = run_jobs([Job("ok", _tempfile_job, ("a", False)), Job("killed", _tempfile_job, ("b", True))],
                       nprocs=2, progress=False, scratch=scratch)
    finally:
        os.environ.pop("TMPDIR")
        if saved[0] is not None:
            os.environ["TMPDIR"] = saved[0]
        tempfile.tempdir = saved[1]
    assert res[0].ok and not res[1].ok
    assert Path(res[0].value).is_relative_to(scratch) and not Path(res[0].value).exists()
    assert list(tmpdir.iterdir()) == []
    left = list(scratch.iterdir())
    assert len(left) == 1 and left[0].name.startswith(f"hfsmri-{_host()}-")  # the killed job's folder
    assert remove_stale_scratch(scratch) == left and list(scratch.iterdir()) == []


@case(9, "work/tmp holds the private folder of a dead job and of a job still running (e.g. another array job "
         "on the same node)",
      "the next start removes the dead one, keeps the live one")
def stale_scratch_removed_live_kept(env):
    bids, study = env.fixture("func_study")
    out = _copy_run(env.fixture("reference_run"), env.tmp / "out")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        root = out / "work" / "tmp"
        dead_dir = root / f"hfsmri-{_host()}-{_dead_pid()}-abcd_123" / "hfsmri_antsreg_x"
        live_dir = root / f"hfsmri-{_host()}-{live.pid}-efgh_456" / "hfsmri_antsreg_y"
        other = root / "not-ours"
        for d in (dead_dir, live_dir, other):
            d.mkdir(parents=True)
            (d / "f").write_bytes(b"x")
        code, err = _main([bids, out, "participant", "--study", study, "--participant-label", "01", "--nprocs", "1",
                           "--omp-nthreads", "1"])
        assert code == 0, err[-3000:]
        assert not dead_dir.parent.exists() and live_dir.exists() and other.exists()
    finally:
        live.kill()
        live.wait()


# --------------------------------------------------------------------------- item 10
@case(10, "two participant runs with different --participant-label (array jobs) into one OUTPUT_DIR, then the "
          "group level",
      "one record per run in logs/ (run-<time>-<id>_<level>.json: labels, seed, status, per-job results); "
      "run_info.json is the latest run; the group record merges the participant runs' skipped subjects")
def run_records_kept_per_run(env):
    bids, study = env.fixture("func_study")
    out = _copy_run(env.fixture("reference_run"), env.tmp / "out")
    shutil.rmtree(out / "logs")
    for label in ("01", "02"):
        code, err = _main([bids, out, "participant", "--study", study, "--participant-label", label, "--nprocs", "1",
                           "--omp-nthreads", "1"])
        assert code == 0, err[-3000:]
    code, err = _main([bids, out, "group", "--study", study, "--nprocs", "1", "--no-report"])
    assert code == 0, err[-3000:]
    recs = sorted((out / "logs").glob("run-*_participant.json"))
    assert len(recs) == 2, recs
    data = run_records(out / "logs", "participant")  # oldest first, also within one second
    assert [d["participant_label"] for d in data] == [["01"], ["02"]]
    assert all(d["status"] == "ok" and d["random_seed"] == 0 and d["finished"] for d in data)
    assert [[j["name"] for j in d["jobs"]] for d in data] == [["sub-01"], ["sub-02"]]
    assert len({d["run_id"] for d in data}) == 2
    group = [json.loads(p.read_text()) for p in (out / "logs").glob("run-*_group.json")]
    assert len(group) == 1 and group[0]["status"] == "ok" and group[0]["skipped_subjects"] == {}
    assert json.loads((out / "logs" / "run_info.json").read_text())["run_id"] == group[0]["run_id"]


# --------------------------------------------------------------------------- item 11
def _count(text: str, needle: str) -> int:
    return len(re.findall(needle, text))


_START = re.compile(r"(sub-\w+): start \(.*pid (\d+)\)")


def _job_states(logs: Path) -> dict:
    """subject -> (pid of its latest attempt, started the func stage, done) from the job logs."""
    states = {}
    for p in logs.glob("sub-*.log"):
        text = p.read_text()
        starts = _START.findall(text)
        if starts:
            last = text[text.rfind(": start ("):]
            states[p.stem] = (int(starts[-1][1]), "func stage" in last, "done in" in last)
    return states


@case(11, "participant level on a dask LocalCluster of 2 worker processes; a worker that already finished one "
          "subject is killed (SIGKILL) while it runs the next",
      "dask re-runs the interrupted subject (the nanny restarts the worker); the finished subject is not run "
      "again (its result was released, so its loss is no reason to recompute it); every subject finishes "
      "exactly once ('done' once per log); outputs byte-identical to the reference run; no temporary file left",
      slow=True)
def dask_worker_killed_mid_run(env):
    distributed = __import__("pytest").importorskip("distributed")
    from ._tree import assert_identical_trees

    bids, study = env.fixture("func_study")
    ref = env.fixture("reference_run")
    out = env.tmp / "out"
    killed = {}

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster:
        stop = threading.Event()

        def killer():  # kill the worker process that finished a subject and is now in the next one
            logs = out / "logs"
            while not stop.is_set() and not killed:
                st = _job_states(logs) if logs.is_dir() else {}
                finished_pids = {pid for pid, _, done in st.values() if done}
                for sub, (pid, in_func, done) in st.items():
                    if in_func and not done and pid in finished_pids:
                        os.kill(pid, signal.SIGKILL)
                        killed[sub] = pid
                        break
                time.sleep(0.02)

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        try:
            code, err = _main([bids, out, "participant", "--study", study, "--scheduler", cluster.scheduler_address,
                               "--omp-nthreads", "1"])
        finally:
            stop.set()
            t.join(10)
    assert killed, "no worker was killed mid-job (the run was too quick to catch one)"
    assert code == 0, err[-3000:]
    (sub,) = killed
    for log in sorted((out / "logs").glob("sub-*.log")):
        text = log.read_text()
        assert _count(text, r": done in ") == 1, (log.name, text[-2000:])  # finished exactly once
        assert _count(text, r": start \(") == (2 if log.stem == sub else 1), (log.name, text[-2000:])
    assert_identical_trees(ref, out, "participant")
    assert _temporaries(out) == []


def markdown_table() -> str:
    rows = ["| item | case | fault | what hfsmri gives |", "|---:|---|---|---|"]
    for c in sorted(CASES.values(), key=lambda c: (c.item, c.name)):
        rows.append(f"| {c.item} | `{c.name}` | {c.fault} | {c.gives} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())
