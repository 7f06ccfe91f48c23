"""The same jobs through a real dask.distributed LocalCluster (2 worker processes)."""
from __future__ import annotations

import pytest

from hfsmri.parallel import Job, JobFailed, run_jobs

from .test_parallel import fail_on, square


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as c:
        yield c


def test_dask_results_identical_to_local(cluster, tmp_path):
    jobs = [Job(f"sub-{i:02d}", square, (i,)) for i in range(5)]
    local = run_jobs(jobs, nprocs=2, progress=False)
    remote = run_jobs(jobs, scheduler=cluster.scheduler_address, log_dir=tmp_path, progress=False)
    assert [r.value for r in remote] == [r.value for r in local] == [0, 1, 4, 9, 16]
    assert [r.name for r in remote] == [j.name for j in jobs]
    assert (tmp_path / "sub-03.log").exists()


def test_dask_failure_reported(cluster, tmp_path):
    jobs = [Job(f"j{i}", fail_on, (i, 1)) for i in range(3)]
    res = run_jobs(jobs, scheduler=cluster.scheduler_address, progress=False)
    assert [r.ok for r in res] == [True, False, True] and "bad subject 1" in res[1].error
    with pytest.raises(JobFailed):
        run_jobs(jobs, scheduler=cluster.scheduler_address, stop_on_first_crash=True, progress=False)
