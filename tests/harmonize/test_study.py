"""ComBat driven by a Study (site_column, group + covariates protected)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hfsmri.errors import StudyError
from hfsmri.harmonize import ComBat, harmonize_for_study, study_sites_covariates
from hfsmri.study import Study


def _study(tmp_path, with_site=True, seed=0):
    rng = np.random.default_rng(seed)
    n = 48
    site = np.repeat(["s1", "s2", "s3"], 16)
    group = np.where(rng.random(n) < np.repeat([0.75, 0.5, 0.25], 16), "HFS", "HC")
    df = pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(n)], "group": group,
                       "age": rng.integers(25, 70, n), "sex": rng.choice(["F", "M"], n), "site": site})
    df.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    cfg = {"group_column": "group", "covariates": ["age", "sex"]}
    if with_site:
        cfg["site_column"] = "site"
    return Study.from_bids(tmp_path, cfg), df


def test_harmonize_for_study_equals_explicit_model(tmp_path):
    study, df = _study(tmp_path)
    rng = np.random.default_rng(1)
    labels = list(study.participants.index)[::-1]          # any subject order
    table = pd.DataFrame(rng.normal(size=(len(labels), 6)), index=[f"sub-{s}" for s in labels],
                         columns=[f"roi{k}" for k in range(6)])
    offsets = study.participants.loc[labels, "site"].map({"s1": 0.0, "s2": 1.0, "s3": -1.0}).to_numpy()
    table = table + offsets[:, None]
    out, model = harmonize_for_study(table, study, labels)
    assert list(out.index) == list(table.index) and list(out.columns) == list(table.columns)
    # same as the estimator with explicitly built sites/covariates (independent construction)
    p = study.participants.loc[labels]
    covars = pd.DataFrame({"group": np.where(p["group"] == "HFS", "patient", "control"),
                           "age": p["age"].to_numpy(), "sex": p["sex"].to_numpy()})
    ref = ComBat(covariates=["group", "age", "sex"]).fit_transform(table.to_numpy(), p["site"].to_numpy(), covars)
    np.testing.assert_allclose(out.to_numpy(), ref, atol=1e-12)
    assert set(model.design_columns_) >= {"group[patient]", "age", "sex[M]"}
    # arrays (voxel-wise) go through the same path
    arr, _ = harmonize_for_study(table.to_numpy(), study, labels)
    np.testing.assert_allclose(arr, ref, atol=1e-12)
    sites, cov, cats = study_sites_covariates(study, labels)
    assert list(sites.index) == labels and cats == ["group", "sex"]


def test_needs_site_column(tmp_path):
    study, _ = _study(tmp_path, with_site=False)
    with pytest.raises(StudyError, match="site_column"):
        harmonize_for_study(np.zeros((3, 2)), study, study.labels[:3])
