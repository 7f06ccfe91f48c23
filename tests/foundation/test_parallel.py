"""Executor: 2 processes, failures reported without losing the others, thread caps."""
from __future__ import annotations

import os

import pytest

from hfsmri.parallel import Job, JobFailed, run_jobs


def square(x):
    return x * x


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad subject {x}")
    return os.getpid()


def env_threads():
    return os.environ.get("OMP_NUM_THREADS"), os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")


def test_two_processes_and_failure_reported(tmp_path):
    jobs = [Job(f"sub-{i:02d}", fail_on, (i, 2)) for i in range(4)]
    res = run_jobs(jobs, nprocs=2, log_dir=tmp_path, progress=False)
    assert [r.name for r in res] == ["sub-00", "sub-01", "sub-02", "sub-03"]
    assert [r.ok for r in res] == [True, True, False, True]
    assert "bad subject 2" in res[2].error and "ValueError" in res[2].traceback
    pids = {r.value for r in res if r.ok}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # 2 worker processes, reused across jobs
    assert "bad subject 2" in (tmp_path / "sub-02.log").read_text()
    assert all(r.peak_mb and r.peak_mb > 10 for r in res)


def test_stop_on_first_crash(tmp_path):
    jobs = [Job(f"j{i}", fail_on, (i, 0)) for i in range(3)]
    with pytest.raises(JobFailed, match="bad subject 0"):
        run_jobs(jobs, nprocs=1, log_dir=tmp_path, stop_on_first_crash=True, progress=False)


def test_results_and_thread_caps():
    res = run_jobs([Job("a", square, (3,)), Job("b", env_threads)], nprocs=2, omp_nthreads=1, progress=False)
    assert res[0].value == 9
    assert res[1].value == ("1", "1")


def test_memory_bounds_concurrency(caplog):
    jobs = [Job(f"j{i}", square, (i,), mem_mb=3000) for i in range(3)]
    res = run_jobs(jobs, nprocs=2, mem_mb=4000, progress=False)
    assert [r.value for r in res] == [0, 1, 4]


def test_worker_replaced_after_max_jobs(tmp_path, monkeypatch):
    import hfsmri.parallel as par

    monkeypatch.setattr(par, "JOBS_PER_WORKER", 2)
    res = run_jobs([Job(f"j{i}", fail_on, (i, -1)) for i in range(4)], nprocs=2, progress=False)
    pids = [r.value for r in res]
    # each of the 2 lanes runs 2 jobs; jobs are never spread over more than ceil(4/2) processes per lane
    assert all(r.ok for r in res) and 2 <= len(set(pids)) <= 4
