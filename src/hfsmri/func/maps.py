"""Standardisation and smoothing of participant metric maps (DPABI order: standardise, then smooth).

* ``z`` map: ``(x - mean_mask(x)) / std_mask(x)`` with MATLAB's ``std`` (ddof = 1), as DPABI;
* ``m`` map: ``x / mean_mask(x)`` (DPABI "mReHo", "mALFF", ...);
* smoothing: isotropic Gaussian of FWHM in mm (default 4 mm), done inside the mask with
  normalisation by the smoothed mask so that values near the brain edge are not pulled to 0
  (``smooth(x * m) / smooth(m)``), then 0 outside the mask. (DPABI smooths with SPM without this
  normalisation; near the brain edge its values shrink towards 0, ours do not.)
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from hfsmri.errors import InputDataError

__all__ = ["standardize_map", "smooth_in_mask", "fwhm_to_sigma_vox"]


def standardize_map(map3d, mask3d, kind: str = "z") -> np.ndarray:
    """``kind="z"``: z-score within the mask (MATLAB std, ddof 1); ``kind="m"``: divide by the mask mean.

    Outside the mask the result is 0.
    """
    x = np.asarray(map3d, dtype=np.float64)
    m = np.asarray(mask3d).astype(bool)
    if x.shape != m.shape:
        raise InputDataError(f"map shape {x.shape} does not match mask shape {m.shape}")
    out = np.zeros_like(x)
    vals = x[m]
    if vals.size == 0:
        return out
    mu = vals.mean()
    if kind == "z":
        sd = vals.std(ddof=1) if vals.size > 1 else 0.0
        out[m] = (vals - mu) / sd if sd > 0 else 0.0
    elif kind == "m":
        out[m] = vals / mu if mu != 0 else 0.0
    else:
        raise InputDataError(f"standardisation must be 'z' or 'm', got {kind!r}")
    return out


def fwhm_to_sigma_vox(fwhm_mm: float, voxel_sizes) -> np.ndarray:
    """Gaussian sigma in voxels for a FWHM in mm: sigma = FWHM / sqrt(8 ln 2) / voxel size."""
    return float(fwhm_mm) / np.sqrt(8.0 * np.log(2.0)) / np.asarray(voxel_sizes, dtype=float)


def smooth_in_mask(map3d, mask3d, fwhm_mm: float, voxel_sizes) -> np.ndarray:
    """Gaussian smoothing of FWHM ``fwhm_mm`` restricted to the mask (see module doc)."""
    x = np.asarray(map3d, dtype=np.float64)
    m = np.asarray(mask3d).astype(bool)
    if fwhm_mm is None or fwhm_mm <= 0:
        return np.where(m, x, 0.0)
    sigma = fwhm_to_sigma_vox(fwhm_mm, voxel_sizes)
    num = ndimage.gaussian_filter(np.where(m, x, 0.0), sigma, mode="constant")
    den = ndimage.gaussian_filter(m.astype(np.float64), sigma, mode="constant")
    out = np.zeros_like(x)
    ok = m & (den > 1e-6)
    out[ok] = num[ok] / den[ok]
    return out
