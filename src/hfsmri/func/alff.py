"""Amplitude of low-frequency fluctuations (ALFF) and fractional ALFF, DPABI's exact rules.

Following DPABI ``y_alff_falff.m`` (Zang et al. 2007; Zou et al. 2008), per in-mask voxel:

1. linear detrend (least-squares line, mean included, removed);
2. zero-pad to ``P = 2**nextpow2(n)`` (smallest power of two >= n);
3. amplitude spectrum ``A = 2 |FFT(x)| / n`` (divided by n, not P);
4. band bins, 1-based as in MATLAB: ``lo = ceil(low * P * TR + 1)`` (2 if low >= Nyquist),
   ``hi = fix(high * P * TR + 1)`` (``fix(P/2 + 1)`` if high >= Nyquist or high == 0);
5. ALFF = mean of A over bins lo..hi; fALFF = sum of A over lo..hi / sum of A over bins 2 .. P/2+1
   (every frequency above 0 up to Nyquist); non-finite fALFF (flat voxel) -> 0.

Input is the nuisance-regressed but *unfiltered* signal (DPABI). Units: ALFF in the units of the
data (e.g. BOLD a.u.), fALFF dimensionless. Voxels outside the mask are 0.
"""
from __future__ import annotations

import numpy as np

from hfsmri.errors import InputDataError

__all__ = ["alff_falff", "dpabi_band_bins", "alff_falff_2d"]


def _nextpow2(n: int) -> int:
    return int(np.ceil(np.log2(n))) if n > 1 else 0


def dpabi_band_bins(n_t: int, tr: float, band=(0.01, 0.08)) -> tuple[int, int, int]:
    """``(P, lo, hi)``: padded length and 1-based inclusive band bin indices (DPABI rules)."""
    low, high = float(band[0]), float(band[1])
    p = 2 ** _nextpow2(n_t)
    nyq = 0.5 / tr
    lo = 2 if low >= nyq else int(np.ceil(low * p * tr + 1))
    hi = int(np.fix(p / 2 + 1)) if (high >= nyq or high == 0) else int(np.fix(high * p * tr + 1))
    return p, lo, hi


def alff_falff_2d(ts2d: np.ndarray, tr: float, band=(0.01, 0.08), chunk_size: int = 8192):
    """ALFF and fALFF of each column of ``ts2d`` (n_t, n_series); see module doc."""
    y = np.asarray(ts2d, dtype=np.float64)
    n, m = y.shape
    p, lo, hi = dpabi_band_bins(n, tr, band)
    if hi < lo:
        raise InputDataError(f"band {band} Hz contains no frequency bin for {n} volumes at TR {tr} s",
                             field="band")
    t = np.arange(n, dtype=float)
    t -= t.mean()
    t /= np.sqrt((t ** 2).sum())
    alff = np.empty(m)
    falff = np.empty(m)
    for s in range(0, m, chunk_size):
        blk = y[:, s:s + chunk_size]
        blk = blk - blk.mean(axis=0)
        blk = blk - np.outer(t, t @ blk)
        amp = 2.0 * np.abs(np.fft.rfft(blk, n=p, axis=0)) / n  # rfft bins 0..P/2 = MATLAB 1..P/2+1
        band_amp = amp[lo - 1:hi]
        alff[s:s + chunk_size] = band_amp.mean(axis=0)
        total = amp[1:p // 2 + 1].sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = band_amp.sum(axis=0) / total
        f[~np.isfinite(f)] = 0.0
        falff[s:s + chunk_size] = f
    return alff, falff


def alff_falff(data4d, mask3d, tr: float, band=(0.01, 0.08)):
    """ALFF and fALFF maps (DPABI rules, see module doc).

    Parameters
    ----------
    data4d : array (X, Y, Z, T)
        Nuisance-regressed, unfiltered BOLD.
    mask3d : array (X, Y, Z)
        Brain mask (nonzero = in mask).
    tr : float
        Repetition time in seconds.
    band : (low_hz, high_hz)
        Default 0.01-0.08 Hz.

    Returns
    -------
    (alff, falff) : two float64 arrays (X, Y, Z), 0 outside the mask.
    """
    data = np.asarray(data4d)
    mask = np.asarray(mask3d)
    if data.ndim != 4:
        raise InputDataError(f"ALFF needs 4D data (X, Y, Z, T), got shape {data.shape}")
    if mask.shape != data.shape[:3]:
        raise InputDataError(f"mask shape {mask.shape} does not match data shape {data.shape[:3]}")
    if not (tr and float(tr) > 0):
        raise InputDataError(f"repetition time must be positive, got {tr}", field="tr")
    if data.shape[3] < 4:
        raise InputDataError(f"ALFF needs at least 4 volumes, got {data.shape[3]}")
    mask = mask.astype(bool)
    a3 = np.zeros(mask.shape)
    f3 = np.zeros(mask.shape)
    if mask.any():
        ts = np.asarray(data[mask], dtype=np.float64).T
        if not np.all(np.isfinite(ts)):
            raise InputDataError("BOLD data contain NaN or infinite values inside the mask")
        a, f = alff_falff_2d(ts, float(tr), band)
        a3[mask] = a
        f3[mask] = f
    return a3, f3
