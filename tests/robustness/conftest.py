"""Session fixtures: one tiny simulated fMRI study (2 patients + 2 controls, 4 mm, 40 volumes), its
reference run (participant + group, ``--nprocs 1 --omp-nthreads 1``) and a dask LocalCluster."""
from __future__ import annotations

from pathlib import Path

import pytest

from hfsmri.cli import main

from ._tree import FUNC_STUDY, snapshot

#: BIDS root -> snapshot taken when the study was simulated, before any run (nothing may change it)
BIDS_SNAPSHOTS: dict = {}


@pytest.fixture(scope="session")
def func_study(tmp_path_factory) -> tuple[Path, Path]:
    """(BIDS root, study.yaml) of a tiny func-only study."""
    from hfsmri.simulate import simulate_study

    root = tmp_path_factory.mktemp("robust_func")
    bids = simulate_study(root / "bids", n_patients=2, n_controls=2, seed=0, resolution=4, n_volumes=40,
                          deform=False, modalities=("func",))
    study = root / "study.yaml"
    study.write_text(FUNC_STUDY)
    BIDS_SNAPSHOTS[str(bids)] = snapshot(Path(bids))
    return Path(bids), study


def run_cli(bids: Path, out: Path, level: str, study: Path, *extra: str) -> None:
    args = [str(bids), str(out), level, "--study", str(study), "--omp-nthreads", "1", *extra]
    if level == "group":
        args.append("--no-report")
    code = main(args)
    assert code == 0, f"hfsmri {' '.join(args)} exited with {code}"


@pytest.fixture(scope="session")
def reference_run(func_study, tmp_path_factory) -> Path:
    """Output folder of the reference run (in-process, one job at a time)."""
    bids, study = func_study
    out = tmp_path_factory.mktemp("robust_ref") / "out"
    run_cli(bids, out, "participant", study, "--nprocs", "1")
    run_cli(bids, out, "group", study, "--nprocs", "1")
    return out


@pytest.fixture(scope="session")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as c:
        yield c
