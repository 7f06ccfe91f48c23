"""Voxel-based morphometry kernels: Jacobian modulation and Gaussian smoothing (pure numpy).

Conventions
-----------
* ``gm_mni``: GM probability (0..1) resampled from native space onto the MNI grid.
* ``jacobian``: determinant of the MNI -> native point mapping (native volume per MNI volume,
  affine and non-linear parts together; :func:`hfsmri.spatial.registration.jacobian_determinant`).
  Modulated GM = ``gm_mni * jacobian`` ("preserve amount", SPM's modulated images): the sum of
  modulated GM x MNI voxel volume equals the native GM volume, so each voxel holds GM volume
  (ml per MNI voxel, reported as probability-equivalent).
* Smoothing kernels are given as FWHM in mm; sigma = FWHM / (2 sqrt(2 ln 2)) per voxel axis.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def modulate(gm_mni: np.ndarray, jacobian: np.ndarray) -> np.ndarray:
    """Jacobian-modulated GM (``gm_mni * jacobian``); negative/non-finite Jacobians count as 0."""
    gm = np.asarray(gm_mni, dtype=np.float64)
    jac = np.asarray(jacobian, dtype=np.float64)
    if gm.shape != jac.shape:
        raise ValueError(f"GM map {gm.shape} and Jacobian {jac.shape} differ in shape")
    jac = np.where(np.isfinite(jac) & (jac > 0), jac, 0.0)
    return (np.clip(gm, 0, None) * jac).astype(np.float32)


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))


def smooth(data: np.ndarray, affine: np.ndarray, fwhm_mm: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Gaussian smoothing with a kernel of ``fwhm_mm`` (isotropic, in mm) on the grid of ``affine``.

    Same kernel as nilearn's ``smooth_img`` (sigma per axis = FWHM/2.3548/voxel size, truncated at
    4 sigma, ``mode='constant'``). With ``mask``, values outside the mask are set to 0 after
    smoothing (the data themselves are not renormalised).
    """
    data = np.asarray(data, dtype=np.float64)
    if fwhm_mm is None or fwhm_mm <= 0:
        out = data.copy()
    else:
        sigma = fwhm_mm * FWHM_TO_SIGMA / voxel_sizes(affine)
        out = ndi.gaussian_filter(data, sigma=sigma, mode="constant", cval=0.0, truncate=4.0)
    if mask is not None:
        out = out * (np.asarray(mask) > 0)
    return out.astype(np.float32)


def masked_average_warp(values_mni: np.ndarray, support_mni: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Normalised interpolation of a map defined only on a support (e.g. thickness on GM):
    ``values_mni`` = warp(value * support), ``support_mni`` = warp(support); returns the ratio where
    the warped support >= ``threshold``, 0 elsewhere."""
    v = np.asarray(values_mni, dtype=np.float64)
    s = np.asarray(support_mni, dtype=np.float64)
    out = np.zeros_like(v)
    ok = s >= threshold
    out[ok] = v[ok] / s[ok]
    return out.astype(np.float32)
