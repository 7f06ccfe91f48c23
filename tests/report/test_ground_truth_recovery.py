"""Ground-truth scoring of a longitudinal study: the planted recovery after surgery is a test of
its own on the paired contrast (post − pre opposite to a shrinking effect's direction)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd

from hfsmri.report.collect import ContrastResult, MetricResult
from hfsmri.report.ground_truth import opposite_contrast, recovery_contrast, score_effects
from tests.naming import gname

AFF = np.diag([4.0, 4.0, 4.0, 1.0])
AFF[:3, 3] = -20.0
SHAPE = (10, 10, 10)


def _img(path, data):
    nib.save(nib.Nifti1Image(data.astype(np.float32), AFF), str(path))
    return path


def test_recovery_contrast_names():
    assert recovery_contrast(-1, 0.5, ["pre", "post"]) == "patient-post-gt-pre"     # decrease shrinks: rises
    assert recovery_contrast(+1, 0.5, ["pre", "post"]) == "patient-post-lt-pre"
    assert recovery_contrast(-1, 1.5, ["pre", "mid", "post"]) == "patient-post-lt-pre"  # worsens
    assert recovery_contrast(-1, 1.0, ["pre", "post"]) is None
    assert recovery_contrast(-1, 0.5, ["pre"]) is None and recovery_contrast(-1, 0.5, None) is None
    assert opposite_contrast("patient-post-gt-pre") == "patient-post-lt-pre"
    assert opposite_contrast("control-ses2-lt-ses1") == "control-ses2-gt-ses1"
    assert opposite_contrast("patient-gt-control") == "patient-lt-control"
    assert opposite_contrast("corr-severity-pos") == "corr-severity-neg"


def test_recovery_scored_voxelwise_and_not_for_roi_tables(tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    mask = np.zeros(SHAPE)
    mask[2:5, 2:5, 2:5] = 1
    _img(gt / "m.nii.gz", mask)
    effects = pd.DataFrame([
        {"effect_id": "fa-cc", "analysis": "dti", "metric": "fa", "region": "x", "hemisphere": "midline",
         "direction": -1, "cohens_d": 4.0, "clinical_score": None, "clinical_r": None, "mask": "m.nii.gz",
         "post_factor": 0.5},
        {"effect_id": "fa-roi", "analysis": "dwi_rois", "metric": "fa", "region": "aal:Thalamus_L",
         "hemisphere": "midline",
         "direction": -1, "cohens_d": 4.0, "clinical_score": None, "clinical_r": None, "mask": "m.nii.gz",
         "post_factor": 0.5}])
    d = tmp_path / "dti_fa"
    d.mkdir()
    up = np.zeros(SHAPE)
    up[3, 3, 3] = 2.0                                           # FWE p 0.01 inside the planted mask
    down = np.zeros(SHAPE)
    down[3, 3, 4] = 1.5                                          # and a wrong-direction voxel
    contrasts = {c: ContrastResult(c, logp=_img(d / gname("fwe", c), v))
                 for c, v in (("patient-post-gt-pre", up), ("patient-post-lt-pre", down),
                              ("patient-lt-control", np.zeros(SHAPE)))}
    res = [MetricResult("dti", "fa", d, contrasts=contrasts),
           MetricResult("dwi_rois", "fa", tmp_path, rois=pd.DataFrame({"roi": ["thalamus_L"], "t": [-3.0], "p_fdr": [0.01]}))]
    scores, _ = score_effects(effects, res, gt, sessions=["pre", "post"])
    rec = scores[scores.test == "recovery"].set_index("effect_id")
    assert rec.loc["fa-cc", "contrast"] == "patient-post-gt-pre" and rec.loc["fa-cc", "hit"] == 1
    assert rec.loc["fa-cc", "n_sig_voxels"] == 1 and rec.loc["fa-cc", "wrong_direction"] == 1
    assert rec.loc["fa-cc", "expected"] == "x 0.5 after surgery"
    assert pd.isna(rec.loc["fa-roi", "hit"]) and rec.loc["fa-roi", "status"] == "not evaluated"
    grp = scores[scores.test == "group"].set_index("effect_id")
    assert grp.loc["fa-cc", "hit"] == 0 and grp.loc["fa-roi", "hit"] == 1
    # a cross-sectional study has no recovery tests
    scores, _ = score_effects(effects, res, gt)
    assert set(scores.test) == {"group"}
