"""Same inputs + seed -> byte-identical NIfTI data and TSVs across runs and across --nprocs 1 vs 2;
each job gets the same thread count whatever --nprocs is when --omp-nthreads is given."""
from __future__ import annotations

import shutil

import pytest

from hfsmri.parallel import Job, job_threads, run_jobs

from ._tree import PER_SUBJECT, assert_identical_trees, derivative_files, same_content
from .conftest import run_cli


@pytest.mark.parametrize("omp", [1, 2])
def test_thread_count_independent_of_nprocs(omp):
    jobs = [Job(f"j{i}", job_threads) for i in range(2)]
    one = run_jobs(jobs, nprocs=1, omp_nthreads=omp, progress=False)   # in this process
    two = run_jobs(jobs, nprocs=2, omp_nthreads=omp, progress=False)   # fresh worker processes
    seen = [r.value for r in one + two]
    assert all(s == seen[0] for s in seen), seen
    assert seen[0]["OMP_NUM_THREADS"] == seen[0]["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] == str(omp)
    assert seen[0]["numba"] == omp
    assert all(n == omp for _, n in seen[0]["pools"])  # every BLAS/OpenMP pool capped


@pytest.mark.slow
def test_nprocs_2_identical_to_nprocs_1(func_study, reference_run, tmp_path):
    """Two subjects as two parallel jobs (fresh worker processes) vs the in-process reference run."""
    bids, study = func_study
    out = tmp_path / "out"
    run_cli(bids, out, "participant", study, "--nprocs", "2", "--participant-label", "01", "03")
    files = [f for f in derivative_files(reference_run, "participant") if f.parts[0] in ("sub-01", "sub-03")]
    assert derivative_files(out, "participant") == files
    assert len(files) == 2 * PER_SUBJECT
    differ = [str(f) for f in files if not same_content(reference_run / f, out / f)]
    assert not differ, differ


def test_group_rerun_identical(func_study, reference_run, tmp_path):
    """Group level run twice on the same participant outputs (fresh folder): identical files."""
    bids, study = func_study
    out = tmp_path / "out"
    shutil.copytree(reference_run, out, ignore=shutil.ignore_patterns("group", "logs"))
    run_cli(bids, out, "group", study, "--nprocs", "1")
    assert_identical_trees(reference_run, out, "group")
