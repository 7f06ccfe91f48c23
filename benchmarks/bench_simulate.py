"""Benchmark: simulate a 10 + 10 all-modality study at demo settings (issue budget: <= 120 s on
2 cores). Prints seconds per subject and the total against the budget.

There is no peer simulator to run in the same process; the reference is the budget itself, and,
for scale, the time to write the same number of NIfTI bytes with nibabel (the floor any
simulator that writes gzip-compressed BIDS pays).

    python benchmarks/bench_simulate.py            # 10 + 10, demo sizes, 2 workers
    python benchmarks/bench_simulate.py --quick    # 3 + 3
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

BUDGET_S = 120.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10, help="patients (= controls)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.n = 3
    import nibabel as nib
    import numpy as np

    from hfsmri.simulate import simulate_study
    from hfsmri.simulate.dataset import DEMO_VOLUMES

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = simulate_study(Path(tmp) / "bids", n_patients=args.n, n_controls=args.n, seed=1, n_jobs=args.jobs,
                              n_volumes=DEMO_VOLUMES)
        t_sim = time.perf_counter() - t0
        files = sorted(Path(root).glob("sub-*/*/*.nii.gz"))
        t0 = time.perf_counter()
        for f in files:  # reference: re-write the same images (load + gzip save), one process
            img = nib.load(f)
            nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header), Path(tmp) / "copy.nii.gz")
        t_io = time.perf_counter() - t0
    n = 2 * args.n
    print(f"simulate {args.n}+{args.n} (demo sizes, {args.jobs} workers): {t_sim:.1f} s "
          f"({t_sim / n:.1f} s per subject); budget {BUDGET_S:.0f} s -> ratio {t_sim / BUDGET_S:.2f}")
    print(f"reference: load + gzip-save of the same {len(files)} images in one process: {t_io:.1f} s "
          f"-> simulate / IO = {t_sim / max(t_io, 1e-9):.2f}")


if __name__ == "__main__":
    main()
