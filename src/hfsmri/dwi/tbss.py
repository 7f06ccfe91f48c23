"""Tract-based spatial statistics (TBSS), written from the description in Smith et al. 2006,
*NeuroImage* 31:1487 ("Tract-based spatial statistics: voxelwise analysis of multi-subject
diffusion data"). No FSL code was read or copied.

Steps (all on FA maps already in a common space, here MNI152NLin2009aSym):

1. **Mean FA and mask** — voxel-wise mean over subjects; the analysis mask is where every subject
   has FA > 0 (as the paper: voxels inside all subjects' brains).
2. **Tract-perpendicular direction** at each mask voxel, quantised to one of the 13 directions of
   the 3×3×3 neighbourhood. If the FA-weighted centre of gravity (COG) of the 3×3×3 neighbourhood
   lies farther than ``cog_threshold`` voxels from the voxel centre, the voxel sits on the flank of
   a tract and the perpendicular is the direction to the COG. Otherwise the voxel is near the
   tract centre and the perpendicular is the direction d with the largest FA "ridge" curvature,
   ``(2·FA(c) − FA(c+d) − FA(c−d)) / |d|²`` (a finite-difference second derivative; the paper's
   search for the direction of maximum FA fall-off).
3. **Non-maximum suppression** — a voxel is on the skeleton when its mean FA is a maximum along
   its perpendicular: ``FA(c) ≥ FA(c+d)`` and ``FA(c) > FA(c−d)`` with d canonically oriented
   (first non-zero component positive), so a two-voxel plateau yields one skeleton voxel.
4. **Threshold** — skeleton voxels with mean FA ≥ ``threshold`` (0.2 by default) are kept.
5. **Distance map** — Euclidean distance (mm) of every mask voxel to the nearest skeleton voxel.
6. **Projection** — for every skeleton voxel the search walks from the voxel along ±d, one
   neighbourhood step at a time, while the walk stays inside the mask, the distance map keeps
   increasing (it has not crossed into another skeleton point's territory) and the distance from
   the start is ≤ ``max_search_mm``. Each subject's skeleton value is its maximum FA over the
   voxels visited (including the skeleton voxel itself); the winning voxel index is stored and the
   same indices are reused for MD/AD/RD ("TBSS non-FA").

Everything is vectorised over voxels; the candidate table of step 6 depends only on the mean FA
and is computed once, so projecting N subjects is N gathers and arg-maxes. Scans that did not
build the skeleton (the follow-up sessions of a longitudinal study) are projected onto it the same
way, each with its own FA search and FA indices (:func:`project_metrics`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from hfsmri.errors import InputDataError

# the 13 directions of the 3x3x3 neighbourhood, one of each antipodal pair, first nonzero > 0
DIRECTIONS = np.array([d for d in np.ndindex(3, 3, 3)], dtype=int) - 1
DIRECTIONS = np.array([d for d in DIRECTIONS if np.any(d) and d[np.flatnonzero(d)[0]] > 0])
assert DIRECTIONS.shape == (13, 3)
_UNIT = DIRECTIONS / np.linalg.norm(DIRECTIONS, axis=1, keepdims=True)


@dataclass
class Skeleton:
    """A TBSS skeleton and its projection table.

    Attributes
    ----------
    mean_fa : 3D float, mean FA over subjects
    mask : 3D bool, analysis mask (all subjects FA > 0)
    skeleton : 3D bool, thresholded skeleton
    directions : 3D int8, index into :data:`DIRECTIONS` of the perpendicular (−1 outside the mask)
    distance : 3D float, distance (mm) to the nearest skeleton voxel (0 on it, inf outside mask)
    candidates : (n_skel, 2K+1) int64 flat voxel indices searched for each skeleton voxel
        (column 0 is the skeleton voxel itself; −1 marks steps not taken)
    threshold : float
    """

    mean_fa: np.ndarray
    mask: np.ndarray
    skeleton: np.ndarray
    directions: np.ndarray
    distance: np.ndarray
    candidates: np.ndarray
    threshold: float

    @property
    def n_voxels(self) -> int:
        return int(self.skeleton.sum())

    @property
    def indices(self) -> np.ndarray:
        """Flat indices of skeleton voxels (C order), the order of every projected vector."""
        return np.flatnonzero(self.skeleton.ravel())


def mean_fa_and_mask(fa_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean FA (3D) and the mask where every subject's FA > 0, from (n_subjects, X, Y, Z)."""
    fa_maps = np.asarray(fa_maps, dtype=float)
    if fa_maps.ndim != 4:
        raise InputDataError(f"expected FA maps as (subjects, x, y, z), got shape {fa_maps.shape}")
    if not np.all(np.isfinite(fa_maps)):
        raise InputDataError("FA maps contain NaN or infinite values")
    mask = np.all(fa_maps > 0, axis=0)
    mean = np.where(mask, fa_maps.mean(axis=0), 0.0)
    return mean, mask


def _shift(a: np.ndarray, d) -> np.ndarray:
    """out[c] = a[c + d] for |d_i| <= 1; beyond the array edge the edge value is repeated (the
    volume border is not an FA cliff; the mask border is, since FA is 0 outside the mask)."""
    p = np.pad(a, 1, mode="edge")
    return p[tuple(slice(1 + k, 1 + k + a.shape[i]) for i, k in enumerate(d))]


def perpendicular_directions(mean_fa: np.ndarray, mask: np.ndarray, cog_threshold: float = 0.1) -> np.ndarray:
    """Index (0..12 into :data:`DIRECTIONS`) of the local tract-perpendicular direction per voxel
    (−1 outside ``mask``); see module doc step 2. ``cog_threshold`` in voxels."""
    fa = np.where(mask, mean_fa, 0.0).astype(float)
    offsets = np.array(list(np.ndindex(3, 3, 3))) - 1
    total = ndimage.correlate(fa, np.ones((3, 3, 3)), mode="nearest")
    cog = np.zeros(fa.shape + (3,))
    for ax in range(3):
        k = np.zeros((3, 3, 3))
        for o in offsets:
            k[tuple(o + 1)] = o[ax]
        cog[..., ax] = ndimage.correlate(fa, k, mode="nearest")
    cog /= np.where(total > 0, total, 1.0)[..., None]
    cog_len = np.linalg.norm(cog, axis=-1)
    dir_cog = np.argmax(np.abs(cog @ _UNIT.T), axis=-1)
    ridge = np.stack([(2 * fa - _shift(fa, d) - _shift(fa, -d)) / float(d @ d) for d in DIRECTIONS], axis=-1)
    dir_ridge = np.argmax(ridge, axis=-1)
    out = np.where(cog_len > cog_threshold, dir_cog, dir_ridge).astype(np.int8)
    out[~mask] = -1
    return out


def skeletonise(mean_fa: np.ndarray, mask: np.ndarray | None = None, *, threshold: float = 0.2,
                cog_threshold: float = 0.1, voxel_size=(1.0, 1.0, 1.0), max_search_mm: float = 10.0,
                smooth_sigma: float = 0.0) -> Skeleton:
    """Skeletonise a mean FA map and build the projection search table (module doc steps 2–6).

    Parameters
    ----------
    mean_fa : 3D array, mean FA (0..1)
    mask : 3D bool, analysis mask (default mean_fa > 0)
    threshold : float, skeleton voxels need mean FA ≥ threshold (Smith 2006 use 0.2)
    cog_threshold : float (voxels), see :func:`perpendicular_directions`
    voxel_size : mm per voxel along each axis (for the distance map and the search limit)
    max_search_mm : float, upper bound of the perpendicular search on each side
    smooth_sigma : float (voxels), optional Gaussian smoothing of the mean FA used only for the
        perpendicular directions (0 = none)
    """
    mean_fa = np.asarray(mean_fa, dtype=float)
    mask = (mean_fa > 0) if mask is None else np.asarray(mask, dtype=bool)
    if mean_fa.ndim != 3 or mask.shape != mean_fa.shape:
        raise InputDataError(f"mean FA must be 3D and match the mask, got {mean_fa.shape} / {mask.shape}")
    fa = np.where(mask, mean_fa, 0.0)
    fa_dir = ndimage.gaussian_filter(fa, smooth_sigma) * mask if smooth_sigma > 0 else fa
    dirs = perpendicular_directions(fa_dir, mask, cog_threshold)
    skel = np.zeros(fa.shape, dtype=bool)
    for k, d in enumerate(DIRECTIONS):
        sel = dirs == k
        if not sel.any():
            continue
        skel |= sel & (fa >= _shift(fa, d)) & (fa > _shift(fa, -d))
    skel &= mask & (fa >= threshold)
    vs = np.asarray(voxel_size, dtype=float)
    if skel.any():
        dist = ndimage.distance_transform_edt(~skel, sampling=vs)
    else:
        dist = np.full(fa.shape, np.inf)
    dist = np.where(mask, dist, np.inf)
    cand = _candidates(skel, dirs, mask, dist, vs, max_search_mm)
    return Skeleton(mean_fa=fa, mask=mask, skeleton=skel, directions=dirs, distance=dist,
                    candidates=cand, threshold=float(threshold))


def _candidates(skel, dirs, mask, dist, vs, max_search_mm) -> np.ndarray:
    shape = skel.shape
    sk = np.argwhere(skel)  # C order == np.flatnonzero(skel.ravel()) order
    n = sk.shape[0]
    step_mm = np.linalg.norm(DIRECTIONS * vs, axis=1)
    max_steps = int(np.ceil(max_search_mm / step_mm.min())) if n else 0
    out = np.full((n, 1 + 2 * max_steps), -1, dtype=np.int64)
    if n == 0:
        return out
    out[:, 0] = np.ravel_multi_index(sk.T, shape)
    d = DIRECTIONS[dirs[tuple(sk.T)]]
    dmm = step_mm[dirs[tuple(sk.T)]]
    col = 1
    for sign in (1, -1):
        alive = np.ones(n, dtype=bool)
        prev_dist = np.zeros(n)
        for k in range(1, max_steps + 1):
            pos = sk + sign * k * d
            inside = np.all((pos >= 0) & (pos < np.array(shape)), axis=1)
            alive &= inside & (k * dmm <= max_search_mm + 1e-9)
            idx = np.zeros(n, dtype=np.int64)
            idx[alive] = np.ravel_multi_index(pos[alive].T, shape)
            flat_mask = mask.ravel()[idx]
            flat_dist = dist.ravel()[idx]
            alive &= flat_mask & (flat_dist > prev_dist)
            out[alive, col] = idx[alive]
            prev_dist = np.where(alive, flat_dist, prev_dist)
            col += 1
    return out


def project(skeleton: Skeleton, fa_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project one subject's FA onto the skeleton.

    Returns ``(values (n_skel,), indices (n_skel,))``: the maximum FA over each skeleton voxel's
    search candidates and the flat voxel index where it was found (reuse with :func:`apply_indices`).
    """
    fa = np.asarray(fa_map, dtype=float)
    if fa.shape != skeleton.skeleton.shape:
        raise InputDataError(f"FA map shape {fa.shape} does not match the skeleton grid {skeleton.skeleton.shape}")
    cand = skeleton.candidates
    vals = np.where(cand >= 0, fa.ravel()[np.maximum(cand, 0)], -np.inf)
    best = np.argmax(vals, axis=1)
    rows = np.arange(cand.shape[0])
    return vals[rows, best], cand[rows, best]


def apply_indices(metric_map: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Values of another metric (MD/AD/RD) at the FA-projection indices of the same subject."""
    return np.asarray(metric_map, dtype=float).ravel()[indices]


def project_metrics(skeleton: Skeleton, fa_map: np.ndarray, other_maps: dict | None = None) -> tuple[dict, np.ndarray]:
    """Project one subject's scan (one session) onto an existing skeleton.

    FA is projected by its own perpendicular search (:func:`project`); every other metric is read
    at that scan's FA indices (:func:`apply_indices`, as FSL ``tbss_non_FA``). Used for the
    follow-up sessions of a longitudinal study, projected onto the baseline skeleton.

    Parameters
    ----------
    skeleton : the :class:`Skeleton` (e.g. built from the baseline mean FA)
    fa_map : 3D FA on the skeleton's grid
    other_maps : {"md": 3D, ...} on the same grid

    Returns
    -------
    ``(values, indices)``: ``values`` maps "fa" and each other metric to an (n_skel,) array in
    :attr:`Skeleton.indices` order; ``indices`` (n_skel,) are the flat voxel indices of the FA maxima.
    """
    fa_vals, idx = project(skeleton, fa_map)
    values = {"fa": fa_vals}
    for name, m in (other_maps or {}).items():
        m = np.asarray(m)
        if m.shape != skeleton.skeleton.shape:
            raise InputDataError(f"{name} map shape {m.shape} does not match the skeleton grid "
                                 f"{skeleton.skeleton.shape}")
        values[name] = apply_indices(m, idx)
    return values, idx


def to_volume(skeleton: Skeleton, values: np.ndarray) -> np.ndarray:
    """Scatter skeleton values (n_skel,) or (n_subjects, n_skel) back to 3D/4D volumes (x, y, z[, n])."""
    values = np.asarray(values, dtype=float)
    shape = skeleton.skeleton.shape
    if values.ndim == 1:
        out = np.zeros(int(np.prod(shape)))
        out[skeleton.indices] = values
        return out.reshape(shape)
    out = np.zeros((int(np.prod(shape)), values.shape[0]))
    out[skeleton.indices] = values.T
    return out.reshape(shape + (values.shape[0],))


@dataclass
class TbssResult:
    skeleton: Skeleton
    values: dict  # metric -> (n_subjects, n_skel)
    indices: np.ndarray  # (n_subjects, n_skel) flat projection indices from FA


def tbss(fa_maps: np.ndarray, other_maps: dict | None = None, *, threshold: float = 0.2,
         voxel_size=(1.0, 1.0, 1.0), max_search_mm: float = 10.0, cog_threshold: float = 0.1,
         smooth_sigma: float = 0.0) -> TbssResult:
    """Full TBSS on co-registered maps.

    Parameters
    ----------
    fa_maps : (n_subjects, X, Y, Z) FA in a common space
    other_maps : {"md": (n_subjects, X, Y, Z), ...} projected with the FA indices
    Other parameters as :func:`skeletonise`.

    Returns
    -------
    TbssResult with ``values["fa"]`` (and each other metric) of shape (n_subjects, n_skel).
    """
    mean, mask = mean_fa_and_mask(fa_maps)
    sk = skeletonise(mean, mask, threshold=threshold, voxel_size=voxel_size, max_search_mm=max_search_mm,
                     cog_threshold=cog_threshold, smooth_sigma=smooth_sigma)
    n = fa_maps.shape[0]
    fa_vals = np.empty((n, sk.n_voxels))
    idx = np.empty((n, sk.n_voxels), dtype=np.int64)
    for s in range(n):
        fa_vals[s], idx[s] = project(sk, fa_maps[s])
    values = {"fa": fa_vals}
    for name, maps in (other_maps or {}).items():
        maps = np.asarray(maps)
        if maps.shape != fa_maps.shape:
            raise InputDataError(f"{name} maps have shape {maps.shape}, FA maps {fa_maps.shape}")
        values[name] = np.stack([apply_indices(maps[s], idx[s]) for s in range(n)])
    return TbssResult(sk, values, idx)
