"""Family-wise inference across contrasts (hfsmri.stats.family; PALM -corrcon), variance smoothing
(randomise -v), the cluster-size flag and ROI FDR <= FWE (issue 22 items 2-4)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy import ndimage

from hfsmri.stats.design import Design
from hfsmri.stats.family import family_p
from hfsmri.stats.glm import ols, partition, permuted_glm
from hfsmri.stats.permutation import make_permutation_set
from hfsmri.stats.roi import roi_glm
from hfsmri.stats.voxelwise import voxelwise


def _design(n=16, seed=0):
    rng = np.random.default_rng(seed)
    g = np.r_[np.ones(n // 2), np.zeros(n - n // 2)]
    age = rng.normal(0, 1, n)
    X = np.c_[g, 1 - g, age]
    con = {"patient-gt-control": [1, -1, 0], "patient-lt-control": [-1, 1, 0], "age-pos": [0, 0, 1],
           "age-neg": [0, 0, -1]}
    return Design(X=X, columns=["patient", "control", "age"], subjects=[f"{i:02d}" for i in range(n)],
                  contrasts=con, roles=["patient" if x else "control" for x in g])


def test_family_equals_brute_force_max_over_contrasts():
    d = _design()
    mask = np.zeros((5, 5, 4), bool)
    mask[1:4, 1:4, 1:3] = True
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(16, int(mask.sum())))
    Y[:8, :4] += 1.2
    res = voxelwise(Y, mask, d, affine=np.eye(4) * [2, 2, 2, 1], n_perm=199, tfce=False, cluster_forming_p=None,
                    random_state=4, min_cluster_voxels=3)
    assert len({r.perm_key for r in res}) == 1                     # one design: the same permutations
    got = dict(zip([r.contrast for r in res], family_p(res)))
    # brute force: every permuted t map of every contrast computed independently (Freedman-Lane)
    rows = make_permutation_set(d.X, 199, "permute", 4).rows
    W = np.full(len(rows), -np.inf)
    for c in d.contrasts.values():
        c = np.asarray(c, float)
        _, Z = partition(d.X, c)
        E = Y - Z @ np.linalg.lstsq(Z, Y, rcond=None)[0]
        for b, r in enumerate(rows):
            W[b] = max(W[b], ols(E[r], d.X, c).t.max())
    for r in res:
        t = ols(Y, d.X, np.asarray(d.contrasts[r.contrast], float)).t
        ref = (W[None, :] >= t[:, None] - 1e-9 * np.maximum(1, np.abs(t[:, None]))).mean(axis=1)
        np.testing.assert_allclose(got[r.contrast], ref)
        assert np.all(got[r.contrast] >= 10 ** -r.logp["fwe"] - 1e-12)     # family p >= per-contrast p
        assert "below_min_voxels" in r.clusters.columns
        assert (r.clusters["below_min_voxels"] == (r.clusters["n_voxels"] < 3)).all()


def test_null_familywise_error_is_alpha_across_contrasts():
    """Pure noise, 4 contrasts (two two-sided pairs) from the same permutations: the family's
    smallest p is uniform (rejects in ~alpha of the studies), the per-contrast FWE rejects in about
    1 - (1 - alpha)^4 of them."""
    d = _design(n=14)
    n_sim, fam, per = 150, [], []
    for s in range(n_sim):
        Y = np.random.default_rng(100 + s).normal(size=(14, 6))
        res = []
        for vec in ([1, -1, 0], [0, 0, 1]):
            pg = permuted_glm(Y, d, vec, n_perm=99, tfce=False, mask=None, random_state=s, cluster_forming_p=None)
            for sign, tail in ((1, pg.pos), (-1, pg.neg)):
                res.append(SimpleNamespace(stat=sign * pg.t, null_max=tail.null_max_t,
                                           perm_key=pg.settings["perm_key"], p_fwe=tail.p_fwe_t))
        fam.append(min(p.min() for p in family_p(res)))
        per.append(min(r.p_fwe.min() for r in res))
    fam, per = np.array(fam), np.array(per)
    # binomial 99.9 % bands for 150 studies
    assert 0.007 <= np.mean(fam < 0.05) <= 0.12, np.mean(fam < 0.05)
    assert 0.37 <= np.mean(fam < 0.5) <= 0.63, np.mean(fam < 0.5)
    assert np.mean(per < 0.05) > np.mean(fam < 0.05) and np.all(fam >= per - 1e-12)


def test_independent_permutation_sets_combine_by_sidak():
    a = SimpleNamespace(stat=np.array([3.0]), null_max=np.r_[3.0, np.arange(99) / 50.0], perm_key="a")
    b = SimpleNamespace(stat=np.array([0.0]), null_max=np.r_[1.0, np.linspace(0, 1, 99)], perm_key="b")
    pa, _ = family_p([a, b])
    q = 1 / 100                                         # a's own max-null p
    u_b = (np.sort(b.null_max)[None, :] >= b.null_max[:, None]).mean(axis=1)
    F_b = np.mean(u_b <= q + 1e-12)
    np.testing.assert_allclose(pa, 1 - (1 - q) * (1 - F_b))


def test_variance_smoothing_matches_scipy_reference():
    d = _design(n=10)
    mask = np.zeros((7, 7, 5), bool)
    mask[1:6, 1:6, 1:4] = True
    Y = np.random.default_rng(3).normal(size=(10, int(mask.sum())))
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    kw = dict(affine=aff, n_perm=49, tfce=True, cluster_forming_p=0.05, random_state=0,
              contrasts=["patient-gt-control"])
    plain = voxelwise(Y, mask, d, **kw)[0]
    zero = voxelwise(Y, mask, d, variance_smoothing_mm=0.0, **kw)[0]
    np.testing.assert_array_equal(plain.t, zero.t)
    for k in plain.logp:
        np.testing.assert_array_equal(plain.logp[k], zero.logp[k])
    sm = voxelwise(Y, mask, d, variance_smoothing_mm=6.0, **kw)[0]
    # reference: OLS variance map smoothed with scipy.ndimage within the mask (randomise -v)
    c = np.array([1.0, -1.0, 0.0])
    beta, *_ = np.linalg.lstsq(d.X, Y, rcond=None)
    var = ((Y - d.X @ beta) ** 2).sum(0) / (10 - 3)
    sd = 6.0 / 2.3548200450309493 / 2.0
    v3 = np.zeros(mask.shape)
    v3[mask] = var
    svar = ndimage.gaussian_filter(v3, sd, mode="constant")[mask] / \
        ndimage.gaussian_filter(mask.astype(float), sd, mode="constant")[mask]
    ref = (c @ beta) / np.sqrt(svar * (c @ np.linalg.inv(d.X.T @ d.X) @ c))
    np.testing.assert_allclose(sm.t, ref, rtol=1e-10)
    assert not np.allclose(sm.t, plain.t)
    p = 10 ** -sm.logp["fwe"]
    assert np.all((p > 0) & (p <= 1)) and sm.meta["VarianceSmoothingFWHMmm"] == 6.0


def test_roi_fdr_never_above_fwe_on_the_issue_case():
    """49 permutations (p floor 0.02) and 30 ROIs, one with a strong effect: its max-|t| FWE p is the
    floor 0.020, while BH of the floored p would give 30 x 0.02 = 0.6; p_fdr must not exceed p_fwe."""
    d = _design(n=16)
    rng = np.random.default_rng(7)
    tab = pd.DataFrame(rng.normal(size=(16, 30)), index=d.subjects, columns=[f"r{i}" for i in range(30)])
    tab.iloc[:8, 0] += 4.0
    out = roi_glm(tab, d, "patient-gt-control", n_perm=49, random_state=0)
    assert out.loc[0, "p_perm_fwe"] == 0.02
    assert np.all(out["p_fdr"] <= out["p_perm_fwe"] + 1e-15)
    assert out.loc[0, "p_fdr"] <= 0.02
    # with enough permutations (stats.roi_n_perm) BH itself is no longer limited by the floor
    fine = roi_glm(tab, d, "patient-gt-control", n_perm=9999, random_state=0)
    assert fine.loc[0, "p_perm"] < 1e-3 and fine.loc[0, "p_fdr"] < 0.02
