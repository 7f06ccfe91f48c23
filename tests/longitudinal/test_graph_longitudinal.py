"""Graph metrics pre/post designs: global and nodal AUC tables of both sessions (conn group stage).

The participant graph tables (``graphauc``, ``graphnodalauc``, ``relmat``, ``timeseries`` header)
are written directly for 6 patients (two affected on the left, mirrored to R at the group level)
and 6 controls. Planted: after surgery patients' global efficiency rises in proportion to their
severity improvement, and their affected-side (native R or, for left-affected patients, native L)
amygdala degree rises; controls do not change. References: scipy's paired / two-sample t and
linear regression on the same changes, and the exact two-sided sign-flip p by enumeration (TSV
numbers carry ~10 significant digits, hence the relative tolerance 1e-6).
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from tests.naming import gname
from hfsmri.group import run_stage
from hfsmri.conn.participant import conn_path
from hfsmri.graph.metrics import GLOBAL_COLUMNS, NODAL_COLUMNS

from ._sessions import make_gctx, make_study

SIDES = ["R", "L", "R", "R", "L", "R"]
N_CON = 6
NODES = ["Amygdala_L", "Amygdala_R", "Insula_L", "Insula_R", "Precentral_L", "Precentral_R",
         "Thalamus_L", "Thalamus_R"]
SEVERITY = {"01": (3, 0), "02": (4, 2), "03": (2, 1), "04": (3, 3), "05": (4, 0), "06": (2, 0)}
ATLAS, KIND = "aal", "pearson"


def _mirror(name: str) -> str:
    return name[:-1] + {"L": "R", "R": "L"}[name[-1]]


def _write_tables(gctx, study, rng):
    """Per subject and session: the tables the conn participant stage writes. Returns the truth:
    (subject, session) -> (global Series, nodal DataFrame) in the native orientation."""
    out, truth = gctx.out, {}
    for s in study.labels:
        pat = study.group_of(s) == "patient"
        base_g = pd.Series({c: 0.5 + 0.1 * rng.standard_normal() for c in GLOBAL_COLUMNS})
        base_n = pd.DataFrame(rng.normal(5.0, 1.0, (len(NODES), len(NODAL_COLUMNS))), index=NODES,
                              columns=list(NODAL_COLUMNS))
        for ses in ("pre", "post"):
            g = base_g + rng.normal(0, 0.01, len(GLOBAL_COLUMNS))
            nd = base_n + rng.normal(0, 0.3, base_n.shape)
            if pat and ses == "post":
                a, b = SEVERITY[s]
                g["global_efficiency"] += 0.02 + 0.03 * (a - b)   # recovery tracks the severity drop
                node = "Amygdala_R" if study.affected_side(s) == "R" else "Amygdala_L"
                nd.loc[node, "degree"] += 2.0
            truth[(s, ses)] = (g, nd)
            out.save_tsv(g.to_frame().T, conn_path(out, s, ses, ATLAS, KIND, "graphauc"))
            out.save_tsv(nd.rename_axis("node").reset_index(), conn_path(out, s, ses, ATLAS, KIND, "graphnodalauc"))
            z = rng.normal(0.3, 0.1, (len(NODES), len(NODES)))
            z = np.triu(z, 1) + np.triu(z, 1).T
            out.save_tsv(pd.DataFrame(z, index=NODES, columns=NODES), conn_path(out, s, ses, ATLAS, KIND, "relmat"),
                         index=True)
            out.save_tsv(pd.DataFrame(rng.standard_normal((5, len(NODES))), columns=NODES),
                         conn_path(out, s, ses, ATLAS, KIND, "timeseries"))
    return truth


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph_long")
    study = make_study(root, SIDES, N_CON, severity=SEVERITY)
    analyses = {"graph": {"atlas": ATLAS, "kind": KIND, "nbs_threshold": 2.0}}
    gctx = make_gctx(root, study, analyses, n_perm=64)
    truth = _write_tables(gctx, study, np.random.default_rng(3))
    summary = run_stage(gctx, "conn")
    return root, study, truth, summary


def _aligned_change(study, truth, subjects, folder, column):
    """post − pre of one column; nodal values of flipped patients read at the mirror node."""
    out = []
    for s in subjects:
        col = _mirror(column) if folder != "global" and study.flipped(s) else column
        vals = [truth[(s, ses)][0][col] if folder == "global" else truth[(s, ses)][1].loc[col, folder]
                for ses in ("pre", "post")]
        out.append(vals[1] - vals[0])
    return np.array(out)


def _exact_signflip_p(x):
    """Two-sided p of the one-sample t by enumerating every sign flip (as tests/longitudinal)."""
    t0 = sps.ttest_1samp(x, 0.0).statistic
    null = np.array([sps.ttest_1samp(x * np.array(sg), 0.0).statistic
                     for sg in itertools.product([1, -1], repeat=len(x))])
    return min(1.0, 2 * min(np.mean(null >= t0 - 1e-12), np.mean(null <= t0 + 1e-12)))


def _rows(root, folder):
    return pd.read_csv(root / "group" / "graph" / folder / gname("rois_longitudinal"), sep="\t")


def _row(df, contrast, roi):
    r = df[(df.contrast == contrast) & (df.roi == roi)]
    assert len(r) == 1, (contrast, roi)
    return r.iloc[0]


def test_graph_change_tables_match_scipy_and_find_the_planted_changes(graph_run):
    root, study, truth, summary = graph_run
    root = root / "out"
    pats, cons = study.subjects_in("patient"), study.subjects_in("control")
    assert summary["graph"]["global"]["longitudinal"]["rois"]["n_rois"] >= 9
    glob = _rows(root, "global")
    # paired within patients: t = scipy, p = exact sign-flip enumeration; planted rise found
    dp = _aligned_change(study, truth, pats, "global", "global_efficiency")
    r = _row(glob, "patient-post-gt-pre", "global_efficiency")
    assert r.t == pytest.approx(sps.ttest_1samp(dp, 0.0).statistic, rel=1e-6) and r.t > 5
    assert r.mean_change == pytest.approx(dp.mean(), rel=1e-6) and r.p_perm == pytest.approx(_exact_signflip_p(dp))
    assert r.p_perm < 0.05
    # group x time: pooled two-sample t of the changes (no covariates)
    dc = _aligned_change(study, truth, cons, "global", "global_efficiency")
    r = _row(glob, "change-patient-gt-control", "global_efficiency")
    assert r.t == pytest.approx(sps.ttest_ind(dp, dc).statistic, rel=1e-6) and r.p_perm < 0.05
    # change vs change: t of the slope of the efficiency change on the severity change
    dsev = np.array([SEVERITY[s][1] - SEVERITY[s][0] for s in pats], float)
    lr = sps.linregress(dsev, dp)
    r = _row(glob, "corr-deltaseverity-pos", "global_efficiency")
    assert r.t == pytest.approx(lr.slope / lr.stderr, rel=1e-6) and r.t < -3
    # nothing planted: modularity (patients) and every global metric in controls
    dm = _aligned_change(study, truth, pats, "global", "modularity")
    r = _row(glob, "patient-post-gt-pre", "modularity")
    assert r.p_perm == pytest.approx(_exact_signflip_p(dm)) and r.p_perm > 0.05
    assert (glob[glob.contrast == "control-post-gt-pre"].p_fdr > 0.05).all()


def test_nodal_change_is_side_aligned(graph_run):
    root, study, truth, _ = graph_run
    root = root / "out"
    pats = study.subjects_in("patient")
    assert any(study.flipped(s) for s in pats)
    deg = _rows(root, "degree")
    assert set(deg.roi) == set(NODES)
    for node in NODES:  # t of every node equals scipy on the side-aligned changes
        d = _aligned_change(study, truth, pats, "degree", node)
        assert _row(deg, "patient-post-gt-pre", node).t == pytest.approx(sps.ttest_1samp(d, 0.0).statistic, rel=1e-6)
    hit = _row(deg, "patient-post-gt-pre", "Amygdala_R")
    assert hit.t > 3 and hit.p_perm < 0.05 and hit.mean_change == pytest.approx(2.0, abs=0.5)
    other = _row(deg, "patient-post-gt-pre", "Amygdala_L")
    assert other.p_perm > 0.05 and abs(other.mean_change) < 0.5
    # the other nodal folders got their tables too; edges / NBS stay cross-sectional
    for m in NODAL_COLUMNS:
        assert (root / "group" / "graph" / m / gname("rois_longitudinal")).exists()
    assert not list((root / "group" / "graph" / "edges").glob("*post*"))
    assert (root / "group" / "graph" / "global" / "rois.tsv").exists()


def test_bad_followup_table_keeps_cross_sectional_results(tmp_path):
    study = make_study(tmp_path, SIDES, N_CON)
    gctx = make_gctx(tmp_path, study, {"graph": {"atlas": ATLAS, "kind": KIND}}, n_perm=20)
    _write_tables(gctx, study, np.random.default_rng(0))
    bad = conn_path(gctx.out, "03", "post", ATLAS, KIND, "graphnodalauc")
    # a well-formed table (integrity record intact) that lacks columns, as an older version could write
    gctx.out.save_tsv(pd.DataFrame({"node": ["Amygdala_L"], "degree": [1]}), bad)
    res = run_stage(gctx, "conn")["graph"]["degree"]["longitudinal"]
    assert "error" in res and str(bad.name) in res["error"]
    assert "missing column" in res["error"]
    assert (tmp_path / "out" / "group" / "graph" / "global" / "rois.tsv").exists()
