"""clean() against nilearn.signal.clean with the documented equivalent options."""
import warnings

import numpy as np
import pytest
from nilearn.signal import clean as nl_clean
from scipy.interpolate import CubicSpline

from hfsmri.errors import InputDataError
from hfsmri.func.clean import clean


def _data(n=120, v=300, k=8, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 800 + 40 * rng.standard_normal((n, v)) + 0.2 * t[:, None] + 30 * np.sin(2 * np.pi * 0.05 * 2 * t)[:, None]
    c = rng.standard_normal((n, k)) + np.linspace(0, 3, n)[:, None]
    y += c @ rng.standard_normal((k, v)) * 10
    return y, c


@pytest.mark.parametrize("detrend", [True, False])
@pytest.mark.parametrize("band", [(0.01, 0.08), (None, 0.1), (0.01, None), None])
def test_clean_matches_nilearn(detrend, band):
    y, c = _data()
    hp, lp = (None, None) if band is None else band
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = nl_clean(y, confounds=c, t_r=2.0, detrend=detrend, standardize=None,
                       standardize_confounds=True, filter="butterworth" if band else False,
                       high_pass=hp, low_pass=lp)
    ours = clean(y, c, 2.0, band, detrend=detrend)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_clean_no_confounds_and_float32():
    y, _ = _data(v=50)
    ref = nl_clean(y, t_r=1.5, detrend=True, standardize=None, high_pass=0.01, low_pass=0.1)
    np.testing.assert_allclose(clean(y, None, 1.5, (0.01, 0.1)), ref, atol=1e-6)
    out32 = clean(y.astype(np.float32), None, 1.5, (0.01, 0.1))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, ref, atol=1e-3)


def test_clean_scrubbing_interpolates_every_censored_volume():
    """Reference: fill censored volumes with scipy's cubic spline, then nilearn censors after filtering."""
    y, c = _data(n=100, v=40, seed=3)
    keep = np.ones(100, bool)
    keep[[0, 30, 31, 32, 60, 99]] = False
    t = np.arange(100) * 2.0
    idx = np.flatnonzero(keep)
    yi, ci = y.copy(), c.copy()
    yi[~keep] = CubicSpline(t[idx], y[idx], extrapolate=False)(t)[~keep]
    ci[~keep] = CubicSpline(t[idx], c[idx], extrapolate=False)(t)[~keep]
    sl = slice(1, 99)  # head/tail censored volumes cannot be interpolated: dropped
    ref = nl_clean(yi[sl], confounds=ci[sl], t_r=2.0, standardize=None, high_pass=0.01, low_pass=0.08,
                   sample_mask=keep[sl])
    ours = clean(y, c, 2.0, (0.01, 0.08), sample_mask=keep)
    assert ours.shape == (keep.sum(), 40)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_clean_removes_confound_exactly():
    """Closed form: a signal that is exactly a confound is removed completely (no filtering)."""
    rng = np.random.default_rng(1)
    c = rng.standard_normal((80, 2))
    y = 3 * c[:, :1] - 2 * c[:, 1:] + 5
    out = clean(y, c, 2.0, None)
    np.testing.assert_allclose(out, 0, atol=1e-10)


def test_clean_bad_input():
    y, c = _data(n=50, v=3)
    with pytest.raises(InputDataError, match="rows"):
        clean(y, c[:40], 2.0)
    with pytest.raises(InputDataError, match="below"):
        clean(y, c, 2.0, (0.1, 0.05))
    with pytest.raises(InputDataError, match="too short"):
        clean(y[:10], None, 2.0, (0.01, 0.08))
