"""Benchmark: TBSS skeletonisation + projection of 40 subjects (FA, and MD/AD/RD through the
same indices) on the 2 mm (default) or 1 mm MNI grid. Prints seconds per step.

There is no in-process reference implementation to compare against (FSL's TBSS is not
installable here and its licence forbids reuse); the numbers are absolute timings.

    python benchmarks/bench_tbss.py            # 40 subjects, 2 mm
    python benchmarks/bench_tbss.py --res 1    # 1 mm grid
    python benchmarks/bench_tbss.py --quick    # 10 subjects, 2 mm
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=40)
    ap.add_argument("--res", type=float, default=2.0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.subjects = 10
    from hfsmri.dwi.tbss import apply_indices, mean_fa_and_mask, project, skeletonise
    from hfsmri.spatial.templates import load_template

    rng = np.random.default_rng(0)
    brain = np.asarray(load_template("mask", args.res).dataobj) > 0
    wm = np.asarray(load_template("WM", args.res).dataobj, dtype=float)
    base = np.where(brain, 0.1 + 0.65 * ndimage.gaussian_filter(wm, 0.7) ** 1.5, 0.0)
    fa = np.empty((args.subjects,) + brain.shape, np.float32)
    for s in range(args.subjects):
        shift = rng.normal(0, 0.5, 3)  # residual misregistration
        f = ndimage.shift(base, shift, order=1) * (1 + 0.05 * rng.normal(size=brain.shape))
        fa[s] = np.where(brain, np.clip(f, 0.01, 0.95), 0)
    md = (1.2e-3 - 0.5e-3 * fa).astype(np.float32)
    print(f"{args.subjects} subjects on the {args.res:g} mm MNI grid {brain.shape} "
          f"(shared 2-core machine: timings are noisy)")
    t = time.perf_counter()
    mean, mask = mean_fa_and_mask(fa)
    t1 = time.perf_counter()
    sk = skeletonise(mean, mask, threshold=0.2, voxel_size=(args.res,) * 3)
    t2 = time.perf_counter()
    idx = []
    for s in range(args.subjects):
        _, i = project(sk, fa[s])
        idx.append(i)
    t3 = time.perf_counter()
    for _ in ("md", "ad", "rd"):
        for s in range(args.subjects):
            apply_indices(md[s], idx[s])
    t4 = time.perf_counter()
    print(f"mean FA + mask      {t1 - t:7.2f} s")
    print(f"skeletonise         {t2 - t1:7.2f} s  ({sk.n_voxels} skeleton voxels)")
    print(f"project FA          {t3 - t2:7.2f} s  ({(t3 - t2) / args.subjects * 1e3:.1f} ms/subject)")
    print(f"reuse for MD/AD/RD  {t4 - t3:7.2f} s")
    print(f"total               {t4 - t:7.2f} s")


if __name__ == "__main__":
    main()
