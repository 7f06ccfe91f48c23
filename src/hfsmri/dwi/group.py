"""Group stage of the diffusion analyses.

* ``dti`` — voxel-wise permutation GLM of FA/MD/AD/RD in MNI within the white-matter mask (every
  subject's brain mask ∩ mean FA ≥ ``tbss.fa_threshold``), TFCE "3d" setting →
  ``group/dti/<metric>/``.
* ``tbss`` — TBSS (:mod:`hfsmri.dwi.tbss`): mean FA, skeleton at ``fa_threshold``, projection of
  every subject's FA and the same indices for MD/AD/RD; skeleton statistics with the skeleton
  TFCE setting (H=2, E=1, 26-connectivity) → ``group/tbss/<metric>/`` plus
  ``group/tbss/mean_FA.nii.gz``, ``group/tbss/mean_FA_skeleton_mask.nii.gz`` and
  ``group/tbss/<metric>/all_<METRIC>_skeletonised.nii.gz`` (4D, subjects in the order of the JSON
  sidecar).
* ``dwi_rois`` — ROI tests and partial correlations with the clinical scores of the per-subject
  tract / callosum means → ``group/dwi_rois/<metric>/rois.tsv``, ``correlations.tsv``.

Every analysis runs the two-group design (``patient-gt-control``, ``patient-lt-control``) and the
clinical designs among patients (``corr-<score>-pos/neg``). In longitudinal studies (``sessions``
lists >= 2 sessions) these cross-sectional designs use the first session (baseline), and every
analysis adds the longitudinal designs of :mod:`hfsmri.longitudinal` on the per-subject change
follow-up − baseline (paired ``<group>-<post>-gt/lt-<pre>``, group × time
``change-patient-gt/lt-control``, change vs change ``corr-delta<score>-pos/neg``) in the same
folders:

* ``dti/<metric>``: the maps of both sessions within the baseline white-matter mask;
* ``tbss/<metric>``: the skeleton is the baseline one (unchanged cross-sectional outputs); every
  subject's follow-up FA is projected onto it by its own perpendicular search and MD/AD/RD are
  read at that session's FA indices (as FSL ``tbss_non_FA``), the baseline likewise with its own
  projection; the designs run on the skeletonised change with the skeleton as mask (skeleton TFCE
  setting; ``mask_longitudinal.nii.gz`` = skeleton voxels where every projected value of both
  sessions is finite and non-zero);
* ``dwi_rois/<metric>``: the tract / callosum means of both sessions → ``rois_longitudinal.tsv``.

Diffusion maps are already aligned to the affected side at the participant level, so nothing is
flipped here.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd

from hfsmri.analyses import DEFAULTS
from hfsmri.derivatives import read_derivative
from hfsmri.dwi.participant import METRICS, dti_params, map_path, mask_path, stats_path
from hfsmri.errors import DesignError, HfsmriError, InputDataError


def _designs(study, subjects, log):
    from hfsmri.stats.design import clinical_designs, design_from_study

    designs = [("group", design_from_study(study, subjects))]
    try:
        designs += list(clinical_designs(study, subjects).items())
    except DesignError as exc:
        log.warning("clinical correlations skipped: %s", exc)
    return designs


def _rows(design, subjects) -> np.ndarray:
    pos = {s: i for i, s in enumerate(subjects)}
    return np.array([pos[str(s).removeprefix("sub-")] for s in design.subjects])


def _available(gctx, res, ses) -> list[str]:
    out = []
    for sub in gctx.study.participants.index:
        if all(map_path(gctx.out, str(sub), ses, m, res).exists() for m in METRICS):
            out.append(str(sub))
    return out


def _load(gctx, subjects, ses, metric, res) -> np.ndarray:
    return np.stack([np.asarray(read_derivative(map_path(gctx.out, s, ses, metric, res)).dataobj, dtype=np.float32)
                     for s in subjects])


def _save(img, path, meta):
    from hfsmri.derivatives import save_nifti_atomic, sidecar_path, write_json_atomic

    save_nifti_atomic(img, path)
    write_json_atomic(sidecar_path(path), meta)


def _session_maps(gctx, sub, ses, res, shape) -> dict:
    """One subject's FA/MD/AD/RD maps of one session (metric -> 3D float64; non-finite values,
    i.e. outside the brain, set to 0). A map on another grid raises :class:`InputDataError`."""
    from hfsmri.io import load_image

    out = {}
    for m in METRICS:
        p = map_path(gctx.out, sub, ses, m, res)
        img = load_image(p, ndim=3, what=f"{m.upper()} map")
        try:
            a = np.asarray(img.dataobj, dtype=np.float64)
        except Exception as exc:  # truncated / corrupt data block
            raise InputDataError(f"cannot read the {m.upper()} map data ({type(exc).__name__}: {exc})",
                                 path=p) from None
        if a.shape[:3] != tuple(shape):
            raise InputDataError(f"{m.upper()} map grid {a.shape} differs from the TBSS skeleton grid "
                                 f"{tuple(shape)} (MNI {res} mm)", path=p)
        out[m] = np.nan_to_num(a.reshape(shape), nan=0.0, posinf=0.0, neginf=0.0)
    return out


def tbss_session_values(gctx, skeleton, subjects, sessions, res) -> dict:
    """Skeleton values of every subject and session, projected onto one (baseline) skeleton.

    Each session's FA is projected by its own perpendicular search and MD/AD/RD are read at that
    session's FA indices (:func:`hfsmri.dwi.tbss.project_metrics`, FSL ``tbss_non_FA``).

    Returns ``{(participant, session): {metric: (n_skel,) array}}`` in :attr:`Skeleton.indices` order.
    """
    from hfsmri.dwi.tbss import project_metrics

    shape = skeleton.skeleton.shape
    values = {}
    for s in subjects:
        for ses in sessions:
            maps = _session_maps(gctx, s, ses, res, shape)
            fa = maps.pop("fa")
            values[(s, ses)], _ = project_metrics(skeleton, fa, maps)
    return values


def _tbss_longitudinal(gctx, skeleton, affine, res, tb, meta) -> dict:
    """Longitudinal designs on the skeletonised change (see module doc).

    Returns ``{"tbss/<metric>": summary of run_longitudinal_maps}``; never raises an
    :class:`HfsmriError` (returns ``{"tbss": {"error": ...}}``) so that the cross-sectional TBSS
    results are kept."""
    from hfsmri.dwi.tbss import to_volume
    from hfsmri.longitudinal import run_longitudinal_maps, session_pair

    study = gctx.study
    try:
        pre, post = session_pair(study)
        both = set(_available(gctx, res, pre)) & set(_available(gctx, res, post))
        subjects = [s for s in study.labels if s in both]
        values = tbss_session_values(gctx, skeleton, subjects, (pre, post), res)
    except HfsmriError as exc:
        gctx.log.warning("tbss: longitudinal analysis skipped: %s", exc)
        return {"tbss": {"error": str(exc)}}
    side = {"Method": meta["Method"], "Threshold": meta["Threshold"], "NSkeletonVoxels": meta["NSkeletonVoxels"],
            "SkeletonSession": pre,
            "Projection": "each session's FA projected onto the baseline skeleton by its own search; "
                          "MD/AD/RD at that session's FA indices (tbss_non_FA)"}
    out = {}
    for metric in METRICS:
        def image(s, ses_, m=metric):
            v = values.get((s, ses_))
            return None if v is None else nib.Nifti1Image(to_volume(skeleton, v[m]).astype(np.float32), affine)

        out[f"tbss/{metric}"] = run_longitudinal_maps(gctx, "tbss", metric, image, base_mask=skeleton.skeleton,
                                            tfce_setting=tb.get("tfce_setting", "skeleton"), sidecar=side)
    return out


def run(gctx) -> dict:
    from hfsmri.stats.group_analysis import roi_group, voxelwise_group
    from hfsmri.spatial.templates import template_grid

    study, log = gctx.study, gctx.log
    p = dti_params(gctx.analyses, getattr(study, "preprocessing", {}))
    tb = dict(DEFAULTS["tbss"])
    tb.update(gctx.analyses.get("tbss") or {})
    res = p["resolution"]
    ses = study.sessions[0] if getattr(study, "sessions", None) else None
    subjects = _available(gctx, res, ses)
    summary: dict = {"n_subjects": len(subjects), "session": ses}
    if len(subjects) < 4:
        raise HfsmriError(f"diffusion group analyses need at least 4 subjects with tensor maps, found {len(subjects)}")
    designs = _designs(study, subjects, log)
    shape, affine = template_grid(res)
    stats = dict(gctx.stats)
    base_meta = {"Subjects": subjects, "Session": ses, "Space": "MNI152NLin2009cAsym", "Resolution": res}

    masks = np.stack([np.asarray(read_derivative(mask_path(gctx.out, s, ses, res)).dataobj) > 0 for s in subjects])
    fa = _load(gctx, subjects, ses, "fa", res)
    common = masks.all(axis=0) & np.all(fa > 0, axis=0)

    if "dti" in gctx.analyses:
        wm = common & (fa.mean(axis=0) >= float(tb["fa_threshold"]))
        mask_img = nib.Nifti1Image(wm.astype(np.uint8), affine)
        summary["dti"] = {"n_voxels": int(wm.sum())}
        for metric in METRICS:
            arr = fa if metric == "fa" else _load(gctx, subjects, ses, metric, res)
            Y = arr[:, wm].astype(np.float64)
            out_dir = gctx.out.group_dir("dti", metric)
            for name, design in designs:
                log.info("dti/%s: %s design, %d subjects, %d voxels", metric, name, len(design.subjects), Y.shape[1])
                voxelwise_group(Y[_rows(design, subjects)], mask_img, design, out_dir, stats, tfce_setting="3d",
                                sidecar=dict(base_meta, Analysis="dti", Metric=metric))
            if len(getattr(study, "sessions", None) or []) >= 2:  # pre/post designs (hfsmri.longitudinal)
                from hfsmri.longitudinal import run_longitudinal_maps
                summary.setdefault("longitudinal", {})[f"dti/{metric}"] = run_longitudinal_maps(
                    gctx, "dti", metric, lambda s, ses_, m=metric: map_path(gctx.out, s, ses_, m, res), base_mask=wm)

    if "tbss" in gctx.analyses:
        from hfsmri.dwi.tbss import tbss

        fa_m = np.where(common[None], fa, 0.0)
        others = {m: np.where(common[None], _load(gctx, subjects, ses, m, res), 0.0) for m in METRICS if m != "fa"}
        result = tbss(fa_m, others, threshold=float(tb["fa_threshold"]), voxel_size=(float(res),) * 3)
        sk = result.skeleton
        root = gctx.out.group_dir("tbss")
        meta = dict(base_meta, Method="TBSS (clean-room, Smith et al. 2006)", Threshold=float(tb["fa_threshold"]),
                    NSkeletonVoxels=sk.n_voxels)
        _save(nib.Nifti1Image(sk.mean_fa.astype(np.float32), affine), root / "mean_FA.nii.gz", meta)
        skel_img = nib.Nifti1Image(sk.skeleton.astype(np.uint8), affine)
        _save(skel_img, root / "mean_FA_skeleton_mask.nii.gz", meta)
        summary["tbss"] = {"n_skeleton_voxels": sk.n_voxels}
        if sk.n_voxels == 0:
            raise HfsmriError(f"TBSS skeleton is empty at FA threshold {tb['fa_threshold']}")
        from hfsmri.dwi.tbss import to_volume

        for metric in METRICS:
            vals = result.values[metric]
            out_dir = gctx.out.group_dir("tbss", metric)
            _save(nib.Nifti1Image(to_volume(sk, vals).astype(np.float32), affine),
                  out_dir / f"all_{metric.upper()}_skeletonised.nii.gz", meta)
            for name, design in designs:
                log.info("tbss/%s: %s design", metric, name)
                voxelwise_group(vals[_rows(design, subjects)], skel_img, design, out_dir, stats,
                                tfce_setting=tb.get("tfce_setting", "skeleton"),
                                sidecar=dict(base_meta, Analysis="tbss", Metric=metric))
        if len(getattr(study, "sessions", None) or []) >= 2:  # pre/post designs (hfsmri.longitudinal)
            summary.setdefault("longitudinal", {}).update(_tbss_longitudinal(gctx, sk, affine, res, tb, meta))

    if "dwi_rois" in gctx.analyses:
        tables = {m: {} for m in METRICS}
        for s in subjects:
            f = stats_path(gctx.out, s, ses, res)
            if not f.exists():
                log.warning("sub-%s: no tract table %s", s, f.name)
                continue
            df = read_derivative(f).set_index("roi")
            for m in METRICS:
                tables[m][s] = df[m]
        summary["dwi_rois"] = {}
        for m in METRICS:
            tab = pd.DataFrame(tables[m]).T
            tab = tab.dropna(axis=1, how="all")
            if tab.shape[0] < 4:
                continue
            rois_df, corr_df = roi_group(tab, study, gctx.out.group_dir("dwi_rois", m), stats)
            summary["dwi_rois"][m] = {"n_rois": int(tab.shape[1])}
            if len(getattr(study, "sessions", None) or []) >= 2:  # pre/post designs (hfsmri.longitudinal)
                from hfsmri.longitudinal import roi_tables_by_session, run_longitudinal_roi

                def _row(s, ses_, m=m):
                    f = stats_path(gctx.out, s, ses_, res)
                    return read_derivative(f).set_index("roi")[m] if f.exists() else None
                summary["dwi_rois"][m]["longitudinal"] = run_longitudinal_roi(
                    gctx, "dwi_rois", m, roi_tables_by_session(study, _row))
    return summary
