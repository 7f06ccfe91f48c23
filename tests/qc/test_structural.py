"""T1w IQMs (hfsmri.qc.structural) against closed forms, statsmodels and the real Colin27 head."""
from __future__ import annotations

import numpy as np
import pytest

from hfsmri.qc import structural as S


def test_weighted_stats_match_statsmodels():
    sm = pytest.importorskip("statsmodels.stats.weightstats")
    from statsmodels.robust.scale import mad

    rng = np.random.default_rng(0)
    x = np.round(rng.normal(100, 15, 4000))  # integer intensities: many ties, as scanner data
    w = np.clip(rng.uniform(-0.3, 1.0, x.size), 0, 1)
    w[::7] = 0.5  # exact half weights make exact-boundary cases
    d = sm.DescrStatsW(x, weights=w)
    got = S.tissue_stats(x.reshape(40, 100), {"t": w.reshape(40, 100)})["t"]
    np.testing.assert_allclose(S.weighted_quantiles(x, w, [0.05, 0.5, 0.95]),
                               d.quantile([0.05, 0.5, 0.95], return_pandas=False))
    assert got["mean"] == pytest.approx(d.mean)
    assert got["stdv"] == pytest.approx(d.std)
    assert got["n"] == pytest.approx(w.sum())
    core = x[w > 0.5 * w.max()]
    assert got["mad"] == pytest.approx(mad(core, center=got["median"]))
    # SAS rule on a hand example: values 1..4 with weights 1: p=0.5 -> pW = 2 = s_2 -> (2 + 3) / 2
    assert S.weighted_quantiles([4, 1, 3, 2], [1, 1, 1, 1], [0.5, 0.2, 1.0]).tolist() == [2.5, 1.0, 4.0]


def test_efc_fber_closed_forms():
    n, k = 1000, 37
    img = np.zeros(n)
    img[:k] = 5.0
    # k equal non-zero voxels of N: EFC = (sqrt(k) ln sqrt(k)) / (sqrt(N) ln sqrt(N))
    assert S.efc(img) == pytest.approx(np.sqrt(k) * np.log(np.sqrt(k)) / (np.sqrt(n) * np.log(np.sqrt(n))))
    assert S.efc(np.full(n, 3.0)) == pytest.approx(1.0)
    one = np.zeros(n)
    one[5] = 9.0
    assert abs(S.efc(one)) < 1e-12
    head = np.zeros((10, 10, 10), bool)
    head[2:8, 2:8, 2:8] = True
    x = np.where(head, 300.0, 4.0)
    assert S.fber(x, head) == pytest.approx(300.0 ** 2 / 4.0 ** 2)
    assert S.fber(np.where(head, 300.0, 0.0), head) == -1.0  # skull-stripped: MRIQC's -1


def test_hat_side_is_the_plane_in_world_space():
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-40, -60, -50]
    above = S.hat_side((40, 60, 50), aff, S.HAT_LANDMARKS_MNI)
    z = aff[2, 3] + 2.0 * np.arange(50)
    np.testing.assert_array_equal(above[3, 7, :], z > -14)
    # the same head stored with the voxel axes reversed along z: the same world voxels are selected
    flip = aff.copy()
    flip[2, 2], flip[2, 3] = -2.0, aff[2, 3] + 2.0 * 49
    np.testing.assert_array_equal(S.hat_side((40, 60, 50), flip, S.HAT_LANDMARKS_MNI)[3, 7, ::-1], z > -14)


def _phantom(rng, sigma=20.0, levels=(300.0, 600.0, 1000.0, 400.0), vox=2.0):
    """Head phantom on an MNI-centred 2 mm grid: CSF / GM / WM ellipsoid shells, scalp, Rician noise."""
    shape = (80, 96, 84)
    aff = np.diag([vox, vox, vox, 1.0])
    aff[:3, 3] = [-79, -95, -83]
    i, j, k = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    x, y, z = aff[0, 3] + vox * i, aff[1, 3] + vox * j, aff[2, 3] + vox * k

    def ell(a, b, c):
        return (x / a) ** 2 + (y / b) ** 2 + ((z - 5) / c) ** 2 <= 1

    wm, gm, csf, brain, head = ell(40, 55, 40), ell(52, 67, 52), ell(58, 73, 58), ell(58, 73, 58), ell(70, 86, 72)
    truth = np.zeros(shape)
    truth[head] = levels[3]
    truth[csf] = levels[0]
    truth[gm & ~wm] = levels[1]
    truth[wm] = levels[2]
    noisy = np.abs(truth + sigma * rng.standard_normal(shape) + 1j * sigma * rng.standard_normal(shape))
    pv = {"csf": (csf & ~gm).astype(float), "gm": (gm & ~wm).astype(float), "wm": wm.astype(float)}
    return noisy.astype(np.float32), brain, pv, aff


def test_t1w_iqms_on_a_phantom_with_known_noise():
    rng = np.random.default_rng(3)
    sigma, (c, g, w, _) = 20.0, (300.0, 600.0, 1000.0, 400.0)
    img, brain, pv, aff = _phantom(rng, sigma)
    field = np.linspace(0.8, 1.2, img.shape[0])[:, None, None] * np.ones(img.shape)  # planted bias
    iq = S.t1w_iqms(img, img * field, brain, pv, (2.0, 2.0, 2.0), aff, S.HAT_LANDMARKS_MNI)
    # closed forms: tissue SNR = mu / sigma; air SD = Rayleigh SD = sigma sqrt((4 - pi) / 2)
    for name, mu in (("csf", c), ("gm", g), ("wm", w)):
        assert iq[f"snr_{name}"] == pytest.approx(mu / sigma, rel=0.03)
    assert iq["snr_total"] == pytest.approx(np.mean([c, g, w]) / sigma, rel=0.03)
    sig_air = sigma * np.sqrt((4 - np.pi) / 2)
    assert iq["sigma_air"] == pytest.approx(sig_air, rel=0.05)
    assert iq["cnr"] == pytest.approx((w - g) / np.sqrt(sig_air ** 2 + 2 * sigma ** 2), rel=0.03)
    assert iq["cjv"] == pytest.approx(2 * sigma / (w - g), rel=0.05)
    assert 0.0 < iq["efc"] < 1.0
    assert iq["fber"] > 50  # head energy >> Rayleigh background energy
    # the air mask lies above the glabella-inion plane (z > -14 mm) and outside the head
    assert iq["n_air"] > 1000
    f = field[brain]
    f = f / np.median(f)
    assert iq["inu_range"] == pytest.approx(np.percentile(f, 95) - np.percentile(f, 5), rel=1e-6)


def test_t1w_iqms_on_a_zero_background_head():
    """Skull-stripped / zero-filled background (as Colin27): no air noise, MRIQC's conventions."""
    img, brain, pv, aff = _phantom(np.random.default_rng(6))
    i, j, k = np.meshgrid(*(np.arange(s) for s in img.shape), indexing="ij")
    x, y, z = aff[0, 3] + 2 * i, aff[1, 3] + 2 * j, aff[2, 3] + 2 * k
    img[(x / 70) ** 2 + (y / 86) ** 2 + ((z - 5) / 72) ** 2 > 1] = 0.0  # the Rayleigh background zeroed
    iq = S.t1w_iqms(img, None, brain, pv, (2.0, 2.0, 2.0), aff, S.HAT_LANDMARKS_MNI)
    assert iq["sigma_air"] == 0.0 and iq["fber"] == -1.0 and np.isnan(iq["inu_range"])
    assert iq["cnr"] == pytest.approx(400 / np.sqrt(2 * 20.0 ** 2), rel=0.05)


def test_head_and_air_masks_on_the_phantom():
    rng = np.random.default_rng(4)
    img, brain, pv, aff = _phantom(rng)
    from scipy import ndimage as ndi

    head = S.head_mask(img, brain, (2.0, 2.0, 2.0))
    i, j, k = np.meshgrid(*(np.arange(s) for s in img.shape), indexing="ij")
    x, y, z = aff[0, 3] + 2 * i, aff[1, 3] + 2 * j, aff[2, 3] + 2 * k
    true_head = (x / 70) ** 2 + (y / 86) ** 2 + ((z - 5) / 72) ** 2 <= 1  # planted; touches the top slices
    # the whole head, and no more than the edge blur of the gradient (sigma 4 mm) around it
    assert not (true_head & ~head).any()
    assert not (head & ~ndi.binary_dilation(true_head, iterations=4)).any()
    air, art = S.air_mask(img, head, S.hat_side(img.shape, aff, S.HAT_LANDMARKS_MNI))
    assert not (air & head).any() and not air[..., z[0, 0] <= -14].any()
    assert art.sum() == 0  # pure Rayleigh noise has no artefact voxels


def test_colin27_snr_cnr_cjv_match_an_independent_computation():
    """Real head (Colin27, 1 mm) with its distributed brain mask; tissue probabilities from a
    3-class Gaussian mixture of the brain intensities. The module's tissue statistics and formulas
    are checked against statsmodels' weighted statistics and MRIQC's formulas written out here."""
    import nibabel as nib
    from sklearn.mixture import GaussianMixture
    from statsmodels.robust.scale import mad
    from statsmodels.stats.weightstats import DescrStatsW

    from tests.realdata import colin27_brain, colin27_head

    img = np.asarray(nib.load(str(colin27_head())).dataobj, np.float32)
    brain = np.asarray(nib.load(str(colin27_brain())).dataobj) > 0
    box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(brain))  # the brain's bounding box
    img, brain = img[box], brain[box]
    x = img[brain]
    gmm = GaussianMixture(3, random_state=0).fit(x[::40, None])
    post = gmm.predict_proba(x[:, None])
    order = np.argsort(gmm.means_.ravel())
    pv = {}
    for name, comp in zip(S.TISSUES, order):
        pv[name] = np.zeros(img.shape)
        pv[name][brain] = post[:, comp]
    st = S.tissue_stats(img, pv)
    ref = {}
    for name in S.TISSUES:
        d = DescrStatsW(x.astype(float), weights=pv[name][brain])
        med = d.quantile([0.5], return_pandas=False)[0]
        core = x[pv[name][brain] > 0.5 * pv[name][brain].max()]
        ref[name] = {"median": med, "stdv": d.std, "n": d.sum_weights, "mad": mad(core, center=med)}
        assert st[name]["median"] == pytest.approx(med)
        assert st[name]["stdv"] == pytest.approx(d.std, rel=1e-9)
        assert st[name]["mad"] == pytest.approx(ref[name]["mad"], rel=1e-9)
    snr_wm = ref["wm"]["median"] / (ref["wm"]["stdv"] * np.sqrt(ref["wm"]["n"] / (ref["wm"]["n"] - 1)))
    assert S.snr(st["wm"]["median"], st["wm"]["stdv"], st["wm"]["n"]) == pytest.approx(snr_wm)
    # Colin27's background is zero (no air noise): CNR = |WM - GM| / sqrt(SD_GM^2 + SD_WM^2)
    dwg = abs(ref["wm"]["median"] - ref["gm"]["median"])
    cnr = S.cnr(st["wm"]["median"], st["gm"]["median"], 0.0, st["wm"]["stdv"], st["gm"]["stdv"])
    assert cnr == pytest.approx(dwg / np.hypot(ref["wm"]["stdv"], ref["gm"]["stdv"]))
    cjv = S.cjv(st["wm"]["median"], st["gm"]["median"], st["wm"]["mad"], st["gm"]["mad"])
    assert cjv == pytest.approx((ref["wm"]["mad"] + ref["gm"]["mad"]) / dwg)
    # a good T1w (27 averaged scans): WM well separated from GM
    assert 1.5 < cnr < 6 and 0.2 < cjv < 0.8 and 15 < snr_wm < 60
