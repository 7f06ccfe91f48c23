"""DWI IQMs (hfsmri.qc.diffusion): b0 SNR with known noise and on a real b0, planted slice dropouts
in dipy's real small_64D DWI, motion summary."""
from __future__ import annotations

import numpy as np
import pytest

from hfsmri.qc import diffusion as D


def _rician(signal, sigma, rng):
    return np.abs(signal + sigma * rng.standard_normal(signal.shape) + 1j * sigma * rng.standard_normal(signal.shape))


def test_b0_snr_with_known_noise_both_methods():
    rng = np.random.default_rng(0)
    shape = (40, 40, 30)
    mask = np.zeros(shape, bool)
    mask[10:30, 10:30, 8:22] = True
    s0, sigma = 800.0, 16.0
    sig = np.where(mask, s0, 0.0)
    bvals = np.array([0, 1000, 0, 1000, 0, 0])
    data = np.stack([_rician(sig * (0.3 if b else 1.0), sigma, rng) for b in bvals], axis=-1)
    rep = D.b0_snr(data, mask, bvals)
    assert rep["b0_snr_method"] == "b0 repeats" and rep["n_b0"] == 4
    assert rep["b0_snr"] == pytest.approx(s0 / sigma, rel=0.05)
    # one b0: Rayleigh background (air > 10 mm from the brain), SNR = 0.655 mean / SD_air
    one = D.b0_snr(data[..., :2], mask, bvals[:2], zooms=(2, 2, 2))
    assert one["b0_snr_method"] == "background"
    assert one["b0_snr"] == pytest.approx(s0 / sigma, rel=0.05)
    # a cropped image without background: no estimate rather than a wrong one
    crop = D.b0_snr(data[10:30, 10:30, 8:22, :2], mask[10:30, 10:30, 8:22], bvals[:2])
    assert np.isnan(crop["b0_snr"]) and crop["b0_snr_method"].startswith("n/a")


def test_b0_snr_on_a_real_b0_matches_dietrich_formula():
    """dipy's real b0 (S0_10slices, 128 x 128 x 10): the background method, written out here."""
    import nibabel as nib
    from dipy.data import get_fnames
    from dipy.segment.mask import median_otsu
    from scipy import ndimage as ndi

    img = nib.load(get_fnames(name="S0_10"))
    b0 = np.asarray(img.dataobj, np.float64)[..., 0]
    zooms = img.header.get_zooms()[:3]
    _, mask = median_otsu(b0, median_radius=2, numpass=1)
    got = D.b0_snr(b0[..., None], mask, np.array([0.0]), zooms=zooms)
    air = (ndi.distance_transform_edt(~mask, sampling=zooms) > 10) & (b0 > 0)
    ref = np.sqrt((4 - np.pi) / 2) * b0[mask].mean() / b0[air].std()
    assert got["b0_snr_method"] == "background"
    assert got["b0_snr"] == pytest.approx(ref, rel=1e-6)
    assert 5 < got["b0_snr"] < 200


def _small_64d():
    import nibabel as nib

    from tests.realdata import dipy_dwi

    f, fbval, _ = dipy_dwi("small_64D")
    return np.asarray(nib.load(str(f)).dataobj, np.float64), np.loadtxt(fbval)


def test_planted_slice_dropouts_in_real_dwi_are_found():
    data, bvals = _small_64d()
    mask = data[..., bvals < 50].mean(axis=-1) > 0  # the crop is all brain
    clean = D.slice_outliers(data, mask, bvals)
    assert clean["dwi_outlier"] == 0.0 and clean["n_checked"] == 64 * 10
    planted = {(5, 3), (20, 6), (20, 7), (41, 0), (63, 9)}  # (volume, slice)
    bad = data.copy()
    for vol, sl in planted:
        bad[:, :, sl, vol] *= 0.4  # 60 % signal loss in that slice
    res = D.slice_outliers(bad, mask, bvals)
    dw = res["dw_volumes"]
    found = {(int(dw[r]), int(c)) for r, c in zip(*np.nonzero(res["outlier"]))}
    assert found == planted
    assert res["outlier_volumes"].tolist() == [5, 20, 41, 63]
    assert res["dwi_outlier"] == pytest.approx(4 / 64)
    assert res["dwi_outlier_slices"] == pytest.approx(5 / 640)
    # a slice along another axis (slice-encoding i): only its own plane is checked
    bad_i = data.copy()
    bad_i[4, :, :, 30] *= 0.4
    res_i = D.slice_outliers(bad_i, mask, bvals, axis=0)
    assert {(int(res_i["dw_volumes"][r]), int(c)) for r, c in zip(*np.nonzero(res_i["outlier"]))} == {(30, 4)}


def test_motion_mm_closed_form():
    assert D.motion_mm([0.0, 1.0, 2.0], [0.5, 0.5, 1.0]) == pytest.approx(
        np.mean([0.5, 0.5 + 50 * np.pi / 180, 1.0 + 100 * np.pi / 180]))
    assert np.isnan(D.motion_mm([], []))
