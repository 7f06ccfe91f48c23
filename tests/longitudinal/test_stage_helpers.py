"""The group runner's longitudinal designs of one metric (hfsmri.group.runner.run_longitudinal):
side alignment, masks, scipy references, error handling."""
from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from hfsmri.analyses import Input
from hfsmri.derivatives import Derivatives
from hfsmri.group.inputs import load_map
from hfsmri.group.runner import MetricData, aligned_map, run_longitudinal
from hfsmri.spatial.flip import flip_lr
from hfsmri.study import Study
from tests.naming import gname

SHAPE = (10, 8, 8)
AFF = np.array([[2.0, 0, 0, -9], [0, 2, 0, -7], [0, 0, 2, -7], [0, 0, 0, 1]])   # x symmetric about 0


def _study(tmp_path, sessions=("pre", "post"), flip_to="R"):
    bids = tmp_path / "bids"
    rows = ["participant_id\tgroup\tage\taffected_side"]
    for i in range(10):
        g = "HFS" if i < 6 else "HC"
        rows.append(f"sub-{i:02d}\t{g}\t{40 + 3 * i}\t{'LR'[i % 2] if g == 'HFS' else 'n/a'}")
        for ses in sessions or ():
            (bids / f"sub-{i:02d}" / f"ses-{ses}").mkdir(parents=True, exist_ok=True)
    bids.mkdir(parents=True, exist_ok=True)
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")
    cfg = {"group_column": "group", "covariates": ["age"], "flip_to": flip_to}
    if sessions:
        cfg["sessions"] = list(sessions)
    return Study.from_bids(bids, cfg)


STATS = {"n_perm": 50, "tfce": False, "alpha": 0.05, "cluster_forming_p": 0.01, "random_seed": 0}
UNALIGNED = Input("func", "reho", aligned=False)   # mirrored at the group level, as the BOLD maps


def _gctx(tmp_path, study):
    return SimpleNamespace(study=study, out=Derivatives(tmp_path / "out"), log=logging.getLogger("test"), stats=STATS)


def run_longitudinal_maps(gctx, analysis, metric, path_of, flip=False, roi_specs=None):
    """The runner on maps read from ``path_of`` (side-aligned like an unaligned participant input)."""
    def session_map(s, ses):
        p = path_of(s, ses)
        if p is None:
            return None
        arr = load_map(p, (SHAPE, AFF))
        return aligned_map(gctx, UNALIGNED, arr, AFF, s) if flip else arr

    data = MetricData(metric, gctx.study.labels, affine=AFF, session_map=session_map,
                      long_mask=np.ones(SHAPE, bool), long_regions=roi_specs or {})
    return run_longitudinal(gctx, SimpleNamespace(name=analysis), data, STATS, {})


def _write_maps(tmp_path, study, sessions=("pre", "post")):
    """Maps on disk; patients gain +3 after surgery in a block on their affected side."""
    rng = np.random.default_rng(0)
    paths = {}
    for s in study.labels:
        for ses in sessions:
            d = 5.0 + rng.normal(size=SHAPE)
            if ses == "post" and study.group_of(s) == "patient":
                if study.affected_side(s) == "R":
                    d[6:9, 3:6, 3:6] += 3.0        # x > 0 = right
                else:
                    d[1:4, 3:6, 3:6] += 3.0        # mirrored block (left)
            d[0, 0, 0] = 0.0                          # outside every subject's coverage
            p = tmp_path / "maps" / f"{s}_{ses}.nii.gz"
            p.parent.mkdir(exist_ok=True)
            nib.save(nib.Nifti1Image(d.astype(np.float32), AFF), p)
            paths[(s, ses)] = p
    return paths


def test_run_longitudinal_maps_flips_and_matches_scipy(tmp_path):
    study = _study(tmp_path)
    gctx = _gctx(tmp_path, study)
    paths = _write_maps(tmp_path, study)
    summary = run_longitudinal_maps(gctx, "reho", "reho", lambda s, ses: paths[(s, ses)], flip=True,
                                    roi_specs={"block": np.pad(np.ones((3, 3, 3), bool), [(6, 1), (3, 2), (3, 2)])})
    d = tmp_path / "out" / "group" / "reho" / "reho"
    assert summary["n_subjects"] == 10 and set(summary["designs"]) == {"paired-patient", "paired-control",
                                                                       "interaction"}
    mask = nib.load(d / gname("mask_longitudinal")).get_fdata() > 0
    # the uncovered voxel, and its mirror image in the flipped patients' maps, are left out
    assert not mask[0, 0, 0] and not mask[9, 0, 0] and mask.sum() == np.prod(SHAPE) - 2
    # reference: scipy one-sample t of post - pre over patients, images mirrored for L patients
    pats = study.subjects_in("patient")

    def arr(s, ses):
        img = nib.load(paths[(s, ses)])
        return np.asarray((flip_lr(img) if study.flipped(s) else img).dataobj, dtype=float)

    delta = np.stack([arr(s, "post") - arr(s, "pre") for s in pats])
    t_ref = sps.ttest_1samp(delta, 0.0, axis=0).statistic
    t = nib.load(d / gname("t", "patient-post-gt-pre")).get_fdata()
    np.testing.assert_allclose(t[mask], t_ref[mask], rtol=1e-4, atol=1e-4)
    # every patient's gain lands on the affected (R) side after flipping
    assert t[6:9, 3:6, 3:6].mean() > 5 and abs(t[1:4, 3:6, 3:6].mean()) < 2
    meta = json.loads((d / gname("t", "patient-post-gt-pre", sidecar=True)).read_text())
    assert meta["Sessions"] == ["pre", "post"] and sorted(meta["Flipped"]) == sorted(
        s for s in pats if study.flipped(s))
    assert (d / gname("fwe", "change-patient-gt-control")).exists()
    rois = pd.read_csv(d / gname("rois_longitudinal"), sep="\t")
    row = rois[(rois.contrast == "patient-post-gt-pre") & (rois.roi == "block")].iloc[0]
    ref = sps.ttest_1samp(delta[:, 6:9, 3:6, 3:6].mean(axis=(1, 2, 3)), 0.0).statistic
    assert row.t == pytest.approx(ref, rel=1e-6)
    assert json.loads((d / gname("summary_longitudinal")).read_text())["n_subjects"] == 10


def test_cross_sectional_and_errors_do_not_raise(tmp_path):
    study = _study(tmp_path / "a", sessions=None)
    gctx = _gctx(tmp_path / "a", study)
    assert run_longitudinal_maps(gctx, "reho", "reho", lambda s, ses: None) == {}
    study = _study(tmp_path / "b")
    gctx = _gctx(tmp_path / "b", study)
    paths = _write_maps(tmp_path / "b", study)
    bad = tmp_path / "b" / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), AFF), bad)
    res = run_longitudinal_maps(gctx, "reho", "reho",
                                lambda s, ses: bad if (s, ses) == ("03", "post") else paths[(s, ses)])
    assert "error" in res and "grid" in res["error"]
    # missing follow-up maps: only subjects with both sessions are used
    res = run_longitudinal_maps(gctx, "alff", "alff",
                                lambda s, ses: None if (s in ("00", "01") and ses == "post") else paths[(s, ses)])
    assert res["n_subjects"] == 8 and res["designs"]["paired-patient"]["n"] == 4


def test_run_longitudinal_roi_matches_scipy(tmp_path):
    study = _study(tmp_path)
    gctx = _gctx(tmp_path, study)
    rng = np.random.default_rng(4)
    values = {(s, ses): pd.Series(rng.normal(size=3) + (1.0 if ses == "post" else 0.0), index=["a", "b", "c"])
              for s in study.labels for ses in ("pre", "post")}
    data = MetricData("fa", study.labels,
                      session_row=lambda s, ses: None if (s, ses) == ("09", "post") else values[(s, ses)])
    res = run_longitudinal(gctx, SimpleNamespace(name="dwi_rois"), data, STATS, {})["rois"]
    assert res["n_rois"] == 3
    df = pd.read_csv(tmp_path / "out" / "group" / "dwi_rois" / "fa" / gname("rois_longitudinal"), sep="\t")
    row = df[(df.contrast == "control-post-gt-pre") & (df.roi == "b")].iloc[0]
    ctrl = [s for s in study.subjects_in("control") if s != "09"]
    delta = np.array([values[(s, "post")]["b"] - values[(s, "pre")]["b"] for s in ctrl])
    assert row.n == 3 and row.t == pytest.approx(sps.ttest_1samp(delta, 0.0).statistic, rel=1e-8)
