"""Seed-based functional connectivity kernels (pure numpy, no I/O).

* Seed time course: mean of the (cleaned) BOLD signal over the seed's in-brain voxels.
* Map: Pearson correlation of every in-mask voxel's time course with the seed time course,
  converted to Fisher z = arctanh(r). r is clipped to ``[-R_MAX, R_MAX]`` with
  ``R_MAX = 1 - 1e-7`` (|z| <= 8.4) so a voxel of the seed correlating perfectly with itself
  gives a finite z. Voxels with zero variance get r = 0. Outside the mask the map is 0.
"""
from __future__ import annotations

import numpy as np

from hfsmri.errors import InputDataError

R_MAX = 1.0 - 1e-7


def fisher_z(r, r_max: float = R_MAX) -> np.ndarray:
    """Fisher z-transform ``arctanh(r)`` after clipping r to ``[-r_max, r_max]`` (dimensionless)."""
    return np.arctanh(np.clip(np.asarray(r, dtype=float), -r_max, r_max))


def _standardise(x: np.ndarray) -> np.ndarray:
    """Columns of ``x`` (time x series) centred and scaled to unit norm; constant columns -> 0."""
    xc = x - x.mean(axis=0, keepdims=True)
    norm = np.sqrt((xc * xc).sum(axis=0, keepdims=True))
    return np.divide(xc, norm, out=np.zeros_like(xc), where=norm > 1e-12 * np.maximum(1.0, np.abs(x).max(axis=0, keepdims=True)))


def correlate(ts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Pearson r between the columns of ``ts`` (T x S) and ``targets`` (T x V) -> (S, V)."""
    a = _standardise(np.asarray(ts, dtype=np.float64))
    b = _standardise(np.asarray(targets, dtype=np.float64))
    return np.clip(a.T @ b, -1.0, 1.0)


def seed_timeseries(data: np.ndarray, seed_mask: np.ndarray, brain_mask: np.ndarray | None = None) -> np.ndarray:
    """Mean time course (T,) of ``data`` (4D X x Y x Z x T) over ``seed_mask`` ∩ ``brain_mask``."""
    data = np.asarray(data)
    m = np.asarray(seed_mask, dtype=bool)
    if brain_mask is not None:
        m = m & np.asarray(brain_mask, dtype=bool)
    if data.ndim != 4 or data.shape[:3] != m.shape:
        raise InputDataError(f"BOLD shape {data.shape} does not match seed mask shape {m.shape}")
    if not m.any():
        raise InputDataError("seed has no in-brain voxel")
    return np.asarray(data[m], dtype=np.float64).mean(axis=0)


def seed_fc_maps(data: np.ndarray, brain_mask: np.ndarray, seed_masks: dict) -> dict[str, np.ndarray]:
    """Fisher-z seed connectivity maps.

    Parameters
    ----------
    data : (X, Y, Z, T) cleaned BOLD (any units; correlation is scale-free).
    brain_mask : (X, Y, Z) boolean; maps are computed inside it and are 0 outside.
    seed_masks : name -> (X, Y, Z) boolean seed mask (restricted to the brain mask here).

    Returns
    -------
    dict name -> (X, Y, Z) float32 Fisher z map.
    """
    data = np.asarray(data)
    mask = np.asarray(brain_mask, dtype=bool)
    if data.ndim != 4 or data.shape[:3] != mask.shape:
        raise InputDataError(f"BOLD shape {data.shape} does not match brain mask shape {mask.shape}")
    if data.shape[3] < 3:
        raise InputDataError(f"BOLD has {data.shape[3]} volumes; need at least 3 for a correlation")
    vox = np.asarray(data[mask], dtype=np.float64).T  # T x V
    names = list(seed_masks)
    seeds = np.column_stack([seed_timeseries(data, seed_masks[n], mask) for n in names])
    r = correlate(seeds, vox)
    out = {}
    for i, n in enumerate(names):
        m = np.zeros(mask.shape, dtype=np.float32)
        m[mask] = fisher_z(r[i])
        out[n] = m
    return out


def roi_mean(zmap: np.ndarray, roi_mask: np.ndarray) -> float:
    """Mean of a (Fisher z) map over an ROI (NaN for an empty ROI)."""
    m = np.asarray(roi_mask, dtype=bool)
    return float(np.asarray(zmap)[m].mean()) if m.any() else float("nan")
