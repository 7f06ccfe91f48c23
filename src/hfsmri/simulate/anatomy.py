"""The reference (MNI) anatomy every simulated subject is built from.

Offline sources only: nilearn's bundled ICBM152 2009 T1/GM/WM/brain-mask templates (via
:mod:`hfsmri.spatial.templates`; CSF = brain mask minus GM and WM), the Jülich white-matter tract
maps and AAL2 labels (via :mod:`hfsmri.spatial.atlas`).

Derived here (deterministic, cached per process):

* tissue fraction maps (GM, WM, CSF) on the 1 mm grid, and Gaussian-prefiltered copies for
  sampling at coarser native voxel sizes (partial-volume approximation: FWHM = native voxel),
* ``outside_mm``: distance (mm) from the brain-mask surface, used to draw CSF/skull/scalp shells,
* the fibre direction field: every WM voxel gets the axis of its tract — corpus callosum and
  acoustic radiation left-right (x); SLF, IFOF, SOF, uncinate, cingulum, fornix, optic radiation
  anterior-posterior (y); corticospinal tract (incl. PLIC) superior-inferior (z) — and WM voxels
  outside the tract maps take the axis of the nearest tract voxel, with lower coherence,
* BOLD regions (AAL2 labels) grouped into canonical networks by label name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import numpy as np
from scipy import ndimage

from .fields import FWHM_TO_SIGMA

TRACT_AXIS = {  # Jülich WM label pattern -> axis (0 = x L-R, 1 = y A-P, 2 = z S-I)
    r"WM_Callosal_body": 0,
    r"WM_Acoustic_radiation_.": 0,
    r"WM_Corticospinal_tract_.": 2,
    r"WM_Cingulum_.": 1,
    r"WM_Fornix": 1,
    r"WM_Inferior_occipito-frontal_fascicle_.": 1,
    r"WM_Optic_radiation_.": 1,
    r"WM_Superior_longitudinal_fascicle_.": 1,
    r"WM_Superior_occipito-frontal_fascicle_.": 1,
    r"WM_Uncinate_fascicle_.": 1,
}

NETWORKS = {  # AAL2 label regex -> network name (canonical resting-state systems, approximate)
    "default": r"(Precuneus|Cingulate_Post|Angular|Frontal_Sup_Medial|Frontal_Med_Orb|Temporal_Mid|Temporal_Inf)_.*",
    "sensorimotor": r"(Precentral|Postcentral|Supp_Motor_Area|Paracentral_Lobule|Rolandic_Oper)_.*",
    "visual": r"(Calcarine|Cuneus|Lingual|Occipital_Sup|Occipital_Mid|Occipital_Inf|Fusiform)_.*",
    "salience": r"(Insula|Cingulate_Ant|Cingulate_Mid|SupraMarginal|Frontal_Inf_Oper)_.*",
    "frontoparietal": r"(Frontal_Sup_2|Frontal_Mid_2|Frontal_Inf_Tri|Parietal_Inf|Parietal_Sup)_.*",
    "limbic": r"(Amygdala|Hippocampus|ParaHippocampal|OFC.*|Rectus|Olfactory|Temporal_Pole_.*|Frontal_Inf_Orb_2)_.*",
    "subcortical": r"(Caudate|Putamen|Pallidum|Thalamus)_.*",
    "auditory": r"(Heschl|Temporal_Sup)_.*",
    "cerebellar": r"(Cerebelum_.*|Vermis_.*)",
}


@dataclass
class MniMap:
    """A 3D array on an MNI grid that can be sampled at arbitrary mm points."""

    data: np.ndarray
    affine: np.ndarray

    def sample(self, xyz: np.ndarray, order: int = 1, cval: float = 0.0) -> np.ndarray:
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, np.float32)
        lin = inv[:3, :3].astype(np.float32)
        off = inv[:3, 3].astype(np.float32)
        if np.count_nonzero(lin - np.diag(np.diag(lin))) == 0:
            # axis-aligned map (every MNI map): per-axis scale and shift, the same float32 values as
            # the matrix product (the off-diagonal products are exact zeros) without its cost
            ijk = np.empty((3, xyz.shape[0]), np.float32)
            for d in range(3):
                np.multiply(xyz[:, d], lin[d, d], out=ijk[d])
                ijk[d] += off[d]
        else:
            ijk = (xyz @ lin.T + off).T
        return ndimage.map_coordinates(self.data, ijk, order=order, mode="constant", cval=cval,
                                       prefilter=False)

    def img(self) -> nib.Nifti1Image:
        return nib.Nifti1Image(self.data, self.affine)


def _templates(res: int):
    from hfsmri.spatial.templates import load_template

    out = {}
    for k in ("GM", "WM", "mask"):
        img = load_template(k, res)
        out[k] = np.asarray(img.dataobj, dtype=np.float32)
        affine = img.affine
    brain = out["mask"] > 0
    gm = np.where(brain, out["GM"], 0.0)
    wm = np.where(brain, out["WM"], 0.0)
    tot = gm + wm
    over = tot > 1.0
    gm[over] /= tot[over]
    wm[over] /= tot[over]
    csf = np.where(brain, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0)
    return gm.astype(np.float32), wm.astype(np.float32), csf.astype(np.float32), brain, affine


@lru_cache(maxsize=4)
def tissue_maps(res: int = 1) -> dict:
    """GM/WM/CSF fractions (sum to 1 inside the brain mask) and the brain mask on the ``res`` mm
    MNI grid, as :class:`MniMap` objects; plus ``outside_mm`` (distance outside the brain, mm,
    negative inside) on a padded 2 mm grid."""
    gm, wm, csf, brain, affine = _templates(res)
    maps = {"GM": MniMap(gm, affine), "WM": MniMap(wm, affine), "CSF": MniMap(csf, affine),
            "brain": MniMap(brain.astype(np.float32), affine)}
    # signed distance to the brain surface on a 2 mm grid padded by 30 mm (for skull/scalp shells)
    b2 = _templates(2)[3] if res != 2 else brain
    aff2 = _templates(2)[4] if res != 2 else affine
    pad = 15
    b2p = np.pad(b2, pad)
    out_d = ndimage.distance_transform_edt(~b2p, sampling=2.0)
    in_d = ndimage.distance_transform_edt(b2p, sampling=2.0)
    signed = np.where(b2p, -in_d, out_d).astype(np.float32)
    affp = aff2.copy()
    affp[:3, 3] -= 2.0 * pad
    maps["outside_mm"] = MniMap(signed, affp)
    return maps


@lru_cache(maxsize=24)
def prefiltered(res: int, target_mm: float) -> dict:
    """Tissue maps smoothed to approximate partial voluming in ``target_mm`` voxels."""
    base = tissue_maps(res)
    fwhm = np.sqrt(max(target_mm ** 2 - res ** 2, 0.0))
    if fwhm < 0.5:
        return {k: base[k] for k in ("GM", "WM", "CSF", "brain")}
    sig = fwhm * FWHM_TO_SIGMA / res
    return {k: MniMap(ndimage.gaussian_filter(base[k].data, sig).astype(np.float32), base[k].affine)
            for k in ("GM", "WM", "CSF", "brain")}


def _grid_img(res: int) -> nib.Nifti1Image:
    from hfsmri.spatial.templates import template_grid

    shape, affine = template_grid(res)
    return nib.Nifti1Image(np.zeros(shape, np.uint8), affine)


#: subcortical grey nuclei (Harvard-Oxford) whose template voxels are GM/WM mixtures
DEEP_GM_SPEC = "ho:/(Left|Right)_(Thalamus|Caudate|Putamen|Pallidum|Accumbens)/"
#: smoothing (mm FWHM) of the deep-GM weight, so that the replacement tissue changes smoothly
DEEP_GM_FWHM_MM = 4.0


@lru_cache(maxsize=2)
def deep_gm_weight(res: int = 2) -> MniMap:
    """Weight (0..1) of "deep grey nucleus" on the ``res`` mm MNI grid: the Harvard-Oxford
    thalamus, caudate, putamen, pallidum and accumbens, smoothed by :data:`DEEP_GM_FWHM_MM`.

    Used by the T1w model to choose which tissue replaces lost GM (and gives gained GM): in the
    nuclei the template's non-GM part is white matter, so GM lost there becomes WM-like tissue
    (the voxel gets brighter, as a shrunken nucleus surrounded by white matter does); elsewhere
    (cortex) GM trades with WM and CSF in the voxel's WM : CSF proportion (see
    :mod:`hfsmri.simulate.t1w`).
    """
    from hfsmri.spatial.atlas import region_mask

    ref = _grid_img(res)
    m = region_mask(DEEP_GM_SPEC, ref).astype(np.float32)
    w = ndimage.gaussian_filter(m, DEEP_GM_FWHM_MM * FWHM_TO_SIGMA / res)
    return MniMap(np.clip(w, 0.0, 1.0).astype(np.float32), ref.affine)


@lru_cache(maxsize=2)
def fibre_field(res: int = 2) -> dict:
    """Fibre axis (0/1/2, -1 outside WM) and coherence (1 in tract maps, 0.6 elsewhere in WM)
    on the ``res`` mm MNI grid; also the tract label image."""
    from hfsmri.spatial.atlas import atlas_on_grid

    ref = _grid_img(res)
    labels, names = atlas_on_grid("juelich", ref)
    wm = _templates(res)[1]
    axis = np.full(labels.shape, -1, dtype=np.int8)
    for value, name in names.items():
        for pat, ax in TRACT_AXIS.items():
            if re.fullmatch(pat, name):
                axis[labels == value] = ax
    in_tract = axis >= 0
    if in_tract.any():
        _, idx = ndimage.distance_transform_edt(~in_tract, return_indices=True)
        nearest = axis[tuple(idx)]
    else:  # pragma: no cover - atlas missing
        nearest = np.zeros_like(axis)
    wm_vox = wm > 0.05
    full_axis = np.where(wm_vox | in_tract, nearest, -1).astype(np.int8)
    coherence = np.where(in_tract, 1.0, 0.6).astype(np.float32)
    coherence = ndimage.gaussian_filter(coherence, 1.0)
    return {"axis": MniMap(full_axis, ref.affine), "coherence": MniMap(coherence, ref.affine),
            "labels": labels, "names": names}


@lru_cache(maxsize=2)
def bold_regions(res: int = 2) -> dict:
    """AAL2 label image on the ``res`` mm grid with a network index per label.

    Returns ``{"labels": MniMap(int), "names": {value: name}, "network_of": {value: k},
    "networks": [names]}``; labels without a network (none in AAL2) get their own.
    """
    from hfsmri.spatial.atlas import atlas_on_grid

    ref = _grid_img(res)
    labels, names = atlas_on_grid("aal", ref)
    nets = list(NETWORKS)
    network_of = {}
    for value, name in names.items():
        k = next((i for i, n in enumerate(NETWORKS) if re.fullmatch(NETWORKS[n], name)), None)
        if k is None:
            nets.append(name)
            k = len(nets) - 1
        network_of[int(value)] = k
    return {"labels": MniMap(labels.astype(np.int32), ref.affine), "names": dict(names),
            "network_of": network_of, "networks": nets}
