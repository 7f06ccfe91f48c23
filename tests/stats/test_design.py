import numpy as np
import pandas as pd
import pytest

from hfsmri.errors import DesignError
from hfsmri.stats.design import clinical_designs, design_from_study, flipped_subjects, one_sample_design

from .conftest import FakeStudy


def test_group_design_coding(fake_study, participants):
    subs = ["sub-" + s for s in participants.index[::-1]]  # order is kept, prefix stripped
    d = design_from_study(fake_study, subs)
    assert d.subjects == list(participants.index[::-1])
    assert d.columns == ["patient", "control", "age", "sex[M]"]
    df = participants.loc[d.subjects]
    np.testing.assert_array_equal(d.X[:, 0], (df.group == "HFS").to_numpy(float))
    np.testing.assert_array_equal(d.X[:, 1], (df.group == "HC").to_numpy(float))
    np.testing.assert_allclose(d.X[:, 2], df.age - df.age.mean())
    np.testing.assert_array_equal(d.X[:, 3], (df.sex == "M").to_numpy(float))
    np.testing.assert_array_equal(d.contrasts["patient-gt-control"], [1, -1, 0, 0])
    np.testing.assert_array_equal(d.contrasts["patient-lt-control"], [-1, 1, 0, 0])
    assert d.roles.count("patient") == 10


def test_group_contrast_is_adjusted_mean_difference(fake_study, participants):
    # the contrast estimate equals the statsmodels coefficient of group in y ~ group + age + sex
    import statsmodels.formula.api as smf

    from hfsmri.stats.glm import ols

    d = design_from_study(fake_study, list(participants.index))
    rng = np.random.default_rng(0)
    y = rng.normal(size=len(d.subjects))
    df = participants.loc[d.subjects].assign(y=y, pat=lambda x: (x.group == "HFS").astype(float))
    fit = smf.ols("y ~ pat + age + C(sex)", data=df).fit()
    res = ols(y, d.X, d.contrasts["patient-gt-control"])
    assert res.effect[0] == pytest.approx(fit.params["pat"], rel=1e-10)
    assert res.t[0] == pytest.approx(fit.tvalues["pat"], rel=1e-10)


def test_site_extra_and_interaction(participants):
    st = FakeStudy(participants, site_column="site")
    extra = pd.DataFrame({"tiv": np.linspace(1400, 1600, 20)}, index=["sub-" + s for s in participants.index])
    d = design_from_study(st, list(participants.index), extra_covariates=extra, interactions=["age"])
    assert d.columns == ["patient", "control", "age", "sex[M]", "site[B]", "tiv", "group:age"]
    assert abs(d.X[:, 5].mean()) < 1e-9
    assert "interaction-age-pos" in d.contrasts


def test_flipped_subjects(participants):
    st = FakeStudy(participants, flip_to="R")
    labels = list(participants.index)
    expect = [s for s in labels[:10] if participants.loc[s, "affected_side"] == "L"]
    assert flipped_subjects(st, labels) == expect
    assert design_from_study(st, labels).flipped == expect
    assert flipped_subjects(FakeStudy(participants), labels) == []


def test_clinical_designs(participants):
    p = participants.copy()
    p.loc["03", "severity"] = np.nan
    st = FakeStudy(p, clinical=["severity"])
    ds = clinical_designs(st, list(p.index))
    d = ds["severity"]
    assert "03" not in d.subjects and "03" in d.dropped and len(d.subjects) == 9
    assert d.columns[:2] == ["intercept", "severity"]
    np.testing.assert_array_equal(d.contrasts["corr-severity-pos"][:2], [0, 1])
    np.testing.assert_array_equal(d.contrasts["corr-severity-neg"][:2], [0, -1])
    np.testing.assert_allclose(d.X[:, 1], p.loc[d.subjects, "severity"] - p.loc[d.subjects, "severity"].mean())


def test_design_errors_name_the_column(participants):
    p = participants.copy()
    p.loc["04", "age"] = np.nan
    with pytest.raises(DesignError, match="'age'.*sub-04"):
        design_from_study(FakeStudy(p), list(p.index))
    p = participants.copy()
    p["sex"] = "F"
    with pytest.raises(DesignError, match="'sex' is constant"):
        design_from_study(FakeStudy(p), list(p.index))
    p = participants.copy()
    p["age2"] = p["age"] * 2
    with pytest.raises(DesignError, match="age2"):
        design_from_study(FakeStudy(p, covariates=["age", "age2"]), list(p.index))
    with pytest.raises(DesignError, match="'weight' is not a column"):
        design_from_study(FakeStudy(participants, covariates=["weight"]), list(participants.index))
    p = participants.copy()
    p.loc[p.group == "HFS", "severity"] = 2.0
    with pytest.raises(DesignError, match="severity.*constant"):
        clinical_designs(FakeStudy(p), list(p.index))
    with pytest.raises(DesignError, match="sub-99"):
        design_from_study(FakeStudy(participants), ["99"] + list(participants.index))


def test_one_sample_design():
    d = one_sample_design(["01", "02", "03"])
    assert d.columns == ["intercept"] and d.X.shape == (3, 1)


def test_with_the_real_study(tmp_path):
    from hfsmri.study import Study

    from ..conftest import make_bids

    subs = tuple(f"{i:02d}" for i in range(1, 11))
    root = make_bids(tmp_path / "bids", subjects=subs, groups=("HFS",) * 5 + ("HC",) * 5, modalities=())
    study = Study.from_bids(root, {"group_column": "group", "covariates": ["age"], "clinical": ["severity"],
                                   "affected_side_column": "affected_side", "flip_to": "R"})
    d = design_from_study(study, list(subs))
    assert d.columns == ["patient", "control", "age"]
    assert d.flipped == [s for s in subs if study.flipped(s)]
    assert d.roles == ["patient"] * 5 + ["control"] * 5
    cd = clinical_designs(study, list(subs))
    assert list(cd) == ["severity"] and cd["severity"].subjects == list(subs[:5])
