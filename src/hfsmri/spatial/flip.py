"""Left-right flipping about the MNI mid-sagittal plane (x -> -x), in world coordinates.

Used to align the affected side of patients with one-sided hemifacial spasm: with
``flip_to: R`` in study.yaml, images of patients whose ``affected_side`` is ``L`` are mirrored so
that their affected hemisphere lies on the right. The mirror is defined in world (mm) space, not
by reversing an array axis blindly: the image is re-expressed with the affine ``diag(-1,1,1)·A``
and resampled back onto its own grid. On grids that are symmetric about x = 0 (all hfsmri MNI
grids, see :mod:`hfsmri.spatial.templates`) this is an exact axis reversal and is done as such.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np

_MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0])


def _is_symmetric_axis_reversal(affine: np.ndarray, shape) -> int | None:
    """Axis index whose reversal equals the world mirror x -> -x on this grid, else None."""
    lin = affine[:3, :3]
    for ax in range(3):
        col = lin[:, ax]
        others = [a for a in range(3) if a != ax]
        if abs(col[0]) < 1e-9 or np.any(np.abs(col[1:]) > 1e-6):
            continue
        if np.any(np.abs(lin[0, others]) > 1e-6):
            continue
        n = shape[ax]
        # world x of index i along this axis: t0 + col0 * i; mirror of index i must be index n-1-i
        x_first = affine[0, 3]
        x_last = affine[0, 3] + col[0] * (n - 1)
        if abs(x_first + x_last) < 1e-4 * max(1.0, abs(col[0])):
            return ax
    return None


def flip_lr(img: nib.spatialimages.SpatialImage, interpolation: str = "continuous") -> nib.Nifti1Image:
    """Mirror an image about the world plane x = 0 (left <-> right).

    Parameters
    ----------
    img : nibabel image (3D or 4D)
    interpolation : {"continuous", "linear", "nearest"}
        Used only when the grid is not symmetric about x = 0 (then the mirrored image is
        resampled onto the original grid with nilearn). Use "nearest" for label images.

    Returns
    -------
    nibabel.Nifti1Image on the same grid as ``img``: value at (x, y, z) = input value at (-x, y, z).
    """
    affine = np.asarray(img.affine, dtype=float)
    shape = img.shape[:3]
    ax = _is_symmetric_axis_reversal(affine, shape)
    if ax is not None:
        data = np.flip(np.asanyarray(img.dataobj), axis=ax).copy()
        out = nib.Nifti1Image(data, affine, img.header.copy())
        return out
    from nilearn import image

    mirrored = nib.Nifti1Image(np.asanyarray(img.dataobj), _MIRROR @ affine, img.header.copy())
    return image.resample_img(mirrored, target_affine=affine, target_shape=shape,
                              interpolation=interpolation, force_resample=True, copy_header=True)


def flip_array_x(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Mirror a 3D/4D array defined on ``affine`` about x = 0 (grid must be symmetric)."""
    ax = _is_symmetric_axis_reversal(np.asarray(affine, float), data.shape[:3])
    if ax is None:
        raise ValueError("grid is not symmetric about x = 0; use flip_lr on an image instead")
    return np.flip(data, axis=ax).copy()


# ----------------------------------------------------------------------------- named regions and nodes
_LR_NAMES = ((r"_L$", "_R"), (r"_R$", "_L"), (r"^Left_", "Right_"), (r"^Right_", "Left_"))


def swap_lr_name(name: str) -> str:
    """Mirror a region name: ``X_L`` <-> ``X_R``, ``Left_X`` <-> ``Right_X`` (else unchanged)."""
    import re

    for a, b in _LR_NAMES:
        if re.search(a, name):
            return re.sub(a, b, name)
    return name


def swap_lr(row):
    """A ROI row (pandas Series indexed by region name) of a mirrored brain: the values of every
    left/right pair present are exchanged (index order kept; unpaired regions unchanged)."""
    out = row.copy()
    names = [str(n) for n in row.index]
    present = set(names)
    mirror = [swap_lr_name(n) if swap_lr_name(n) in present else n for n in names]
    out[:] = row.loc[mirror].to_numpy() if len(set(names)) == len(names) else row.to_numpy()
    return out


def mirror_permutation(names, coords=None, tol_mm: float = 6.0):
    """Index array ``perm`` with aligned[i] = native[perm[i]] for a left-right mirrored brain:
    partners by name (:func:`swap_lr_name`), otherwise the node nearest to the mirrored centre
    (x -> -x) within ``tol_mm`` (from ``coords``, MNI mm); unmatched nodes map to themselves."""
    names = [str(n) for n in names]
    pos = {n: i for i, n in enumerate(names)}
    perm = np.arange(len(names))
    coords = None if coords is None else np.asarray(coords, float)
    for i, n in enumerate(names):
        partner = pos.get(swap_lr_name(n)) if swap_lr_name(n) != n else None
        if partner is None and coords is not None and np.all(np.isfinite(coords[i])):
            d = np.linalg.norm(coords - coords[i] * [-1, 1, 1], axis=1)
            j = int(np.nanargmin(d))
            if d[j] <= tol_mm:
                partner = j
        if partner is not None:
            perm[i] = partner
    return perm
