"""Benchmark: participant stage for 4, 8 and 16 simulated subjects with 1 and 2 workers.

Input: a simulated func-only study (``hfsmri.simulate.simulate_study``, 4 mm, ``--volumes`` BOLD
volumes, no deformation) with analyses ReHo + ALFF; each configuration runs the full participant
level through the command line (``hfsmri BIDS OUT participant --nprocs W --omp-nthreads 1``) into
a fresh output folder. Reference = the same subjects with 1 worker (in-process, one job after the
other); reported: wall seconds, seconds per subject, speed-up of 2 workers over 1, and whether
the outputs of both runs are byte-identical (they must be). ``--dask`` adds a run on a
``dask.distributed.LocalCluster`` with 2 worker processes.

Run:  python benchmarks/bench_scaling.py [--quick] [--sizes 4,8,16] [--volumes 60] [--dask]
``--quick``: sizes 2,4 and 40 volumes (a smoke run, a couple of minutes).

Load and faults together (issue 20, item 11):  python benchmarks/bench_scaling.py --faults 100
simulates 100 small subjects (func only, 4 mm, 40 volumes, ReHo + ALFF), runs the participant level
with ``--nprocs 2`` (the clean run), then again on a ``dask.distributed.LocalCluster`` of 2 worker
processes while a thread kills (SIGKILL) a worker that has finished a subject in the middle of its
next one, at 1/3 of the run. Checked: every job log says "done" exactly once (the interrupted
subject twice "start"), every subject's outputs are byte-identical to the clean run's, no
temporary file is left. The suite holds the 4-subject version
(``tests/robustness/fault_cases.py::dask_worker_killed_mid_run``).

Notes: each of the local pool's workers is a process of its own, reused for up to
``hfsmri.parallel.JOBS_PER_WORKER`` jobs and replaced when it dies (crash isolation), so the
interpreter + import start-up (several seconds) is paid once per worker, not once per subject.
Timings on a shared machine are noisy.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

STUDY = """\
group_column: group
groups: {patient: HFS, control: HC}
covariates: []
analyses:
  reho: {}
  alff: {}
preprocessing:
  func: {resolution: 4, dummy_scans: 2}
stats: {n_perm: 20, random_seed: 0}
"""


def _derivatives(root: Path) -> list[Path]:
    """Participant NIfTI/TSV derivatives (sub-*/...), relative to ``root`` (no logs/work/temp files)."""
    out = []
    for sub in sorted(root.glob("sub-*")):
        for p in sorted(sub.rglob("*")):
            if p.is_file() and not p.name.startswith(".") and (p.name.endswith(".nii.gz") or p.suffix == ".tsv"):
                out.append(p.relative_to(root))
    return out


def _identical(a: Path, b: Path) -> bool:
    fa, fb = _derivatives(a), _derivatives(b)
    if fa != fb or not fa:
        return False
    for f in fa:
        if f.name.endswith(".nii.gz"):
            if np.asarray(nib.load(str(a / f)).dataobj).tobytes() != np.asarray(nib.load(str(b / f)).dataobj).tobytes():
                return False
        elif (a / f).read_bytes() != (b / f).read_bytes():
            return False
    return True


def _run(bids: Path, out: Path, study: Path, labels: list[str], *extra: str) -> float:
    from hfsmri.cli import main

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    code = main([str(bids), str(out), "participant", "--study", str(study), "--omp-nthreads", "1",
                 "--participant-label", *labels, *extra])
    secs = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"participant run failed ({' '.join(extra)}): exit {code}")
    return secs


_START = re.compile(r"(sub-\w+): start \(.*pid (\d+)\)")


def _job_states(logs: Path) -> dict:
    """subject -> (pid of its latest attempt, in the func stage, done) from the job logs."""
    states = {}
    for p in logs.glob("sub-*.log"):
        text = p.read_text()
        starts = _START.findall(text)
        if starts:
            last = text[text.rfind(": start ("):]
            states[p.stem] = (int(starts[-1][1]), "func stage" in last, "done in" in last)
    return states


def faults(n: int, volumes: int, keep: Path | None) -> int:
    """Load + faults: ``n`` subjects with --nprocs 2, then on a 2-worker dask cluster with one
    worker killed mid-run; see the module docstring."""
    import threading

    from distributed import LocalCluster

    from hfsmri.simulate import simulate_study

    root = keep or Path(tempfile.mkdtemp(prefix="hfsmri_bench_faults_"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bids = root / "bids"
    if not (bids / "participants.tsv").exists():
        simulate_study(bids, n_patients=(n + 1) // 2, n_controls=n // 2, seed=0, resolution=4, n_volumes=volumes,
                       deform=False, modalities=("func",))
    print(f"simulated {n} subjects (func, 4 mm, {volumes} volumes) in {time.perf_counter() - t0:.0f} s", flush=True)
    study = root / "study.yaml"
    study.write_text(STUDY)
    labels = sorted(p.name[4:] for p in bids.glob("sub-*"))
    try:
        pool = _run(bids, root / "out_pool", study, labels, "--nprocs", "2")
        print(f"--nprocs 2: {n} subjects in {pool:.0f} s ({pool / n:.2f} s/subject)", flush=True)
        out = root / "out_dask"
        shutil.rmtree(out, ignore_errors=True)
        killed: dict = {}
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=50) as cluster:
            stop = threading.Event()

            def killer():
                while not stop.is_set() and not killed:
                    st = _job_states(out / "logs") if (out / "logs").is_dir() else {}
                    finished = [pid for pid, _, done in st.values() if done]
                    if len(finished) >= n // 3:
                        for sub, (pid, in_func, done) in st.items():
                            if in_func and not done and pid in set(finished):
                                os.kill(pid, signal.SIGKILL)
                                killed[sub] = (pid, len(finished))
                                break
                    time.sleep(0.05)

            t = threading.Thread(target=killer, daemon=True)
            t.start()
            try:
                dk = _run(bids, out, study, labels, "--scheduler", cluster.scheduler_address)
            finally:
                stop.set()
                t.join(10)
        print(f"dask LocalCluster x2, one worker killed: {n} subjects in {dk:.0f} s ({dk / n:.2f} s/subject); "
              f"killed: {killed}", flush=True)
        done_counts = {p.stem: p.read_text().count(": done in ") for p in (out / "logs").glob("sub-*.log")}
        start_counts = {p.stem: p.read_text().count(": start (") for p in (out / "logs").glob("sub-*.log")}
        once = len(done_counts) == n and all(c == 1 for c in done_counts.values())
        restarted = sorted(s for s, c in start_counts.items() if c > 1)
        same = _identical(root / "out_pool", out)
        leftovers = [p for p in out.rglob(".*") if p.is_file() and ".tmp" in p.name]
        print(f"every subject done exactly once: {once}; started twice: {restarted}; outputs byte-identical to the "
              f"--nprocs 2 run: {same}; temporary files left: {len(leftovers)}")
        return 0 if (once and same and killed and not leftovers) else 1
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default=None, help="comma-separated subject counts (default 4,8,16)")
    ap.add_argument("--volumes", type=int, default=None, help="BOLD volumes per subject (default 60)")
    ap.add_argument("--dask", action="store_true", help="also run on a 2-worker dask LocalCluster")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: temporary)")
    ap.add_argument("--faults", type=int, default=None, metavar="N",
                    help="load + faults: N subjects, --nprocs 2, then dask with a worker killed (see above)")
    args = ap.parse_args(argv)
    if args.faults:
        logging.getLogger("hfsmri").setLevel(logging.WARNING)
        return faults(args.faults, args.volumes or 40, args.keep)
    sizes = [int(s) for s in (args.sizes or ("2,4" if args.quick else "4,8,16")).split(",")]
    volumes = args.volumes or (40 if args.quick else 60)
    logging.getLogger("hfsmri").setLevel(logging.WARNING)

    root = args.keep or Path(tempfile.mkdtemp(prefix="hfsmri_bench_scaling_"))
    root.mkdir(parents=True, exist_ok=True)
    from hfsmri.simulate import simulate_study

    n_max = max(max(sizes), 4)  # the study needs >= 2 patients and 2 controls
    t0 = time.perf_counter()
    bids = simulate_study(root / "bids", n_patients=(n_max + 1) // 2, n_controls=n_max // 2, seed=0,
                          resolution=4, n_volumes=volumes, deform=False, modalities=("func",))
    print(f"simulated {n_max} subjects (func, 4 mm, {volumes} volumes) in {time.perf_counter() - t0:.0f} s")
    study = root / "study.yaml"
    study.write_text(STUDY)
    labels_all = [f"{i:02d}" for i in range(1, n_max + 1)]

    cluster = None
    if args.dask:
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=40)
    # warm-up (imports, numba cache) so that the first configuration is not penalised
    _run(bids, root / "warmup", study, labels_all[:1], "--nprocs", "1")

    header = f"{'subjects':>8} {'workers':>8} {'wall s':>8} {'s/subject':>10} {'speed-up':>9} {'identical':>9}"
    print(header)
    print("-" * len(header))
    rows = []
    try:
        for n in sizes:
            labels = labels_all[:n]
            lines = []
            ref = _run(bids, root / f"out_{n}_1", study, labels, "--nprocs", "1")
            lines.append(f"{n:>8} {1:>8} {ref:>8.1f} {ref / n:>10.2f} {1.0:>9.2f} {'ref':>9}")
            print(lines[-1], flush=True)
            two = _run(bids, root / f"out_{n}_2", study, labels, "--nprocs", "2")
            same = _identical(root / f"out_{n}_1", root / f"out_{n}_2")
            lines.append(f"{n:>8} {2:>8} {two:>8.1f} {two / n:>10.2f} {ref / two:>9.2f} {str(same):>9}")
            print(lines[-1], flush=True)
            if cluster is not None:
                dk = _run(bids, root / f"out_{n}_dask", study, labels, "--scheduler", cluster.scheduler_address)
                same_d = _identical(root / f"out_{n}_1", root / f"out_{n}_dask")
                same = same and same_d
                lines.append(f"{n:>8} {'dask x2':>8} {dk:>8.1f} {dk / n:>10.2f} {ref / dk:>9.2f} {str(same_d):>9}")
                print(lines[-1], flush=True)
            rows.append((n, ref, two, same, lines))
    finally:
        if cluster is not None:
            cluster.close()
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print("\nsummary (participant level, seconds per subject; speed-up = 1-worker wall / wall)")
    print(header)
    print("-" * len(header))
    for r in rows:
        for line in r[4]:
            print(line)
    ok = all(r[3] for r in rows)
    print("outputs byte-identical across worker counts:", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
