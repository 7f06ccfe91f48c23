"""Longitudinal designs: paired sign-flip test, group x time interaction, change vs change."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from hfsmri.stats.design import designs_for
from hfsmri.stats.roi import longitudinal_roi_tests
from hfsmri.study import Study
from tests.naming import gname


@pytest.fixture
def study(tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    rows = ["participant_id\tgroup\tage\tsex\tseverity"]
    for i in range(12):
        g = "HFS" if i < 6 else "HC"
        rows.append(f"sub-{i:02d}\t{g}\t{40 + i}\t{'MF'[i % 2]}\t{(i % 4) + 1 if g == 'HFS' else 0}")
        for ses in ("pre", "post"):
            (bids / f"sub-{i:02d}" / f"ses-{ses}").mkdir(parents=True)
        if g == "HFS":
            post = max(0, (i % 4) + 1 - (i % 3 + 1))
            (bids / f"sub-{i:02d}" / f"sub-{i:02d}_sessions.tsv").write_text(
                f"session_id\tseverity\nses-pre\t{(i % 4) + 1}\nses-post\t{post}\n")
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")
    return Study.from_bids(bids, {"group_column": "group", "covariates": ["age"], "clinical": ["severity"],
                                  "sessions": ["pre", "post"]})


def test_designs(study):
    d, _ = designs_for(study, study.labels, longitudinal=True)
    assert set(d) == {"paired-patient", "paired-control", "interaction", "delta-severity"}
    assert set(d["paired-patient"].contrasts) == {"patient-post-gt-pre", "patient-post-lt-pre"}
    assert set(d["interaction"].contrasts) == {"change-patient-gt-control", "change-patient-lt-control"}
    assert set(d["delta-severity"].contrasts) == {"corr-deltaseverity-pos", "corr-deltaseverity-neg"}


def test_roi_paired_matches_scipy(study, tmp_path):
    rng = np.random.default_rng(0)
    idx = pd.MultiIndex.from_tuples([(s, ses) for s in study.labels for ses in ("pre", "post")])
    tab = pd.DataFrame(rng.normal(size=(len(idx), 3)), index=idx, columns=["a", "b", "c"])
    # patients lose 1.5 units in ROI a after surgery
    for s in study.subjects_in("patient"):
        tab.loc[(s, "post"), "a"] -= 1.5
    df = longitudinal_roi_tests({ses: tab.xs(ses, level=1) for ses in ("pre", "post")}, study, n_perm=2000,
                                random_state=0)
    row = df[(df.contrast == "patient-post-gt-pre") & (df.roi == "a")].iloc[0]
    pats = study.subjects_in("patient")
    delta = np.array([tab.loc[(s, "post"), "a"] - tab.loc[(s, "pre"), "a"] for s in pats])
    ref = sps.ttest_1samp(delta, 0.0)
    assert row.t == pytest.approx(ref.statistic, rel=1e-10)
    assert row.mean_change == pytest.approx(delta.mean())
    # 6 patients: 2^6 = 64 sign flips, enumerated exactly: reference by brute force
    import itertools

    tnull = []
    for signs in itertools.product([1, -1], repeat=len(delta)):
        x = delta * np.array(signs)
        tnull.append(x.mean() / (x.std(ddof=1) / np.sqrt(len(x))))
    tnull = np.array(tnull)
    p_ref = min(1.0, 2 * min(np.mean(tnull >= ref.statistic - 1e-12), np.mean(tnull <= ref.statistic + 1e-12)))
    assert row.p_perm == pytest.approx(p_ref)


def test_voxelwise_finds_planted_change(study, tmp_path):
    import logging
    from types import SimpleNamespace

    from hfsmri.derivatives import Derivatives
    from hfsmri.group.runner import MetricData, run_longitudinal

    rng = np.random.default_rng(1)
    shape = (10, 10, 10)
    mask = np.zeros(shape, bool)
    mask[2:8, 2:8, 2:8] = True
    aff = np.diag([2.0, 2, 2, 1])
    maps = {}
    for s in study.labels:
        for ses in ("pre", "post"):
            d = rng.normal(size=shape)
            if ses == "post" and study.group_of(s) == "patient":
                d[4:6, 4:6, 4:6] += 4.0
            maps[(s, ses)] = d.astype(np.float32)
    gctx = SimpleNamespace(study=study, out=Derivatives(tmp_path), log=logging.getLogger("test"))
    data = MetricData("m", study.labels, affine=aff, session_map=lambda s, ses: maps[(s, ses)], long_mask=mask)
    st = {"n_perm": 200, "tfce": True, "alpha": 0.05, "cluster_forming_p": 0.01, "random_seed": 0}
    summary = run_longitudinal(gctx, SimpleNamespace(name="a"), data, st, {})
    assert summary["n_subjects"] == 12
    tmp_path = tmp_path / "group" / "a" / "m"
    logp = nib.load(tmp_path / gname("fwe", "patient-post-gt-pre")).get_fdata()
    assert logp[4:6, 4:6, 4:6].max() > -np.log10(0.05)
    assert (tmp_path / gname("t", "change-patient-gt-control")).exists()
    t = nib.load(tmp_path / gname("t", "change-patient-gt-control")).get_fdata()
    assert t[4:6, 4:6, 4:6].mean() > 2
