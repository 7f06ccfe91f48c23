"""Benchmark: family-wise false-positive rate under the null (is the inference honest?).

Many null studies (20 patients / 20 controls, pure Gaussian-smoothed noise, no effect) are
analysed with hfsmri's permutation GLM. For each study we record whether any voxel is declared
significant at alpha = 0.05 (one-sided, patient > control) by

* voxel-wise max-t FWE, TFCE FWE, cluster-extent FWE (cluster-forming p < 0.001) — permutation;
* a parametric Gaussian random field (GRF) cluster-extent test (Friston et al. 1994, as SPM/FSL/
  DPABI), with the smoothness estimated from the residuals (finite differences, as FSL
  ``smoothest``), at the lenient cluster-forming p < 0.01 and at p < 0.001.

The family-wise error rate of the permutation methods must lie in 0.05 ± 0.03 (binomial SE with
200 studies is 0.015). Usage::

    python benchmarks/bench_fwer_null.py             # 200 studies x 200 permutations
    python benchmarks/bench_fwer_null.py --quick     # 60 studies x 100 permutations
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage, special
from scipy import stats as sps


def smooth_noise(rng, n, shape, fwhm_vox, pad=8):
    sigma = fwhm_vox / np.sqrt(8 * np.log(2))
    big = tuple(s + 2 * pad for s in shape)
    out = np.empty((n,) + tuple(shape))
    for i in range(n):
        m = ndimage.gaussian_filter(rng.normal(size=big), sigma)[pad:-pad, pad:-pad, pad:-pad]
        out[i] = m / m.std()
    return out


def estimate_fwhm(resid: np.ndarray, mask: np.ndarray, dof: int) -> np.ndarray:
    """FWHM (voxels) per axis from GLM residuals (n, X, Y, Z) by finite differences."""
    sd = np.sqrt((resid ** 2).sum(0) / dof)
    u = np.divide(resid, sd, out=np.zeros_like(resid), where=sd > 0)
    fwhm = []
    for ax in range(3):
        a = np.take(u, range(0, mask.shape[ax] - 1), axis=ax + 1)
        b = np.take(u, range(1, mask.shape[ax]), axis=ax + 1)
        both = np.take(mask, range(0, mask.shape[ax] - 1), axis=ax) & np.take(mask, range(1, mask.shape[ax]), axis=ax)
        d = (((a - b) ** 2).sum(0) / dof)[both].mean()
        rho = max(1e-6, 1 - d / 2)
        s = np.sqrt(-1.0 / (4 * np.log(rho)))
        fwhm.append(s * np.sqrt(8 * np.log(2)))
    return np.array(fwhm)


def grf_cluster_fwe(t3: np.ndarray, mask: np.ndarray, df: int, fwhm: np.ndarray, p_cdt: float) -> float:
    """Smallest GRF cluster-extent FWE p of the positive clusters of a t map."""
    z = np.zeros_like(t3)
    z[mask] = sps.norm.isf(sps.t.sf(t3[mask], df))
    u = sps.norm.isf(p_cdt)
    lab, n = ndimage.label((z > u) & mask, ndimage.generate_binary_structure(3, 1))
    if n == 0:
        return 1.0
    sizes = np.bincount(lab.ravel())[1:]
    S = mask.sum()
    resels = S / np.prod(fwhm)
    rho3 = (4 * np.log(2)) ** 1.5 / (2 * np.pi) ** 2 * (u ** 2 - 1) * np.exp(-u ** 2 / 2)
    Em = resels * rho3
    EN = S * sps.norm.sf(u)
    En = EN / Em
    beta = (special.gamma(2.5) / En) ** (2 / 3)
    p_n = np.exp(-beta * sizes.max() ** (2 / 3))
    return float(1 - np.exp(-Em * p_n))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--studies", type=int, default=None)
    ap.add_argument("--n-perm", type=int, default=None)
    ap.add_argument("--fwhm", type=float, default=3.0, help="smoothness in voxels (3 = 9 mm at 3 mm voxels)")
    args = ap.parse_args(argv)
    n_studies = args.studies or (60 if args.quick else 200)
    n_perm = args.n_perm or (100 if args.quick else 200)

    from hfsmri.stats.glm import ols, permuted_glm

    shape = (24, 28, 24)
    ijk = np.indices(shape).transpose(1, 2, 3, 0) - (np.array(shape) - 1) / 2
    mask = np.sum((ijk / (np.array(shape) / 2)) ** 2, axis=-1) <= 1.0   # ellipsoidal "brain"
    n1 = n2 = 20
    g = np.r_[np.ones(n1), np.zeros(n2)]
    X = np.column_stack([g, 1 - g])
    c = np.array([1.0, -1.0])
    alpha = 0.05
    names = ["voxel-FWE (perm)", "TFCE-FWE (perm)", "cluster-FWE p<.001 (perm)", "cluster-mass p<.001 (perm)",
             "GRF cluster p<.01 (parametric)", "GRF cluster p<.001 (parametric)"]
    hits = np.zeros(len(names))
    fwhms = []
    t0 = time.perf_counter()
    for s in range(n_studies):
        rng = np.random.default_rng(10_000 + s)
        maps = smooth_noise(rng, n1 + n2, shape, args.fwhm)
        Y = maps[:, mask]
        r = permuted_glm(Y, X, c, n_perm=n_perm, tfce=True, mask=mask, random_state=s, cluster_forming_p=0.001)
        fit = ols(Y, X, c)
        resid = np.zeros((n1 + n2,) + shape)
        resid[:, mask] = Y - X @ fit.beta
        fwhm = estimate_fwhm(resid, mask, fit.df)
        fwhms.append(fwhm)
        t3 = np.zeros(shape)
        t3[mask] = r.t
        pos = r.pos
        hits += [pos.p_fwe_t.min() <= alpha, pos.p_fwe_tfce.min() <= alpha, pos.p_fwe_extent.min() <= alpha,
                 pos.p_fwe_mass.min() <= alpha,
                 grf_cluster_fwe(t3, mask, fit.df, fwhm, 0.01) <= alpha,
                 grf_cluster_fwe(t3, mask, fit.df, fwhm, 0.001) <= alpha]
        if (s + 1) % 20 == 0:
            print(f"  {s + 1}/{n_studies} studies, {time.perf_counter() - t0:.0f} s", flush=True)
    rate = hits / n_studies
    se = np.sqrt(alpha * (1 - alpha) / n_studies)
    print(f"\n{n_studies} null studies (20 vs 20), {int(mask.sum())} voxels, true FWHM {args.fwhm} vox "
          f"(estimated {np.mean(fwhms, axis=0).round(2)}), {n_perm} permutations, alpha {alpha}")
    print(f"binomial SE at 0.05: {se:.3f}; target band 0.05 +/- 0.03")
    for name, rt in zip(names, rate):
        flag = "" if "parametric" in name else ("  OK" if abs(rt - alpha) <= 0.03 else "  OUT OF BAND")
        print(f"  {name:34s} FWER = {rt:.3f}{flag}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
