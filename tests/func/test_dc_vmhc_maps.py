"""Degree centrality vs brute-force correlations; VMHC on mirror-symmetric data; map helpers."""
import numpy as np
import pytest
from scipy import ndimage

from hfsmri.func.dc import degree_centrality
from hfsmri.func.maps import smooth_in_mask, standardize_map
from hfsmri.func.vmhc import vmhc


def test_dc_matches_brute_force():
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((3, 50))
    data = np.einsum("xyzk,kt->xyzt", rng.standard_normal((5, 4, 3, 3)), latent) + rng.standard_normal((5, 4, 3, 50))
    mask = rng.random((5, 4, 3)) > 0.25
    dcb, dcw = degree_centrality(data, mask, threshold=0.25, chunk_size=7)
    ts = data[mask]
    r = np.corrcoef(ts)
    np.fill_diagonal(r, 0)
    np.testing.assert_array_equal(dcb[mask], (r > 0.25).sum(1))
    # edge weights come from float32 products (decisions near the threshold in float64)
    np.testing.assert_allclose(dcw[mask], np.where(r > 0.25, r, 0).sum(1), rtol=1e-6, atol=1e-6)
    assert np.all(dcb[~mask] == 0)


def test_dc_edge_decisions_near_threshold_are_float64_exact():
    # correlations within float32 rounding of the threshold: the binarised degree must be the float64 one
    rng = np.random.default_rng(5)
    n_t = 40
    base = rng.standard_normal(n_t)
    base = (base - base.mean()) / np.linalg.norm(base - base.mean())
    ortho = rng.standard_normal((60, n_t))
    ortho -= ortho.mean(axis=1, keepdims=True)
    ortho -= np.outer(ortho @ base, base)
    ortho /= np.linalg.norm(ortho, axis=1, keepdims=True)
    target = 0.25 + rng.uniform(-3e-8, 3e-8, size=60)  # r with the base series
    ts = np.vstack([base, target[:, None] * base + np.sqrt(1 - target[:, None] ** 2) * ortho])
    from hfsmri.func.dc import degree_centrality_2d

    dcb, _ = degree_centrality_2d(ts, threshold=0.25, chunk_size=16)
    x = ts - ts.mean(axis=1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    r = x @ x.T
    np.fill_diagonal(r, 0)
    np.testing.assert_array_equal(dcb, (r > 0.25).sum(1))


def test_vmhc_symmetric_brain_is_one_and_matches_corrcoef():
    rng = np.random.default_rng(1)
    half = rng.standard_normal((3, 4, 2, 40))
    data = np.concatenate([half, rng.standard_normal((1, 4, 2, 40)), half[::-1]], axis=0)  # x mirror
    mask = np.ones(data.shape[:3], bool)
    np.testing.assert_allclose(vmhc(data, mask), 1.0, atol=1e-12)
    noisy = data + 0.8 * rng.standard_normal(data.shape)
    mask[0, 0, 0] = False  # its mirror (6, 0, 0) must drop out too
    r = vmhc(noisy, mask)
    assert r[6, 0, 0] == 0 and r[0, 0, 0] == 0
    assert r[1, 2, 1] == pytest.approx(np.corrcoef(noisy[1, 2, 1], noisy[5, 2, 1])[0, 1], abs=1e-12)
    z = vmhc(noisy, mask, fisher=True)
    assert z[1, 2, 1] == pytest.approx(np.arctanh(r[1, 2, 1]), abs=1e-12)


def test_standardize_and_smooth():
    rng = np.random.default_rng(2)
    x = rng.random((6, 6, 6))
    m = rng.random((6, 6, 6)) > 0.3
    z = standardize_map(x, m, "z")
    assert z[m].mean() == pytest.approx(0, abs=1e-12) and z[m].std(ddof=1) == pytest.approx(1)
    mm = standardize_map(x, m, "m")
    assert mm[m].mean() == pytest.approx(1)
    # constant map inside the mask stays constant after mask-normalised smoothing
    s = smooth_in_mask(np.where(m, 2.5, 0), m, 4.0, (3, 3, 3))
    np.testing.assert_allclose(s[m], 2.5)
    # full mask, interior: equals scipy gaussian filter with sigma = FWHM / 2.3548 / voxel
    full = np.ones((15, 15, 15), bool)
    y = rng.random((15, 15, 15))
    ref = ndimage.gaussian_filter(y, 4.0 / np.sqrt(8 * np.log(2)) / 2.0, mode="constant")
    den = ndimage.gaussian_filter(np.ones_like(y), 4.0 / np.sqrt(8 * np.log(2)) / 2.0, mode="constant")
    np.testing.assert_allclose(smooth_in_mask(y, full, 4.0, (2, 2, 2)), ref / den, atol=1e-12)
