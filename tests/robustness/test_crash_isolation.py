"""A job whose process dies (segfault, OOM kill: here ``os._exit``) fails alone; the others finish."""
from __future__ import annotations

import os
import time

from hfsmri.parallel import Job, run_jobs


def _work(i, bad):
    if i == bad:
        time.sleep(0.3)
        os._exit(3)  # the process vanishes without a Python exception, like a segfault
    time.sleep(0.6)
    return i * 10


def test_dying_worker_fails_only_its_job(tmp_path):
    res = run_jobs([Job(f"sub-{i:02d}", _work, (i, 1)) for i in range(4)], nprocs=2, log_dir=tmp_path,
                   progress=False)
    assert [r.ok for r in res] == [True, False, True, True]
    assert [r.value for r in res] == [0, None, 20, 30]
    assert "worker process died" in res[1].error


def _pid(i, bad):
    if i == bad:
        os._exit(3)
    return os.getpid()


def test_died_worker_is_replaced(tmp_path):
    """A lane reuses its worker process until it dies; the next job gets a new process."""
    import multiprocessing as mp

    from hfsmri.parallel import _Lane

    lane = _Lane(mp.get_context("spawn"), max_jobs=10)
    try:
        a = lane.run(Job("a", _pid, (0, 1)), str(tmp_path), 20, 1)
        b = lane.run(Job("b", _pid, (0, 1)), str(tmp_path), 20, 1)
        dead = lane.run(Job("c", _pid, (1, 1)), str(tmp_path), 20, 1)
        d = lane.run(Job("d", _pid, (0, 1)), str(tmp_path), 20, 1)
    finally:
        lane.close()
    assert a.ok and b.ok and d.ok and not dead.ok and "worker process died" in dead.error
    assert a.value == b.value != os.getpid()  # reused
    assert d.value != a.value  # replaced after the crash
