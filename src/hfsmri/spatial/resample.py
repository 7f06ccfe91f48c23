"""Conversions between nibabel and ANTsPy images, and small resampling helpers.

Conventions
-----------
* nibabel images are RAS+ world (mm) via their affine; ANTs images are LPS+ internally
  (``origin``, ``spacing``, ``direction``). :func:`to_ants` / :func:`to_nib` convert exactly:
  the voxel array is shared in the same index order, only the geometry is re-expressed
  (x and y flip sign between RAS and LPS).
* Only 3D images are converted (4D series are handled volume by volume by the callers).
"""
from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

_RAS2LPS = np.diag([-1.0, -1.0, 1.0])


def _ants():
    import ants  # imported lazily: antspyx start-up is ~1 s

    return ants


def as_nib(img) -> nib.Nifti1Image:
    """Load a path or pass through a nibabel image; ANTs images are converted."""
    if isinstance(img, (str, os.PathLike)):
        return nib.load(str(img))
    if hasattr(img, "affine"):
        return img
    if hasattr(img, "spacing") and hasattr(img, "direction"):
        return to_nib(img)
    raise TypeError(f"expected a path or an image, got {type(img).__name__}")


def to_ants(img, dtype=np.float32):
    """nibabel (or path) 3D image -> ``ants.ANTsImage`` with identical world geometry."""
    ants = _ants()
    if hasattr(img, "spacing") and hasattr(img, "direction"):
        return img
    img = as_nib(img)
    data = np.asarray(img.dataobj, dtype=dtype)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"to_ants expects a 3D image, got shape {data.shape}")
    origin, spacing, direction = ants_geometry(img.affine)
    out = ants.from_numpy(np.ascontiguousarray(data), origin=tuple(float(v) for v in origin),
                          spacing=tuple(float(v) for v in spacing), direction=direction)
    return out


def ants_geometry(affine, ortho_tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ITK geometry (LPS ``origin``, ``spacing``, ``direction``) of a RAS+ ``affine``, snapped to
    values that survive a NIfTI write/read unchanged.

    Why: several ANTs programs called by antspyx write some of their inputs to NIfTI files and read
    them back (``ants.atropos`` writes the prior probability images), then ITK checks that all
    inputs "occupy the same physical space" with a tolerance of 1e-6 x voxel size. NIfTI stores the
    origin and voxel sizes as float32; for an oblique header (a rotated acquisition, or the bounding
    box of a rotated image) the origin is not a float32 number and comes back moved by up to ~8e-6
    mm, so Atropos stopped with "Inputs do not occupy the same physical space" (exit status 1) on
    every oblique T1w (docs/anatomy.md). Here the origin and the voxel sizes are rounded to float32
    and a direction matrix within ``ortho_tol`` of orthonormal is replaced by the nearest
    orthonormal one (SVD polar factor; the direction ITK derives from the stored quaternion). A
    write/read round trip then returns the origin and spacing exactly and the direction within 1e-7
    (measured over 300 random rotations). The world position of any voxel moves by < 1e-5 mm.
    Every image handed to ANTs is built by :func:`to_ants`, which uses this, so images, masks and
    priors on one grid carry bit-identical geometry.
    """
    aff = np.asarray(affine, dtype=float)
    lin = aff[:3, :3]
    spacing = np.sqrt((lin ** 2).sum(axis=0)).astype(np.float32).astype(float)
    direction = _RAS2LPS @ (lin / spacing)
    u, _, vt = np.linalg.svd(direction)
    ortho = u @ vt
    if np.abs(ortho - direction).max() < ortho_tol:
        direction = ortho
    origin = (_RAS2LPS @ aff[:3, 3]).astype(np.float32).astype(float)
    return origin, spacing, direction


def to_nib(aimg, dtype=None) -> nib.Nifti1Image:
    """``ants.ANTsImage`` (3D) -> nibabel ``Nifti1Image`` (RAS+ affine, same voxel order)."""
    data = aimg.numpy()
    if dtype is not None:
        data = data.astype(dtype)
    spacing = np.asarray(aimg.spacing, dtype=float)
    direction = np.asarray(aimg.direction, dtype=float)
    origin = np.asarray(aimg.origin, dtype=float)
    aff = np.eye(4)
    aff[:3, :3] = _RAS2LPS @ direction * spacing
    aff[:3, 3] = _RAS2LPS @ origin
    out = nib.Nifti1Image(data, aff)
    out.header.set_xyzt_units("mm")
    return out


def voxel_volume_ml(img) -> float:
    """Volume of one voxel of ``img`` in millilitres (cm^3)."""
    img = as_nib(img)
    return float(abs(np.linalg.det(np.asarray(img.affine)[:3, :3]))) / 1000.0


def voxel_sizes(img) -> np.ndarray:
    img = as_nib(img)
    return np.sqrt((np.asarray(img.affine)[:3, :3] ** 2).sum(axis=0))


def resample_to_resolution(img, resolution_mm: float, interpolation: str = "linear") -> nib.Nifti1Image:
    """Resample ``img`` to an isotropic grid of ``resolution_mm`` covering the same field of view
    (axes kept; nilearn resampling; ``interpolation`` "linear", "nearest" or "continuous")."""
    from nilearn import image

    img = as_nib(img)
    aff = np.asarray(img.affine, dtype=float)
    vs = voxel_sizes(img)
    if np.allclose(vs, resolution_mm, atol=1e-3):
        return img
    ext = np.asarray(img.shape[:3]) * vs
    shape = np.maximum(1, np.round(ext / resolution_mm).astype(int))
    new = aff.copy()
    new[:3, :3] = aff[:3, :3] / vs * resolution_mm
    # keep the centre of the field of view fixed
    c_old = aff[:3, :3] @ ((np.asarray(img.shape[:3]) - 1) / 2.0) + aff[:3, 3]
    new[:3, 3] = c_old - new[:3, :3] @ ((shape - 1) / 2.0)
    return image.resample_img(img, target_affine=new, target_shape=tuple(int(s) for s in shape),
                              interpolation=interpolation, force_resample=True, copy_header=True)


def same_grid(a, b, atol: float = 1e-4) -> bool:
    a, b = as_nib(a), as_nib(b)
    return tuple(a.shape[:3]) == tuple(b.shape[:3]) and np.allclose(a.affine, b.affine, atol=atol)


def save(img, path: str | Path) -> Path:
    """Plain (non-provenance) save of a nibabel or ANTs image, for work files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(as_nib(img), str(path))
    return path
