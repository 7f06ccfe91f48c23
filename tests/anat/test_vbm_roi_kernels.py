"""VBM and ROI-volume kernels against closed forms and nilearn."""
import nibabel as nib
import numpy as np
import pytest

from hfsmri.anat.qc import dice, flag_outliers
from hfsmri.anat.roi_volumes import REVIEW_ROIS, label_volumes, review_roi_table
from hfsmri.anat.segmentation import normalise_priors, tissue_volumes
from hfsmri.anat.vbm import masked_average_warp, modulate, smooth


def test_smooth_matches_nilearn():
    from nilearn.image import smooth_img

    rng = np.random.default_rng(1)
    data = np.zeros((30, 32, 28), dtype=np.float32)
    data[8:-8, 8:-8, 8:-8] = rng.random((14, 16, 12))  # zero border: nilearn's reflect = our constant mode
    aff = np.diag([2.0, 2.0, 2.5, 1.0])
    ours = smooth(data, aff, 6.0)
    ref = smooth_img(nib.Nifti1Image(data, aff), 6.0).get_fdata()
    assert np.allclose(ours, ref, atol=1e-5)


def test_modulation_scales_by_jacobian_and_preserves_sum():
    gm = np.full((4, 4, 4), 0.5)
    jac = np.full((4, 4, 4), 1.2)
    jac[0, 0, 0] = -1.0  # folding -> 0
    out = modulate(gm, jac)
    assert out[1, 1, 1] == pytest.approx(0.6)
    assert out[0, 0, 0] == 0


def test_masked_average_warp():
    v = np.array([2.0, 0.3, 0.0])
    s = np.array([1.0, 0.2, 0.0])
    assert np.allclose(masked_average_warp(v, s, 0.5), [2.0, 0.0, 0.0])


def test_label_volumes_and_tissue_volumes():
    rng = np.random.default_rng(0)
    prob = rng.random((5, 6, 7))
    lab = rng.integers(0, 3, prob.shape)
    t = label_volumes(prob, lab, {1: "x", 2: "y"}, voxel_ml=0.008).set_index("region")
    assert t.loc["x", "volume_ml"] == pytest.approx(prob[lab == 1].sum() * 0.008)
    assert t.loc["y", "n_voxels"] == (lab == 2).sum()
    v = tissue_volumes(prob, prob * 2, prob * 3, 0.001)
    assert v["tiv_ml"] == pytest.approx(prob.sum() * 6 * 0.001)


def test_review_rois_exist_in_atlases():
    from hfsmri.spatial.atlas import load_atlas

    for roi, (atlas, label) in REVIEW_ROIS.items():
        assert load_atlas(atlas).find(label), f"{roi}: {label} missing from {atlas}"
    assert {"thalamus_L", "amygdala_R", "ipl_R", "cerebellum8_R", "mfg_L", "parahippocampal_L"} <= set(REVIEW_ROIS)


def test_review_roi_table_uses_native_labels():
    lab = np.zeros((4, 4, 4), dtype=int)
    lab[0] = 7
    names = {7: "Left_Thalamus"}
    gm = np.full(lab.shape, 0.5)
    native = {a: (lab, names) for a in ("harvard_oxford", "aal")}
    import hfsmri.anat.roi_volumes as rv

    old = dict(rv.REVIEW_ROIS)
    try:
        rv.REVIEW_ROIS.clear()
        rv.REVIEW_ROIS["thalamus_L"] = ("harvard_oxford", "Left_Thalamus")
        t = review_roi_table(gm, native, 0.001)
    finally:
        rv.REVIEW_ROIS.clear()
        rv.REVIEW_ROIS.update(old)
    assert t.volume_ml.iloc[0] == pytest.approx(16 * 0.5 * 0.001)


def test_normalise_priors_sum_to_one_in_mask():
    rng = np.random.default_rng(2)
    a, b, c = rng.random((3, 5, 5, 5))
    m = rng.random((5, 5, 5)) > 0.3
    x, y, z = normalise_priors(a, b, c, m)
    assert np.allclose((x + y + z)[m], 1.0)
    assert np.all((x + y + z)[~m] == 0)


def test_dice_and_outliers():
    a = np.zeros(10, bool); a[:4] = True
    b = np.zeros(10, bool); b[2:6] = True
    assert dice(a, b) == pytest.approx(0.5)
    import pandas as pd

    df = pd.DataFrame({"tiv": [1500, 1510, 1490, 1505, 1495, 2500], "dice": [0.99, 0.98, 0.99, 0.985, 0.99, 0.99]})
    f = flag_outliers(df, low_only=("dice",))
    assert f.qc_outlier.tolist() == [False] * 5 + [True]
    assert "tiv" in f.qc_reason.iloc[-1]
