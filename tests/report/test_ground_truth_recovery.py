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


def test_roi_finding_status_planted_related_or_not():
    """Ground truth of significant ROI rows (report findings): the planted region with the planted
    sign is "planted" (tract names with a camelCase side, declared ROI specs, ipsi/contra effects on
    either side when unflipped and only on the aligned side when flipped); a planted effect of another
    metric of the same acquisition in the ROI is "related"; anything else "not planted"."""
    from hfsmri.report.ground_truth import _name_key, related_effects, roi_row_status

    assert _name_key("slfL") == ("slf", "l") and _name_key("plicR") == ("plic", "r")
    assert _name_key("ccBody") == ("ccbody", None) and _name_key("Thalamus_L") == ("thalamus", "l")
    eff = pd.DataFrame([
        {"effect_id": "wm-slf", "analysis": "dwi_rois", "metric": "md", "direction": -1, "cohens_d": 2.0,
         "region": "juelich:WM_Superior_longitudinal_fascicle_L+juelich:WM_Superior_longitudinal_fascicle_R",
         "hemisphere": "bilateral", "clinical_score": "severity", "clinical_r": -0.7},
        {"effect_id": "reho-cingulate-l", "analysis": "reho", "metric": "reho", "direction": -1, "cohens_d": 2.0,
         "region": "aal:Cingulate_Mid_L", "hemisphere": "L", "clinical_score": "n/a", "clinical_r": np.nan},
        {"effect_id": "alff-precentral-contra", "analysis": "alff", "metric": "alff", "direction": 1,
         "cohens_d": 2.0, "region": "aal:Precentral_L", "hemisphere": "contra", "clinical_score": "n/a",
         "clinical_r": np.nan},
        {"effect_id": "gm-thalamus", "analysis": "vbm", "metric": "gm", "direction": -1, "cohens_d": 1.8,
         "region": "aal:Thalamus_L+aal:Thalamus_R", "hemisphere": "bilateral", "clinical_score": "n/a",
         "clinical_r": np.nan}])
    st = lambda *a, **k: roi_row_status(eff, *a, **k)
    assert st("dwi_rois", "md", "slfL", -1.0) == "planted"
    assert st("dwi_rois", "md", "slfR", +1.0) == "not planted"                    # wrong sign
    assert st("dwi_rois", "md", "slfL", -1.0, score="severity") == "planted"      # r < 0 as planted
    assert st("dwi_rois", "md", "slfL", -1.0, score="hama") == "not planted"
    assert st("dwi_rois", "md", "cstL", -1.0) == "not planted"
    # declared ROI spec: the table name MCC_L is aal:Cingulate_Mid_L
    assert st("reho", "reho", "MCC_L", -1.0, roi_spec="aal:Cingulate_Mid_L") == "planted"
    assert st("reho", "reho", "MCC_L", -1.0) == "not planted"
    # the same region in ALFF: a planted ReHo effect of the same BOLD signal -> related
    assert st("alff", "alff", "MCC_L", -1.0, roi_spec="aal:Cingulate_Mid_L") == "related (reho-cingulate-l)"
    # ipsi/contra: unflipped -> either side; flipped to L -> the mirrored side only
    assert st("alff", "alff", "Precentral_R", 1.0) == "planted"
    assert st("alff", "alff", "Precentral_L", 1.0, flip_to="R") == "planted"
    assert st("alff", "alff", "Precentral_L", 1.0, flip_to="L") == "not planted"
    assert st("alff", "alff", "Precentral_R", 1.0, flip_to="L") == "planted"
    # spatial: a tract ROI whose name matches no effect but that runs through a planted region of its
    # metric (>= ROI_OVERLAP_MIN of its voxels) is planted; a smaller overlap is not
    from hfsmri.report.ground_truth import ROI_OVERLAP_MIN

    roi = np.zeros((10, 10, 10), bool)
    roi[2:6, 2:6, 2:6] = True                                   # 64 voxels
    planted = np.zeros_like(roi)
    planted[5:9, 2:6, 2:6] = True                               # 16 of the ROI's voxels (25 %)
    on = lambda e: planted if e["effect_id"] == "wm-slf" else None
    assert st("dwi_rois", "md", "acousticL", -1.0, roi_mask=roi, effect_mask=on) == "planted"
    assert st("dwi_rois", "md", "acousticL", +1.0, roi_mask=roi, effect_mask=on) == "not planted"
    tiny = np.zeros_like(roi)
    tiny[5, 2, 2] = True                                        # 1 of 64 voxels < ROI_OVERLAP_MIN
    assert 1 / 64 < ROI_OVERLAP_MIN
    assert st("dwi_rois", "md", "acousticL", -1.0, roi_mask=roi, effect_mask=lambda e: tiny) == "not planted"
    # another acquisition is never "related": GM thalamus does not make a BOLD ROI related
    assert set(related_effects(eff, "alff", "alff")["effect_id"]) == {"reho-cingulate-l"}
    assert set(related_effects(eff, "dwi_rois", "fa")["effect_id"]) == {"wm-slf"}


def test_roi_masks_rebuilt_offline_for_ground_truth():
    """ROI masks for the spatial ground truth: a tract of dwi_rois, an atlas ROI volume (aal_<label>)
    and a declared spec land on the named side of the MNI grid; an unknown name gives None."""
    import nibabel as nib

    from hfsmri.report.ground_truth import roi_mask_on

    aff = np.array([[2.0, 0, 0, -90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
    img = nib.Nifti1Image(np.zeros((91, 109, 91), np.uint8), aff)
    for roi, spec, side in (("acousticL", None, -1), ("aal_Putamen_R", None, 1), ("MCC_L", "aal:Cingulate_Mid_L", -1)):
        m = roi_mask_on(roi, spec, img)
        assert m is not None and m.sum() > 20
        x = (aff @ np.c_[np.argwhere(m), np.ones(int(m.sum()))].T)[0]
        assert np.sign(np.median(x)) == side, roi
    assert roi_mask_on("cluster-patient-gt-control-1", None, img) is None
