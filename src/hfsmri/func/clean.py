"""Nuisance regression + band-pass of BOLD time series, equal to ``nilearn.signal.clean`` but fast.

:func:`clean` reproduces, to floating-point precision, ::

    nilearn.signal.clean(ts2d, confounds=confounds, t_r=tr, detrend=detrend,
                         filter="butterworth", high_pass=band[0], low_pass=band[1],
                         standardize=None, standardize_confounds=True)

(nilearn 0.14; Butterworth order 5, ``scipy.signal.sosfiltfilt`` with odd padding of scipy's
default length). nilearn's steps, in its order, are

1. linear detrend (mean and linear trend removed by projection) of signals *and* confounds,
2. the same zero-phase Butterworth band-pass applied to signals *and* confounds (Lindquist et al.
   2019: keeps the filter and the regression orthogonal),
3. confounds z-scored (ddof = 1), pivoted QR, columns with ``|R_ii| <= 100 eps`` dropped, and the
   signals projected onto the orthogonal complement of the confounds,
4. no standardisation of the output (``standardize=None``).

Every step is linear in the signals and depends only on ``n_t``, ``tr``, ``band`` and the
confounds, so the whole chain is one ``(n_kept, n_t)`` matrix ``M``. We build ``M`` once by
running the chain on the identity matrix and apply it as a single BLAS product ``M @ ts2d``
(chunked over voxels). nilearn filters voxel by voxel (``butterworth(copy=False)`` loops over
columns), which is what makes it slow on whole-brain data.

Scrubbing (``sample_mask``) follows nilearn's documented design — censored volumes are replaced by
a cubic spline through the kept ones before detrending/filtering, then removed before the
confound regression — but interpolates *all* censored volumes: nilearn 0.14 indexes the censored
volumes as ``~sample_mask`` on an integer index array (a bitwise NOT), so it re-interpolates the
mirrored volumes ``-(i+1)`` instead and leaves some censored volumes untouched.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg
from scipy import signal as sp_signal
from scipy.interpolate import CubicSpline

from hfsmri.errors import InputDataError

__all__ = ["clean", "clean_operator", "butterworth_operator", "detrend_operator"]

_EPS32 = np.finfo(np.float32).eps


def detrend_operator(n_t: int, linear: bool = True) -> np.ndarray:
    """``(n_t, n_t)`` projection removing the mean (and linear trend) of a column time series."""
    d = np.eye(n_t) - 1.0 / n_t
    if linear and n_t > 1:
        r = np.arange(n_t, dtype=float)
        r -= r.mean()
        r /= np.sqrt((r ** 2).sum())
        d -= np.outer(r, r)
    return d


def _check_wn(freq: float, nyq: float) -> float:
    # nilearn.signal._check_wn: keep critical frequencies strictly inside (0, nyquist)
    if freq >= nyq:
        new = nyq - nyq * 10 * _EPS32
        warnings.warn(f"filter frequency {freq} Hz is at or above Nyquist ({nyq} Hz): lowered to {new}",
                      stacklevel=3)
        return new
    if freq < 0.0:
        return nyq * _EPS32
    return freq


def _sos(tr: float, band, order: int = 5):
    high_pass, low_pass = band
    if high_pass is None and low_pass is None:
        return None
    if high_pass is not None and low_pass is not None and high_pass >= low_pass:
        raise InputDataError(f"band-pass low edge {high_pass} Hz must be below the high edge {low_pass} Hz",
                             field="band")
    fs = 1.0 / tr
    nyq = 0.5 * fs
    crit = []
    if high_pass is not None:
        crit.append(_check_wn(float(high_pass), nyq))
        btype = "high"
    if low_pass is not None:
        crit.append(_check_wn(float(low_pass), nyq))
        btype = "low"
    if len(crit) == 2:
        if crit[0] == crit[1]:
            return None
        btype = "band"
        wn = crit
    else:
        wn = crit[0]
    return sp_signal.butter(N=order, Wn=wn, btype=btype, output="sos", fs=fs)


def butterworth_operator(n_t: int, tr: float, band, order: int = 5) -> np.ndarray:
    """``(n_t, n_t)`` matrix of nilearn's zero-phase Butterworth filter (sosfiltfilt, odd padding).

    ``band = (high_pass_hz, low_pass_hz)``; either may be None. Identity if both are None.
    """
    sos = _sos(tr, band, order)
    if sos is None:
        return np.eye(n_t)
    try:
        return sp_signal.sosfiltfilt(sos, np.eye(n_t), axis=0, padtype="odd")
    except ValueError as exc:  # too short for the filter's padding
        raise InputDataError(f"time series of {n_t} volumes is too short for the band-pass filter "
                             f"{band} Hz at TR {tr} s ({exc})") from None


def _to_index(sample_mask, n_t: int) -> np.ndarray:
    sm = np.asarray(sample_mask)
    if sm.dtype == bool:
        if sm.shape != (n_t,):
            raise InputDataError(f"boolean sample_mask must have {n_t} entries, got {sm.shape}",
                                 field="sample_mask")
        sm = np.flatnonzero(sm)
    sm = np.unique(sm.astype(np.int64))
    if sm.size == 0:
        raise InputDataError("sample_mask removes every volume", field="sample_mask")
    if sm[0] < 0 or sm[-1] >= n_t:
        raise InputDataError(f"sample_mask indices must be in [0, {n_t})", field="sample_mask")
    return sm


def _interp_operator(n_t: int, keep: np.ndarray, tr: float):
    """Cubic-spline fill-in of censored volumes as a matrix; returns (matrix, rows kept, new keep)."""
    t = np.arange(n_t) * tr
    eye = np.eye(n_t)
    cs = CubicSpline(t[keep], eye[keep], extrapolate=False)
    interp = cs(t)
    op = eye.copy()
    cens = np.setdiff1d(np.arange(n_t), keep)
    op[cens] = interp[cens]
    valid = ~np.isnan(op).any(axis=1)  # head/tail censored volumes cannot be interpolated: dropped
    rows = np.flatnonzero(valid)
    new_keep = np.searchsorted(rows, keep)
    return op[rows], rows, new_keep


def clean_operator(n_t: int, confounds, tr: float, band=(0.01, 0.08), detrend: bool = True,
                   sample_mask=None) -> np.ndarray:
    """The ``(n_kept, n_t)`` matrix ``M`` with ``clean(ts2d, ...) == M @ ts2d`` (see module doc)."""
    if not (tr and float(tr) > 0):
        raise InputDataError(f"repetition time must be positive, got {tr}", field="tr")
    tr = float(tr)
    band = (None, None) if band is None else tuple(band)
    if len(band) != 2:
        raise InputDataError(f"band must be (high_pass_hz, low_pass_hz), got {band}", field="band")
    conf = None
    if confounds is not None:
        conf = np.asarray(confounds, dtype=float)
        if conf.ndim == 1:
            conf = conf[:, None]
        if conf.ndim != 2 or conf.shape[0] != n_t:
            raise InputDataError(f"confounds must have {n_t} rows (one per volume), got shape {conf.shape}",
                                 field="confounds")
        if not np.all(np.isfinite(conf)):
            raise InputDataError("confounds contain NaN or infinite values", field="confounds")
        if conf.shape[1] == 0:
            conf = None

    sig = np.eye(n_t)
    keep = None
    filtering = _sos(tr, band) is not None
    if sample_mask is not None:
        keep = _to_index(sample_mask, n_t)
        if filtering:
            sig, rows, keep = _interp_operator(n_t, keep, tr)
            if conf is not None:
                conf = _interp_operator(n_t, _to_index(sample_mask, n_t), tr)[0] @ conf
        else:  # nilearn censors directly when there is no Butterworth filter
            sig = sig[keep]
            if conf is not None:
                conf = conf[keep]
            keep = None
    m = sig.shape[0]
    if detrend:
        dop = detrend_operator(m)
        sig = dop @ sig
        if conf is not None:
            conf = dop @ conf
    if filtering:
        fop = butterworth_operator(m, tr, band)
        sig = fop @ sig
        if conf is not None:
            conf = fop @ conf
        if keep is not None:
            sig = sig[keep]
            if conf is not None:
                conf = conf[keep]
    if conf is not None:
        conf = conf - conf.mean(axis=0)
        sd = conf.std(axis=0, ddof=1)
        sd[sd < np.finfo(np.float64).eps] = 1.0
        conf = conf / sd
        q, r, _ = linalg.qr(conf, mode="economic", pivoting=True)
        q = q[:, np.abs(np.diag(r)) > np.finfo(np.float64).eps * 100.0]
        sig = sig - q @ (q.T @ sig)
    return sig


def clean(ts2d, confounds, tr: float, band=(0.01, 0.08), detrend: bool = True, sample_mask=None,
          chunk_size: int = 8192) -> np.ndarray:
    """Detrend, band-pass and regress confounds out of BOLD time series (nilearn-equivalent).

    Parameters
    ----------
    ts2d : array (n_volumes, n_voxels)
        Time series, time along the first axis (nilearn convention).
    confounds : array (n_volumes, n_confounds) or None
        Nuisance regressors (e.g. Friston-24, WM, CSF, global). They are detrended and filtered like
        the signals, then z-scored; do not add an intercept (the mean is handled by detrending).
    tr : float
        Repetition time in seconds.
    band : (high_pass_hz, low_pass_hz) or None
        Pass band in Hz, e.g. ``(0.01, 0.08)``; ``None`` or ``(None, None)`` = no filtering,
        ``(0.01, None)`` = high-pass only. Order-5 Butterworth, zero phase (forward-backward).
    detrend : bool
        Remove mean and linear trend first (as nilearn ``detrend=True``).
    sample_mask : bool array (n_volumes,) or int indices, optional
        Volumes to keep (scrubbing). The output then has ``n_kept`` rows (see module doc).
    chunk_size : int
        Voxels per BLAS block (memory bound: ``8 * n_volumes * chunk_size`` bytes).

    Returns
    -------
    array (n_kept, n_voxels), float64 (float32 if the input was float32; computed in float64).
    """
    y = np.asarray(ts2d)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise InputDataError(f"time series must be 2D (n_volumes, n_voxels), got shape {y.shape}")
    n_t, n_v = y.shape
    op = clean_operator(n_t, confounds, tr, band, detrend, sample_mask)
    out_dtype = np.float32 if y.dtype == np.float32 else np.float64
    out = np.empty((op.shape[0], n_v), dtype=out_dtype)
    for s in range(0, n_v, max(1, int(chunk_size))):
        block = np.asarray(y[:, s:s + chunk_size], dtype=np.float64)
        out[:, s:s + chunk_size] = op @ block
    return out
