"""ComBat: agreement with neuroCombat, closed forms of the published formulation, planted
site/group effects, fit/transform on new subjects, chunking, errors."""
from __future__ import annotations

import functools
import importlib

import numpy as np
import pandas as pd
import pytest

from hfsmri.errors import DesignError, HfsmriError, InputDataError
from hfsmri.harmonize import ComBat, combat


def _random_study(seed=0, n_per_site=(15, 25, 20), n_features=40):
    rng = np.random.default_rng(seed)
    site = np.repeat(["a", "b", "c"], n_per_site)
    n = site.size
    group = rng.choice(["HC", "HFS"], n)
    age = rng.integers(20, 70, n).astype(float)  # integers: exact in neuroCombat's float32 cast
    X = rng.normal(size=(n, n_features)) + (site == "b")[:, None] * 0.8 + (group == "HFS")[:, None] * 0.5
    X = X * np.where(site == "c", 2.0, 1.0)[:, None] + 0.01 * age[:, None]
    covars = pd.DataFrame({"site": site, "group": group, "age": age})
    return X, site, covars


# ---------------------------------------------------------------- independent reference: neuroCombat
@pytest.mark.parametrize("kwargs", [{}, {"parametric": False}, {"eb": False}, {"mean_only": True},
                                    {"mean_only": True, "parametric": False}])
def test_matches_neurocombat(kwargs, monkeypatch):
    pytest.importorskip("neuroCombat")
    ncm = importlib.import_module("neuroCombat.neuroCombat")
    # neuroCombat stops the EB iteration when the largest relative change is < 1e-4; iterate both
    # implementations to the fixed point so that the comparison is about the formulation.
    monkeypatch.setattr(ncm, "it_sol", functools.partial(ncm.it_sol, conv=1e-12))
    X, site, covars = _random_study()
    ref = ncm.neuroCombat(X.T.copy(), covars, "site", categorical_cols=["group"], continuous_cols=["age"],
                          **kwargs)
    model = ComBat(covariates=["group", "age"], tol=1e-12, **kwargs).fit(X, site, covars)
    ours = model.transform(X, site, covars)
    np.testing.assert_allclose(ours, ref["data"].T, atol=1e-6, rtol=0)
    est = ref["estimates"]
    np.testing.assert_allclose(model.gamma_star_, np.asarray(est["gamma.star"]), atol=1e-6)
    np.testing.assert_allclose(model.delta_star_, np.asarray(est["delta.star"]), atol=1e-6)
    np.testing.assert_allclose(model.var_pooled_, est["var.pooled"].ravel(), rtol=1e-10)


def test_neurocombat_default_convergence_close():
    """With neuroCombat's own stopping rule (1e-4) the results differ only at that level."""
    pytest.importorskip("neuroCombat")
    ncm = importlib.import_module("neuroCombat.neuroCombat")
    X, site, covars = _random_study(seed=1)
    ref = ncm.neuroCombat(X.T.copy(), covars, "site", categorical_cols=["group"], continuous_cols=["age"])
    ours = combat(X, site, covars, covariates=["group", "age"])
    np.testing.assert_allclose(ours, ref["data"].T, atol=1e-4 * np.abs(X).max())


# ---------------------------------------------------------------- closed forms of the formulation
def test_without_eb_closed_form():
    """eb=False, no covariates: every site ends with the grand mean (size-weighted mean of site
    means) and SD sqrt(pooled variance) (pooled residual variance with divisor n)."""
    X, site, _ = _random_study(seed=2, n_features=5)
    out = combat(X, site, eb=False)
    df = pd.DataFrame(X)
    means = df.groupby(site).mean()
    counts = pd.Series(site).value_counts().sort_index()
    grand = (means.mul(counts.to_numpy(), axis=0)).sum() / len(site)
    resid = df - means.loc[site].to_numpy()
    pooled_sd = np.sqrt((resid ** 2).mean())
    h = pd.DataFrame(out)
    for s in np.unique(site):
        np.testing.assert_allclose(h[site == s].mean(), grand, atol=1e-10)
        np.testing.assert_allclose(h[site == s].std(ddof=1), pooled_sd, rtol=1e-10)


def test_reference_site_closed_form():
    """ref_site, eb=False: the reference site is unchanged; every other site takes its mean and
    its SD (divisor n)."""
    X, site, _ = _random_study(seed=3, n_features=6)
    out = combat(X, site, eb=False, ref_site="b")
    np.testing.assert_array_equal(out[site == "b"], X[site == "b"])
    ref = X[site == "b"]
    for s in ("a", "c"):
        np.testing.assert_allclose(out[site == s].mean(0), ref.mean(0), atol=1e-10)
        np.testing.assert_allclose(out[site == s].std(0, ddof=1), ref.std(0, ddof=0), rtol=1e-10)


def test_parametric_eb_fixed_point():
    """gamma*, delta* satisfy Johnson 2007's posterior equations, with the sums of squares computed
    directly from the standardised data (not the sufficient statistics the estimator uses)."""
    X, site, covars = _random_study(seed=4)
    m = ComBat(covariates=["group", "age"], tol=1e-13).fit(X, site, covars)
    C = pd.get_dummies(covars["group"], drop_first=True).to_numpy(float)
    C = np.column_stack([covars["age"] - covars["age"].mean(), C])
    z = (X - m.grand_mean_ - C @ m.beta_) / np.sqrt(m.var_pooled_)
    for k, s in enumerate(m.sites_):
        zk = z[site == s]
        nk = zk.shape[0]
        g_hat, d_hat = zk.mean(0), zk.var(0, ddof=1)
        np.testing.assert_allclose(m.gamma_hat_[k], g_hat, atol=1e-12)
        g_bar, t2 = g_hat.mean(), g_hat.var(ddof=1)
        mm, s2 = d_hat.mean(), d_hat.var(ddof=1)
        a, b = (2 * s2 + mm ** 2) / s2, (mm * s2 + mm ** 3) / s2
        g, d = m.gamma_star_[k], m.delta_star_[k]
        np.testing.assert_allclose(g, (t2 * nk * g_hat + d * g_bar) / (t2 * nk + d), rtol=1e-9)
        sum2 = ((zk - g) ** 2).sum(0)
        np.testing.assert_allclose(d, (0.5 * sum2 + b) / (nk / 2 + a - 1), rtol=1e-9)


# ---------------------------------------------------------------- planted truth
def _planted(seed=5, n_features=30, d_group=0.8):
    """3 sites with unequal patient fractions (site partly confounded with group), planted additive
    and multiplicative site effects, a group effect on the first 10 features, an age effect."""
    rng = np.random.default_rng(seed)
    sizes, frac = (40, 50, 40), (0.85, 0.5, 0.15)
    site = np.concatenate([np.full(n, s) for n, s in zip(sizes, "abc")])
    patient = np.concatenate([rng.permutation(np.arange(n) < round(f * n)) for n, f in zip(sizes, frac)])
    n = site.size
    age = rng.uniform(30, 70, n)
    sigma = rng.uniform(0.5, 2.0, n_features)
    mu = rng.uniform(5, 10, n_features)
    beta_group = np.where(np.arange(n_features) < 10, d_group, 0.0) * sigma
    beta_age = 0.02 * sigma
    add = {"a": 0.0, "b": 1.0, "c": -1.5}
    scale = {"a": 1.0, "b": 1.6, "c": 0.6}
    gam = np.array([add[s] for s in site])[:, None] * sigma * rng.normal(1, 0.1, (n, 1))
    dlt = np.array([scale[s] for s in site])[:, None]
    eps = rng.normal(size=(n, n_features)) * sigma
    clean = mu + patient[:, None] * beta_group + (age[:, None] - 50) * beta_age + eps
    X = mu + patient[:, None] * beta_group + (age[:, None] - 50) * beta_age + gam + dlt * eps
    covars = pd.DataFrame({"group": np.where(patient, "HFS", "HC"), "age": age})
    return X, clean, site, patient, covars, sigma, beta_group


def _group_d(Y, patient, sigma):
    return (Y[patient].mean(0) - Y[~patient].mean(0)) / sigma


def test_removes_planted_site_effect_keeps_group_effect():
    X, clean, site, patient, covars, sigma, beta = _planted()
    H = combat(X, site, covars, covariates=["group", "age"])
    truth = _group_d(clean, patient, sigma)      # group contrast in the site-free data
    raw, harm = _group_d(X, patient, sigma), _group_d(H, patient, sigma)
    # raw data: the site confound biases the group contrast
    assert np.abs(raw - truth).mean() > 0.4
    # harmonised: the group contrast of the site-free data is recovered (effect and null features)
    # (error left: the sampling error of the estimated site offsets, amplified by the confounding)
    assert np.abs(harm - truth).mean() < 0.1 and np.abs(harm - truth).max() < 0.3
    assert abs(harm[:10].mean() - 0.8) < 0.15
    # site effects gone: per-site residual mean and SD agree across sites
    resid = H - np.column_stack([np.ones(len(site)), patient, covars["age"]]) @ np.linalg.lstsq(
        np.column_stack([np.ones(len(site)), patient, covars["age"]]), H, rcond=None)[0]
    site_means = np.array([resid[site == s].mean(0) for s in "abc"]) / sigma
    site_sds = np.array([resid[site == s].std(0) for s in "abc"])
    raw_sds = np.array([X[site == s].std(0) for s in "abc"])
    # planted offsets +1.0 and -1.5 sigma; what is left is the sampling noise of the site means
    # that empirical Bayes shrinks towards the common offset (SE of a mean of 40-50 subjects ~0.15)
    assert np.abs(site_means.mean(1)).max() < 0.05 and np.abs(site_means).max() < 0.35
    assert (site_sds.max(0) / site_sds.min(0)).max() < 1.35       # planted: 1.6 / 0.6 = 2.7
    assert (raw_sds.max(0) / raw_sds.min(0)).min() > 2.0
    # without protecting group, ComBat removes part of the group effect (site/group confounding)
    H_unprot = combat(X, site, covars, covariates=["age"])
    unprot = _group_d(H_unprot, patient, sigma)
    # (closed form for site-mean removal with these patient fractions: 0.70 of the effect)
    assert unprot[:10].mean() < 0.85 * harm[:10].mean()


def test_transform_new_subjects_of_known_sites():
    X, clean, site, patient, covars, sigma, _ = _planted(seed=6)
    rng = np.random.default_rng(0)
    train = rng.random(len(site)) < 0.6
    model = ComBat(covariates=["group", "age"]).fit(X[train], site[train], covars[train])
    np.testing.assert_allclose(model.transform(X[train], site[train], covars[train]),
                               combat(X[train], site[train], covars[train], covariates=["group", "age"]),
                               atol=1e-12)
    test_idx = np.flatnonzero(~train)
    H = model.transform(X[test_idx], site[test_idx], covars.iloc[test_idx])
    # one subject at a time gives the same (rows are independent)
    one = model.transform(X[test_idx[:1]], site[test_idx[:1]], covars.iloc[test_idx[:1]])
    np.testing.assert_allclose(one, H[:1], atol=1e-12)
    # held-out subjects: the site offsets of the raw data (+1 and -1.5 sigma) are gone
    s, p = site[test_idx], patient[test_idx]
    for Y, bound in ((X[test_idx], None), (H, 0.3)):
        off = np.array([(Y[(s == k) & ~p] - clean[test_idx][(s == k) & ~p]).mean(0) / sigma for k in "bc"])
        if bound is None:
            assert np.abs(off).mean() > 0.6
        else:
            assert np.abs(off).mean() < bound
    with pytest.raises(DesignError, match="'z'"):
        model.transform(X[:2], np.array(["a", "z"]), covars.iloc[:2])
    with pytest.raises(InputDataError, match="group"):
        model.transform(X[:2], site[:2], covars.iloc[:2][["age"]])


# ---------------------------------------------------------------- voxel-wise use
def test_chunking_memmap_and_dataframe(tmp_path):
    X, site, covars = _random_study(seed=7, n_features=103)
    X[:, 5] = 3.0                                   # constant voxel: passed through, out of the priors
    whole = ComBat(covariates=["group", "age"]).fit(X, site, covars)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", shape=X.shape)
    mm[:] = X
    chunked = ComBat(covariates=["group", "age"], chunk_size=7).fit(mm, site, covars)
    out = np.lib.format.open_memmap(tmp_path / "h.npy", mode="w+", shape=X.shape)
    chunked.transform(mm, site, covars, out=out)
    np.testing.assert_allclose(np.asarray(out), whole.transform(X, site, covars), atol=1e-12)
    assert not whole.valid_[5] and whole.valid_.sum() == 102
    np.testing.assert_array_equal(out[:, 5], 3.0)
    # constant feature left out of the priors: same result as fitting without it
    keep = np.arange(103) != 5
    np.testing.assert_allclose(np.asarray(out)[:, keep],
                               combat(X[:, keep], site, covars, covariates=["group", "age"]), atol=1e-10)
    # DataFrame in -> DataFrame out with the same labels
    df = pd.DataFrame(X, index=[f"s{i}" for i in range(len(site))], columns=[f"roi{j}" for j in range(103)])
    h = combat(df, site, covars, covariates=["group", "age"])
    assert list(h.columns) == list(df.columns) and list(h.index) == list(df.index)
    eff = whole.site_effects()
    assert set(eff.columns) == {"site", "feature", "additive", "scale"} and len(eff) == 3 * 103


def test_nonparametric_prior_subsample_deterministic():
    X, site, covars = _random_study(seed=8, n_features=60)
    kw = dict(covariates=["group", "age"], parametric=False)
    a = combat(X, site, covars, prior_features=30, random_state=1, **kw)
    b = combat(X, site, covars, prior_features=30, random_state=1, **kw)
    full = combat(X, site, covars, **kw)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - full).mean() < 0.05 * X.std()     # half the features as prior: small change


# ---------------------------------------------------------------- errors
def test_user_errors():
    X, site, covars = _random_study(seed=9, n_features=4)
    lone = site.astype(object)
    lone[0] = "solo"
    with pytest.raises(DesignError, match="solo"):
        combat(X, lone, covars)
    with pytest.raises(DesignError, match="collinear"):
        combat(X, site, covars.assign(scanner_field=np.where(site == "a", 1.5, 3.0)), covariates=["scanner_field"])
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InputDataError, match="NaN"):
        combat(bad, site, covars, covariates=["age"])
    with pytest.raises(InputDataError, match="sex"):
        combat(X, site, covars, covariates=["sex"])
    with pytest.raises(DesignError, match="2 sites"):
        combat(X, np.full(len(site), "a"))
    with pytest.raises(HfsmriError, match="not fitted"):
        ComBat().transform(X, site)
    m = ComBat(covariates=["group"]).fit(X, site, covars)
    with pytest.raises(InputDataError, match="not seen"):
        m.transform(X[:2], site[:2], pd.DataFrame({"group": ["HC", "other"]}))
