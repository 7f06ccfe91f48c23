"""TFCE against the definition (per-threshold scipy labelling) and against nilearn."""
import numpy as np
import pytest
from scipy import ndimage

from hfsmri.stats.tfce import cluster_max, label_above, mask_neighbors, tfce, thresholds


def naive_tfce(stat, mask, E=0.5, H=2.0, connectivity=6, dh=None):
    """Definition: sum over thresholds h <= max of extent(h)**E * h**H (no dh factor)."""
    rank = {6: 1, 18: 2, 26: 3}[connectivity]
    st = ndimage.generate_binary_structure(3, rank)
    out = np.zeros(stat.shape)
    for h in thresholds(stat[mask].max(), dh):
        lab, _ = ndimage.label((stat >= h) & mask, st)
        size = np.bincount(lab.ravel())
        size[0] = 0
        out += np.where(lab > 0, size[lab].astype(float) ** E * h ** H, 0.0)
    return out


def _map(seed, shape=(14, 15, 12), sigma=1.3):
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    x = 4 * x / x.std()
    mask = np.ones(shape, bool)
    mask[:2] = False
    mask[:, -3:, :4] = False
    return x, mask


@pytest.mark.parametrize("E,H,conn", [(0.5, 2.0, 6), (1.0, 2.0, 26), (0.66, 1.5, 18)])
def test_tfce_equals_definition(E, H, conn):
    x, mask = _map(1)
    ours = tfce(x, mask, h=H, e=E, connectivity=conn)
    ref = naive_tfce(x, mask, E, H, conn)
    assert ref.max() > 0
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9 * ref.max())
    assert np.all(ours[~mask] == 0)


def test_tfce_given_dh_and_negative_tail():
    x, mask = _map(2)
    ref = naive_tfce(-x, mask, dh=0.0731)
    ours = tfce(-x, mask, dh=0.0731)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9 * ref.max())


def test_tfce_matches_nilearn():
    from nilearn.mass_univariate._utils import calculate_tfce

    x, mask = _map(3)
    x = np.where(mask, x, 0.0)
    st = ndimage.generate_binary_structure(3, 1)
    nl = calculate_tfce(x[..., None], st, E=0.5, H=2, two_sided_test=False)[..., 0]
    ours = tfce(x, mask)
    np.testing.assert_allclose(ours, nl, rtol=1e-10, atol=1e-9)
    # nilearn's two-sided map: same thresholds (from max|x|) on both signs
    nl2 = calculate_tfce(x[..., None], st, two_sided_test=True)[..., 0]
    dh = np.abs(x).max() / 100
    pos = naive_tfce(x, mask, dh=dh)
    neg = naive_tfce(-x, mask, dh=dh)
    np.testing.assert_allclose(pos - neg, nl2, rtol=1e-9, atol=1e-6)


def test_tfce_closed_form_single_cluster():
    # a 2x1x1 block of value 1 and one voxel of value 2: thresholds 0.02..2
    stat = np.zeros((5, 5, 5))
    stat[2, 2, 2] = 2.0
    stat[2, 2, 3] = 1.0
    ours = tfce(stat, np.ones_like(stat, bool))
    h = np.arange(1, 101) * 0.02
    h[-1] = 2.0
    low = h[h <= 1.0]
    high = h[h > 1.0]
    peak = np.sum(np.sqrt(2) * low ** 2) + np.sum(high ** 2)
    side = np.sum(np.sqrt(2) * low ** 2)
    assert ours[2, 2, 2] == pytest.approx(peak, rel=1e-12)
    assert ours[2, 2, 3] == pytest.approx(side, rel=1e-12)
    assert np.count_nonzero(ours) == 2


def test_all_negative_map_gives_zeros():
    x, mask = _map(4)
    assert np.all(tfce(-np.abs(x) - 1, mask) == 0)


def test_cluster_kernels_match_scipy():
    x, mask = _map(5)
    nbr = mask_neighbors(mask, 6)
    vals = np.ascontiguousarray(x[mask])
    labels, n = label_above(vals, nbr, 1.5)
    lab3 = np.zeros(x.shape, int)
    lab3[mask] = labels
    ref, n_ref = ndimage.label((x > 1.5) & mask, ndimage.generate_binary_structure(3, 1))
    assert n == n_ref
    # same partition
    pairs = {(a, b) for a, b in zip(lab3[ref > 0], ref[ref > 0])}
    assert len(pairs) == n_ref
    sizes = np.bincount(ref.ravel())[1:]
    mass = ndimage.sum(x - 1.5, ref, index=np.arange(1, n_ref + 1))
    s, m = cluster_max(vals, nbr, 1.5)
    assert s == sizes.max()
    assert m == pytest.approx(mass.max(), rel=1e-12)


def test_mask_neighbors_counts():
    mask = np.ones((3, 3, 3), bool)
    for conn in (6, 18, 26):
        nbr = mask_neighbors(mask, conn)
        centre = 13  # (1,1,1) in C order
        assert (nbr[centre] >= 0).sum() == conn
        assert (nbr[0] >= 0).sum() == {6: 3, 18: 6, 26: 7}[conn]
