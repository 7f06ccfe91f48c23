"""Writing group results: every file named by :meth:`hfsmri.derivatives.Derivatives.group_path`,
written atomically with its JSON sidecar (the statistics' description plus what the runner adds:
analysis, metric, session, flipped and excluded participants)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd

from .. import __version__
from ..analyses import TEMPLATE_SPACE
from ..derivatives import contrast_label, save_nifti_atomic, save_tsv_atomic, sidecar_path, write_json_atomic
from ..stats.design import describe_contrast
from ..stats.voxelwise import EXTRA_LOGP

SOFTWARE = f"hfsmri {__version__}"
CLUSTER_COLUMNS_DOC = {
    "n_voxels": "voxels in the cluster", "volume_mm3": "cluster volume (mm^3)", "peak_x/y/z": "peak in MNI mm",
    "peak_stat": "t at the peak", "p_fwe": "smallest FWE p in the cluster (sub-peak rows: p at that voxel)",
    "aal_label/ho_label": "AAL2 / Harvard-Oxford (maxprob 25%) label at the peak",
    "com_x/y/z": "centre of mass in MNI mm", "aal_shares/ho_shares": "share of the cluster per label",
    "is_subpeak": "local maximum >= 8 mm from the reported peaks",
    "below_min_voxels": "cluster smaller than stats.min_cluster_voxels: listed, not a finding",
    "p_fwe_family": "smallest family-wise FWE p in the cluster (scope: sidecar FamilywiseFWE)"}


def volume(values, mask: np.ndarray, affine) -> nib.Nifti1Image:
    """A float32 image of in-mask ``values`` (0 outside)."""
    vol = np.zeros(mask.shape, dtype=np.float32)
    vol[mask] = values
    img = nib.Nifti1Image(vol, affine)
    img.header.set_xyzt_units("mm")
    return img


def save(path, obj, meta: dict | None = None) -> None:
    """An image (``.nii.gz``) or a table (``.tsv``) written atomically, with its sidecar when ``meta``."""
    (save_tsv_atomic if str(path).endswith(".tsv") else save_nifti_atomic)(obj, path)
    if meta is not None:
        write_json_atomic(sidecar_path(path), meta)


def save_mask(out, analysis, metric, mask, affine, kind: str = "mask", meta: dict | None = None) -> nib.Nifti1Image:
    img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    img.header.set_xyzt_units("mm")
    save(out.group_path(analysis, metric, kind=kind), img, meta)
    return img


def results(out, analysis: str, metric: str, res: list, mask: np.ndarray, affine, sidecar: dict) -> None:
    """Every file of each :class:`~hfsmri.stats.voxelwise.GroupResult` (maps, cluster table)."""
    for r in res:
        meta = {"Description": f"group analysis, contrast {r.contrast}", "Space": TEMPLATE_SPACE,
                "Software": SOFTWARE, **r.meta, **sidecar}

        def path(kind, c=r.contrast):
            return out.group_path(analysis, metric, c, kind)

        save(path("t"), volume(r.t, mask, affine), {**meta, "Statistic": "t"})
        save(path("tfce"), volume(r.tfce, mask, affine), {**meta, "Statistic": "TFCE"})
        main = "TFCE" if r.meta["Inference"].startswith("TFCE") else "voxel max-t"
        save(path("fwe"), volume(r.logp["fwe"], mask, affine), {**meta, "Statistic": f"-log10 FWE p ({main})"})
        for kind in EXTRA_LOGP:
            if kind in r.logp:
                save(path(kind), volume(r.logp[kind], mask, affine), {**meta, "Statistic": f"-log10 p ({kind})"})
        save(path("clusters"), r.clusters, {**meta, "Columns": CLUSTER_COLUMNS_DOC})
    contrasts_table(out, analysis, metric, res)


CONTRASTS_COLUMNS = ["label", "contrast", "description", "design", "n_subjects", "columns", "vector"]


def contrasts_table(out, analysis: str, metric: str, res: list) -> None:
    """``contrasts.tsv`` of a group folder: each file label (``contrast-<label>``) with the design's
    contrast name, human text, design kind, subjects, design columns and contrast vector; rows of
    earlier writes to the folder (other designs) are kept."""
    path = out.group_path(analysis, metric, kind="contrasts")
    rows = {}
    if path.is_file():
        old = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        rows = {r["label"]: dict(r) for _, r in old.iterrows()}
    for r in res:
        info = r.meta.get("DesignInfo") or {}
        rows[contrast_label(r.contrast)] = {
            "label": contrast_label(r.contrast), "contrast": r.contrast, "description": describe_contrast(r.contrast),
            "design": str(info.get("kind", "")), "n_subjects": str(r.meta.get("NSubjects", "")),
            "columns": ",".join(map(str, r.meta.get("DesignColumns", []))),
            "vector": ",".join(f"{x:g}" for x in r.meta.get("ContrastVector", []))}
    save(path, pd.DataFrame(list(rows.values()), columns=CONTRASTS_COLUMNS),
         {"Description": "contrasts of this folder: file label -> design contrast and its meaning",
          "Columns": {"label": "the contrast-<label> entity of the files", "contrast": "contrast name in the design",
                      "description": "what the contrast tests", "design": "design kind",
                      "n_subjects": "participants in the design", "columns": "design matrix columns",
                      "vector": "contrast weights over the columns"}})


def family_map(out, analysis: str, metric: str, r, mask, affine, kind: str) -> None:
    """The family-wise −log10 p map ``kind`` of one result and its cluster table (written again)."""
    meta = {"Description": f"group analysis, contrast {r.contrast}", "Space": TEMPLATE_SPACE,
            "Software": SOFTWARE, **r.meta}
    save(out.group_path(analysis, metric, r.contrast, kind), volume(r.logp[kind], mask, affine),
         {**meta, "Statistic": f"-log10 family-wise FWE p ({kind})"})
    save(out.group_path(analysis, metric, r.contrast, "clusters"), r.clusters, {**meta, "Columns": CLUSTER_COLUMNS_DOC})


def roi_results(out, analysis: str, metric: str, res) -> None:
    """``rois.tsv``, ``correlations.tsv`` (with sidecars) and ``values.tsv`` of a
    :class:`~hfsmri.stats.roi.RoiResult`."""
    meta = {"Software": SOFTWARE, **res.meta}
    save(out.group_path(analysis, metric, kind="rois"), res.rois,
               {**meta, "Description": "ROI group comparison (patient vs control)"})
    save(out.group_path(analysis, metric, kind="correlations"), res.correlations,
               {**meta, "Description": "partial correlations with clinical scores within patients"})
    save(out.group_path(analysis, metric, kind="values"), res.values)


def summary(out, analysis: str, metric: str | None, content: dict, kind: str = "summary") -> None:
    write_json_atomic(out.group_path(analysis, metric, kind=kind), content)
