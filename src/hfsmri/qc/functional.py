"""BOLD image-quality metrics and the carpet-plot matrix (pure numpy, no I/O).

Time series are (n_volumes, n_voxels) arrays of the brain-mask voxels of the realigned BOLD (the
functional stage's series before nuisance regression; hfsmri resamples it once to the MNI grid).
Definitions follow MRIQC (``mriqc/qc/functional.py``; Esteban et al. 2017) and the nipype
functions it calls, with the detrending of the functional stage:

* ``tsnr``: median over the brain mask of the voxel-wise temporal SNR = temporal mean / temporal
  SD (ddof 0) after removing a linear trend (mean kept), as nipype's ``TSNR(regress_poly=1)``;
  the functional stage detrends linearly (``clean(..., detrend=True)``). MRIQC's default ``TSNR()``
  does not detrend: on series with drift its value is lower. Higher is better.
* ``dvars_std``: mean over frames 2..n of the standardised DVARS (Nichols 2013, nipype
  ``compute_dvars`` as MRIQC calls it): voxel series scaled so that the in-mask median is 1000,
  DVARS_t = RMS over voxels of x_t - x_{t-1}, divided by its expectation under stationarity,
  mean_voxels(sqrt(2 (1 - AR1)) * IQR / 1.349), with AR1 the Yule-Walker lag-1 coefficient of
  each demeaned series and the IQR of the scaled series (percentiles with "lower" interpolation,
  as FSL). Voxels with a robust SD <= 1e-7 are dropped (nipype ``variance_tol``). About 1 for
  clean data; higher is worse.
* ``mean_fd``: mean of Power's framewise displacement (mm; translations + 50 mm x rotations, FD
  of the functional stage, :func:`hfsmri.func.confounds.framewise_displacement`) over the n - 1
  frame-to-frame displacements (MRIQC ``fd_mean``; the first volume has no predecessor).
* ``scrubbed``: fraction (0..1) of volumes with FD above the stage's scrubbing threshold
  (``preprocessing.func.fd_scrub_threshold``, mm): the volumes the stage removes when
  ``preprocessing.func.scrubbing`` is on (reported whether or not it is on).
* ``gcor``: global correlation (Saad et al. 2013, AFNI ``@compute_gcor`` as in MRIQC) of the
  linearly detrended series without global-signal regression: the squared norm of the mean of
  the unit-norm voxel series = the mean correlation over all voxel pairs (self-pairs included).
  The carpet plot's scalar summary: large when the carpet shows global (vertical) bands.

Carpet (:func:`carpet_matrix`): each voxel series linearly detrended and z-scored (ddof 0), rows
grouped by tissue label in the given order and evenly subsampled to at most ``max_rows``, as
fMRIPrep's / nilearn's ``plot_carpet`` (no global-signal regression).
"""
from __future__ import annotations

import numpy as np

__all__ = ["detrend", "tsnr_map", "dvars", "gcor", "fd_summary", "carpet_matrix", "bold_iqms"]


def _design(n: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    return np.column_stack([np.ones(n), t - t.mean()])


def detrend(ts, keep_mean: bool = False) -> np.ndarray:
    """Residuals of (n, v) series after least-squares removal of a constant and a linear trend;
    with ``keep_mean`` the temporal mean is added back."""
    y = np.asarray(ts, dtype=np.float64)
    x = _design(y.shape[0])
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    res = y - x @ beta
    if keep_mean:
        res += beta[0]
    return res


def tsnr_map(ts, residuals=None) -> np.ndarray:
    """Voxel-wise tSNR (v,) of (n, v) series: mean / SD (ddof 0) of the linearly detrended series
    (mean kept); 0 where the SD is 0 (see module doc). ``residuals``: :func:`detrend` of ``ts`` if
    already computed."""
    y = np.asarray(ts, dtype=np.float64)
    mean = y.mean(axis=0)
    sd = (detrend(y) if residuals is None else residuals).std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, mean / sd, 0.0)


def dvars(ts, intensity_normalization: float = 1000.0, variance_tol: float = 1e-7) -> dict:
    """Standardised and plain DVARS of (n, v) series (nipype ``compute_dvars``; module doc).

    Returns ``{"std": (n-1,), "nstd": (n-1,)}``: standardised DVARS (unitless) and DVARS in the
    scaled units (median 1000, so 10 = 1 % of the median BOLD signal). Computed in float32 with
    float64 sums (the voxel series are copied once).
    """
    y = np.asarray(ts, dtype=np.float32)
    n = y.shape[0]
    if n < 3:
        raise ValueError("DVARS needs at least 3 volumes")
    med = float(np.median(y))
    y = y * np.float32(intensity_normalization / med) if intensity_normalization and med != 0 else y.copy()
    q = np.percentile(y, [25, 75], axis=0, method="lower")
    sd = (q[1] - q[0]).astype(np.float64) / 1.349
    keep = sd > variance_tol  # nipype remove_zerovariance (default on in ComputeDVARS)
    if not keep.all():
        y, sd = y[:, keep], sd[keep]
    if y.shape[1] == 0:
        nan = np.full(n - 1, np.nan)
        return {"std": nan, "nstd": nan}
    mean = y.mean(axis=0, dtype=np.float64)
    r0 = np.einsum("tv,tv->v", y, y, dtype=np.float64) - n * mean ** 2
    r1 = np.einsum("tv,tv->v", y[1:], y[:-1], dtype=np.float64) \
        - mean * (y[1:].sum(axis=0, dtype=np.float64) + y[:-1].sum(axis=0, dtype=np.float64)) + (n - 1) * mean ** 2
    ar1 = np.divide(r1, r0, out=np.zeros_like(r0), where=r0 > 0)  # Yule-Walker AR(1), biased autocovariances
    diff_sdhat = np.sqrt(np.clip(2.0 * (1.0 - ar1), 0.0, None)) * sd
    d = np.diff(y, axis=0)
    nstd = np.sqrt(np.einsum("tv,tv->t", d, d, dtype=np.float64) / d.shape[1])
    return {"std": nstd / diff_sdhat.mean(), "nstd": nstd}


def gcor(ts, residuals=None) -> float:
    """Global correlation of (n, v) series (module doc): ||mean of unit-norm detrended series||^2."""
    r = detrend(ts) if residuals is None else residuals
    nrm = np.linalg.norm(r, axis=0)
    ok = nrm > 0
    if not ok.any():
        return float("nan")
    u = r[:, ok] / nrm[ok]
    g = u.mean(axis=1)
    return float(g @ g)


def fd_summary(fd, threshold_mm: float | None) -> dict:
    """``mean_fd`` (mm, over the n - 1 displacements) and ``scrubbed`` (fraction of the n volumes
    with FD > ``threshold_mm``; NaN without a threshold) from Power FD (n,) with FD_0 = 0."""
    f = np.nan_to_num(np.asarray(fd, dtype=np.float64))
    mean_fd = float(f[1:].mean()) if f.size > 1 else 0.0
    scrubbed = float((f > float(threshold_mm)).mean()) if threshold_mm is not None and f.size else float("nan")
    return {"mean_fd": mean_fd, "max_fd": float(f.max()) if f.size else 0.0, "scrubbed": scrubbed}


def carpet_matrix(ts, labels, order, max_rows: int = 600, residuals=None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the carpet plot: (rows, n) z-scored detrended series and the (rows,) label of each.

    ``labels`` (v,) gives each voxel's tissue label; rows appear label by label in ``order``
    (labels not in ``order`` are left out), each label keeping its voxels in their given order and
    subsampled evenly (every k-th voxel, the same k for all labels) to at most ``max_rows`` rows.
    """
    labels = np.asarray(labels)
    idx = [np.flatnonzero(labels == lab) for lab in order]
    total = sum(len(i) for i in idx)
    step = max(1, int(np.ceil(total / max(1, max_rows))))
    rows = np.concatenate([i[::step] for i in idx]) if total else np.zeros(0, int)
    y = (detrend(ts) if residuals is None else residuals)[:, rows]
    sd = y.std(axis=0)
    z = np.divide(y, sd, out=np.zeros_like(y), where=sd > 0)
    return z.T, labels[rows]


def bold_iqms(ts, fd, fd_threshold_mm: float | None, residuals=None) -> dict:
    """``tsnr``, ``dvars_std``, ``gcor``, ``mean_fd``, ``max_fd``, ``scrubbed`` of (n, v) in-mask
    series and their FD (module doc), plus the per-frame arrays ``dvars_std_t`` (n,; 0 for the
    first volume) and ``tsnr_voxels`` (v,) for the figures. ``residuals``: :func:`detrend` of
    ``ts`` if already computed."""
    y = np.asarray(ts, dtype=np.float64)
    res = detrend(y) if residuals is None else residuals
    tv = tsnr_map(y, res)
    dv = dvars(y)
    out = {"tsnr": float(np.median(tv)) if tv.size else float("nan"),
           "dvars_std": float(np.nanmean(dv["std"])) if dv["std"].size else float("nan"),
           "gcor": gcor(y, res)}
    out.update(fd_summary(fd, fd_threshold_mm))
    out["dvars_std_t"] = np.concatenate([[0.0], dv["std"]])
    out["tsnr_voxels"] = tv
    return out
