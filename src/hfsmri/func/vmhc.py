"""Voxel-mirrored homotopic connectivity (VMHC; Zuo et al. 2010).

VMHC of a voxel is the Pearson correlation over time between the voxel and its mirror voxel in
the other hemisphere, usually Fisher z-transformed. It needs data in a *symmetric* space where
the mirror of a voxel is a voxel: hfsmri works on the MNI grids of :mod:`hfsmri.spatial.templates`,
which are built from nilearn's bundled ICBM152 2009 *symmetric* template on grids whose x axis is
symmetric about x = 0, so the mirror of voxel index i along x is index ``nx - 1 - i`` (an array
reversal, no resampling). The participant stage registers to that template (or takes fMRIPrep's
MNI152NLin2009cAsym output, whose brain is within a voxel of symmetric at 3 mm) and checks the
grid symmetry before calling :func:`vmhc`.

Conventions: a voxel counts only if it *and* its mirror are in the mask; on the mid-sagittal
plane the "mirror" is the voxel itself (r = 1) — the participant stage sets those to 0.
"""
from __future__ import annotations

import numpy as np

from hfsmri.errors import InputDataError

__all__ = ["vmhc", "fisher_z", "symmetric_mask"]


def fisher_z(r, r_max: float = 1.0 - 1e-7) -> np.ndarray:
    """Fisher z = arctanh(r), with |r| clipped to ``r_max`` so that r = +-1 stays finite."""
    r = np.clip(np.asarray(r, dtype=np.float64), -r_max, r_max)
    return np.arctanh(r)


def symmetric_mask(mask3d, lr_axis: int = 0) -> np.ndarray:
    """Voxels in the mask whose mirror (array reversal along ``lr_axis``) is also in the mask."""
    m = np.asarray(mask3d).astype(bool)
    return m & np.flip(m, axis=lr_axis)


def vmhc(data4d, mask3d, lr_axis: int = 0, fisher: bool = False) -> np.ndarray:
    """Correlation of each voxel with its mirror voxel (see module doc).

    Parameters
    ----------
    data4d : array (X, Y, Z, T)
        Nuisance-regressed, band-passed BOLD on a grid that is left-right symmetric along
        ``lr_axis`` (mirror voxel of index i is index ``n - 1 - i``).
    mask3d : array (X, Y, Z)
        Brain mask; symmetrised internally (voxel and mirror both in the mask).
    lr_axis : int
        Array axis running left-right (0 for RAS/LAS-oriented MNI grids).
    fisher : bool
        Return Fisher z (arctanh, |r| clipped at 1 - 1e-7) instead of r.

    Returns
    -------
    array (X, Y, Z) float64: r (or z) inside the symmetric mask, 0 elsewhere; flat voxels 0.
    """
    data = np.asarray(data4d)
    mask = np.asarray(mask3d)
    if data.ndim != 4:
        raise InputDataError(f"VMHC needs 4D data (X, Y, Z, T), got shape {data.shape}")
    if mask.shape != data.shape[:3]:
        raise InputDataError(f"mask shape {mask.shape} does not match data shape {data.shape[:3]}")
    if lr_axis not in (0, 1, 2):
        raise InputDataError(f"lr_axis must be 0, 1 or 2, got {lr_axis}")
    sym = symmetric_mask(mask, lr_axis)
    out = np.zeros(mask.shape)
    if not sym.any():
        return out
    a = np.asarray(data[sym], dtype=np.float64)
    b = np.asarray(np.flip(data, axis=lr_axis)[sym], dtype=np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise InputDataError("BOLD data contain NaN or infinite values inside the mask")
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    den = np.sqrt((a ** 2).sum(axis=1) * (b ** 2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (a * b).sum(axis=1) / den
    r[~np.isfinite(r) | (den <= 0)] = 0.0
    r = np.clip(r, -1.0, 1.0)
    out[sym] = fisher_z(r) if fisher else r
    return out
