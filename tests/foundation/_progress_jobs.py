"""Jobs for tests/foundation/test_progress.py (importable by spawned pool workers)."""
import logging
import sys
import time


def job(label: str, pause: float) -> str:
    """Two 'stages': the first ends at once, the second after ``pause`` seconds."""
    from hfsmri.progress import stage_done

    stage_done(label, "anat", 0.2, True)
    time.sleep(pause)
    stage_done(label, "func", pause, False)
    return label


SCRIPT = r"""
import logging, sys, time
from hfsmri.cli import setup_logging
from hfsmri.parallel import Job, run_jobs
from hfsmri.progress import flush_repeats
from tests.foundation._progress_jobs import job

setup_logging(quiet="--quiet" in sys.argv)
log = logging.getLogger("hfsmri")
jobs = [Job(f"sub-0{i}", job, (f"sub-0{i}", 2.0)) for i in (1, 2)]
run_jobs(jobs, nprocs=2, omp_nthreads=1)
for i in range(66):
    log.info("%s: voxel-wise correlation with %s skipped", f"group/reho/m{i}", "hamd")
for i in range(5):
    log.warning("voxel-wise correlation with %s not run: residual df = %d < 10", "severity", 5 + i % 2)
flush_repeats()
log.warning("a warning")
print("END", file=sys.stderr, flush=True)
"""
