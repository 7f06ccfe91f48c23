"""Diffusion gradient tables: reading, validation, shells and QC numbers.

Conventions
-----------
* b-values in s/mm², b-vectors in the FSL / BIDS convention: image voxel axes, with the x axis
  flipped when the image affine has a positive determinant (:func:`bvecs_to_world` converts them
  to world RAS+ directions). The tensor is fitted in that frame; FA/MD/AD/RD do not depend on it,
  eigenvectors do (map them with :func:`bvecs_to_world`).
* Files may hold b-vectors as 3×N (FSL/BIDS) or N×3 (dipy's bundled data); a 3×3 table is taken
  as 3×N (BIDS).
* Every vector enters the tensor design as written: the row of a volume is built from b·ggᵀ,
  as FSL ``dtifit`` and dipy do. Vectors written with a few decimals (norm 1 ± 1e-5) are therefore
  not renormalised. A diffusion-weighted vector whose norm differs from 1 by more than 1 %
  (``UNIT_TOL``; dipy refuses those, FSL and MRtrix's b-value scaling use b·‖g‖²) is stored as the
  unit vector ĝ with b scaled by ‖g‖², which is the same design row, so that b0 classification,
  shells and the ``bmax`` selection see the effective b-value; QC reports the largest |‖g‖ − 1|.
* Volumes with ``b <= b0_threshold`` (default 50 s/mm², dipy's default) are b0 volumes (mean b0,
  b0 count). Scanners often write b0 volumes as a small b with a direction (Siemens and Philips:
  b = 5–15 s/mm²): such a volume keeps its vector and enters the tensor fit with its actual b and
  direction, as dipy and FSL ``dtifit`` do (:attr:`GradientTable.b0_with_direction`). A b0 vector
  that is NaN, zero or not unit (within 1 %) is set to zero, which makes its design row that of
  b = 0 (dipy's rule).
* A NaN or zero-norm vector on a diffusion-weighted volume, b-values ≥ ``MAX_BVAL``
  (10 000 s/mm²: s/m² or other unit errors) and a table without any diffusion-weighted volume are
  errors naming the file (and the 0-based volume indices).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hfsmri.errors import InputDataError

B0_THRESHOLD = 50.0
DEFAULT_MAX_B = 1500.0
#: a vector whose norm is 1 within this is used as written (dipy's atol); others are rescaled (see above)
UNIT_TOL = 1e-2
#: b-values at or above this are refused (s/mm²): a unit error (s/m², ms/µm² × 1000) or a q-space
#: scheme no tensor analysis here is meant for
MAX_BVAL = 10000.0


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
    bvals : effective b-values (as written, or b·‖g‖² for vectors more than 1 % from unit norm)
    bvecs : (N, 3) float, the vectors as written (norm 1 within 1 %) or their unit direction (see the
        module doc); zero rows for b0 volumes without a direction
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
        vecs = self.bvecs[idx]
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        for v in vecs:
            if not reps or np.max(np.abs(np.asarray(reps) @ v)) < cos_t:
                reps.append(v)
        return len(reps)

    @property
    def b0_with_direction(self) -> np.ndarray:
        """b0 volumes (b ≤ threshold) with b > 0 and a gradient direction: they enter the tensor
        fit with their actual b and vector (dipy, FSL dtifit)."""
        return self.b0s_mask & (self.bvals > 0) & (np.linalg.norm(self.bvecs, axis=1) > 0)

    def select(self, max_b: float | None = DEFAULT_MAX_B) -> np.ndarray:
        """Indices of volumes with ``b <= max_b`` (all volumes when ``max_b`` is None)."""
        if max_b is None:
            return np.arange(self.n_volumes)
        return np.flatnonzero(self.bvals <= max_b)

    def tensor_volumes(self, max_b: float | None = DEFAULT_MAX_B) -> tuple[np.ndarray, str]:
        """The volumes a tensor fit uses and the rule in words (for logs, sidecars and methods).

        Rule: every volume with ``b <= max_b`` (all volumes when ``max_b`` is None) — b0 volumes
        included, each with its own b and vector. When no diffusion-weighted volume has
        ``b <= max_b`` (a single shell above it, e.g. b = 2000 with the default 1500), the lowest
        shell is used instead (every volume up to that shell's largest b), and the rule says so.
        """
        used = self.select(max_b)
        dw = ~self.b0s_mask
        if max_b is None:
            return used, "all volumes"
        if dw.any() and not dw[used].any():
            b = np.sort(self.bvals[dw])
            gaps = np.flatnonzero(np.diff(b) > 100.0)
            top = float(b[gaps[0]] if gaps.size else b[-1])
            used = self.select(top)
            return used, (f"b <= {max_b:g} s/mm² selects no diffusion-weighted volume; the lowest shell was "
                          f"used instead (b <= {top:g} s/mm²)")
        return used, f"b <= {max_b:g} s/mm²"

    def fit_summary(self, max_b: float | None = DEFAULT_MAX_B) -> dict:
        """JSON-serialisable description of the volumes a tensor fit uses (:meth:`tensor_volumes`)."""
        used, rule = self.tensor_volumes(max_b)
        b0 = self.b0s_mask[used]
        with_dir = self.b0_with_direction[used]
        return {"rule": rule, "max_bval": None if max_b is None else float(max_b),
                "lowest_shell_fallback": bool(max_b is not None and used.size and self.bvals[used].max() > max_b),
                "n_volumes": int(used.size), "n_b0": int(b0.sum()),
                "n_b0_with_direction": int(with_dir.sum()),
                "bvals": sorted({float(v) for v in np.round(self.bvals[used], 1)}),
                "volumes": used.tolist(),
                "excluded_volumes": np.setdiff1d(np.arange(self.n_volumes), used).tolist()}

    def subset(self, volumes) -> "GradientTable":
        volumes = np.asarray(volumes)
        return GradientTable(self.bvals[volumes].copy(), self.bvecs[volumes].copy(), self.b0_threshold,
                             self.max_norm_deviation, self.source)

    def qc(self, max_b: float | None = DEFAULT_MAX_B) -> dict:
        """JSON-serialisable summary: shells, b0 count, unique directions, volumes used for the fit."""
        used, rule = self.tensor_volumes(max_b)
        return {
            "n_volumes": self.n_volumes,
            "n_b0": self.n_b0,
            "n_b0_with_direction": int(self.b0_with_direction.sum()),
            "shells": [{"bval": b, "n": n} for b, n in self.shells()],
            "n_unique_directions": self.n_unique_directions(),
            "fit_max_bval": None if max_b is None else float(max_b),
            "fit_rule": rule,
            "fit_volumes": used.tolist(),
            "n_unique_directions_fit": self.n_unique_directions(volumes=used),
            "b0_threshold": float(self.b0_threshold),
            "max_bvec_norm_deviation": float(self.max_norm_deviation),
        }


def gradient_table(bvals, bvecs, *, n_volumes: int | None = None, b0_threshold: float = B0_THRESHOLD,
                   bval_path=None, bvec_path=None) -> GradientTable:
    """Validate a gradient table (conventions in the module doc).

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
    big = bvals >= MAX_BVAL
    if np.any(big):
        raise InputDataError(f"b-values >= {MAX_BVAL:g} s/mm² at volumes {np.flatnonzero(big).tolist()[:20]} "
                             f"(largest {bvals.max():g}): b-values must be in s/mm² (b = 1000 s/mm² is "
                             "1e9 s/m²); tensor analyses here are for b <= a few thousand", path=bval_path)
    norms = np.linalg.norm(bvecs, axis=1)
    bad = (bvals > b0_threshold) & (~np.isfinite(norms) | (norms < 1e-6))
    if np.any(bad):
        rows = np.flatnonzero(bad).tolist()
        raise InputDataError(f"NaN or zero-norm b-vectors for diffusion-weighted volumes (0-based rows {rows}, "
                             f"b = {bvals[bad].tolist()})", path=bvec_path)
    dev = np.abs(norms - 1.0)
    written_b0 = bvals <= b0_threshold
    unit = np.isfinite(norms) & (dev <= UNIT_TOL)
    rescale = ~written_b0 & ~unit  # b·ggᵀ = (b‖g‖²)·ĝĝᵀ: same design row, effective b
    bvals = bvals.copy()
    bvals[rescale] = bvals[rescale] * norms[rescale] ** 2
    out = np.where(unit[:, None], bvecs, 0.0)  # b0 vectors that are not unit: zero (dipy)
    out[rescale] = bvecs[rescale] / norms[rescale, None]
    b0 = bvals <= b0_threshold
    dw = ~b0
    if not dw.any():
        raise InputDataError(f"no diffusion-weighted volume: every b-value is <= {b0_threshold:g} s/mm² "
                             f"(b = {sorted(set(np.round(bvals, 1).tolist()))[:10]})", path=bval_path)
    dev = float(np.max(dev[dw])) if dw.any() else 0.0
    src = f"{bval_path or ''} {bvec_path or ''}".strip()
    return GradientTable(bvals, out, float(b0_threshold), dev, src)


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
    return np.einsum("nij,nj->ni", rot, np.asarray(bvecs, dtype=float))  # norms kept (R orthogonal)


def fsl_frame(affine) -> np.ndarray:
    """3×3 matrix taking FSL/BIDS b-vector coordinates to world (RAS+) directions.

    The voxel axes' directions are the columns of the affine's linear part, normalised (their
    polar factor, so round-off in an oblique header cannot scale a vector); FSL's convention adds
    an x flip when the affine's determinant is positive (neurological storage), as MRtrix
    documents for ``-fslgrad``.
    """
    lin = np.asarray(affine, dtype=float)[:3, :3]
    u, _, vt = np.linalg.svd(lin)
    d = u @ vt
    if np.linalg.det(lin) > 0:
        d = d @ np.diag([-1.0, 1.0, 1.0])
    return d


def bvecs_to_world(vectors, affine) -> np.ndarray:
    """FSL/BIDS-convention vectors (N, 3) of an image with ``affine`` → world RAS+ directions.

    Also maps tensor eigenvectors fitted in that frame (e.g. ``fit.evecs[..., :, 0]``) to world.
    """
    return np.asarray(vectors, dtype=float) @ fsl_frame(affine).T


def world_to_bvecs(vectors, affine) -> np.ndarray:
    """World RAS+ directions (N, 3) → FSL/BIDS b-vector coordinates of an image with ``affine``."""
    return np.asarray(vectors, dtype=float) @ fsl_frame(affine)
