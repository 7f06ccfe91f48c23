"""Regional GM volumes in native space (pure numpy kernels + the review's ROI list).

Volume of a region = sum over the region's native voxels of GM probability x voxel volume (ml);
the region is the MNI atlas label image resampled onto the native grid through the inverse of the
T1w -> MNI transform (label interpolation), so no modulation is needed.

The review's regions (:data:`REVIEW_ROIS`): thalamus, putamen, pallidum, caudate, amygdala and
hippocampus from Harvard-Oxford subcortical (each side); parahippocampal gyrus, inferior parietal
lobule, middle frontal gyrus (DLPFC) and cerebellum VI and VIII from AAL2 (each side).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: ROI name -> (atlas, label name); names are the column names of group ROI tables
REVIEW_ROIS: dict[str, tuple[str, str]] = {}
for _side, _ho, _aal in (("L", "Left", "L"), ("R", "Right", "R")):
    for _n in ("Thalamus", "Putamen", "Pallidum", "Caudate", "Amygdala", "Hippocampus"):
        REVIEW_ROIS[f"{_n.lower()}_{_side}"] = ("harvard_oxford", f"{_ho}_{_n}")
    REVIEW_ROIS[f"parahippocampal_{_side}"] = ("aal", f"ParaHippocampal_{_aal}")
    REVIEW_ROIS[f"ipl_{_side}"] = ("aal", f"Parietal_Inf_{_aal}")
    REVIEW_ROIS[f"mfg_{_side}"] = ("aal", f"Frontal_Mid_2_{_aal}")
    REVIEW_ROIS[f"cerebellum6_{_side}"] = ("aal", f"Cerebelum_6_{_aal}")
    REVIEW_ROIS[f"cerebellum8_{_side}"] = ("aal", f"Cerebelum_8_{_aal}")


def label_volumes(prob: np.ndarray, labels: np.ndarray, names: dict, voxel_ml: float) -> pd.DataFrame:
    """Sum of ``prob`` x ``voxel_ml`` within each label of ``labels``.

    Parameters
    ----------
    prob : probability map (e.g. GM, 0..1), same shape as ``labels``.
    labels : integer label image on the same grid (0 = background).
    names : label value -> region name (rows are returned in this dict's order).
    voxel_ml : volume of one voxel in ml.

    Returns
    -------
    DataFrame with columns ``region, label, n_voxels, volume_ml``.
    """
    prob = np.asarray(prob, dtype=np.float64)
    labels = np.asarray(labels)
    if prob.shape != labels.shape:
        raise ValueError(f"probability map {prob.shape} and labels {labels.shape} differ in shape")
    lab = labels.astype(np.int64).ravel()
    lab_ok = lab >= 0
    nmax = int(max(max(names, default=0), lab.max(initial=0))) + 1
    counts = np.bincount(lab[lab_ok], minlength=nmax)
    sums = np.bincount(lab[lab_ok], weights=prob.ravel()[lab_ok], minlength=nmax)
    rows = [{"region": str(n), "label": int(k), "n_voxels": int(counts[k]),
             "volume_ml": float(sums[k] * voxel_ml)} for k, n in names.items()]
    return pd.DataFrame(rows, columns=["region", "label", "n_voxels", "volume_ml"])


def review_roi_table(prob: np.ndarray, native_labels: dict, voxel_ml: float) -> pd.DataFrame:
    """Volumes of :data:`REVIEW_ROIS` from native label images.

    ``native_labels``: atlas name -> (label array on the native grid, {value: name}).
    Returns columns ``region, atlas, source_label, n_voxels, volume_ml``.
    """
    rows = []
    for roi, (atlas, label) in REVIEW_ROIS.items():
        lab, names = native_labels[atlas]
        values = [k for k, v in names.items() if v == label]
        if not values:
            raise ValueError(f"label {label!r} not found in atlas {atlas!r}")
        m = np.isin(lab, values)
        rows.append({"region": roi, "atlas": atlas, "source_label": label, "n_voxels": int(m.sum()),
                     "volume_ml": float(np.asarray(prob, dtype=np.float64)[m].sum() * voxel_ml)})
    return pd.DataFrame(rows, columns=["region", "atlas", "source_label", "n_voxels", "volume_ml"])
