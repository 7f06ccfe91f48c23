"""OLS kernel vs statsmodels; Freedman–Lane vs a slow reference loop; exactness vs nilearn."""
import math
import warnings

import numpy as np
import pytest
import statsmodels.api as sm

from hfsmri.errors import DesignError, InputDataError
from hfsmri.stats.glm import choose_scheme, ols, permuted_glm
from hfsmri.stats.permutation import make_permutation_set, nilearn_permutations

from .conftest import smooth_maps


def _design(n=20, seed=0):
    rng = np.random.default_rng(seed)
    g = np.r_[np.ones(n // 2), np.zeros(n - n // 2)]
    age = rng.normal(50, 10, n)
    sex = rng.integers(0, 2, n).astype(float)
    X = np.column_stack([g, 1 - g, age - age.mean(), sex - sex.mean()])
    return X, rng


def test_ols_matches_statsmodels():
    X, rng = _design(25)
    Y = rng.normal(size=(25, 7)) + X[:, :1] * 0.8
    c = np.array([1.0, -1.0, 0, 0])
    res = ols(Y, X, c, chunk_size=3)
    C = np.array([[1.0, -1.0, 0, 0], [0, 0, 1.0, 0]])
    resF = ols(Y, X, C)
    for v in range(Y.shape[1]):
        fit = sm.OLS(Y[:, v], X).fit()
        tt = fit.t_test(c)
        np.testing.assert_allclose(res.beta[:, v], fit.params, rtol=1e-10, atol=1e-12)
        assert res.t[v] == pytest.approx(float(tt.tvalue), rel=1e-8)
        assert res.p[v] == pytest.approx(float(tt.pvalue), rel=1e-8)
        assert res.se[v] == pytest.approx(float(tt.sd), rel=1e-8)
        ft = fit.f_test(C)
        assert resF.F[v] == pytest.approx(float(ft.fvalue), rel=1e-8)
        assert resF.p[v] == pytest.approx(float(ft.pvalue), rel=1e-6)
        assert res.df == fit.df_resid
        assert res.cohens_d[v] == pytest.approx(float(c @ fit.params) / np.sqrt(fit.scale), rel=1e-10)
    np.testing.assert_allclose(res.partial_r, res.t / np.sqrt(res.t ** 2 + res.df))


def _slow_freedman_lane(Y, X, c, rows):
    """Reference: explicit Y* = H_Z Y + P R_Z Y, refit, t, for every permutation."""
    D = np.linalg.pinv(X.T @ X)
    _, _, vt = np.linalg.svd(c[None, :])
    Z = X @ vt[1:].T
    Hz = Z @ np.linalg.pinv(Z)
    Rz = np.eye(len(X)) - Hz
    out = []
    for perm in rows:
        Ys = Hz @ Y + (Rz @ Y)[perm]
        b = np.linalg.lstsq(X, Ys, rcond=None)[0]
        r = Ys - X @ b
        s2 = (r ** 2).sum(0) / (X.shape[0] - X.shape[1])
        out.append(c @ b / np.sqrt(s2 * (c @ D @ c)))
    return np.array(out)


def test_freedman_lane_matches_slow_reference():
    X, rng = _design(14, seed=1)
    Y = rng.normal(size=(14, 30))
    Y[:7, :5] += 1.0
    Y += X[:, 2:3] * 0.05  # nuisance effect of age
    c = np.array([1.0, -1.0, 0, 0])
    pset = make_permutation_set(X, 60, "permute", random_state=5)
    res = permuted_glm(Y, X, c, tfce=False, permutations=pset)
    T = _slow_freedman_lane(Y, X, c, pset.rows)
    np.testing.assert_allclose(T[0], res.t, rtol=1e-9)
    np.testing.assert_allclose(T.max(1), res.pos.null_max_t, rtol=1e-9)
    np.testing.assert_allclose(-T.min(1), res.neg.null_max_t, rtol=1e-9)
    p_unc = (T >= T[0] - 1e-9).mean(0)
    np.testing.assert_allclose(res.pos.p_unc, p_unc)
    p_fwe = (T.max(1)[:, None] >= T[0][None, :] - 1e-9).mean(0)
    np.testing.assert_allclose(res.pos.p_fwe_t, p_fwe)
    p_two = (np.abs(T) >= np.abs(T[0]) - 1e-9).mean(0)
    np.testing.assert_allclose(res.two_sided["p_unc"], p_two)
    assert res.n_null == 61 and not res.exact and res.scheme == "permute"


def test_exact_enumeration_two_groups():
    # 4 vs 4, no covariates: C(8,4) = 70 distinct relabellings
    rng = np.random.default_rng(2)
    g = np.r_[np.ones(4), np.zeros(4)]
    X = np.column_stack([g, 1 - g])
    Y = rng.normal(size=(8, 3))
    res = permuted_glm(Y, X, [1.0, -1.0], n_perm=1000, tfce=False)
    assert res.exact and res.n_null == math.comb(8, 4)
    # reference: all C(8,4) group assignments, t of a plain two-sample test
    from itertools import combinations

    from scipy import stats

    ts = []
    for idx in combinations(range(8), 4):
        m = np.zeros(8, bool)
        m[list(idx)] = True
        ts.append(stats.ttest_ind(Y[m], Y[~m]).statistic)
    ts = np.array(ts)
    t_obs = stats.ttest_ind(Y[:4], Y[4:]).statistic
    np.testing.assert_allclose(res.t, t_obs, rtol=1e-10)
    np.testing.assert_allclose(np.sort(res.pos.null_max_t), np.sort(ts.max(1)), rtol=1e-9)
    np.testing.assert_allclose(res.pos.p_unc, (ts >= t_obs - 1e-9).mean(0))


def test_sign_flip_exact_one_sample():
    rng = np.random.default_rng(3)
    Y = rng.normal(0.3, 1, size=(7, 4))
    X = np.ones((7, 1))
    assert choose_scheme(X, np.array([1.0])) == "signflip"
    res = permuted_glm(Y, X, [1.0], n_perm=500, tfce=False)
    assert res.scheme == "signflip" and res.exact and res.n_null == 2 ** 7
    from itertools import product

    ts = []
    for s in product([1, -1], repeat=7):
        Ys = Y * np.array(s)[:, None]
        ts.append(Ys.mean(0) / (Ys.std(0, ddof=1) / np.sqrt(7)))
    ts = np.array(ts)
    t0 = Y.mean(0) / (Y.std(0, ddof=1) / np.sqrt(7))
    np.testing.assert_allclose(res.pos.p_unc, (ts >= t0 - 1e-9).mean(0))
    np.testing.assert_allclose(res.pos.p_fwe_t, (ts.max(1)[:, None] >= t0 - 1e-9).mean(0))


def test_scheme_choice():
    X, _ = _design(10)
    assert choose_scheme(X, np.array([1.0, -1, 0, 0])) == "permute"
    Xc = np.column_stack([np.ones(10), np.arange(10.0)])
    assert choose_scheme(Xc, np.array([0, 1.0])) == "permute"
    assert choose_scheme(Xc - [0, 4.5], np.array([1.0, 0])) == "signflip"


def test_blocks_restrict_permutations():
    X, rng = _design(12)
    blocks = np.repeat([0, 1, 2], 4)
    pset = make_permutation_set(X, 30, "permute", random_state=1, blocks=blocks)
    for row in pset.rows:
        assert np.all(blocks[row] == blocks)
    whole = make_permutation_set(X, 30, "permute", random_state=1, blocks=blocks, whole_blocks=True)
    for row in whole.rows:
        for b in range(3):
            src = np.unique(blocks[row[blocks == b]])
            assert src.size == 1  # a block takes all its residuals from one block
            assert np.array_equal(row[blocks == b] % 4, np.arange(4))


def test_deterministic_with_seed():
    X, rng = _design(12)
    Y = rng.normal(size=(12, 20))
    a = permuted_glm(Y, X, [1.0, -1, 0, 0], n_perm=40, tfce=False, random_state=7)
    b = permuted_glm(Y, X, [1.0, -1, 0, 0], n_perm=40, tfce=False, random_state=7, batch_size=3)
    c = permuted_glm(Y, X, [1.0, -1, 0, 0], n_perm=40, tfce=False, random_state=8)
    np.testing.assert_array_equal(a.pos.p_unc, b.pos.p_unc)
    np.testing.assert_allclose(a.pos.null_max_t, b.pos.null_max_t, rtol=1e-12)
    assert not np.array_equal(a.pos.null_max_t, c.pos.null_max_t)


def test_negative_tail_equals_negated_contrast():
    X, rng = _design(12)
    shape = (6, 6, 5)
    mask = np.ones(shape, bool)
    Y = smooth_maps(12, shape, seed=4).reshape(12, -1)
    a = permuted_glm(Y, X, [1.0, -1, 0, 0], n_perm=30, tfce=True, mask=mask, cluster_forming_p=0.05)
    b = permuted_glm(Y, X, [-1.0, 1, 0, 0], n_perm=30, tfce=True, mask=mask, cluster_forming_p=0.05)
    np.testing.assert_allclose(a.neg.p_fwe_tfce, b.pos.p_fwe_tfce)
    np.testing.assert_allclose(a.neg.tfce, b.pos.tfce, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a.neg.p_fwe_extent, b.pos.p_fwe_extent)


@pytest.mark.parametrize("two_sided", [False, True])
def test_identical_to_nilearn_permuted_ols(two_sided):
    """Fed nilearn's permutation stream, t, TFCE, the null maxima and FWE p are nilearn's."""
    import nibabel as nib
    from nilearn.maskers import NiftiMasker
    from nilearn.mass_univariate import permuted_ols

    rng = np.random.default_rng(1)
    shape = (9, 9, 8)
    mask = np.zeros(shape, bool)
    mask[1:-1, 1:-1, 1:-1] = True
    n = 14
    g = np.r_[np.ones(7), np.zeros(7)]
    age = rng.normal(50, 10, n)
    maps = smooth_maps(n, shape, seed=2)
    maps[:7, 3:6, 3:6, 2:5] += 0.8
    Y = maps[:, mask]
    masker = NiftiMasker(nib.Nifti1Image(mask.astype(np.uint8), np.diag([2.0, 2, 2, 1]))).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = permuted_ols(g[:, None], Y, confounding_vars=age[:, None], model_intercept=True, n_perm=40,
                           two_sided_test=two_sided, random_state=3, tfce=True, threshold=0.01, masker=masker)
    X = np.column_stack([g, 1 - g, age - age.mean()])
    res = permuted_glm(Y, X, [1.0, -1, 0], tfce=True, mask=mask, permutations=nilearn_permutations(n, 40, 3),
                       dh_mode="per_map_abs" if two_sided else "per_map",
                       cluster_forming_p=0.005 if two_sided else 0.01)
    np.testing.assert_allclose(res.t, out["t"][0], rtol=1e-10, atol=1e-12)
    if two_sided:
        null_t = np.maximum(res.pos.null_max_t, res.neg.null_max_t)[1:]
        null_tf = np.maximum(res.pos.null_max_tfce, res.neg.null_max_tfce)[1:]
        null_size = np.maximum(res.pos.null_max_size, res.neg.null_max_size)[1:]
        np.testing.assert_allclose(res.two_sided["tfce"], out["tfce"][0], rtol=1e-10, atol=1e-9)
        np.testing.assert_array_equal(res.two_sided["p_fwe_t"], 10 ** -out["logp_max_t"][0])
        np.testing.assert_allclose(res.two_sided["p_fwe_tfce"], 10 ** -out["logp_max_tfce"][0], rtol=1e-12)
    else:
        null_t, null_tf, null_size = res.pos.null_max_t[1:], res.pos.null_max_tfce[1:], res.pos.null_max_size[1:]
        np.testing.assert_allclose(res.pos.tfce, out["tfce"][0], rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(res.pos.p_fwe_t, 10 ** -out["logp_max_t"][0], rtol=1e-12)
        np.testing.assert_allclose(res.pos.p_fwe_tfce, 10 ** -out["logp_max_tfce"][0], rtol=1e-12)
        np.testing.assert_allclose(res.pos.null_max_mass[1:], out["h0_max_mass"][0], rtol=1e-9)
    np.testing.assert_allclose(null_t, out["h0_max_t"][0], rtol=1e-10)
    np.testing.assert_allclose(null_tf, out["h0_max_tfce"][0], rtol=1e-9)
    np.testing.assert_array_equal(null_size, out["h0_max_size"][0])


def test_fixed_dh_is_reused_in_permutations():
    # with a fixed step, the null TFCE maxima equal tfce(map, dh=observed step) of each permuted map
    from hfsmri.stats.tfce import tfce

    X, rng = _design(10)
    shape = (6, 6, 5)
    mask = np.ones(shape, bool)
    Y = smooth_maps(10, shape, seed=6).reshape(10, -1)
    c = np.array([1.0, -1, 0, 0])
    pset = make_permutation_set(X, 8, "permute", random_state=2)
    res = permuted_glm(Y, X, c, tfce=True, mask=mask, permutations=pset, cluster_forming_p=None)
    T = _slow_freedman_lane(Y, X, c, pset.rows)
    dh = res.pos.tfce_dh
    assert dh == pytest.approx(res.t.max() / 100)
    for i in range(1, 9):
        ref = tfce(T[i].reshape(shape), mask, dh=dh).max()
        assert res.pos.null_max_tfce[i] == pytest.approx(ref, rel=1e-9)


def test_errors_are_user_errors():
    X, rng = _design(10)
    Y = rng.normal(size=(10, 5))
    with pytest.raises(DesignError, match="contrast"):
        permuted_glm(Y, X, [1.0, -1], n_perm=5, tfce=False)
    Xr = np.column_stack([X, X[:, 2]])
    with pytest.raises(DesignError, match="x4"):
        permuted_glm(Y, Xr, [1.0, -1, 0, 0, 0], n_perm=5, tfce=False)
    Yn = Y.copy()
    Yn[3, 2] = np.nan
    with pytest.raises(InputDataError, match="non-finite"):
        permuted_glm(Yn, X, [1.0, -1, 0, 0], n_perm=5, tfce=False)
    with pytest.raises(InputDataError, match="mask"):
        permuted_glm(Y, X, [1.0, -1, 0, 0], n_perm=5, tfce=True)
