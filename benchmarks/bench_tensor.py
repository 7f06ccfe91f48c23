"""Benchmark: hfsmri.dwi.tensor.TensorModel vs dipy's TensorModel (OLS and WLS), and mrtrix3's
``dwi2tensor`` when it is on PATH.

Input: simulated voxels (default 100 000) with random prolate/oblate tensors, S0 = 1000, Rician
noise (SNR 20 at b0), on the 65-volume gradient table of dipy's bundled ``small_64D`` (1 b0 +
64 directions at b ≈ 1000 s/mm²). Both libraries fit the same array in the same process; the
script prints seconds, the speed-up and the largest FA difference.

    python benchmarks/bench_tensor.py            # 100k voxels, 3 repeats
    python benchmarks/bench_tensor.py --quick    # 20k voxels, 1 repeat

mrtrix3: ``apt-get install -y mrtrix3`` was tried once while writing this (see docs/diffusion.md
for the outcome); if ``dwi2tensor`` is on PATH it is timed on the same data written as NIfTI
(including its file I/O, single and default threads).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np


def simulate(n_vox: int, seed: int = 0):
    from dipy.data import get_fnames

    from hfsmri.dwi.gradients import read_gradients
    from hfsmri.dwi.tensor import design_matrix

    _, fbval, fbvec = get_fnames(name="small_64D")
    gtab = read_gradients(fbval, fbvec)
    rng = np.random.default_rng(seed)
    # random rotations + eigenvalues typical of brain tissue (mm²/s)
    q = rng.normal(size=(n_vox, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    rot = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], 1)
    l1 = rng.uniform(0.8e-3, 2.0e-3, n_vox)
    l2 = rng.uniform(0.2e-3, 1.0e-3, n_vox)
    l3 = np.minimum(l2, rng.uniform(0.2e-3, 1.0e-3, n_vox))
    evals = np.stack([l1, np.maximum(l2, l3), l3], -1)
    tens = np.einsum("nij,nj,nkj->nik", rot, evals, rot)
    lt = tens[:, [0, 0, 1, 0, 1, 2], [0, 1, 1, 2, 2, 2]]
    x_design = design_matrix(gtab.bvals, gtab.bvecs)
    s = 1000.0 * np.exp(lt @ x_design[:, :6].T)
    sigma = 1000.0 / 20
    s = np.sqrt((s + rng.normal(0, sigma, s.shape)) ** 2 + rng.normal(0, sigma, s.shape) ** 2)
    return gtab, fbval, fbvec, s.astype(np.float64)


def best_of(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-voxels", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_voxels, args.repeats = 20_000, 1

    import dipy.reconst.dti as dti
    from dipy.core.gradients import gradient_table as dipy_gtab
    from dipy.io.gradients import read_bvals_bvecs

    from hfsmri.dwi.tensor import TensorModel

    gtab, fbval, fbvec, data = simulate(args.n_voxels)
    b, v = read_bvals_bvecs(str(fbval), str(fbvec))
    dg = dipy_gtab(b, bvecs=v)
    print(f"{args.n_voxels} voxels x {data.shape[1]} volumes, best of {args.repeats}; "
          f"cpu count {os.cpu_count()} (timings on a shared machine are noisy)")
    results = {}
    for method in ("ols", "wls", "iwls"):  # warm-up: numba kernels load from cache / compile
        TensorModel(gtab, fit=method).fit(data[:100])
        dti.TensorModel(dg, fit_method="WLS").fit(data[:100])
    for method in ("ols", "wls", "iwls"):
        t_ours, fit = best_of(lambda: TensorModel(gtab, fit=method).fit(data), args.repeats)
        results[method] = (t_ours, fit)
        line = f"{method.upper():5s} hfsmri {t_ours:7.3f} s"
        if method in ("ols", "wls"):
            t_ref, ref = best_of(lambda: dti.TensorModel(dg, fit_method=method.upper()).fit(data), args.repeats)
            dfa = np.abs(fit.fa - ref.fa).max()
            line += f" | dipy {t_ref:7.3f} s | speed-up x{t_ref / t_ours:5.1f} | max |dFA| {dfa:.2e}"
        print(line)

    exe = shutil.which("dwi2tensor")
    if exe is None:
        print("mrtrix3 dwi2tensor: not on PATH (not installed) - skipped")
        return
    import nibabel as nib

    with tempfile.TemporaryDirectory() as tmp:
        n = data.shape[0]
        side = int(np.ceil(n ** (1 / 3)))
        vol = np.zeros((side ** 3, data.shape[1]), np.float32)
        vol[:n] = data
        vol[n:] = 1000.0
        nib.save(nib.Nifti1Image(vol.reshape(side, side, side, -1), np.eye(4)), f"{tmp}/dwi.nii")
        for nthreads in (1, os.cpu_count() or 1):
            cmd = [exe, "-force", "-quiet", "-nthreads", str(nthreads), "-fslgrad", str(fbvec), str(fbval),
                   f"{tmp}/dwi.nii", f"{tmp}/dt.nii"]
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            dt = time.perf_counter() - t
            if proc.returncode != 0:
                print(f"mrtrix3 dwi2tensor failed: {proc.stderr.strip()[:300]}")
                return
            print(f"mrtrix3 dwi2tensor (-nthreads {nthreads}, incl. NIfTI I/O, its default iterative WLS): "
                  f"{dt:7.3f} s | hfsmri WLS is x{dt / results['wls'][0]:5.1f} faster")


if __name__ == "__main__":
    main()
