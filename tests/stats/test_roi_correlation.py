import numpy as np
import pandas as pd
import pingouin as pg
import pytest

from hfsmri.stats.correlation import partial_corr
from hfsmri.stats.design import design_from_study
from hfsmri.derivatives import Derivatives
from hfsmri.group import write
from hfsmri.stats.roi import roi_tests
from hfsmri.stats.roi import hedges_g, roi_glm

from .conftest import FakeStudy


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_partial_corr_matches_pingouin(method):
    rng = np.random.default_rng(0)
    n = 30
    df = pd.DataFrame({"z1": rng.normal(size=n), "z2": rng.normal(size=n)})
    df["x"] = 0.5 * df.z1 + rng.normal(size=n)
    df["y"] = 0.4 * df.x - 0.3 * df.z2 + rng.normal(size=n)
    ref = pg.partial_corr(df, x="x", y="y", covar=["z1", "z2"], method=method)
    ours = partial_corr(df.x.to_numpy(), df.y.to_numpy(), df[["z1", "z2"]].to_numpy(), method)
    assert ours["r"] == pytest.approx(ref["r"].iloc[0], rel=1e-9)
    assert ours["p"] == pytest.approx(ref["p_val"].iloc[0], rel=1e-6)
    lo, hi = ref["CI95"].iloc[0]  # pingouin rounds to 2 decimals here; the formula itself:
    assert ours["ci_low"] == pytest.approx(lo, abs=5e-3) and ours["ci_high"] == pytest.approx(hi, abs=5e-3)
    ci = pg.compute_esci(stat=ours["r"], nx=n - 2, ny=n - 2, eftype="r", decimals=12)
    assert ours["ci_low"] == pytest.approx(ci[0], abs=1e-10) and ours["ci_high"] == pytest.approx(ci[1], abs=1e-10)
    # vectorised over metrics
    many = partial_corr(np.column_stack([df.x, -df.x]), df.y.to_numpy(), df[["z1", "z2"]].to_numpy(), method)
    np.testing.assert_allclose(many["r"], [ours["r"], -ours["r"]], rtol=1e-12)


def test_hedges_g_matches_pingouin():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.5, 1, 12), rng.normal(0, 1, 15)
    from scipy import stats

    t = stats.ttest_ind(a, b).statistic
    g, lo, hi = hedges_g(t, 12, 15)
    assert g == pytest.approx(pg.compute_effsize(a, b, eftype="hedges"), rel=1e-10)
    ci = pg.compute_esci(stat=g, nx=12, ny=15, eftype="hedges", decimals=10)
    assert lo == pytest.approx(ci[0], abs=1e-8) and hi == pytest.approx(ci[1], abs=1e-8)


def test_roi_glm_and_roi_tests_outputs(tmp_path, fake_study, participants):
    rng = np.random.default_rng(2)
    labels = list(participants.index)
    is_p = (participants.group == "HFS").to_numpy()
    sev = participants.severity.fillna(0).to_numpy()
    table = pd.DataFrame({"thal_L": rng.normal(size=20) - 1.5 * is_p,
                          "amyg_R": rng.normal(size=20) + 0.8 * sev * is_p,
                          "noise": rng.normal(size=20)}, index=["sub-" + s for s in labels])
    stats = {"n_perm": 199, "alpha": 0.05, "random_seed": 1}
    res = roi_tests(table, fake_study, n_perm=stats["n_perm"], alpha=stats["alpha"], random_state=stats["random_seed"])
    rois, corr = res.rois, res.correlations
    write.roi_results(Derivatives(tmp_path), "a", "m", res)
    tmp_path = tmp_path / "group" / "a" / "m"
    assert (tmp_path / "rois.tsv").exists() and (tmp_path / "correlations.tsv").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    back = pd.read_csv(tmp_path / "rois.tsv", sep="\t")
    assert list(back.roi) == ["thal_L", "amyg_R", "noise"]
    # t and parametric p equal statsmodels' group coefficient with covariates
    import statsmodels.formula.api as smf

    df = participants.assign(y=table["thal_L"].to_numpy(), pat=is_p.astype(float))
    fit = smf.ols("y ~ pat + age + C(sex)", data=df).fit()
    r0 = rois.set_index("roi").loc["thal_L"]
    assert r0.t == pytest.approx(fit.tvalues["pat"], rel=1e-9)
    assert r0.p_param == pytest.approx(fit.pvalues["pat"], rel=1e-7)
    assert r0.direction == "patient<control"
    # permutation p agrees with the parametric one within Monte Carlo error (200 draws)
    se = np.sqrt(r0.p_param * (1 - r0.p_param) / 200)
    assert abs(r0.p_perm - r0.p_param) < 4 * se + 0.006
    assert r0.g_ci_low < r0.hedges_g < r0.g_ci_high < 0
    # correlations: partial r of amyg_R with severity in patients given age, sex (pingouin)
    c0 = corr.set_index("roi").loc["amyg_R"]
    pdf = participants.loc[is_p].assign(y=table["amyg_R"].to_numpy()[is_p], male=lambda x: (x.sex == "M") * 1.0)
    ref = pg.partial_corr(pdf, x="y", y="severity", covar=["age", "male"])
    assert c0.r == pytest.approx(ref["r"].iloc[0], rel=1e-9)
    assert c0.p == pytest.approx(ref["p_val"].iloc[0], rel=1e-6)
    assert c0.n == 10 and c0.score == "severity"
    assert set(corr.columns) >= {"rho", "p_spearman", "p_fdr", "r_ci_low", "p_perm"}


def test_roi_glm_exact_small():
    # 3 vs 3 without covariates -> 20 relabellings enumerated: p_perm is a multiple of 1/20
    p = pd.DataFrame({"participant_id": [f"sub-{i}" for i in "abcdef"], "group": ["HFS"] * 3 + ["HC"] * 3,
                      "affected_side": ["L"] * 3 + [np.nan] * 3},
                     index=list("abcdef"))
    st = FakeStudy(p, covariates=(), clinical=())
    d = design_from_study(st, list("abcdef"))
    tab = pd.DataFrame({"r": [5.0, 6, 7, 1, 2, 3]}, index=list("abcdef"))
    out = roi_glm(tab, d, n_perm=1000)
    assert out.attrs["exact"] and out.attrs["n_null"] == 20
    assert out.p_perm.iloc[0] == pytest.approx(2 / 20)  # the observed split and its mirror image


def test_cluster_rois_are_their_own_family(fake_study, participants):
    """ROIs made from significant clusters (selected by the group contrast) form a second family:
    the a priori rows equal roi_tests on the a priori ROIs alone (FDR/FWE not changed by the
    clusters), the cluster rows equal roi_tests on the clusters alone; every row says its set."""
    from hfsmri.group.runner import roi_families

    rng = np.random.default_rng(5)
    is_p = (participants.group == "HFS").to_numpy()
    idx = ["sub-" + s for s in participants.index]
    apriori = pd.DataFrame({"thal_L": rng.normal(size=20) - 0.8 * is_p, "noise": rng.normal(size=20)}, index=idx)
    clusters = pd.DataFrame({"cluster-patient-lt-control-1": rng.normal(size=20) - 3.0 * is_p,
                             "cluster-patient-lt-control-2": rng.normal(size=20) - 2.5 * is_p}, index=idx)
    kw = dict(n_perm=199, alpha=0.05, random_state=3)
    both = roi_families(pd.concat([apriori, clusters], axis=1), fake_study, **kw)
    for part, name in ((apriori, "a priori"), (clusters, "cluster")):
        alone = roi_tests(part, fake_study, **kw)
        got = both.rois[both.rois.roi_set == name].drop(columns="roi_set").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, alone.rois.reset_index(drop=True), check_dtype=False)
        gotc = both.correlations[both.correlations.roi_set == name].drop(columns="roi_set").reset_index(drop=True)
        pd.testing.assert_frame_equal(gotc, alone.correlations.reset_index(drop=True), check_dtype=False)
    # pooled, the clusters' tiny p-values would have changed the a priori rows' FDR and FWE p
    pooled = roi_tests(pd.concat([apriori, clusters], axis=1), fake_study, **kw).rois.set_index("roi")
    mine = both.rois.set_index("roi")
    assert (pooled.loc["thal_L", "p_perm_fwe"] != mine.loc["thal_L", "p_perm_fwe"]
            or pooled.loc["noise", "p_fdr"] != mine.loc["noise", "p_fdr"])
    assert list(both.values.columns) == ["participant_id", *apriori.columns, *clusters.columns]
    assert set(both.meta["RoiSets"]) == {"a priori", "cluster"}
    only = roi_families(apriori, fake_study, **kw)
    assert set(only.rois.roi_set) == {"a priori"} and "RoiSets" not in only.meta
