"""GM/WM/CSF tissue segmentation (Atropos with template priors) and tissue volumes / TIV.

Atropos (Avants et al. 2011) fits a 3-class Gaussian mixture with an MRF smoothness prior inside
the brain mask. The MNI152 2009 CSF/GM/WM probability maps, warped to the subject through the
inverse of the T1w -> MNI transform, initialise the classes and act as spatial priors
(``prior_weight`` 0.25 by default, as antsCorticalThickness). Measured on template-derived
subjects, k-means initialisation without priors under-estimates GM by 17-24 %; with priors GM is
within 2 % (docs/anatomy.md).

Class order everywhere: 1 = CSF, 2 = GM, 3 = WM (Atropos / DiReCT convention).
"""
from __future__ import annotations

from contextlib import contextmanager

import nibabel as nib
import numpy as np

from ..errors import InputDataError
from ..spatial.resample import to_ants, to_nib

CLASSES = ("CSF", "GM", "WM")


def normalise_priors(csf: np.ndarray, gm: np.ndarray, wm: np.ndarray, mask: np.ndarray,
                     floor: float = 0.01) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make prior probabilities sum to 1 inside ``mask`` (a small ``floor`` is added to each class so
    no class is impossible anywhere in the brain; 0 outside the mask)."""
    stack = np.stack([np.clip(np.asarray(a, dtype=np.float64), 0, None) for a in (csf, gm, wm)]) + floor
    stack /= stack.sum(axis=0, keepdims=True)
    stack *= np.asarray(mask, dtype=bool)[None]
    return stack[0], stack[1], stack[2]


def atropos_segment(t1, mask, priors=None, prior_weight: float = 0.25, mrf: float = 0.1,
                    n_iterations: int = 3, nthreads: int | None = None) -> dict:
    """Three-class Atropos segmentation of a (bias-corrected) T1w image inside ``mask``.

    Parameters
    ----------
    t1, mask : nibabel images on the same native grid (mask > 0 = brain).
    priors : optional (csf, gm, wm) arrays or images on that grid (template priors warped to the
        subject); ``None`` = k-means initialisation without spatial priors.
    prior_weight : Atropos prior weight (0 = initialisation only).
    mrf : MRF smoothing factor (Atropos ``-m [mrf,1x1x1]``).
    n_iterations : EM iterations (``-c [n,0]``).

    Returns
    -------
    dict: ``seg`` int16 array (0 outside, 1 CSF, 2 GM, 3 WM), ``csf``, ``gm``, ``wm`` float32
    probability arrays (0 outside the mask), ``affine``.
    """
    import ants

    from ..spatial.registration import set_threads

    set_threads(nthreads)
    t1 = to_nib(to_ants(t1)) if not hasattr(t1, "affine") else t1
    m = np.asarray(mask.dataobj if hasattr(mask, "dataobj") else mask) > 0
    if m.sum() < 100:
        raise InputDataError(f"brain mask has only {int(m.sum())} voxels; cannot segment")
    if tuple(m.shape) != tuple(t1.shape[:3]):
        raise ValueError(f"mask shape {m.shape} differs from T1w shape {t1.shape}")
    # Atropos only visits mask voxels, but its image-wide filters cost time: run it on the mask's
    # bounding box (+2 voxels; identical result, ~10 % faster on whole-head grids) and paste back
    box = _bounding_box(m, pad=2)
    aff_box = t1.affine.copy()
    aff_box[:3, 3] = t1.affine[:3, :3] @ np.array([b.start for b in box], float) + t1.affine[:3, 3]
    mb = m[box]
    a = to_ants(nib.Nifti1Image(np.asarray(t1.dataobj, dtype=np.float32)[box], aff_box))
    x = to_ants(nib.Nifti1Image(mb.astype(np.float32), aff_box))
    mstr = f"[{float(mrf)},1x1x1]"
    cstr = f"[{int(n_iterations)},0]"
    if priors is not None:
        arrs = [np.asarray(p.dataobj if hasattr(p, "dataobj") else p, dtype=np.float64)[box] for p in priors]
        c, g, w = normalise_priors(*arrs, mb)
        init = {"i": [to_ants(nib.Nifti1Image(p.astype(np.float32), aff_box)) for p in (c, g, w)],
                "priorweight": float(prior_weight)}
    else:
        init = {"i": "Kmeans[3]"}
    with _private_tempdir():
        res = ants.atropos(a=a, x=x, m=mstr, c=cstr, r=0, **init)
    probs = []
    for pimg in res["probabilityimages"][:3]:
        full = np.zeros(m.shape, np.float32)
        full[box] = to_nib(pimg).get_fdata()
        full[~m] = 0
        probs.append(full)
    seg = np.zeros(m.shape, np.int16)
    seg[box] = to_nib(res["segmentation"]).get_fdata().astype(np.int16)
    seg[~m] = 0
    return {"seg": seg, "csf": probs[0], "gm": probs[1], "wm": probs[2], "affine": t1.affine.copy()}


@contextmanager
def _private_tempdir():
    """Point :mod:`tempfile` at a private directory that is deleted afterwards.

    ``ants.atropos`` writes its prior and posterior probability images to ``tempfile.mktemp``
    names in the system temporary directory and never deletes them (about 2 MB per call); the
    images it returns are already in memory, so the files can go when the call ends.
    """
    import tempfile

    saved = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="hfsmri_atropos_") as tmp:
        tempfile.tempdir = tmp
        try:
            yield tmp
        finally:
            tempfile.tempdir = saved


def _bounding_box(mask: np.ndarray, pad: int = 2) -> tuple[slice, ...]:
    """Slices of the bounding box of ``mask`` grown by ``pad`` voxels (clipped to the grid)."""
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - pad, 0), min(int(i.max()) + pad + 1, n)) for i, n in zip(idx, mask.shape))


def tissue_volumes(csf: np.ndarray, gm: np.ndarray, wm: np.ndarray, voxel_ml: float) -> dict:
    """Tissue volumes (ml) from probability maps: sum of probability x voxel volume.

    TIV (total intracranial volume) = GM + WM + CSF, as in SPM/CAT12 segmentation-based TIV.
    """
    v = {name: float(np.sum(np.asarray(a, dtype=np.float64)) * voxel_ml)
         for name, a in (("csf_ml", csf), ("gm_ml", gm), ("wm_ml", wm))}
    v["tiv_ml"] = v["csf_ml"] + v["gm_ml"] + v["wm_ml"]
    return v
