"""Structural group stage: VBM, thickness (voxel-wise and regional) and ROI volumes.

* ``vbm/gm``: modulated, smoothed GM maps (``label-GM_desc-modulated_probseg``), voxel-wise
  permutation GLM (TFCE, FWE) patients vs controls with the study covariates and **TIV** (ml) as an
  extra covariate; clinical correlations within patients (``corr-<score>-pos/neg``), same
  covariates. Mask: template GM probability >= ``gm_mask_threshold`` (0.2).
* ``thickness/thickness``: MNI thickness maps, voxels where every subject has thickness > 0 inside
  the template GM >= 0.3 mask; study covariates (no TIV). Regional mean thickness (Harvard-Oxford,
  native space) -> ``rois.tsv`` / ``correlations.tsv`` in the same folder.
* ``roi_volumes/volume``: native-space GM volumes of the review's ROIs and every AAL region;
  TIV as covariate (default, ``tiv: covariate``) or volumes normalised by TIV
  (``tiv: normalise``: volume / TIV x mean TIV, no extra covariate).

Affected-side alignment: MNI maps were already mirrored at the participant level (their sidecar
says ``Flipped``); in ROI tables of flipped patients the _L/_R (Left_/Right_) columns are swapped
so that, with ``flip_to: R``, R means the affected side. Longitudinal studies: the first session is
analysed (cross-sectional between-group comparison).
"""
from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..derivatives import read_derivative, write_json_atomic
from ..errors import HfsmriError
from ..spatial.templates import load_template

GM_MASK_THRESHOLD = 0.2


def _session(study):
    sessions = getattr(study, "sessions", None)
    return sessions[0] if sessions else None


def _subjects(study) -> list[str]:
    return [str(s) for s in study.participants.index]


def swap_lr_name(name: str) -> str:
    """Mirror a region name: ``X_L`` <-> ``X_R``, ``Left_X`` <-> ``Right_X`` (else unchanged)."""
    if re.search(r"_L$", name):
        return name[:-2] + "_R"
    if re.search(r"_R$", name):
        return name[:-2] + "_L"
    if name.startswith("Left_"):
        return "Right_" + name[5:]
    if name.startswith("Right_"):
        return "Left_" + name[6:]
    return name


def flip_table(table: pd.DataFrame, flipped: list[str]) -> pd.DataFrame:
    """Swap left/right columns for the rows (participants) in ``flipped``."""
    out = table.copy()
    rows = [r for r in out.index if r in set(flipped)]
    if not rows:
        return out
    mapping = {c: swap_lr_name(c) for c in out.columns}
    cols = [c for c in out.columns if mapping[c] != c and mapping[c] in out.columns]
    out.loc[rows, cols] = table.loc[rows, [mapping[c] for c in cols]].to_numpy()
    return out


def _tissue(out, subjects, ses) -> pd.DataFrame:
    rows = {}
    for s in subjects:
        p = out.path(s, ses, "anat", "stats", space=None, entities={"desc": "tissue"}, ext=".tsv")
        if p.exists():
            rows[s] = read_derivative(p).iloc[0]
    return pd.DataFrame(rows).T


def _flipped(study, subjects) -> list[str]:
    fn = getattr(study, "flipped", None)
    return [s for s in subjects if fn is not None and fn(s)]


def _tiv_covariate(tiv: pd.DataFrame, log) -> pd.DataFrame | None:
    """TIV as the automatic covariate, or None (with a warning) when it does not vary: identical
    head sizes (e.g. a simulated study without per-subject deformation) make it a constant column."""
    v = pd.to_numeric(tiv["TIV"], errors="coerce").to_numpy(dtype=float)
    if len(v) and np.isfinite(v).all() and np.ptp(v) == 0:
        log.warning("TIV is identical for all %d subjects: not used as a covariate", len(v))
        return None
    return tiv


def _voxelwise(gctx, paths: dict, mask_img, metric_dir: Path, extra: pd.DataFrame | None, log) -> dict:
    from ..stats.design import clinical_designs, design_from_study
    from ..stats.group_analysis import voxelwise_group

    subjects = list(paths)
    design = design_from_study(gctx.study, subjects, extra)
    imgs = [str(paths[str(s).removeprefix("sub-")]) for s in design.subjects]
    clusters = voxelwise_group(imgs, mask_img, design, metric_dir, stats=gctx.stats)
    n_clusters = {"group": int(len(clusters))}
    clinical = getattr(gctx.study, "clinical", None) or []
    if clinical:
        try:
            for score, d in clinical_designs(gctx.study, subjects, extra).items():
                imgs_c = [str(paths[str(s).removeprefix("sub-")]) for s in d.subjects]
                cl = voxelwise_group(imgs_c, mask_img, d, metric_dir, stats=gctx.stats)
                n_clusters[score] = int(len(cl))
        except HfsmriError as exc:
            log.warning("anat group: clinical correlations skipped in %s: %s", metric_dir, exc)
    return n_clusters


def run(gctx) -> dict:
    """Run the requested structural group analyses (see module doc)."""
    log = gctx.log
    study, out = gctx.study, gctx.out
    ses = _session(study)
    subjects = _subjects(study)
    analyses = gctx.analyses or {}
    summary: dict = {}
    tissue = _tissue(out, subjects, ses)
    tiv = (pd.DataFrame({"TIV": pd.to_numeric(tissue["tiv_ml"])}) if len(tissue) and "tiv_ml" in tissue
           else pd.DataFrame(columns=["TIV"]))
    flipped = _flipped(study, subjects)

    if "vbm" in analyses:
        p = analyses["vbm"] or {}
        res = float(p.get("resolution", 2))
        paths = {s: out.path(s, ses, "anat", "probseg", res=res, entities={"label": "GM", "desc": "modulated"})
                 for s in subjects}
        paths = {s: v for s, v in paths.items() if v.exists() and s in tiv.index}
        if len(paths) < 4:
            raise HfsmriError(f"VBM: only {len(paths)} participants have modulated GM maps; at least 4 are needed")
        gm = load_template("GM", res)
        mask = nib.Nifti1Image((gm.get_fdata() >= GM_MASK_THRESHOLD).astype(np.uint8), gm.affine)
        d = out.group_dir("vbm", "gm")
        n = _voxelwise(gctx, paths, mask, d, _tiv_covariate(tiv.loc[list(paths)], log), log)
        if len(getattr(study, "sessions", None) or []) >= 2:  # pre/post designs (hfsmri.longitudinal)
            from ..longitudinal import run_longitudinal_maps
            summary["vbm_longitudinal"] = run_longitudinal_maps(
                gctx, "vbm", "gm", lambda s, ses_: out.path(s, ses_, "anat", "probseg", res=res,
                                                            entities={"label": "GM", "desc": "modulated"}),
                base_mask=np.asarray(mask.dataobj) > 0)
        write_json_atomic(d / "summary.json", {"n_subjects": len(paths), "covariates": "study covariates + TIV (ml)",
                                               "mask": f"template GM >= {GM_MASK_THRESHOLD}", "n_clusters": n,
                                               "session": ses, "flipped_subjects": [s for s in flipped if s in paths]})
        summary["vbm"] = {"n_subjects": len(paths), "n_clusters": n}

    if "thickness" in analyses:
        p = analyses["thickness"] or {}
        res = float(p.get("resolution", 2))
        paths = {s: out.path(s, ses, "anat", "morph", res=res, entities={"desc": "thickness"}) for s in subjects}
        paths = {s: v for s, v in paths.items() if v.exists()}
        if len(paths) < 4:
            raise HfsmriError(f"thickness: only {len(paths)} participants have thickness maps; at least 4 are needed")
        gm = load_template("GM", res).get_fdata() >= 0.3
        allpos = np.ones(gm.shape, dtype=bool)
        for v in paths.values():
            allpos &= read_derivative(v).get_fdata() > 0
        mask = nib.Nifti1Image((gm & allpos).astype(np.uint8), load_template("GM", res).affine)
        d = out.group_dir("thickness", "thickness")
        n = _voxelwise(gctx, paths, mask, d, None, log)
        if len(getattr(study, "sessions", None) or []) >= 2:  # pre/post designs (hfsmri.longitudinal)
            from ..longitudinal import run_longitudinal_maps
            summary["thickness_longitudinal"] = run_longitudinal_maps(
                gctx, "thickness", "thickness", lambda s, ses_: out.path(s, ses_, "anat", "morph", res=res,
                                                                         entities={"desc": "thickness"}),
                base_mask=gm)
        # regional thickness
        from ..stats.group_analysis import roi_group

        rows = {}
        for s in paths:
            tp = out.path(s, ses, "anat", "stats", space=None, entities={"desc": "thickness"}, ext=".tsv")
            if tp.exists():
                t = read_derivative(tp)
                rows[s] = pd.Series(t["thickness_mm"].to_numpy(), index=t["region"].to_numpy())
        table = pd.DataFrame(rows).T
        table = table.loc[:, table.notna().all(axis=0)]
        table = table[[c for c in table.columns if not re.search(r"Ventric|Brain-Stem|Thalamus|Caudate|Putamen|"
                                                                  r"Pallidum|Hippocampus|Amygdala|Accumbens", c)]]
        table = flip_table(table, flipped)
        if table.shape[1]:
            roi_group(table, study, d, stats=gctx.stats)
        write_json_atomic(d / "summary.json", {"n_subjects": len(paths), "covariates": "study covariates",
                                               "n_clusters": n, "n_regions": int(table.shape[1]), "session": ses})
        summary["thickness"] = {"n_subjects": len(paths), "n_clusters": n}

    if "roi_volumes" in analyses:
        from ..stats.group_analysis import roi_group

        p = analyses["roi_volumes"] or {}
        mode = str(p.get("tiv", "covariate")).lower()
        if mode not in ("covariate", "normalise", "normalize"):
            raise HfsmriError(f"roi_volumes.tiv must be 'covariate' or 'normalise', got {mode!r}",
                              field="analyses.roi_volumes.tiv")
        rows = {}
        for s in subjects:
            tp = out.path(s, ses, "anat", "stats", space=None, entities={"desc": "roivolumes"}, ext=".tsv")
            if tp.exists() and s in tiv.index:
                t = read_derivative(tp)
                rows[s] = pd.Series(t["volume_ml"].to_numpy(), index=t["region"].to_numpy())
        if len(rows) < 4:
            raise HfsmriError(f"ROI volumes: only {len(rows)} participants have ROI tables; at least 4 are needed")
        table = pd.DataFrame(rows).T.astype(float)
        table = table.loc[:, (table > 0).all(axis=0)]
        table = flip_table(table, flipped)
        t_sub = tiv.loc[table.index, "TIV"].astype(float)
        d = out.group_dir("roi_volumes", "volume")
        if mode == "covariate":
            roi_group(table, study, d, stats=gctx.stats, extra_covariates=_tiv_covariate(tiv.loc[table.index], log))
        else:
            norm = table.mul(t_sub.mean() / t_sub, axis=0)
            roi_group(norm, study, d, stats=gctx.stats)
        if len(getattr(study, "sessions", None) or []) >= 2:  # pre/post designs (hfsmri.longitudinal)
            from ..longitudinal import roi_tables_by_session, run_longitudinal_roi

            def _row(s, ses_):
                tp = out.path(s, ses_, "anat", "stats", space=None, entities={"desc": "roivolumes"}, ext=".tsv")
                if not tp.exists():
                    return None
                t = read_derivative(tp)
                r = pd.Series(t["volume_ml"].to_numpy(dtype=float), index=t["region"].to_numpy())
                return flip_table(r.to_frame(s).T, flipped).iloc[0]
            summary["roi_volumes_longitudinal"] = run_longitudinal_roi(
                gctx, "roi_volumes", "volume", roi_tables_by_session(study, _row))
        write_json_atomic(d / "summary.json", {"n_subjects": int(len(table)), "tiv": mode,
                                               "n_regions": int(table.shape[1]), "session": ses,
                                               "flipped_subjects": [s for s in flipped if s in table.index]})
        summary["roi_volumes"] = {"n_subjects": int(len(table)), "tiv": mode}
    return summary
