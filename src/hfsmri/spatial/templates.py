"""MNI template images on isotropic grids, from nilearn's bundled (offline) ICBM152 2009 files.

Space name used in every output: ``MNI152NLin2009aSym`` (:data:`TEMPLATE_SPACE`, the one owner of
the name), because the images are nilearn's bundled ICBM152 2009 *symmetric* (2009a) template and
GM/WM maps (the files ``mni_icbm152_*_tal_nlin_sym_09a``): no other MNI template can be had
offline. Inputs in ``MNI152NLin2009cAsym`` (fMRIPrep) are accepted as equivalent (see
:data:`EQUIVALENT_SPACES` and ``docs/conventions.md``).
Because the template is symmetric, left-right flipping and VMHC need no extra symmetric space.

Grids: for a resolution ``r`` mm the grid is axis-aligned (RAS+), x runs symmetrically from
``-r*floor(98/r)`` to ``+r*floor(98/r)`` (so x = 0 is a voxel centre and mirroring x -> -x maps the
grid onto itself), y starts at -134 mm and z at -72 mm, covering nilearn's 1 mm field of view.
At 1 and 2 mm this is exactly nilearn's own grid.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import nibabel as nib
import numpy as np

#: the ``space-`` label of every template-space output (TemplateFlow's name of ICBM 2009a symmetric)
TEMPLATE_SPACE = "MNI152NLin2009aSym"
#: input spaces accepted as the template space (resampled onto its grid, no registration): both
#: are ICBM152 2009 non-linear averages of the same 152 brains in the same MNI coordinates; the
#: asymmetric 2009c version differs from the symmetric 2009a one by well under a voxel at the
#: 2-3 mm of the group analyses (docs/conventions.md); the methods text says it.
EQUIVALENT_SPACES = ("MNI152NLin2009cAsym",)
TEMPLATE_SOURCE = "nilearn bundled ICBM152 2009 (sym 09a) T1w/GM/WM templates"

_FOV_MM = {"x": 98.0, "y0": -134.0, "ylen": 232.0, "z0": -72.0, "zlen": 188.0}
KINDS = ("T1", "GM", "WM", "CSF", "mask")


def template_grid(resolution_mm: float = 2) -> tuple[tuple[int, int, int], np.ndarray]:
    """Return ``(shape, affine)`` of the isotropic MNI grid at ``resolution_mm`` (see module doc)."""
    r = float(resolution_mm)
    if not (0.5 <= r <= 8):
        raise ValueError(f"template resolution must be between 0.5 and 8 mm, got {resolution_mm}")
    kx = int(np.floor(_FOV_MM["x"] / r + 1e-9))
    nx = 2 * kx + 1
    ny = int(np.floor(_FOV_MM["ylen"] / r + 1e-9)) + 1
    nz = int(np.floor(_FOV_MM["zlen"] / r + 1e-9)) + 1
    affine = np.diag([r, r, r, 1.0])
    affine[:3, 3] = [-kx * r, _FOV_MM["y0"], _FOV_MM["z0"]]
    return (nx, ny, nz), affine


@lru_cache(maxsize=32)
def _load(kind: str, resolution_mm: float) -> nib.Nifti1Image:
    from nilearn import datasets, image

    loaders = {
        "T1": datasets.load_mni152_template,
        "GM": datasets.load_mni152_gm_template,
        "WM": datasets.load_mni152_wm_template,
        "mask": datasets.load_mni152_brain_mask,
    }
    shape, affine = template_grid(resolution_mm)
    if kind == "CSF":
        brain = _load("mask", resolution_mm).get_fdata()
        gm = _load("GM", resolution_mm).get_fdata()
        wm = _load("WM", resolution_mm).get_fdata()
        csf = np.clip(brain - gm - wm, 0.0, 1.0) * (brain > 0)
        return nib.Nifti1Image(csf.astype(np.float32), affine)
    src = loaders[kind](resolution=1)
    src = nib.Nifti1Image(np.asarray(src.get_fdata(), dtype=np.float32), src.affine)
    with warnings.catch_warnings():  # binary mask resampled linearly on purpose, then thresholded
        warnings.simplefilter("ignore", UserWarning)
        img = image.resample_img(src, target_affine=affine, target_shape=shape,
                                 interpolation="linear", force_resample=True, copy_header=True)
    data = np.asarray(img.get_fdata(), dtype=np.float32)
    if kind == "mask":
        data = (data >= 0.5).astype(np.uint8)
        out = nib.Nifti1Image(data, affine)
    else:
        data = np.clip(data, 0.0, None)
        if kind in ("GM", "WM"):
            data = np.clip(data, 0.0, 1.0)
        out = nib.Nifti1Image(data, affine)
    out.header.set_xyzt_units("mm")
    return out


def load_template(kind: str = "T1", resolution_mm: float = 2) -> nib.Nifti1Image:
    """MNI template image of ``kind`` on the grid of :func:`template_grid`.

    Parameters
    ----------
    kind : {"T1", "GM", "WM", "CSF", "mask"}
        T1-weighted template (intensity, 0..~1), grey/white-matter probability (0..1), CSF
        probability (brain mask minus GM and WM, clipped to 0..1), or the binary brain mask (uint8).
    resolution_mm : float
        Isotropic voxel size in mm.

    Returns a new image each call (the cached data array is copied), so callers may modify it.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown template kind {kind!r}; choose from {KINDS}")
    img = _load(kind, float(resolution_mm))
    return nib.Nifti1Image(np.array(img.dataobj), img.affine.copy(), img.header.copy())
