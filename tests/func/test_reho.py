"""ReHo kernel vs a slow per-voxel reference (scipy rankdata) and closed forms."""
import numpy as np
import pytest
from scipy.stats import rankdata

from hfsmri.errors import InputDataError
from hfsmri.func.reho import neighbour_offsets, rank_timeseries, reho


def _reference(data, mask, k):
    out = np.zeros(mask.shape)
    n = data.shape[3]
    for i, j, l in np.argwhere(mask):
        rows = []
        for a in (-1, 0, 1):
            for b in (-1, 0, 1):
                for c in (-1, 0, 1):
                    d = abs(a) + abs(b) + abs(c)
                    if (k == 7 and d > 1) or (k == 19 and d > 2):
                        continue
                    p = (i + a, j + b, l + c)
                    if all(0 <= p[q] < mask.shape[q] for q in range(3)) and mask[p]:
                        rows.append(rankdata(data[p]))  # mean ranks for ties
        r = np.sum(rows, axis=0)
        kk = len(rows)
        out[i, j, l] = (np.sum(r ** 2) - n * r.mean() ** 2) / (kk ** 2 * (n ** 3 - n) / 12.0)
    return out


@pytest.mark.parametrize("k", [7, 19, 27])
def test_reho_exact_with_ties_and_holes(k):
    rng = np.random.default_rng(k)
    data = rng.integers(0, 6, size=(7, 6, 5, 25)).astype(float)  # many ties
    mask = rng.random((7, 6, 5)) > 0.3  # holes
    ours = reho(data, mask, k)
    np.testing.assert_allclose(ours, _reference(data, mask, k), rtol=0, atol=1e-12)
    assert np.all(ours[~mask] == 0)


def test_reho_identical_series_is_one_and_scipy_ranks():
    rng = np.random.default_rng(0)
    ts = rng.standard_normal(30)
    data = np.broadcast_to(ts, (4, 4, 4, 30)).copy()
    mask = np.ones((4, 4, 4), bool)
    np.testing.assert_allclose(reho(data, mask), 1.0, atol=1e-12)
    x = rng.integers(0, 4, size=(5, 17)).astype(float)
    np.testing.assert_array_equal(rank_timeseries(x), rankdata(x, axis=1))


def test_reho_independent_noise_near_expectation():
    """E[W] for K independent raters over n items is 1/K (ties absent): check the mean."""
    rng = np.random.default_rng(5)
    data = rng.standard_normal((12, 12, 12, 60))
    mask = np.ones((12, 12, 12), bool)
    w = reho(data, mask, 27)[1:-1, 1:-1, 1:-1]
    assert abs(w.mean() - 1 / 27) < 0.002


def test_reho_bad_input():
    assert len(neighbour_offsets(19)) == 19
    with pytest.raises(InputDataError):
        reho(np.zeros((3, 3, 3, 5)), np.ones((3, 3, 3)), neighborhood=9)
    with pytest.raises(InputDataError, match="shape"):
        reho(np.zeros((3, 3, 3, 5)), np.ones((3, 3, 4)))


def test_reho_threads_give_identical_result():
    rng = np.random.default_rng(3)
    data = rng.integers(0, 8, size=(26, 26, 26, 12)).astype(np.float32)
    mask = rng.random((26, 26, 26)) > 0.1  # > 8192 voxels: several chunks
    np.testing.assert_array_equal(reho(data, mask, 27, n_jobs=2), reho(data, mask, 27))
