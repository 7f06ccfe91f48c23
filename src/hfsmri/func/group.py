"""Group stage of the local resting-state metrics (ReHo, ALFF/fALFF, DC, VMHC).

For every requested analysis and each of its metrics (``reho``; ``alff``, ``falff``; ``dcb``,
``dcw``; ``vmhc``) the participant maps ``desc-zsmooth`` (z-standardised, then smoothed; DPABI's
group input) are collected and analysed with the stats engine in ``group/<analysis>/<metric>/``:

* voxel-wise patients vs controls (:func:`hfsmri.stats.group_analysis.voxelwise_group`): study
  covariates plus the participant's **mean FD** (Power) as an extra covariate; TFCE +
  permutation FWE and cluster tables;
* voxel-wise clinical correlations within patients (``corr-<score>-pos/neg``), same covariates;
* ROI table (:func:`hfsmri.stats.group_analysis.roi_group`: group test and partial correlations
  with the clinical scores) over the review's regions (:data:`REVIEW_ROIS`, the regions where
  Tu 2015, Wei 2015 and Lu 2018 report ReHo changes) and over each significant cluster of the
  group comparison (``cluster-<contrast>-<id>``; note that correlations inside clusters selected by
  a group contrast are not independent of that selection).

Subject selection: participants with the map that the study.yaml ``qc:`` rules include
(:mod:`hfsmri.qc.decisions`; ``preprocessing.func.exclude_high_motion`` sets its ``mean_fd_max``);
those left out are listed in ``summary.json`` and ``group/qc_decisions.tsv``. In a
longitudinal study the designs above use the first session of ``sessions`` (between-group,
cross-sectional) and the pre/post designs of :mod:`hfsmri.longitudinal` on the change maps (and
the review ROIs) are added in the same folders.
Affected-side alignment: when ``flip_to`` is set, maps of patients whose affected side differs are
mirrored (x -> -x, :func:`hfsmri.spatial.flip.flip_lr`) before the analysis; ROI names ending in
_L/_R then refer to the aligned image (with ``flip_to: R``, R = affected side).
The analysis mask is the template brain mask where every included subject's map is non-zero.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from hfsmri.analyses import PREPROCESSING_DEFAULTS
from hfsmri.derivatives import read_derivative, save_tsv_atomic, write_json_atomic
from hfsmri.errors import HfsmriError
from hfsmri.func.participant import FUNC_ANALYSES, METRICS, metric_path, qc_path

__all__ = ["run", "REVIEW_ROIS", "GROUP_DESC"]

GROUP_DESC = "zsmooth"

#: ROI name -> hfsmri.spatial.atlas.region_mask spec (the review's functional findings)
REVIEW_ROIS = {
    "MFG_L": "aal:Frontal_Mid_2_L",
    "MCC_L": "aal:Cingulate_Mid_L",
    "Lingual_L": "aal:Lingual_L",
    "STG_R": "aal:Temporal_Sup_R",
    "Precuneus_R": "aal:Precuneus_R",
    "SMA_R": "aal:Supp_Motor_Area_R",
    "Precentral_L": "aal:Precentral_L",
    "Brainstem": "ho:Brain-Stem",
    "CerebellumCrus1_R": "aal:Cerebelum_Crus1_R",
    "Cerebellum6_L": "aal:Cerebelum_6_L",
    "ACC_R": "aal:Cingulate_Ant_R",
}


def _func_params(study) -> dict:
    p = dict(PREPROCESSING_DEFAULTS["func"])
    p.update((getattr(study, "preprocessing", None) or {}).get("func", {}) or {})
    return p


def _session(study):
    sessions = getattr(study, "sessions", None)
    return sessions[0] if sessions else None


def _mean_fd(out, subjects, ses) -> dict:
    fd = {}
    for s in subjects:
        p = qc_path(out, s, ses)
        if p.exists():
            row = read_derivative(p)
            if len(row) and "mean_fd" in row.columns:
                fd[s] = float(row["mean_fd"].iloc[0])
    return fd


def _load_maps(study, paths: dict, log):
    from hfsmri.spatial.flip import flip_lr

    imgs, flipped = {}, []
    for s, p in paths.items():
        img = read_derivative(p)
        if getattr(study, "flip_to", None) and study.flipped(s):
            img = flip_lr(img)
            flipped.append(s)
        imgs[s] = img
    return imgs, flipped


def _roi_table(arrays: dict, affine, mask, specs: dict) -> pd.DataFrame:
    from hfsmri.spatial.atlas import region_mask

    ref = nib.Nifti1Image(mask.astype(np.uint8), affine)
    cols = {}
    for name, spec in specs.items():
        if isinstance(spec, np.ndarray):
            m = spec & mask
        else:
            try:
                m = region_mask(spec, ref) & mask
            except ValueError:
                continue
        if m.sum() == 0:
            continue
        cols[name] = {s: float(a[m].mean()) for s, a in arrays.items()}
    return pd.DataFrame(cols)


def _cluster_rois(out_dir: Path, mask, alpha: float) -> dict:
    rois = {}
    for c in ("patient-gt-control", "patient-lt-control"):
        p = out_dir / f"contrast-{c}_desc-fwe_logp.nii.gz"
        if not p.exists():
            continue
        logp = np.asarray(nib.load(str(p)).dataobj, dtype=float)
        sig = (logp > -np.log10(alpha)) & mask
        lab, n = ndimage.label(sig)
        if n == 0:
            continue
        sizes = ndimage.sum(sig, lab, index=np.arange(1, n + 1))
        for k, i in enumerate(np.argsort(-sizes)[:10], start=1):
            rois[f"cluster-{c}-{k}"] = lab == (i + 1)
    return rois


def _analyse_metric(gctx, analysis, metric, subjects, ses, res, fd, excluded) -> dict:
    from hfsmri.spatial.templates import load_template
    from hfsmri.stats.design import clinical_designs, design_from_study
    from hfsmri.stats.group_analysis import roi_group, voxelwise_group

    study, out, log = gctx.study, gctx.out, gctx.log
    paths = {}
    missing = []
    for s in subjects:
        if s in excluded:
            continue
        p = metric_path(out, s, ses, metric, res, GROUP_DESC)
        if p.exists() and s in fd:
            paths[s] = p
        else:
            missing.append(s)
    if not paths:
        return {"skipped": "no participant maps"}
    imgs, flipped = _load_maps(study, paths, log)
    first = next(iter(imgs.values()))
    affine = first.affine
    arrays = {s: np.asarray(img.dataobj, dtype=np.float64) for s, img in imgs.items()}
    tmask = np.asarray(load_template("mask", res).dataobj) > 0
    if tmask.shape != first.shape[:3]:
        tmask = np.ones(first.shape[:3], bool)
    mask = tmask.copy()
    for a in arrays.values():
        mask &= (a != 0) & np.isfinite(a)
    if mask.sum() < 10:
        raise HfsmriError(f"{analysis}/{metric}: fewer than 10 voxels are covered by every subject's map")
    subs = list(paths)
    extra = pd.DataFrame({"mean_fd": [fd[s] for s in subs]}, index=subs)
    design = design_from_study(study, subs, extra)
    out_dir = out.group_dir(analysis, metric)
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    mask_img.header.set_xyzt_units("mm")
    from hfsmri.derivatives import save_nifti_atomic

    save_nifti_atomic(mask_img, out_dir / "mask.nii.gz")
    data = np.vstack([arrays[s][mask] for s in design.subjects])
    side = {"Metric": metric, "Analysis": analysis, "InputMaps": f"desc-{GROUP_DESC} (z-standardised, smoothed)",
            "Session": ses, "ExtraCovariates": ["mean_fd"], "Excluded": {s: excluded[s] for s in excluded}}
    clusters = voxelwise_group(data, mask_img, design, out_dir, gctx.stats, sidecar=side)
    n_clin = {}
    try:
        clin = clinical_designs(study, subs, extra)
    except HfsmriError as exc:
        log.warning("%s/%s: clinical correlations skipped: %s", analysis, metric, exc)
        clin = {}
    for score, d in clin.items():
        rows = [design.subjects.index(s) for s in d.subjects]
        ct = voxelwise_group(data[rows], mask_img, d, out_dir, gctx.stats, sidecar=side)
        n_clin[score] = int(len(ct))
    alpha = float((gctx.stats or {}).get("alpha", 0.05))
    specs = dict(REVIEW_ROIS)
    specs.update(_cluster_rois(out_dir, mask, alpha))
    table = _roi_table({s: arrays[s] for s in subs}, affine, mask, specs)
    rois_df = corr_df = None
    if table.shape[1]:
        try:
            rois_df, corr_df = roi_group(table, study, out_dir, gctx.stats, extra)
        except HfsmriError as exc:
            log.warning("%s/%s: ROI analysis skipped: %s", analysis, metric, exc)
    summary = {"n_subjects": len(subs), "n_patient": design.info.get("n_patient"),
               "n_control": design.info.get("n_control"), "flipped": flipped, "missing": missing,
               "n_mask_voxels": int(mask.sum()), "n_cluster_rows": int(len(clusters)),
               "clinical_cluster_rows": n_clin, "n_rois": int(table.shape[1])}
    write_json_atomic(out_dir / "summary.json", summary)
    return summary


def run(gctx) -> dict:
    """Group analyses of the requested local metrics (see module doc)."""
    study = gctx.study
    requested = [a for a in FUNC_ANALYSES if a in (gctx.analyses or {})]
    if not requested:
        return {}
    fp = _func_params(study)
    res = int(fp["resolution"]) if float(fp["resolution"]).is_integer() else float(fp["resolution"])
    ses = _session(study)
    subjects = [str(s) for s in study.participants.index]
    fd = _mean_fd(gctx.out, subjects, ses)
    # who is left out is decided by study.yaml qc: (hfsmri.qc.decisions; the one owner of the FD
    # rule): the group level hands this stage the study restricted to the included set
    excluded = dict(getattr(study, "qc_excluded", None) or {})
    qc_rows = []
    for s in subjects + [s for s in excluded if s not in subjects]:  # the QC table lists the excluded too
        p = qc_path(gctx.out, s, ses)
        if p.exists():
            qc_rows.append(read_derivative(p))
    if qc_rows:
        qc = pd.concat(qc_rows, ignore_index=True)
        qc["excluded"] = [r.removeprefix("sub-") in excluded for r in qc["participant_id"].astype(str)]
        gdir = gctx.out.root / "group"
        gdir.mkdir(parents=True, exist_ok=True)
        save_tsv_atomic(qc, gdir / "func_qc.tsv")
    results = {}
    failures = []
    for analysis in requested:
        for metric in METRICS[analysis]:
            gctx.log.info("func group: %s/%s", analysis, metric)
            try:
                results[f"{analysis}/{metric}"] = _analyse_metric(gctx, analysis, metric, subjects, ses, res,
                                                                  fd, excluded)
                if len(getattr(study, "sessions", None) or []) >= 2:  # pre/post designs (hfsmri.longitudinal)
                    from hfsmri.longitudinal import run_longitudinal_maps
                    results[f"{analysis}/{metric}/longitudinal"] = run_longitudinal_maps(
                        gctx, analysis, metric, lambda s, ses_, m=metric: None if s in excluded else metric_path(
                            gctx.out, s, ses_, m, res, GROUP_DESC), flip=True, roi_specs=REVIEW_ROIS)
            except HfsmriError as exc:
                failures.append(f"{analysis}/{metric}: {exc}")
                results[f"{analysis}/{metric}"] = {"error": str(exc)}
    results["excluded_high_motion"] = excluded
    if failures and len(failures) == sum(len(METRICS[a]) for a in requested):
        raise HfsmriError("func group stage failed: " + "; ".join(failures))
    return results
