"""Executor for independent per-subject jobs.

* Local (default): ``nprocs`` jobs at a time, each executor thread driving a worker process of its
  own (a single-worker pool, reused for up to :data:`JOBS_PER_WORKER` jobs), so a crash (even a
  segfault in a C library or an out-of-memory kill) fails only the subject it was running and the
  process is replaced; one shared ``ProcessPoolExecutor`` would be broken for every pending job.
* Cluster: with ``scheduler`` (a ``dask.distributed`` address such as ``tcp://host:8786``) the same
  job function is submitted to the cluster.
* Threads: BLAS/OpenMP/ITK/numba threads of each job are capped to ``omp_nthreads``
  (:func:`thread_limits`: the environment variables of :data:`THREAD_ENV`, set before a pool worker
  imports numpy, plus threadpoolctl and ``numba.set_num_threads`` for libraries already loaded), so
  a job gets the same thread count in-process (``nprocs=1``), in a pool worker or on a dask worker.
  ``NUMBA_NUM_THREADS`` is never changed in a process where numba may have started its thread
  pool: numba re-reads it before every compilation and raises ``RuntimeError: Cannot set
  NUMBA_NUM_THREADS ...`` if it differs from the running pool; it is only set in a new worker
  process before numba is imported there (:func:`_worker_init`); ``numba.set_num_threads`` is the
  runtime cap everywhere.
  With ``omp_nthreads`` given, that count does not depend on ``nprocs`` (required for
  bit-identical results: BLAS reductions and ITK/ANTs registration depend on the thread count).
* Memory: each job's estimate (``Job.mem_mb``) bounds the concurrency under ``mem_mb``; the
  estimate and the measured peak resident memory (Linux ``VmHWM``, reset at the job start) are
  logged for every job and returned in :class:`JobResult`.
* Logs: each job writes ``OUTPUT_DIR/logs/<job name>.log``; failures are collected and reported at
  the end (or raised at once with ``stop_on_first_crash``). A job log that cannot be written (full
  disk) is switched off after its first failed record instead of printing a "Logging error"
  traceback per record.
* Storage faults: a job ending with a full disk, an exceeded quota or a read-only file system
  (:class:`~hfsmri.errors.StorageError` with ``fatal``) stops the run like ``stop_on_first_crash``:
  every further job would fail the same way.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import resource
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
import contextlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: thread-count variables set for a job (in its process and for processes it starts)
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
#: numba's pool size: fixed when numba's threads start; set only in a fresh worker (:func:`_worker_init`)
NUMBA_ENV = "NUMBA_NUM_THREADS"

log = logging.getLogger("hfsmri")


@dataclass
class Job:
    """One unit of work: ``fn(*args, **kwargs)``; ``name`` is used for the log file (``sub-01``)."""

    name: str
    fn: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    mem_mb: float | None = None  # estimated peak memory, used to bound concurrency


@dataclass
class JobResult:
    name: str
    ok: bool
    value: Any = None
    error: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    peak_mb: float | None = None
    log_file: str | None = None
    mem_mb: float | None = None  # the job's memory estimate
    fatal: bool = False  # full disk / quota / read-only file system: no further job can succeed


class JobFailed(RuntimeError):
    """Raised with ``stop_on_first_crash`` when a job fails."""

    def __init__(self, result: JobResult):
        self.result = result
        super().__init__(f"{result.name} failed: {result.error}")


def thread_env(omp_nthreads: int) -> dict[str, str]:
    n = str(max(1, int(omp_nthreads)))
    return {k: n for k in THREAD_ENV}


def _reset_peak() -> bool:
    """Reset this process's peak resident memory (Linux ``/proc/self/clear_refs``); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    """Peak resident memory of this process (MB): ``VmHWM`` (since the last :func:`_reset_peak`) on
    Linux, else ``ru_maxrss`` (peak over the process's life)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 1024.0 / 1024.0


@contextmanager
def thread_limits(n: int | None):
    """Cap the threads of this process to ``n`` for the duration of the block.

    Three layers, so that the cap holds whether a library is already loaded or not (in-process
    ``--nprocs 1`` runs and dask workers have numpy loaded before the job starts):

    * environment variables :data:`THREAD_ENV` (libraries loaded later, ITK when it first starts
      threads, child processes);
    * ``threadpoolctl`` for BLAS / OpenMP runtimes already loaded;
    * ``numba.set_num_threads`` (the runtime knob; at most the size of numba's pool).

    ``NUMBA_NUM_THREADS`` itself is not touched here, whatever the import order: numba compares it
    with its running pool before every compilation and fails if it changed (a fresh install, whose
    kernels are not cached yet, compiles during the job).

    Everything is restored on exit. ``n`` None or 0: no change.
    """
    if not n:
        yield
        return
    n = max(1, int(n))
    try:
        import numba
    except ImportError:  # pragma: no cover
        numba = None
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update(thread_env(n))
    old_numba = None
    if numba is not None:
        old_numba = numba.get_num_threads()
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits

        ctl = threadpool_limits(limits=n)
    except ImportError:  # pragma: no cover
        ctl = None
    try:
        yield
    finally:
        if ctl is not None:
            ctl.restore_original_limits()
        if numba is not None and old_numba is not None:
            numba.set_num_threads(old_numba)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker_init(omp: int, progress_queue=None) -> None:
    """Initializer of a spawned pool worker: thread caps before the job's modules are imported.
    ``NUMBA_NUM_THREADS`` is set only while numba is not imported in this process (its pool size
    is then ``omp``); afterwards it is left alone (see :func:`thread_limits`)."""
    os.environ.update(thread_env(omp))
    if "numba" not in sys.modules:
        os.environ[NUMBA_ENV] = str(max(1, int(omp)))
    if progress_queue is not None:  # stage-end lines reach the main process's console as they happen
        from . import progress

        progress._relay["queue"] = progress_queue


class _JobLogHandler(logging.FileHandler):
    """The job's log file; after the first record that cannot be written (disk full, quota, file
    system gone) it stays silent instead of printing a "--- Logging error ---" traceback for every
    further record. The job's own error is reported through its result."""

    failed = False

    def emit(self, record):
        if self.failed:
            return
        super().emit(record)

    def handleError(self, record):  # noqa: N802 - logging API
        self.failed = True
        with contextlib.suppress(Exception):
            if self.stream is not None:
                self.stream.close()
        self.stream = None


def job_threads() -> dict:
    """Thread settings seen by the current job (for logs and tests): environment caps, numba
    threads and the BLAS/OpenMP pools reported by threadpoolctl."""
    out = {k: os.environ.get(k) for k in THREAD_ENV}
    try:
        import numba

        out["numba"] = numba.get_num_threads()
    except ImportError:  # pragma: no cover
        pass
    try:
        from threadpoolctl import threadpool_info

        out["pools"] = sorted({(d["user_api"], d["num_threads"]) for d in threadpool_info()})
    except ImportError:  # pragma: no cover
        pass
    return out


def run_one(job: Job, log_dir: str | None, level: int = logging.INFO, omp_nthreads: int | None = None,
            scratch: str | Path | None = None) -> JobResult:
    """Run one job in the current process, with its own log file; never raises.

    Threads are capped to ``omp_nthreads`` (:func:`thread_limits`) while the job runs, so a job
    gets the same thread count whether it runs in this process, a pool worker or a dask worker.
    The job's memory estimate and its measured peak resident memory are logged and returned.
    With ``scratch`` (``<WORK_DIR>/tmp``) the job's temporary files go to a private folder there
    (:func:`hfsmri.scratch.job_tempdir`), deleted when the job ends.
    """
    from .scratch import job_tempdir

    logger = logging.getLogger("hfsmri")
    handler = None
    log_file = None
    if log_dir:
        log_file = str(Path(log_dir) / f"{job.name}.log")
        try:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            handler = _JobLogHandler(log_file, mode="a", encoding="utf-8")
        except OSError:  # full disk / read-only: the job still runs (and reports the storage fault)
            handler = None
        else:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > level:
            logger.setLevel(level)
    from . import progress

    relay = progress.relay_handler()  # None in the main process (its console shows the lines)
    if relay is not None:
        plog = logging.getLogger(progress.LOGGER)
        plog.addHandler(relay)
        if plog.getEffectiveLevel() > logging.INFO:  # a fresh worker: the root's WARNING would drop the lines
            plog.setLevel(logging.INFO)
    per_job_peak = _reset_peak()
    est = f"{job.mem_mb:.0f} MB" if job.mem_mb else "none"
    peak_kind = "peak memory" if per_job_peak else "process peak memory"
    t0 = time.perf_counter()
    try:
        with thread_limits(omp_nthreads), job_tempdir(scratch):
            logger.info("%s: start (memory estimate %s, %s thread(s), pid %d)", job.name, est,
                        omp_nthreads or "default", os.getpid())
            value = job.fn(*job.args, **job.kwargs)
        secs = time.perf_counter() - t0
        peak = _peak_mb()
        logger.info("%s: done in %.1f s (%s %.0f MB, estimate %s)", job.name, secs, peak_kind, peak, est)
        return JobResult(job.name, True, value=value, seconds=secs, peak_mb=peak, log_file=log_file,
                         mem_mb=job.mem_mb)
    except BaseException as exc:  # noqa: BLE001 - report every failure, including KeyboardInterrupt in workers
        from .errors import HfsmriError, storage_error

        secs = time.perf_counter() - t0
        peak = _peak_mb()
        tb = traceback.format_exc()
        storage = storage_error(exc)
        if storage is not None:
            exc = storage
        msg = str(exc) if isinstance(exc, HfsmriError) else f"{type(exc).__name__}: {exc}"
        logger.error("%s: failed after %.1f s (%s %.0f MB, estimate %s): %s", job.name, secs, peak_kind, peak,
                     est, msg)
        logger.debug(tb)
        return JobResult(job.name, False, error=msg, traceback=tb, seconds=secs, peak_mb=peak,
                         log_file=log_file, mem_mb=job.mem_mb, fatal=bool(storage is not None and storage.fatal))
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
        if relay is not None:
            logging.getLogger(progress.LOGGER).removeHandler(relay)


def _concurrency(jobs: list[Job], nprocs: int, mem_mb: float | None) -> int:
    n = max(1, min(int(nprocs), len(jobs)))
    if mem_mb:
        est = max((j.mem_mb or 0) for j in jobs) if jobs else 0
        if est > 0:
            n = max(1, min(n, int(mem_mb // est)))
    return n


def default_nprocs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def run_jobs(jobs: list[Job], nprocs: int | None = None, omp_nthreads: int | None = None,
             log_dir: str | Path | None = None, stop_on_first_crash: bool = False,
             scheduler: str | None = None, mem_mb: float | None = None, progress: bool | None = None,
             level: int = logging.INFO, scratch: str | Path | None = None) -> list[JobResult]:
    """Run independent jobs; results are returned in the order of ``jobs``.

    Parameters
    ----------
    nprocs : parallel jobs (default: all cores); reduced so that the sum of the jobs' memory
        estimates stays below ``mem_mb`` when both are known.
    omp_nthreads : threads per job (default 1: results then do not depend on ``nprocs``; ANTs/ITK
        registration is reproducible only at a fixed thread count).
    scheduler : dask.distributed scheduler address; when given the jobs run there.
    scratch : folder for the jobs' private temporary folders (``<WORK_DIR>/tmp``; see
        :mod:`hfsmri.scratch`); None: the process's usual temporary folder.
    stop_on_first_crash : raise :class:`JobFailed` at the first failure (pending jobs cancelled).
        A storage fault (``JobResult.fatal``: full disk, quota, read-only file system) always
        stops the run this way.
    """
    if not jobs:
        return []
    nprocs = nprocs or default_nprocs()
    workers = _concurrency(jobs, nprocs, mem_mb)
    omp = omp_nthreads or 1
    log_dir = str(log_dir) if log_dir else None
    if progress is None:
        from .progress import bars_enabled

        progress = bars_enabled()
    if mem_mb and workers < min(nprocs, len(jobs)):
        log.info("memory limit %.0f MB: running %d job(s) at a time (estimate %.0f MB each)",
                 mem_mb, workers, max(j.mem_mb or 0 for j in jobs))
    if scheduler:
        return _run_dask(jobs, scheduler, log_dir, stop_on_first_crash, omp, level, scratch)
    if workers == 1:
        results = []
        for job in _progress(jobs, progress):
            res = run_one(job, log_dir, level, omp, scratch)
            results.append(res)
            if not res.ok and (stop_on_first_crash or res.fatal):
                raise JobFailed(res)
        return results
    return _run_pool(jobs, workers, omp, log_dir, stop_on_first_crash, progress, level, scratch)


def _progress(items, enabled):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="subjects", unit="subject", file=sys.stderr, dynamic_ncols=True)


class _Lane:
    """A single-worker process pool kept for the jobs of one executor thread.

    The worker process is reused from job to job (imports of ANTs, nilearn and dipy and the
    template caches cost 3-4 s per process), and replaced after ``max_jobs`` jobs (bounds memory
    growth) or as soon as it dies: if the process dies (segfault, out-of-memory kill,
    ``os._exit``) only the job it was running fails.
    """

    def __init__(self, ctx, max_jobs: int, progress_queue=None):
        self.ctx, self.max_jobs = ctx, max(1, int(max_jobs))
        self.queue = progress_queue
        self.pool: ProcessPoolExecutor | None = None
        self.n = 0

    def run(self, job: Job, log_dir, level, omp, scratch=None) -> JobResult:
        if self.pool is None or self.n >= self.max_jobs:
            self.close()
            self.pool = ProcessPoolExecutor(max_workers=1, mp_context=self.ctx, initializer=_worker_init,
                                            initargs=(omp, self.queue))
        self.n += 1
        fut = self.pool.submit(run_one, job, log_dir, level, omp, scratch)
        try:
            return fut.result()
        except BaseException as exc:  # noqa: BLE001 - worker died
            self.close()
            return JobResult(job.name, False, error=f"worker process died ({type(exc).__name__}: {exc}); "
                             "out of memory? (see --mem-mb)", mem_mb=job.mem_mb)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool, self.n = None, 0


#: jobs run by one worker process before it is replaced (memory growth across subjects)
JOBS_PER_WORKER = 8


def _run_pool(jobs, workers, omp, log_dir, stop_on_first_crash, progress, level, scratch=None) -> list[JobResult]:
    """``workers`` jobs at a time, each executor thread driving one worker process of its own
    (:class:`_Lane`): a shared ``ProcessPoolExecutor`` would be broken for every job by one dying
    worker, a fresh process per job pays the imports every time."""
    import threading

    # Children inherit the environment at spawn time: cap threads before numpy is imported there
    # (NUMBA_NUM_THREADS is set by the worker's initializer, never in this process).
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update(thread_env(omp))
    ctx = mp.get_context("spawn")
    from .progress import listen

    queue = ctx.Queue()  # stage-end lines from the workers (hfsmri.progress)
    listener = listen(queue)
    lanes: list[_Lane] = []
    local = threading.local()
    lock = threading.Lock()

    def run_in_lane(job: Job) -> JobResult:
        lane = getattr(local, "lane", None)
        if lane is None:
            lane = local.lane = _Lane(ctx, JOBS_PER_WORKER, queue)
            with lock:
                lanes.append(lane)
        return lane.run(job, log_dir, level, omp, scratch)

    results: dict[int, JobResult] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="subjects", unit="subject", file=sys.stderr, dynamic_ncols=True)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hfsmri-job") as pool:
            futures = {pool.submit(run_in_lane, job): i for i, job in enumerate(jobs)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = futures[fut]
                    try:
                        res = fut.result()
                    except BaseException as exc:  # noqa: BLE001 - e.g. the process could not be started
                        res = JobResult(jobs[i].name, False, error=f"{type(exc).__name__}: {exc}")
                    results[i] = res
                    if bar is not None:
                        bar.update(1)
                    if not res.ok and (stop_on_first_crash or res.fatal):
                        for f in pending:
                            f.cancel()
                        raise JobFailed(res)
    finally:
        for lane in lanes:
            lane.close()
        queue.put(None)  # after the workers ended: every line they sent is printed
        listener.join(timeout=10)
        queue.close()
        if bar is not None:
            bar.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return [results[i] for i in range(len(jobs))]


def connect(address: str, timeout: float = 30.0):
    """``distributed.Client(address)``; a clear :class:`~hfsmri.errors.HfsmriError` when the
    package is missing or the scheduler cannot be reached."""
    from .errors import HfsmriError

    try:
        from distributed import Client
    except ImportError:  # pragma: no cover
        raise HfsmriError("--scheduler needs the 'distributed' package (pip install distributed)",
                          field="--scheduler") from None
    try:
        return Client(address, timeout=timeout)
    except Exception as exc:  # OSError / TimeoutError / ValueError from a bad address
        raise HfsmriError(f"cannot connect to the dask scheduler {address!r}: {type(exc).__name__}: {exc}",
                          field="--scheduler") from None


def _run_dask(jobs, address, log_dir, stop_on_first_crash, omp, level, scratch=None) -> list[JobResult]:
    """Submit every job to the dask cluster. Each future is released as soon as its result is
    here: a finished job's result then lives only on the client, so the loss of the worker that
    ran it does not make the scheduler run that subject again. A job whose worker dies while it
    runs is re-run by dask on another worker (up to ``distributed.scheduler.allowed-failures``
    times); the re-run resumes from the outputs already written (skip-if-done)."""
    from distributed import as_completed

    from .progress import TOPIC, dask_listener

    client = address if not isinstance(address, str) else connect(address)
    try:
        client.subscribe_topic(TOPIC, dask_listener)  # stage-end lines from the workers, as they happen
    except Exception:  # noqa: BLE001 - an older distributed: no live lines, the job logs have them
        pass
    try:
        futures = {f"hfsmri-{job.name}-{i}": client.submit(run_one, job, log_dir, level, omp, scratch,
                                                            key=f"hfsmri-{job.name}-{i}", pure=False)
                   for i, job in enumerate(jobs)}
        index = {key: i for i, key in enumerate(futures)}
        results: dict[int, JobResult] = {}
        pending = as_completed(list(futures.values()))
        for fut in pending:
            i = index[fut.key]
            try:
                res = fut.result()
            except BaseException as exc:
                res = JobResult(jobs[i].name, False, error=f"dask task failed: {exc}")
            results[i] = res
            futures.pop(fut.key, None)
            fut.release()
            if not res.ok and (stop_on_first_crash or res.fatal):
                client.cancel(list(futures.values()))
                raise JobFailed(res)
        return [results[i] for i in range(len(jobs))]
    finally:
        if isinstance(address, str):
            client.close()


@contextmanager
def client_for(scheduler):
    """A dask client for the block: None without ``scheduler``; for an address (``tcp://host:8786``)
    one is opened here and closed at the end; an existing ``distributed.Client`` is passed through."""
    if not scheduler:
        yield None
        return
    client = connect(scheduler) if isinstance(scheduler, str) else scheduler
    try:
        yield client
    finally:
        if isinstance(scheduler, str):
            client.close()
