"""Diffusion gradient tables: reading, validation, normalisation, shells and QC numbers.

Conventions
-----------
* b-values in s/mm², b-vectors as unit vectors in the FSL / BIDS convention (image voxel axes,
  with the x axis flipped when the image affine has a positive determinant — we do not touch that
  convention, we only carry the vectors through).
* Files may hold b-vectors as 3×N (FSL/BIDS) or N×3 (dipy's bundled data); a 3×3 table is taken
  as 3×N (BIDS).
* Volumes with ``b <= b0_threshold`` (default 50 s/mm², dipy's default) are b0 volumes; their
  vectors are set to zero (NaN or zero rows are allowed there). A NaN or zero-norm vector on a
  diffusion-weighted volume is an error naming the file and the rows (0-based volume indices).
* Non-unit vectors of diffusion-weighted volumes are normalised; the largest deviation of the
  norm from 1 is kept in :attr:`GradientTable.max_norm_deviation` for QC (a scanner that encodes
  lower b-values by shorter vectors shows up there).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hfsmri.errors import InputDataError

B0_THRESHOLD = 50.0
DEFAULT_MAX_B = 1500.0


def _read_table(path: Path) -> np.ndarray:
    try:
        rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
        arr = np.array([[float(v) for v in row] for row in rows], dtype=float)
    except FileNotFoundError:
        raise InputDataError("file not found", path=path) from None
    except ValueError as exc:
        raise InputDataError(f"not a numeric table ({exc})", path=path) from None
    return arr


def read_bvals(path) -> np.ndarray:
    """Read a .bval file (one row or one column of numbers) → 1D float array (s/mm²)."""
    arr = _read_table(Path(path))
    if arr.ndim != 2 or min(arr.shape) != 1:
        raise InputDataError(f"expected one row or one column of b-values, got shape {arr.shape}", path=path)
    bvals = arr.ravel()
    if not np.all(np.isfinite(bvals)):
        bad = np.flatnonzero(~np.isfinite(bvals)).tolist()
        raise InputDataError(f"non-finite b-values at volumes {bad}", path=path)
    if np.any(bvals < 0):
        raise InputDataError(f"negative b-values at volumes {np.flatnonzero(bvals < 0).tolist()}", path=path)
    return bvals


def read_bvecs(path, n_volumes: int | None = None) -> np.ndarray:
    """Read a .bvec file in 3×N or N×3 layout → (N, 3) float array (not yet validated)."""
    try:
        arr = _read_table(Path(path))
    except InputDataError:
        raise
    if arr.ndim != 2 or 3 not in arr.shape:
        raise InputDataError(f"expected a 3×N or N×3 table of b-vectors, got shape {arr.shape}", path=path)
    if arr.shape[0] == 3 and (n_volumes is None or arr.shape[1] == n_volumes or arr.shape[1] != 3):
        return arr.T.copy()
    return arr.copy()


@dataclass(frozen=True)
class GradientTable:
    """A validated gradient table.

    Attributes
    ----------
    bvals : (N,) float, s/mm²
    bvecs : (N, 3) float, unit vectors (zero rows for b0 volumes)
    b0_threshold : float, s/mm²
    max_norm_deviation : float, largest | ||g|| - 1 | over diffusion-weighted volumes before normalising
    source : str, where the table came from (for messages)
    """

    bvals: np.ndarray
    bvecs: np.ndarray
    b0_threshold: float = B0_THRESHOLD
    max_norm_deviation: float = 0.0
    source: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_volumes(self) -> int:
        return int(self.bvals.shape[0])

    @property
    def b0s_mask(self) -> np.ndarray:
        return self.bvals <= self.b0_threshold

    @property
    def n_b0(self) -> int:
        return int(self.b0s_mask.sum())

    def shells(self, tol: float = 100.0) -> list[tuple[float, int]]:
        """Diffusion-weighted shells as ``[(mean b rounded to 10 s/mm², n volumes), ...]``.

        b-values are sorted and split where consecutive values differ by more than ``tol``.
        b0 volumes are not a shell (see :attr:`n_b0`).
        """
        b = np.sort(self.bvals[~self.b0s_mask])
        if b.size == 0:
            return []
        splits = np.flatnonzero(np.diff(b) > tol) + 1
        return [(float(np.round(g.mean(), -1)), int(g.size)) for g in np.split(b, splits)]

    def n_unique_directions(self, angle_deg: float = 1.0, volumes=None) -> int:
        """Number of distinct diffusion directions (antipodal pairs count once; directions closer
        than ``angle_deg`` are the same), over diffusion-weighted volumes (or ``volumes``)."""
        idx = np.flatnonzero(~self.b0s_mask) if volumes is None else np.asarray(volumes)
        idx = idx[~self.b0s_mask[idx]]
        cos_t = np.cos(np.deg2rad(angle_deg))
        reps: list[np.ndarray] = []
        for v in self.bvecs[idx]:
            if not reps or np.max(np.abs(np.asarray(reps) @ v)) < cos_t:
                reps.append(v)
        return len(reps)

    def select(self, max_b: float | None = DEFAULT_MAX_B) -> np.ndarray:
        """Indices of volumes with ``b <= max_b`` (all volumes when ``max_b`` is None)."""
        if max_b is None:
            return np.arange(self.n_volumes)
        return np.flatnonzero(self.bvals <= max_b)

    def subset(self, volumes) -> "GradientTable":
        volumes = np.asarray(volumes)
        return GradientTable(self.bvals[volumes].copy(), self.bvecs[volumes].copy(), self.b0_threshold,
                             self.max_norm_deviation, self.source)

    def qc(self, max_b: float | None = DEFAULT_MAX_B) -> dict:
        """JSON-serialisable summary: shells, b0 count, unique directions, volumes used for the fit."""
        used = self.select(max_b)
        return {
            "n_volumes": self.n_volumes,
            "n_b0": self.n_b0,
            "shells": [{"bval": b, "n": n} for b, n in self.shells()],
            "n_unique_directions": self.n_unique_directions(),
            "fit_max_bval": None if max_b is None else float(max_b),
            "fit_volumes": used.tolist(),
            "n_unique_directions_fit": self.n_unique_directions(volumes=used),
            "b0_threshold": float(self.b0_threshold),
            "max_bvec_norm_deviation": float(self.max_norm_deviation),
        }


def gradient_table(bvals, bvecs, *, n_volumes: int | None = None, b0_threshold: float = B0_THRESHOLD,
                   bval_path=None, bvec_path=None) -> GradientTable:
    """Validate and normalise a gradient table.

    Parameters
    ----------
    bvals : (N,) array, s/mm²
    bvecs : (N, 3) or (3, N) array
    n_volumes : int, optional
        Number of volumes of the image; a mismatch is an :class:`InputDataError`.
    b0_threshold : float
        b-values at or below it are b0 volumes.
    bval_path, bvec_path : path, optional
        Used only to name the files in error messages.

    Raises
    ------
    InputDataError
        Count mismatch, non-finite or zero-norm vectors on diffusion-weighted volumes, bad shapes.
    """
    bvals = np.asarray(bvals, dtype=float).ravel()
    bvecs = np.asarray(bvecs, dtype=float)
    if bvecs.ndim != 2 or 3 not in bvecs.shape:
        raise InputDataError(f"b-vectors must be 3×N or N×3, got shape {bvecs.shape}", path=bvec_path)
    if bvecs.shape[1] != 3 or (bvecs.shape[0] == 3 and bvecs.shape[1] == bvals.size and bvals.size != 3):
        bvecs = bvecs.T
    if not np.all(np.isfinite(bvals)) or np.any(bvals < 0):
        bad = np.flatnonzero(~np.isfinite(bvals) | (bvals < 0)).tolist()
        raise InputDataError(f"invalid (non-finite or negative) b-values at volumes {bad}", path=bval_path)
    if bvecs.shape[0] != bvals.size:
        raise InputDataError(f"{bvecs.shape[0]} b-vectors but {bvals.size} b-values", path=bvec_path)
    if n_volumes is not None and bvals.size != n_volumes:
        raise InputDataError(f"{bvals.size} b-values but the image has {n_volumes} volumes", path=bval_path)
    b0 = bvals <= b0_threshold
    norms = np.linalg.norm(bvecs, axis=1)
    bad = (~b0) & (~np.isfinite(norms) | (norms < 1e-6))
    if np.any(bad):
        rows = np.flatnonzero(bad).tolist()
        raise InputDataError(f"NaN or zero-norm b-vectors for diffusion-weighted volumes (0-based rows {rows}, "
                             f"b = {bvals[bad].tolist()})", path=bvec_path)
    out = np.zeros_like(bvecs)
    dw = ~b0
    out[dw] = bvecs[dw] / norms[dw, None]
    dev = float(np.max(np.abs(norms[dw] - 1.0))) if dw.any() else 0.0
    src = f"{bval_path or ''} {bvec_path or ''}".strip()
    return GradientTable(bvals.copy(), out, float(b0_threshold), dev, src)


def read_gradients(bval_path, bvec_path, *, n_volumes: int | None = None,
                   b0_threshold: float = B0_THRESHOLD) -> GradientTable:
    """Read and validate ``.bval``/``.bvec`` files (either layout) against an image's volume count."""
    bvals = read_bvals(bval_path)
    bvecs = read_bvecs(bvec_path, n_volumes=bvals.size)
    return gradient_table(bvals, bvecs, n_volumes=n_volumes, b0_threshold=b0_threshold,
                          bval_path=bval_path, bvec_path=bvec_path)


def rotate_bvecs(bvecs: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Rotate b-vectors by the rotational part of per-volume affine matrices.

    Parameters
    ----------
    bvecs : (N, 3) unit vectors (zero rows stay zero)
    matrices : (N, 3, 3) or (N, 4, 4) linear parts of the voxel-to-voxel transforms applied to
        each volume (the mapping that moved the volume onto the reference).

    The rotation is the polar factor R of the linear part A = R·S (nearest orthogonal matrix,
    via SVD: A = U Σ Vᵀ → R = U Vᵀ), the "finite strain" rule of Alexander et al. 2001 / Leemans &
    Jones 2009; shears and scalings do not rotate the vectors.
    """
    mats = np.asarray(matrices, dtype=float)[:, :3, :3]
    u, _, vt = np.linalg.svd(mats)
    rot = u @ vt
    out = np.einsum("nij,nj->ni", rot, np.asarray(bvecs, dtype=float))
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
