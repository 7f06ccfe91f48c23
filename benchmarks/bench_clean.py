"""Benchmark: hfsmri.func.clean.clean vs nilearn.signal.clean with the same options.

Same input for both (70 000 voxels x 240 volumes, 26 confounds, TR 2 s, 0.01-0.08 Hz), nilearn
called as documented in hfsmri.func.clean (butterworth, standardize=None,
standardize_confounds=True, detrend=True). Prints both times, the ratio and the max difference.

Run:  python benchmarks/bench_clean.py [--quick] [--voxels N] [--volumes T]
Timings on a shared machine are noisy.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 000 voxels instead of 70 000")
    ap.add_argument("--voxels", type=int, default=70000)
    ap.add_argument("--volumes", type=int, default=240)
    args = ap.parse_args(argv)
    nv = 10000 if args.quick else args.voxels
    nt = args.volumes

    from nilearn.signal import clean as nl_clean

    from hfsmri.func.clean import clean

    rng = np.random.default_rng(0)
    conf = rng.standard_normal((nt, 26))
    y = 1000 + 20 * rng.standard_normal((nt, nv)) + conf @ rng.standard_normal((26, nv))
    print(f"data: {nt} volumes x {nv} voxels, {conf.shape[1]} confounds")

    t0 = time.perf_counter()
    ours = clean(y, conf, 2.0, (0.01, 0.08), detrend=True)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = nl_clean(y, confounds=conf, t_r=2.0, detrend=True, standardize=None, standardize_confounds=True,
                   filter="butterworth", high_pass=0.01, low_pass=0.08)
    t_ref = time.perf_counter() - t0
    print(f"hfsmri clean:   {t_ours:8.2f} s")
    print(f"nilearn clean:  {t_ref:8.2f} s")
    print(f"speed-up:       {t_ref / t_ours:8.1f} x")
    print(f"max |diff|:     {np.abs(ours - ref).max():.2e}")


if __name__ == "__main__":
    main()
