"""ALFF/fALFF vs a direct numpy FFT reference written from DPABI's rules, and a sine of known amplitude."""
import math

import numpy as np
import pytest
from scipy import signal as sps

from hfsmri.func.alff import alff_falff, dpabi_band_bins


def _reference(ts, tr, low, high):
    n = len(ts)
    p = 2 ** math.ceil(math.log2(n))
    x = sps.detrend(ts, type="linear")
    amp = 2 * np.abs(np.fft.fft(np.concatenate([x, np.zeros(p - n)]))) / n
    lo = math.ceil(low * p * tr + 1)
    hi = math.trunc(high * p * tr + 1)
    band = amp[lo - 1:hi]  # MATLAB lo:hi, 1-based inclusive
    return band.mean(), band.sum() / amp[1:p // 2 + 1].sum()


def test_alff_matches_direct_fft_reference():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4, 3, 3, 230)).cumsum(axis=3) + 500
    mask = rng.random((4, 3, 3)) > 0.2
    a, f = alff_falff(data, mask, 2.0, (0.01, 0.08))
    for idx in np.argwhere(mask):
        ra, rf = _reference(data[tuple(idx)], 2.0, 0.01, 0.08)
        assert a[tuple(idx)] == pytest.approx(ra, rel=1e-10)
        assert f[tuple(idx)] == pytest.approx(rf, rel=1e-10)
    assert np.all(a[~mask] == 0) and np.all(f[~mask] == 0)


def test_alff_sine_amplitude_and_bins():
    """A cosine on an exact bin with n = P has amplitude A in that bin and ~0 elsewhere.

    It is centred so that it is even about the middle of the run: orthogonal to the linear trend,
    so detrending leaves it unchanged."""
    tr, n = 2.0, 256
    p, lo, hi = dpabi_band_bins(n, tr, (0.01, 0.08))
    assert (p, lo, hi) == (256, math.ceil(0.01 * 256 * 2 + 1), math.trunc(0.08 * 256 * 2 + 1))
    k = 20  # bin k+1 (1-based) inside lo..hi, frequency k / (P TR)
    t = np.arange(n)
    ts = 3.0 * np.cos(2 * np.pi * k * (t - (n - 1) / 2) / n) + 100 + 0.5 * t
    a, f = alff_falff(ts[None, None, None, :], np.ones((1, 1, 1)), tr)
    assert a[0, 0, 0] == pytest.approx(3.0 / (hi - lo + 1), rel=1e-6)
    assert f[0, 0, 0] == pytest.approx(1.0, abs=1e-6)


def test_flat_voxel_falff_zero():
    data = np.full((2, 1, 1, 64), 7.0)
    a, f = alff_falff(data, np.ones((2, 1, 1)), 2.0)
    assert np.all(a == 0) and np.all(f == 0)
