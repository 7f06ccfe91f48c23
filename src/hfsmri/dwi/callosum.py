"""Corpus-callosum substructures (genu / body / splenium / whole) from a mid-sagittal partition.

The callosum is cut along its own anterior–posterior axis, as on a mid-sagittal slice:

* The **mid-sagittal callosum** is the callosal mask restricted to ``|x| <= halfwidth_mm`` (MNI x;
  default 8 mm, i.e. the midline slab that ROI studies draw on).
* Its **axis** runs from the most anterior point (maximum y; the genu's front) to the most
  posterior point (minimum y; the splenium's back), using the (y, z) coordinates of the slab.
* Every voxel gets the fraction ``f`` in [0, 1] of its projection onto that axis, 0 at the
  anterior end, 1 at the posterior end.
* Schemes (fractions of the anterior–posterior length, anterior → posterior):

  ==========  ==========================  =============================  =====================
  scheme      genu                        body                           splenium
  ==========  ==========================  =============================  =====================
  witelson    f < 1/3 (Witelson 1989      1/3 ≤ f < 4/5 (anterior and    f ≥ 4/5 (posterior
              "anterior third": rostrum,  posterior midbody, isthmus)     fifth)
              genu, rostral body)
  hofer       f < 1/6 (Hofer & Frahm      1/6 ≤ f < 3/4 (regions II–IV:  f ≥ 3/4 (region V)
              2006 region I)              premotor/SMA, motor, sensory)
  ==========  ==========================  =============================  =====================

  ``whole`` is the union (the whole mid-sagittal callosum). The three parts are disjoint and
  ordered anterior → posterior by construction.

The callosal mask comes from the caller: the Jülich atlas label ``WM_Callosal_body`` (which
covers the whole corpus callosum), optionally intersected with FA ≥ a threshold from the study's
mean FA ("from the FA map or template").
"""
from __future__ import annotations

import numpy as np

SCHEMES = {
    "witelson": (1.0 / 3.0, 4.0 / 5.0),
    "hofer": (1.0 / 6.0, 3.0 / 4.0),
}
PARTS = ("genu", "body", "splenium", "whole")


def _world(idx: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return idx @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def callosum_fraction(cc_mask: np.ndarray, affine: np.ndarray, halfwidth_mm: float | None = 8.0) -> np.ndarray:
    """Anterior→posterior fraction (0..1) along the mid-sagittal callosal axis for every voxel of
    the mid-sagittal callosum; NaN elsewhere. See module doc."""
    cc_mask = np.asarray(cc_mask, dtype=bool)
    out = np.full(cc_mask.shape, np.nan)
    idx = np.argwhere(cc_mask)
    if idx.size == 0:
        return out
    xyz = _world(idx, affine)
    if halfwidth_mm is not None:
        keep = np.abs(xyz[:, 0]) <= halfwidth_mm + 1e-6
        idx, xyz = idx[keep], xyz[keep]
    if idx.shape[0] < 2:
        return out
    yz = xyz[:, 1:]
    ant = yz[np.argmax(yz[:, 0])]
    post = yz[np.argmin(yz[:, 0])]
    axis = post - ant
    length2 = float(axis @ axis)
    if length2 == 0:
        return out
    f = np.clip((yz - ant) @ axis / length2, 0.0, 1.0)
    out[tuple(idx.T)] = f
    return out


def partition_callosum(cc_mask: np.ndarray, affine: np.ndarray, scheme: str = "witelson",
                       halfwidth_mm: float | None = 8.0) -> dict[str, np.ndarray]:
    """Split a callosal mask into ``{"genu", "body", "splenium", "whole"}`` boolean masks.

    Parameters
    ----------
    cc_mask : 3D bool, corpus callosum on an MNI grid
    affine : 4×4 voxel → MNI mm
    scheme : "witelson" (default) or "hofer" (see module doc for the cut points)
    halfwidth_mm : mid-sagittal slab half-width in mm (None: the whole mask)
    """
    key = scheme.lower()
    if key not in SCHEMES:
        raise ValueError(f"unknown callosum scheme {scheme!r}; choose from {sorted(SCHEMES)}")
    a, b = SCHEMES[key]
    f = callosum_fraction(cc_mask, affine, halfwidth_mm)
    valid = np.isfinite(f)
    fz = np.where(valid, f, -1.0)
    genu = valid & (fz < a)
    body = valid & (fz >= a) & (fz < b)
    splenium = valid & (fz >= b)
    return {"genu": genu, "body": body, "splenium": splenium, "whole": valid}
