"""ComBat speed and agreement: hfsmri.harmonize.ComBat vs neuroCombat 0.2.12 on the same
voxel-wise data (subjects x voxels), same process.

    python benchmarks/bench_combat.py [--quick] [--n-subjects 60] [--n-voxels 200000]

neuroCombat must be installed (``pip install neuroCombat``); it is the reference only.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np
import pandas as pd


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small problem (20k voxels)")
    ap.add_argument("--n-subjects", type=int, default=60)
    ap.add_argument("--n-voxels", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n_vox = 20_000 if args.quick else args.n_voxels
    rng = np.random.default_rng(0)
    n = args.n_subjects
    site = np.array(["a", "b", "c"])[np.arange(n) % 3]
    covars = pd.DataFrame({"site": site, "group": rng.choice(["HC", "HFS"], n),
                           "age": rng.integers(20, 70, n).astype(float)})
    X = rng.normal(size=(n, n_vox)) * np.where(site == "b", 1.5, 1.0)[:, None] + (site == "c")[:, None]

    from hfsmri.harmonize import ComBat

    def ours():
        return ComBat(covariates=["group", "age"]).fit_transform(X, site, covars)

    t_ours = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = ours()
        t_ours.append(time.perf_counter() - t0)
    print(f"hfsmri ComBat   {n} subjects x {n_vox} voxels: {min(t_ours):.2f} s (best of {args.repeats})")
    try:
        from neuroCombat import neuroCombat
    except ImportError:
        print("neuroCombat not installed: no reference timing")
        return
    t_ref = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            ref = neuroCombat(X.T.copy(), covars, "site", categorical_cols=["group"], continuous_cols=["age"])
        t_ref.append(time.perf_counter() - t0)
    print(f"neuroCombat     {n} subjects x {n_vox} voxels: {min(t_ref):.2f} s (best of {args.repeats})")
    print(f"speed-up: {min(t_ref) / min(t_ours):.1f}x")
    print(f"max |difference| (neuroCombat stops EB at 1e-4 relative change): "
          f"{np.abs(out - ref['data'].T).max():.2e} (data SD {X.std():.2f})")


if __name__ == "__main__":
    main()
