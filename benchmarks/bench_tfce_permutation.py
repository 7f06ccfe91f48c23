"""Benchmark: permutation GLM with TFCE, hfsmri vs nilearn ``permuted_ols(tfce=True)``.

Setting (issue 5): 60 subjects (30 patients / 30 controls), age + sex covariates, nilearn's 2 mm
MNI152 brain mask (235,375 voxels), Gaussian-smoothed noise (FWHM 8 mm) plus a planted blob in the
patients. Both tools run the same number of permutations on the same data and the same cores
(nilearn ``n_jobs``; hfsmri's numba threads). hfsmri is fed nilearn's exact permutation stream
(:func:`hfsmri.stats.permutation.nilearn_permutations`) with nilearn's two-sided TFCE step rule, so
the t map, the TFCE map and the FWE p-values can be compared for identity, not only in
distribution. Then hfsmri alone runs its production setting (fixed TFCE step, both tails,
cluster extent/mass at p < 0.001) for more permutations to measure throughput, and projects the
time of 5000 permutations.

Usage::

    python benchmarks/bench_tfce_permutation.py            # nilearn 16 perms, hfsmri 500 perms
    python benchmarks/bench_tfce_permutation.py --quick    # nilearn 4, hfsmri 100
    python benchmarks/bench_tfce_permutation.py --full     # hfsmri 5000 permutations for real
    python benchmarks/bench_tfce_permutation.py --memory   # + 200 subjects x 10,000-perm projection

Timings on a shared machine are noisy; the ratio is what matters.
"""
from __future__ import annotations

import argparse
import os
import time
import tracemalloc
import warnings

import numpy as np


def make_data(n_pat=30, n_con=30, seed=0, fwhm_mm=8.0):
    import nibabel as nib
    from nilearn import datasets
    from scipy import ndimage

    mask_img = datasets.load_mni152_brain_mask(resolution=2)
    mask = np.asarray(mask_img.dataobj) > 0
    aff = mask_img.affine
    rng = np.random.default_rng(seed)
    n = n_pat + n_con
    sigma = fwhm_mm / 2.0 / 2.3548
    ijk = np.indices(mask.shape).reshape(3, -1).T
    xyz = (ijk @ aff[:3, :3].T + aff[:3, 3]).reshape(mask.shape + (3,))
    blob = np.exp(-np.sum((xyz - [-10.0, -18.0, 8.0]) ** 2, axis=-1) / (2 * 6.0 ** 2))
    Y = np.empty((n, int(mask.sum())))
    for i in range(n):
        m = ndimage.gaussian_filter(rng.normal(size=mask.shape), sigma)
        m /= m[mask].std()
        if i < n_pat:
            m += 0.8 * blob
        Y[i] = m[mask]
    g = np.r_[np.ones(n_pat), np.zeros(n_con)]
    age = rng.normal(55, 10, n)
    sex = rng.integers(0, 2, n).astype(float)
    return Y, mask, nib.Nifti1Image(mask.astype(np.uint8), aff), g, age, sex


def run_nilearn(Y, mask_img, g, age, sex, n_perm, n_jobs):
    from nilearn.maskers import NiftiMasker
    from nilearn.mass_univariate import permuted_ols

    masker = NiftiMasker(mask_img).fit()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = permuted_ols(g[:, None], Y, confounding_vars=np.column_stack([age, sex]), model_intercept=True,
                           n_perm=n_perm, two_sided_test=True, random_state=0, n_jobs=n_jobs, tfce=True,
                           masker=masker, verbose=0)
    return out, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true", help="run 5000 hfsmri permutations")
    ap.add_argument("--memory", action="store_true", help="also measure 200 subjects (memory, projection)")
    ap.add_argument("--n-perm-nilearn", type=int, default=None)
    ap.add_argument("--n-perm-ours", type=int, default=None)
    ap.add_argument("--n-jobs", type=int, default=2)
    args = ap.parse_args(argv)
    n_nl = args.n_perm_nilearn or (4 if args.quick else 16)
    n_ours = args.n_perm_ours or (5000 if args.full else (100 if args.quick else 500))

    import numba

    from hfsmri.stats.glm import permuted_glm
    from hfsmri.stats.permutation import nilearn_permutations

    numba.set_num_threads(min(args.n_jobs, numba.config.NUMBA_NUM_THREADS))
    print(f"cores used: {args.n_jobs} (os.cpu_count={os.cpu_count()}); numba threads {numba.get_num_threads()}")
    Y, mask, mask_img, g, age, sex = make_data()
    n, V = Y.shape
    print(f"data: {n} subjects x {V} voxels (2 mm MNI mask), covariates age + sex")
    X = np.column_stack([g, 1 - g, age - age.mean(), sex - sex.mean()])
    c = np.array([1.0, -1.0, 0.0, 0.0])

    # warm-up (numba compilation / cache load), not timed
    permuted_glm(Y[:, :5000], X, c, n_perm=2, tfce=True, mask=_sub_mask(mask, 5000))

    # --- same permutations as nilearn, nilearn's two-sided step rule
    out, t_nl = run_nilearn(Y, mask_img, g, age, sex, n_nl, args.n_jobs)
    from joblib import cpu_count

    jobs_eff = min(args.n_jobs, cpu_count())
    pset = nilearn_permutations(n, n_nl, random_state=0, n_jobs=jobs_eff)
    t0 = time.perf_counter()
    res = permuted_glm(Y, X, c, tfce=True, mask=mask, permutations=pset, dh_mode="per_map_abs",
                       cluster_forming_p=None)
    t_same = time.perf_counter() - t0
    d_t = np.abs(res.t - out["t"][0]).max()
    d_tf = np.abs(res.two_sided["tfce"] - out["tfce"][0]).max() / np.abs(out["tfce"][0]).max()
    d_pt = np.abs(res.two_sided["p_fwe_t"] - 10 ** -out["logp_max_t"][0]).max()
    d_ptf = np.abs(res.two_sided["p_fwe_tfce"] - 10 ** -out["logp_max_tfce"][0]).max()
    h0 = np.maximum(res.pos.null_max_tfce, res.neg.null_max_tfce)[1:]
    d_h0 = np.abs(h0 - out["h0_max_tfce"][0]).max() / out["h0_max_tfce"][0].max()
    print(f"\n[same {n_nl} permutations as nilearn (stream of n_jobs={jobs_eff})]")
    print(f"  nilearn permuted_ols(tfce=True): {t_nl:8.1f} s  = {t_nl / n_nl:7.3f} s/perm "
          f"-> 5000 perms ~ {t_nl / n_nl * 5000 / 3600:.1f} h")
    print(f"  hfsmri  permuted_glm           : {t_same:8.1f} s  = {t_same / n_nl:7.3f} s/perm")
    print(f"  identity: max|dt| {d_t:.1e}, max rel dTFCE {d_tf:.1e}, max rel d h0(TFCE) {d_h0:.1e}, "
          f"max|d p_FWE(t)| {d_pt:.1e}, max|d p_FWE(TFCE)| {d_ptf:.1e}")

    # --- production setting, more permutations
    tracemalloc.start()
    t0 = time.perf_counter()
    res2 = permuted_glm(Y, X, c, n_perm=n_ours, tfce=True, mask=mask, random_state=0, cluster_forming_p=0.001)
    t_ours = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per = t_ours / n_ours
    print(f"\n[hfsmri production setting: fixed dh, both tails, TFCE + cluster extent/mass, {n_ours} perms]")
    print(f"  {t_ours:.1f} s = {per * 1000:.1f} ms/perm -> 5000 perms ~ {per * 5000 / 60:.1f} min; "
          f"peak traced numpy memory {peak / 2 ** 20:.0f} MiB (data {Y.nbytes / 2 ** 20:.0f} MiB)")
    print(f"  min p_FWE(TFCE) pos tail {res2.pos.p_fwe_tfce.min():.4f}; voxels p<0.05: "
          f"{int((res2.pos.p_fwe_tfce < 0.05).sum())}")
    print("\nRATIO (nilearn s/perm) / (hfsmri s/perm):")
    print(f"  same-stream run       : {(t_nl / n_nl) / (t_same / n_nl):6.1f}x")
    print(f"  production throughput : {(t_nl / n_nl) / per:6.1f}x   (goal >= 50x)")

    if args.memory:
        rng = np.random.default_rng(1)
        n2 = 200
        Y2 = np.repeat(Y, 4, axis=0)[:n2] + 0.1 * rng.normal(size=(n2, V))
        g2 = np.r_[np.ones(100), np.zeros(100)]
        a2 = rng.normal(55, 10, n2)
        X2 = np.column_stack([g2, 1 - g2, a2 - a2.mean()])
        m_perm = 50 if args.quick else 200
        tracemalloc.start()
        t0 = time.perf_counter()
        permuted_glm(Y2, X2, [1.0, -1.0, 0.0], n_perm=m_perm, tfce=True, mask=mask, cluster_forming_p=0.001)
        dt = time.perf_counter() - t0
        _, peak2 = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"\n[200 subjects x {V} voxels, {m_perm} perms] {dt / m_perm * 1000:.0f} ms/perm -> "
              f"10,000 perms ~ {dt / m_perm * 10000 / 60:.0f} min; peak traced memory {peak2 / 2 ** 20:.0f} MiB "
              f"(input data {Y2.nbytes / 2 ** 20:.0f} MiB; independent of n_perm: batches of permutations)")


def _sub_mask(mask, n):
    sub = np.zeros_like(mask)
    idx = np.flatnonzero(mask)[:n]
    sub.flat[idx] = True
    return sub


if __name__ == "__main__":
    main()
