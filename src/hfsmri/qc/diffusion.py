"""DWI image-quality metrics (pure numpy/scipy, no I/O).

Computed on the DWI as read (before denoising and motion correction: what the scanner gave), in
its native grid, with the diffusion stage's brain mask (dipy ``median_otsu`` on the mean b0).

* ``b0_snr`` (unitless): mean b0 signal in the brain mask / noise SD of one b0 image.
  With >= 2 b0 volumes the noise SD comes from the b0 repeats (multiple-image method, Dietrich
  et al. 2007; MRIQC's ``noise_b0`` uses the same b0 variance): sigma^2 = median over brain voxels of
  the voxel-wise variance across the b0 volumes (ddof 1), divided by the median of a chi^2_k / k
  variable (k = n_b0 - 1) so that it is unbiased for Gaussian noise; the median keeps edge voxels
  that move between b0 volumes from inflating it. With one b0 the noise SD comes from the air
  (Dietrich et al. 2007 eq. A.12, MRIQC ``snr_dietrich``): SNR = 0.655 * mean signal / SD of the
  non-zero background voxels farther than ``air_margin_mm`` from the brain mask (Rayleigh
  correction); NaN when the image has too little background (cropped or zero-filled).
* Slice dropout (:func:`slice_outliers`), as FSL eddy's ``--repol`` detection (Andersson et al.
  2016) without its Gaussian-process prediction: for every diffusion-weighted volume and slice
  (along the slice-encoding axis) the mean signal in the brain mask; within a shell (b rounded to
  100 s/mm^2, >= 3 volumes) each slice mean divided by the median of that slice over the shell's
  volumes, minus 1 (relative deviation r); r standardised over all the shell's slices with the
  median and 1.4826 MAD (robust z). A slice is an outlier when z < -4 (eddy's ``--ol_nstd``
  default; signal loss only) and it lost >= 10 % of its signal (r <= -0.1: a floor for
  noise-free data). Slices with fewer brain voxels than 10 % of the fullest slice (and < 10) are
  not checked. ``dwi_outlier``: fraction (0..1) of diffusion-weighted volumes with at least one
  outlier slice; ``dwi_outlier_slices``: fraction of the checked (volume, slice) pairs.
* ``dwi_motion`` (mm): mean over volumes of the displacement relative to the motion-correction
  reference (the mean b0) of a point 50 mm from the centre: |translation| + 50 mm x rotation angle
  (rad), from the stage's volume-to-b0 registrations; NaN when motion correction did not run.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .structural import DIETRICH_FACTOR

__all__ = ["b0_snr", "slice_outliers", "motion_mm", "SHELL_ROUND", "OUTLIER_Z", "OUTLIER_MIN_DROP"]

SHELL_ROUND = 100.0    # s/mm^2: b-values rounded to this form the shells
OUTLIER_Z = 4.0        # eddy --ol_nstd default
OUTLIER_MIN_DROP = 0.10  # relative signal loss a slice needs besides the z criterion
HEAD_RADIUS_MM = 50.0  # Power et al. 2012


def b0_snr(data, mask, bvals, b0_threshold: float = 50.0, zooms=(1.0, 1.0, 1.0),
           air_margin_mm: float = 10.0, min_air_voxels: int = 100) -> dict:
    """b0 SNR (module doc). Returns ``{"b0_snr", "b0_snr_method", "n_b0"}``; method is
    ``"b0 repeats"``, ``"background"`` or ``"n/a (...)"``."""
    from scipy.stats import chi2

    d = np.asarray(data)
    m = np.asarray(mask, bool)
    b0 = np.asarray(bvals, dtype=float) <= float(b0_threshold)
    n_b0 = int(b0.sum())
    if n_b0 == 0 or not m.any():
        return {"b0_snr": float("nan"), "b0_snr_method": "n/a (no b0 volume or empty mask)", "n_b0": n_b0}
    vols = d[..., b0].astype(np.float64)
    sig = float(vols[m].mean())
    if n_b0 >= 2:
        k = n_b0 - 1
        var = vols[m].var(axis=1, ddof=1)
        sigma2 = float(np.median(var)) / (chi2.median(k) / k)
        snr = sig / np.sqrt(sigma2) if sigma2 > 0 else float("nan")
        return {"b0_snr": float(snr), "b0_snr_method": "b0 repeats", "n_b0": n_b0}
    dist = ndi.distance_transform_edt(~m, sampling=np.asarray(zooms, float)[:3])
    air = (dist > air_margin_mm) & (vols[..., 0] > 0)
    if air.sum() < min_air_voxels:
        return {"b0_snr": float("nan"), "b0_snr_method": "n/a (one b0 and too little background)", "n_b0": n_b0}
    sd_air = float(vols[..., 0][air].std())
    snr = DIETRICH_FACTOR * sig / sd_air if sd_air > 0 else float("nan")
    return {"b0_snr": float(snr), "b0_snr_method": "background", "n_b0": n_b0}


def _shells(bvals, dw: np.ndarray) -> dict:
    b = np.round(np.asarray(bvals, float) / SHELL_ROUND) * SHELL_ROUND
    return {float(s): np.flatnonzero(dw & (b == s)) for s in np.unique(b[dw])}


def slice_outliers(data, mask, bvals, b0_threshold: float = 50.0, axis: int = 2, z: float = OUTLIER_Z,
                   min_drop: float = OUTLIER_MIN_DROP, min_voxels: int | None = None) -> dict:
    """Slice-wise signal-dropout detection on a 4D DWI (module doc).

    Returns a dict: ``z`` (n_dw, n_slices) robust z (NaN where not checked), ``outlier`` (same
    shape, bool), ``dw_volumes`` (indices of the diffusion-weighted volumes, rows of ``z``),
    ``outlier_volumes`` (indices into the 4D series), ``dwi_outlier`` (fraction of DW volumes with
    an outlier slice), ``dwi_outlier_slices`` (fraction of checked slices), ``n_checked``.
    """
    d = np.asarray(data)
    if d.ndim != 4:
        raise ValueError(f"DWI must be 4D, got shape {d.shape}")
    m = np.moveaxis(np.asarray(mask, bool), axis, 2)
    counts = m.sum(axis=(0, 1)).astype(float)
    thr = min_voxels if min_voxels is not None else max(10.0, 0.1 * counts.max())
    valid = counts >= thr
    bv = np.asarray(bvals, float)
    dw = bv > float(b0_threshold)
    dw_idx = np.flatnonzero(dw)
    n_sl = m.shape[2]
    zmat = np.full((dw_idx.size, n_sl), np.nan)
    means = np.full((n_sl, d.shape[3]), np.nan)
    if valid.any():
        dd = np.moveaxis(d, axis, 2)
        for s in np.flatnonzero(valid):
            means[s] = dd[:, :, s, :][m[:, :, s]].astype(np.float64).mean(axis=0)
    row_of = {v: i for i, v in enumerate(dw_idx)}
    rmat = np.full_like(zmat, np.nan)
    for _, vols in _shells(bv, dw).items():
        if vols.size < 3 or not valid.any():
            continue
        mm = means[valid][:, vols]                    # (valid slices, shell volumes)
        ref = np.median(mm, axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(ref > 0, mm / ref - 1.0, np.nan)
        fin = np.isfinite(r)
        if fin.sum() < 3:
            continue
        med = np.median(r[fin])
        sig = 1.4826 * np.median(np.abs(r[fin] - med))
        zz = (r - med) / sig if sig > 0 else np.where(np.isfinite(r), 0.0, np.nan)
        rows = [row_of[v] for v in vols]
        zmat[np.ix_(rows, np.flatnonzero(valid))] = zz.T
        rmat[np.ix_(rows, np.flatnonzero(valid))] = r.T
    with np.errstate(invalid="ignore"):
        out = (zmat < -z) & (rmat <= -min_drop)
    checked = np.isfinite(zmat)
    n_dw_checked = int(checked.any(axis=1).sum())
    bad_rows = out.any(axis=1)
    return {"z": zmat, "outlier": out, "dw_volumes": dw_idx, "outlier_volumes": dw_idx[bad_rows],
            "dwi_outlier": float(bad_rows.sum() / n_dw_checked) if n_dw_checked else float("nan"),
            "dwi_outlier_slices": float(out.sum() / checked.sum()) if checked.any() else float("nan"),
            "n_checked": int(checked.sum())}


def motion_mm(rotation_deg, translation_mm) -> float:
    """Mean over volumes of |translation| + 50 mm x rotation (rad) (module doc); NaN without data."""
    rot = np.asarray(rotation_deg, float)
    tr = np.asarray(translation_mm, float)
    if rot.size == 0:
        return float("nan")
    return float(np.mean(tr + HEAD_RADIUS_MM * np.deg2rad(rot)))
