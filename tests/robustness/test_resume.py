"""Resume: a run killed mid-way re-runs only unfinished work; changed parameters invalidate exactly
the outputs they affect (provenance hash in the JSON sidecars)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hfsmri.cli import main

from ._tree import DWI_STUDY, PER_SUBJECT, derivative_files, same_content, stat_map
from .conftest import run_cli

HFSMRI = [sys.executable, "-m", "hfsmri.cli"]
SUBJECTS = ("01", "02", "03", "04")


def _summary(out: Path, sub: str) -> Path:
    return out / f"sub-{sub}" / f"sub-{sub}_desc-hfsmri_summary.json"


@pytest.mark.slow
def test_killed_run_resumes_only_unfinished_subjects(func_study, reference_run, tmp_path):
    bids, study = func_study
    out = tmp_path / "out"
    cmd = [*HFSMRI, str(bids), str(out), "participant", "--study", str(study), "--nprocs", "1",
           "--omp-nthreads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        while not _summary(out, "01").exists():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() - t0 < 240, "no subject finished in time"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    finished = [s for s in SUBJECTS if _summary(out, s).exists()]
    assert "01" in finished and len(finished) < len(SUBJECTS), finished  # killed mid-way
    kept = [f for f in derivative_files(out, "participant") if f.parts[0] in {f"sub-{s}" for s in finished}]
    assert len(kept) == PER_SUBJECT * len(finished)
    before = stat_map(out, kept)

    run_cli(bids, out, "participant", study, "--nprocs", "1")

    assert stat_map(out, kept) == before  # finished subjects' outputs were not rewritten
    for s in finished:
        assert "outputs up to date, skipped" in (out / "logs" / f"sub-{s}.log").read_text()
    # the rest was completed, and the resumed result equals an uninterrupted run
    files = derivative_files(reference_run, "participant")
    assert derivative_files(out, "participant") == files
    differ = [str(f) for f in files if not same_content(reference_run / f, out / f)]
    assert not differ, differ


def _dwi_run(bids, out, tmp_path, *, fit="wls", scheme="witelson", n_perm=20):
    study = tmp_path / f"study_{fit}_{scheme}_{n_perm}.yaml"
    study.write_text(DWI_STUDY % {"fit": fit, "scheme": scheme, "n_perm": n_perm})
    code = main([str(bids), str(out), "participant", "--study", str(study), "--nprocs", "1", "--omp-nthreads", "1",
                 "--participant-label", "01"])
    assert code == 0


@pytest.mark.slow
def test_changed_parameters_invalidate_exactly_the_affected_outputs(tmp_path):
    from hfsmri.simulate import simulate_study

    bids = simulate_study(tmp_path / "bids", n_patients=2, n_controls=2, seed=1, resolution=4, n_dirs=12,
                          deform=False, modalities=("dwi",))
    out = tmp_path / "out"
    _dwi_run(bids, out, tmp_path)
    files = derivative_files(out, "participant")
    maps = [f for f in files if f.name.endswith("_dwimap.nii.gz") or f.name.endswith("brain_mask.nii.gz")]
    rois = [f for f in files if f.name.endswith("tracts_stats.tsv")]
    assert len(maps) == 5 and len(rois) == 1
    state0 = stat_map(out, files)
    rois0 = (out / rois[0]).read_bytes()

    # 1) group-level parameter only: no participant output is touched
    _dwi_run(bids, out, tmp_path, n_perm=50)
    assert stat_map(out, files) == state0

    # 2) callosal subdivision scheme: only the tract/ROI table is recomputed (and differs)
    _dwi_run(bids, out, tmp_path, scheme="hofer")
    state1 = stat_map(out, files)
    assert {f: state1[str(f)] for f in map(str, maps)} == {f: state0[str(f)] for f in map(str, maps)}
    assert state1[str(rois[0])] != state0[str(rois[0])]
    assert (out / rois[0]).read_bytes() != rois0

    # 3) tensor fit method: the maps are recomputed too
    _dwi_run(bids, out, tmp_path, scheme="hofer", fit="ols")
    state2 = stat_map(out, files)
    assert all(state2[str(f)] != state1[str(f)] for f in maps)
