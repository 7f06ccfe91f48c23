"""Participant stage of the diffusion analyses (dti, tbss, dwi_rois): DWI → tensor maps in MNI
and tract / corpus-callosum ROI tables.

Per subject (and session):

1. Input: QSIPrep's preprocessed DWI (+ its .bval/.bvec) when present — used as it is — else the
   raw BIDS DWI with its .bval/.bvec (validated against the image, :mod:`hfsmri.dwi.gradients`).
2. Raw DWI only: optional denoising (``dti.denoise``: null | mppca | patch2self), then
   motion/eddy correction by affine registration to the mean b0 with b-vector rotation
   (``dti.motion_correction``), see :mod:`hfsmri.dwi.preprocess`.
3. Brain mask (dipy median_otsu on the mean b0), tensor fit (``dti.fit``, volumes with
   b ≤ ``dti.bmax``, b0 volumes written with b > 0 and a direction entering with both; the lowest
   shell when no shell is that low). Which volumes entered is logged and written to every map's
   sidecar (``TensorFitVolumes``: rule, count, b-values, indices, excluded indices).
4. FA/MD/AD/RD → MNI152NLin2009aSym at ``dti.resolution`` mm (b0 → T1w rigid + the anat stage's
   T1w → MNI transforms when available, else b0 → MNI affine); mirrored (x → −x) when the subject
   is flipped to the study's affected side.
5. ROI table: mean FA/MD/AD/RD in the tracts and callosal parts of :mod:`hfsmri.dwi.tracts`.

Outputs (datatype ``dwi``)::

    sub-X[_ses-Y]_space-MNI152NLin2009aSym_res-2_model-tensor_param-{fa,md,ad,rd}_dwimap.nii.gz
    sub-X[_ses-Y]_space-MNI152NLin2009aSym_res-2_desc-brain_mask.nii.gz
    sub-X[_ses-Y]_space-MNI152NLin2009aSym_res-2_desc-tracts_stats.tsv

MD/AD/RD are in mm²/s (b in s/mm²).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np

from hfsmri.analyses import DEFAULTS
from hfsmri.errors import InputDataError
from hfsmri.spatial.templates import TEMPLATE_SPACE

METRICS = ("fa", "md", "ad", "rd")
DATATYPE = "dwi"


def dti_params(ctx_or_analyses, preprocessing: dict | None = None) -> dict:
    """Resolved ``dti`` parameters (study.yaml ``analyses.dti`` over the defaults)."""
    analyses = getattr(ctx_or_analyses, "analyses", ctx_or_analyses) or {}
    p = dict(DEFAULTS["dti"])
    p.update((analyses.get("dti") or {}))
    pre = preprocessing if preprocessing is not None else getattr(ctx_or_analyses, "preprocessing", {}) or {}
    if "b0_threshold" in (pre.get("dwi") or {}) and "b0_threshold" not in (analyses.get("dti") or {}):
        p["b0_threshold"] = pre["dwi"]["b0_threshold"]
    rois = dict(DEFAULTS["dwi_rois"])
    rois.update(analyses.get("dwi_rois") or {})
    p["callosum_scheme"] = rois.get("callosum_scheme", "witelson")
    return p


def map_path(out, sub, ses, metric, resolution):
    return out.path(sub, ses, DATATYPE, "dwimap", res=resolution, entities={"model": "tensor", "param": metric})


def mask_path(out, sub, ses, resolution):
    return out.path(sub, ses, DATATYPE, "mask", res=resolution, entities={"desc": "brain"})


def stats_path(out, sub, ses, resolution):
    return out.path(sub, ses, DATATYPE, "stats", res=resolution, entities={"desc": "tracts"}, ext=".tsv")


@lru_cache(maxsize=4)
def _tract_masks(resolution: float, scheme: str):
    from hfsmri.dwi.tracts import tract_masks
    from hfsmri.spatial.templates import load_template

    return tract_masks(load_template("mask", resolution), cc_scheme=scheme)


def _inputs(ctx):
    si = ctx.inputs
    if getattr(si, "qsiprep_dwi", None) is not None:
        if si.qsiprep_bval is None or si.qsiprep_bvec is None:
            raise InputDataError("QSIPrep DWI without its .bval/.bvec", path=si.qsiprep_dwi)
        return Path(si.qsiprep_dwi), Path(si.qsiprep_bval), Path(si.qsiprep_bvec), "qsiprep"
    if si.dwi is None:
        raise InputDataError(f"no DWI for sub-{ctx.subject}")
    if si.bval is None or si.bvec is None:
        raise InputDataError("DWI without .bval/.bvec files", path=si.dwi)
    return Path(si.dwi), Path(si.bval), Path(si.bvec), "raw"


def run(ctx) -> dict:
    """Run the diffusion participant stage for one subject/session (see module doc)."""
    from hfsmri.dwi.gradients import read_gradients
    from hfsmri.dwi.preprocess import apply_to_mni, brain_mask, denoise, mean_b0, motion_correct, to_mni
    from hfsmri.dwi.tensor import TensorModel
    from hfsmri.dwi.tracts import roi_means
    from hfsmri.spatial.flip import flip_array_x
    from hfsmri.spatial.templates import load_template, template_grid

    p = dti_params(ctx)
    res = p["resolution"]
    dwi_path, bval_path, bvec_path, source = _inputs(ctx)
    t1w = ctx.anat.t1w_preproc
    t1_to_mni = ctx.anat.to_mni_transforms or None
    inputs = [dwi_path, bval_path, bvec_path] + ([Path(t1w)] if t1w and Path(str(t1w)).exists() else [])
    params = {k: p[k] for k in ("fit", "b0_threshold", "bmax", "resolution", "denoise", "motion_correction")}
    params.update(source=source, flip=bool(ctx.flip), anat_registration=bool(t1w and t1_to_mni))
    outs = {m: map_path(ctx.out, ctx.subject, ctx.session, m, res) for m in METRICS}
    mpath = mask_path(ctx.out, ctx.subject, ctx.session, res)
    spath = stats_path(ctx.out, ctx.subject, ctx.session, res)
    roi_params = dict(params, callosum_scheme=p["callosum_scheme"])
    summary: dict = {"source": source}

    from hfsmri.qc import record as qc_record  # QC: hfsmri.qc owns the IQMs, figures and their files
    iqm = qc_record.cached(ctx.out, ctx.subject, ctx.session, "dwi", inputs, params)
    if iqm is not None and all(ctx.out.is_done(f, inputs, params) for f in list(outs.values()) + [mpath]):
        ctx.log.info("tensor maps up to date: skipped")
        summary["skipped"] = True
        summary["iqm"] = iqm
        mni = {m: np.asarray(nib.load(str(f)).dataobj, dtype=np.float32) for m, f in outs.items()}
        mni_mask = np.asarray(nib.load(str(mpath)).dataobj) > 0
    else:
        img = nib.load(str(dwi_path))
        if img.ndim != 4:
            raise InputDataError(f"DWI must be 4D, got shape {img.shape}", path=dwi_path)
        gtab = read_gradients(bval_path, bvec_path, n_volumes=img.shape[3], b0_threshold=p["b0_threshold"])
        data = np.asarray(img.dataobj, dtype=np.float32)
        if not np.all(np.isfinite(data)):
            raise InputDataError("DWI contains NaN or infinite values", path=dwi_path)
        affine = img.affine
        summary["gradients"] = gtab.qc(p["bmax"])
        raw, motion = data, None  # the DWI as read and the motion estimates, for the QC metrics
        if source == "raw":
            if p["denoise"]:
                ctx.log.info("denoising (%s)", p["denoise"])
                data = denoise(data, p["denoise"], bvals=gtab.bvals)
            if p["motion_correction"]:
                ctx.log.info("motion/eddy correction: affine registration of %d volumes to the mean b0",
                             data.shape[3])
                mc = motion_correct(data, affine, gtab, log=ctx.log)
                data, gtab = mc["data"], mc["gtab"]
                motion = {"rotation_deg": mc["rotation_deg"], "translation_mm": mc["translation_mm"]}
                summary["motion"] = {"max_rotation_deg": float(mc["rotation_deg"].max()),
                                     "mean_rotation_deg": float(mc["rotation_deg"].mean()),
                                     "max_translation_mm": float(mc["translation_mm"].max())}
        mask = brain_mask(data, gtab)
        try:
            model = TensorModel(gtab, fit=p["fit"], max_bval=p["bmax"])
        except ValueError as exc:  # too few / collinear directions for a tensor
            raise InputDataError(f"cannot fit a tensor: {exc}", path=bvec_path) from None
        fit_vols = gtab.fit_summary(p["bmax"])
        ctx.log.info("tensor fit (%s): %d of %d volumes (%s; %d b0, %d of them with b > 0 and a direction, "
                     "fitted with their b and vector)", p["fit"], fit_vols["n_volumes"], gtab.n_volumes,
                     fit_vols["rule"], fit_vols["n_b0"], fit_vols["n_b0_with_direction"])
        if fit_vols["lowest_shell_fallback"]:
            ctx.log.warning("sub-%s: %s", ctx.subject, fit_vols["rule"])
        fit = model.fit(data, mask)
        summary["fit"] = {"method": p["fit"], "volumes": model.volumes.tolist(), "rule": model.volume_rule,
                          "n_voxels": int(mask.sum())}
        b0 = mean_b0(data, gtab)
        reg = to_mni(b0, affine, ctx.work_dir / "dwi", t1w=t1w, t1w_to_mni=t1_to_mni, b0_mask=mask)
        summary["registration"] = reg["how"]
        native = {"fa": fit.fa, "md": fit.md, "ad": fit.ad, "rd": fit.rd, "mask": mask.astype(np.float32)}
        warped = apply_to_mni(native, affine, reg["transforms"], res)
        tmask = np.asarray(load_template("mask", res).dataobj) > 0
        mni_mask = (warped.pop("mask") > 0.5) & tmask
        mni = {}
        for m in METRICS:
            v = np.where(mni_mask, warped[m], 0.0).astype(np.float32)
            mni[m] = np.clip(v, 0.0, 1.0) if m == "fa" else np.clip(v, 0.0, None)
        if ctx.flip:
            mni = {m: flip_array_x(v, template_grid(res)[1]) for m, v in mni.items()}
            mni_mask = flip_array_x(mni_mask, template_grid(res)[1])
        _, aff = template_grid(res)
        side = {"SkullStripped": True, "Space": TEMPLATE_SPACE, "Flipped": bool(ctx.flip),
                "Registration": reg["how"], "TensorFit": p["fit"], "FitVolumes": model.volumes.tolist(),
                "TensorFitVolumes": fit_vols, "Gradients": summary["gradients"]}
        for m in METRICS:
            meta = dict(side, Model="tensor", Parameter=m.upper(),
                        Units="" if m == "fa" else "mm^2/s")
            ctx.out.save_nifti(nib.Nifti1Image(mni[m], aff), outs[m], sidecar=meta, inputs=inputs, params=params)
        ctx.out.save_nifti(nib.Nifti1Image(mni_mask.astype(np.uint8), aff), mpath, sidecar=side, inputs=inputs,
                           params=params)
        # image-quality metrics and QC figures (hfsmri.qc.record writes desc-iqm_stats.tsv and figures/)
        summary["iqm"] = qc_record.dwi(ctx, raw=raw, affine=affine, bvals=gtab.bvals, b0_threshold=p["b0_threshold"],
                                       mask=mask, b0=b0, motion=motion, reg=reg, t1w_to_mni=t1_to_mni,
                                       inputs=inputs, params=params)
        del raw

    if not ctx.out.is_done(spath, inputs, roi_params):
        masks = _tract_masks(float(res), p["callosum_scheme"])
        df = roi_means(mni, masks, valid=mni_mask & (mni["fa"] > 0))
        ctx.out.save_tsv(df.reset_index(), spath, inputs=inputs, params=roi_params,
                         sidecar={"Description": "mean FA/MD/AD/RD per tract / callosal ROI (MD/AD/RD mm^2/s)",
                                  "Flipped": bool(ctx.flip), "CallosumScheme": p["callosum_scheme"]})
    summary["mean_fa_in_mask"] = float(mni["fa"][mni_mask].mean()) if mni_mask.any() else float("nan")
    ctx.dwi.tensor_maps = {m: str(f) for m, f in outs.items()}
    ctx.dwi.brain_mask, ctx.dwi.tracts_table = str(mpath), str(spath)
    return summary
