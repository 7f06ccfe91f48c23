"""T1w: planted GM changes are visible in the images (checked without the pipeline: T1w intensity
relative to nearby white matter, converted to GM fraction with the tissue contrast, against the
template GM probability from nilearn), null study, sessions, clinical link, site effects."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from ._helpers import (SESSION_EFFECTS, effects_table, gm_intensity_factors, load, mask_on, near_wm,
                       participants, template_on)

GT = ("derivatives", "ground_truth")


def _t1(root, sid, ses=None):
    if ses:
        return load(root / sid / f"ses-{ses}" / "anat" / f"{sid}_ses-{ses}_T1w.nii.gz")
    return load(root / sid / "anat" / f"{sid}_T1w.nii.gz")


def _gm_change(root, mask_rel, ses=None, mask_root=None):
    """Per subject: T1w intensity (relative to nearby pure WM) in the eroded effect mask converted
    to GM fraction with the model's intensity change per unit GM ``f`` of each voxel
    (:func:`gm_intensity_factors`), by least squares over the voxels: ``sum(f * I) / sum(f^2)``, so
    group or session differences of the values are differences of GM fraction (averaged with
    weights ``f^2``: voxels whose intensity hardly changes with GM, where GM trades about equally
    with WM and CSF, count little). Also returned: the template GM in the mask with the same
    weights, patient flags, and the factors."""
    p = participants(root)
    _, img = _t1(root, p.participant_id[0], ses)
    m = mask_on((mask_root or root).joinpath(*GT) / mask_rel, img, erode=1)
    ref = near_wm(m, template_on("WM", img), abs(img.affine[0, 0]))
    f = gm_intensity_factors(img, m)
    w = f / np.sum(f * f)
    vals = []
    for sid in p.participant_id:
        t1 = _t1(root, sid, ses)[0].astype(np.float64)
        vals.append(float(np.dot(w, t1[m]) / np.median(t1[ref])))
    gm = float(np.dot(w * f, template_on("GM", img)[m]))
    return np.array(vals), gm, (p.group == "HFS").to_numpy(), f


def test_planted_gm_decreases_visible_with_right_size(main_study):
    """Every planted GM decrease changes T1w intensity in its mask as the model says (GM traded with
    CSF: darker; with WM, as in the deep grey nuclei and at the GM/WM boundary: brighter); converted
    to GM fraction (least squares over the mask voxels), every change is negative and, pooled over the regions, the
    planted one (sigma_gm * d * GM) within 35 %."""
    eff = effects_table(main_study)
    rows = eff[(eff.analysis == "vbm") & (eff.direction == -1)]
    assert len(rows) >= 7
    measured, planted = [], []
    for _, r in rows.iterrows():
        vals, gm, pat, _ = _gm_change(main_study, r["mask"])
        dgm = vals[pat].mean() - vals[~pat].mean()
        assert dgm < 0, r.effect_id
        measured.append(dgm)
        planted.append(-0.10 * r.cohens_d * gm)  # default sigma_gm = 0.10
    ratio = np.sum(measured) / np.sum(planted)
    assert 0.65 < ratio < 1.35, (measured, planted)


def test_null_study_has_no_planted_difference(main_study, null_study):
    """With effects='none' and the same seed, controls' T1w are identical to the default study's
    controls, patients differ from their default-study twins only around the planted masks, and the
    group difference in the thalamus mask is noise-sized."""
    p = participants(main_study)
    eff = effects_table(main_study)
    assert len(effects_table(null_study)) == 0
    pd.testing.assert_frame_equal(p, participants(null_study))
    gm_masks = [load(main_study.joinpath(*GT) / f)[0] > 0 for f in set(eff[eff.modality == "anat"]["mask"])]
    union = np.logical_or.reduce(gm_masks)
    _, img = _t1(main_study, p.participant_id[0])
    near = mask_on_array(ndimage.binary_dilation(union, iterations=4), img)
    for sid, group in zip(p.participant_id, p.group):
        a, _ = _t1(main_study, sid)
        b, _ = _t1(null_study, sid)
        if group == "HC":
            assert np.array_equal(a, b)
        else:
            diff = a != b
            assert diff.any() and not (diff & ~near).any()
    row = eff[(eff.effect_id == "gm-thalamus") & (eff.analysis == "vbm")].iloc[0]
    vals, gm, pat, _ = _gm_change(null_study, row["mask"], mask_root=main_study)
    null_dgm = vals[pat].mean() - vals[~pat].mean()
    assert abs(null_dgm) < 0.4 * 0.10 * row.cohens_d * gm


def mask_on_array(mask2mm, target_img):
    import nibabel as nib
    from nilearn import image

    from hfsmri.spatial.templates import template_grid

    _, aff = template_grid(2)
    ref = nib.Nifti1Image(np.zeros(target_img.shape[:3], np.uint8), target_img.affine)
    out = image.resample_to_img(nib.Nifti1Image(mask2mm.astype(np.float32), aff), ref,
                                interpolation="nearest", force_resample=True, copy_header=True)
    return np.asarray(out.dataobj) > 0.5


def test_post_session_effect_is_post_factor_of_pre(session_study):
    """Group difference (patients - controls) of the deep-GM fraction: post / pre = post_factor."""
    eff = effects_table(session_study)
    mask_rel = eff[eff.effect_id == "gm-deep"]["mask"].iloc[0]
    pre, gm, pat, factors = _gm_change(session_study, mask_rel, "pre")
    post, _, _, _ = _gm_change(session_study, mask_rel, "post")
    assert factors.mean() < -0.3  # thalamus + putamen: lost GM becomes WM-like, the voxels get brighter
    d_pre = pre[pat].mean() - pre[~pat].mean()
    d_post = post[pat].mean() - post[~pat].mean()
    planted = -SESSION_EFFECTS["sigma"]["gm"] * 6.0 * gm
    assert d_pre == pytest.approx(planted, rel=0.35)
    assert d_post / d_pre == pytest.approx(SESSION_EFFECTS["post_factor"], abs=0.12)
    # the within-subject change (recovery of GM after MVD) is a patient-only effect; the 2
    # controls' change is retest noise only (10 % of the subject variance)
    change = post - pre
    assert change[pat].mean() > 0 > d_pre and abs(change[~pat].mean()) < 0.35 * abs(d_pre)


def test_clinical_link_planted_as_correlation(session_study):
    """GM in the precuneus correlates with severity among patients at the planted r = 0.9 (region
    means average out part of the non-clinical variance, so the measured r is at least ~r)."""
    eff = effects_table(session_study)
    row = eff[eff.effect_id == "gm-clin"].iloc[0]
    assert row.clinical_score == "severity" and row.clinical_r == pytest.approx(0.9)
    vals, _, pat, factors = _gm_change(session_study, row["mask"], "pre")
    # precuneus (cortex): GM trades with CSF at the pial side, with WM at the GM/WM boundary
    assert (factors > 0.2).sum() > 5 and (factors < -0.2).sum() > 5
    sev = participants(session_study).severity.to_numpy()[pat]
    r, _ = stats.pearsonr(vals[pat], sev)
    assert r > 0.8  # direction -1 on GM with r = +0.9: more severe -> more GM (r is the metric's)


def test_site_effects_change_t1_contrast(site_study):
    """Site 2 has 10 % less GM/WM contrast: the GM/WM intensity ratio (least squares of T1w on
    nilearn's template GM/WM probabilities over brain voxels) is higher on site 2."""
    p = participants(site_study)
    assert sorted(set(p.site)) == ["site1", "site2"]
    _, img = _t1(site_study, p.participant_id[0])
    gmp, wmp = template_on("GM", img), template_on("WM", img)
    sel = (gmp + wmp > 0.9)
    X = np.stack([gmp[sel], wmp[sel]], axis=1)
    ratios = {}
    for sid, site in zip(p.participant_id, p.site):
        t1, _ = _t1(site_study, sid)
        coef, *_ = np.linalg.lstsq(X, t1[sel].astype(float), rcond=None)
        ratios.setdefault(site, []).append(coef[0] / coef[1])
    s1, s2 = np.mean(ratios["site1"]), np.mean(ratios["site2"])
    # planted: GM intensity 0.58 (site 1) vs 1 - 0.42 * 0.9 = 0.622 (site 2), WM 1
    assert s2 - s1 == pytest.approx(0.622 - 0.58, abs=0.02)
