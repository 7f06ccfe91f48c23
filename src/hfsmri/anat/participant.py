"""Structural participant stage: N4, brain extraction, T1w -> MNI, segmentation, VBM, thickness,
ROI volumes and QC for one subject/session.

Steps (docs/anatomy.md has the measured choices):
 1. N4 bias correction of the whole-head T1w.
 2. Template-based brain extraction: affine registration to the MNI template with a dilated
    brain-mask metric mask; template mask mapped back.
 3. Deformable registration (SyN after that affine) of the masked T1w to the MNI template;
    the brain mask is refined through the full inverse transform.
 4. Atropos GM/WM/CSF with the template's tissue maps as priors (warped to native).
 5. VBM: GM probability -> MNI, x Jacobian determinant, Gaussian smoothing (``fwhm`` mm).
 6. Thickness (Laplace by default, DiReCT optional) in native space -> regional means
    (Harvard-Oxford) and an MNI map.
 7. ROI volumes: atlases mapped to native space; GM probability x voxel volume.
 8. QC: overlay PNG, tissue volumes, Dice of the warped brain mask with the template mask.

Outputs other stages reuse are put in ``ctx.anat`` (paths as strings):
``t1w_preproc`` (native, bias-corrected, skull-stripped), ``brain_mask`` (native),
``to_mni_transforms`` (list for ``ants.apply_transforms(fixed=MNI, moving=native)``),
``from_mni_transforms`` + ``from_mni_whichtoinvert`` (MNI -> native), ``mni_transforms`` (alias of
``to_mni_transforms``), ``gm_probseg``/``wm_probseg``/``csf_probseg`` (native), ``tiv_ml``,
``template_resolution``. Transform files live in ``<work_dir>/anat/`` (kept for resume).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..derivatives import provenance_hash
from ..errors import InputDataError
from ..io import load_image
from ..spatial.flip import flip_lr
from ..spatial.registration import (Transforms, apply_from_mni, apply_to_mni, jacobian_determinant,
                                    register_to_mni, set_threads)
from ..spatial.resample import voxel_volume_ml
from ..spatial.templates import TEMPLATE_SPACE, load_template
from . import brain_extraction as bx
from . import qc as qcmod
from .registration import tissue_syn
from .roi_volumes import label_volumes, review_roi_table
from .segmentation import atropos_segment, tissue_volumes
from .thickness import direct_thickness, laplace_thickness, regional_thickness
from .vbm import masked_average_warp, modulate, smooth

ANAT_DEFAULTS = {"template_resolution": 2, "registration": "SyN", "brain_extraction": "template"}
STAGE_VERSION = "1"


def _params(ctx) -> dict:
    pre = dict(ANAT_DEFAULTS)
    pre.update((ctx.preprocessing or {}).get("anat", {}) or {})
    return pre


def _img(path_or_img):
    return nib.load(str(path_or_img)) if isinstance(path_or_img, (str, Path)) else path_or_img


def _registration(ctx, t1_n4, pre: dict, work: Path, log) -> tuple[Transforms, nib.Nifti1Image, dict]:
    """Brain extraction + T1w -> MNI registration, reused from ``work`` when up to date.

    Affine: whole-head N4 T1w -> template T1 (Mattes MI, metric restricted to the dilated template
    brain mask). Deformable (``SyN``/``SyNFast``): SyN only, started from that affine, between the
    subject's tissue maps (GM and WM probabilities from a first Atropos pass with affine-aligned
    priors) and the template's GM/WM maps, mean-squares metric (DARTEL-like tissue registration;
    measured better than T1w-intensity SyN on simulated subjects, docs/anatomy.md).
    """
    res = float(pre["template_resolution"])
    tmpl, tmask = load_template("T1", res), load_template("mask", res)
    key = provenance_hash([ctx.inputs.t1w], {"stage": STAGE_VERSION, "pre": pre, "seed": ctx.seed})
    meta_path = work / "transforms.json"
    mask_path = work / "brain_mask_native.nii.gz"
    if meta_path.exists() and mask_path.exists():
        meta = json.loads(meta_path.read_text())
        tr = Transforms(**meta["transforms"])
        if meta.get("key") == key and tr.exist():
            log.info("anat: reusing T1w -> MNI transforms from %s", work)
            return tr, nib.load(str(mask_path)), meta.get("timing", {})
    timing = {}
    t0 = time.time()
    mask0, aff = bx.template_brain_mask(t1_n4, tmpl, tmask, seed=ctx.seed, nthreads=ctx.omp_nthreads,
                                        out_dir=work, prefix="bet-affine_")
    timing["brain_extraction_affine_s"] = time.time() - t0
    kind = pre["registration"]
    if kind == "Affine":
        tr, mask = aff, mask0
    else:
        t0 = time.time()
        priors = [apply_from_mni(load_template(k, res), aff, t1_n4, "linear").get_fdata() for k in ("CSF", "GM", "WM")]
        seg0 = atropos_segment(bx.apply_mask(t1_n4, mask0), mask0, priors=priors, nthreads=ctx.omp_nthreads)
        timing["segmentation_pass1_s"] = time.time() - t0
        t0 = time.time()
        tr = tissue_syn(nib.Nifti1Image(seg0["gm"], t1_n4.affine), nib.Nifti1Image(seg0["wm"], t1_n4.affine),
                        aff.fwd, res, kind, seed=ctx.seed, nthreads=ctx.omp_nthreads, out_dir=work)
        timing["registration_s"] = time.time() - t0
        mask = bx.mask_from_template(tmask, tr, t1_n4)
    nib.save(mask, str(mask_path))
    meta_path.write_text(json.dumps({"key": key, "transforms": tr.__dict__, "timing": timing}, indent=2))
    return tr, mask, timing


def run(ctx) -> dict:
    """Run the structural stage for ``ctx`` (see module doc); returns QC/summary numbers."""
    log = ctx.log
    set_threads(ctx.omp_nthreads)
    if ctx.inputs.t1w is None:
        raise InputDataError(f"sub-{ctx.subject}: no T1w image")
    pre = _params(ctx)
    res = float(pre["template_resolution"])
    out, sub, ses = ctx.out, ctx.subject, ctx.session
    work = Path(ctx.work_dir) / "anat"
    work.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    t_start = time.time()

    raw = load_image(ctx.inputs.t1w, ndim=3, what="T1w", check_finite=True)
    raw = nib.Nifti1Image(np.asarray(raw.dataobj, dtype=np.float32), raw.affine)
    common = {"Sources": [str(ctx.inputs.t1w)]}
    inputs = [ctx.inputs.t1w]

    # 1. N4 (cached in work)
    n4_path = work / "t1w_n4.nii.gz"
    n4_key = work / "t1w_n4.key"
    k = provenance_hash(inputs, {"n4": STAGE_VERSION})
    t0 = time.time()
    if n4_path.exists() and n4_key.exists() and n4_key.read_text() == k:
        t1_n4 = nib.load(str(n4_path))
    else:
        t1_n4 = bx.n4(raw, nthreads=ctx.omp_nthreads)
        nib.save(t1_n4, str(n4_path))
        n4_key.write_text(k)
    timing["n4_s"] = time.time() - t0

    # 2-3. brain extraction + registration
    tr, mask, reg_timing = _registration(ctx, t1_n4, pre, work, log)
    timing.update(reg_timing)
    m = np.asarray(mask.dataobj) > 0
    brain = bx.apply_mask(t1_n4, mask)
    p_pre = out.path(sub, ses, "anat", "T1w", space=None, entities={"desc": "preproc"})
    p_mask = out.path(sub, ses, "anat", "mask", space=None, entities={"desc": "brain"})
    params_reg = {"pre": pre, "seed": ctx.seed}
    out.save_nifti(brain, p_pre, sidecar={"Description": "N4 bias-corrected, brain-extracted T1w (native)",
                                          "SkullStripped": True}, inputs=inputs, params=params_reg)
    out.save_nifti(mask, p_mask, sidecar={"Description": "brain mask: MNI template mask through the inverse "
                                                         "T1w->MNI transform", "Type": "Brain"},
                   inputs=inputs, params=params_reg)

    # 4. tissue segmentation with template priors (through the final transform)
    t0 = time.time()
    priors = [apply_from_mni(load_template(kind, res), tr, t1_n4, "linear").get_fdata() for kind in ("CSF", "GM", "WM")]
    seg = atropos_segment(brain, mask, priors=priors, nthreads=ctx.omp_nthreads)
    timing["segmentation_s"] = time.time() - t0
    aff_n = t1_n4.affine
    vml = voxel_volume_ml(t1_n4)
    vols = tissue_volumes(seg["csf"], seg["gm"], seg["wm"], vml)
    prob_paths = {}
    for lab in ("GM", "WM", "CSF"):
        p = out.path(sub, ses, "anat", "probseg", space=None, entities={"label": lab})
        out.save_nifti(nib.Nifti1Image(seg[lab.lower()], aff_n), p,
                       sidecar={"Description": f"{lab} probability (Atropos, template priors)"},
                       inputs=inputs, params=params_reg)
        prob_paths[lab] = p
    p_dseg = out.path(sub, ses, "anat", "dseg", space=None)
    out.save_nifti(nib.Nifti1Image(seg["seg"].astype(np.int16), aff_n), p_dseg,
                   sidecar={"Labels": {"0": "background", "1": "CSF", "2": "GM", "3": "WM"}},
                   inputs=inputs, params=params_reg)

    ctx.anat.update({
        "t1w": str(ctx.inputs.t1w), "t1w_preproc": str(p_pre), "brain_mask": str(p_mask),
        "to_mni_transforms": list(tr.fwd), "mni_transforms": list(tr.fwd),
        "from_mni_transforms": list(tr.inv), "from_mni_whichtoinvert": list(tr.inv_invert),
        "transforms_json": str(work / "transforms.json"), "template_resolution": res,
        "gm_probseg": str(prob_paths["GM"]), "wm_probseg": str(prob_paths["WM"]),
        "csf_probseg": str(prob_paths["CSF"]), "tiv_ml": vols["tiv_ml"], "flip": bool(ctx.flip),
    })

    # QC: warped T1w and brain-mask Dice in MNI
    t0 = time.time()
    tmpl, tmask, tgm = load_template("T1", res), load_template("mask", res), load_template("GM", res)
    warped_t1 = apply_to_mni(brain, tr, tmpl).get_fdata()
    warped_mask = apply_to_mni(nib.Nifti1Image(m.astype(np.float32), aff_n), tr, tmpl).get_fdata() >= 0.5
    mask_dice = qcmod.dice(warped_mask, tmask.get_fdata() > 0)
    png = out.path(sub, ses, "anat", "T1w", space=TEMPLATE_SPACE, res=res, entities={"desc": "regqc"}, ext=".png")
    qcmod.registration_overlay(warped_t1, tmpl.get_fdata(), tmask.get_fdata(), png,
                               title=f"sub-{sub}{' ses-' + ses if ses else ''}: T1w in MNI, template edges "
                                     f"(mask Dice {mask_dice:.3f})", template_gm=tgm.get_fdata())
    timing["qc_s"] = time.time() - t0

    summary = {"tiv_ml": vols["tiv_ml"], "gm_ml": vols["gm_ml"], "wm_ml": vols["wm_ml"],
               "csf_ml": vols["csf_ml"], "brain_mask_dice": mask_dice, "flipped": bool(ctx.flip)}
    analyses = ctx.analyses or {}

    # 5. VBM
    if "vbm" in analyses:
        t0 = time.time()
        summary.update(_vbm(ctx, tr, seg, aff_n, analyses["vbm"] or {}, inputs, params_reg))
        timing["vbm_s"] = time.time() - t0
    # 6. thickness
    if "thickness" in analyses:
        t0 = time.time()
        summary.update(_thickness(ctx, tr, seg, t1_n4, analyses["thickness"] or {}, inputs, params_reg))
        timing["thickness_s"] = time.time() - t0
    # 7. ROI volumes (always cheap; the group stage needs them when roi_volumes is requested)
    if "roi_volumes" in analyses or "vbm" in analyses:
        t0 = time.time()
        _roi_volumes(ctx, tr, seg, t1_n4, inputs, params_reg)
        timing["roi_volumes_s"] = time.time() - t0

    timing["total_s"] = time.time() - t_start
    summary["timing"] = {k2: round(v, 2) for k2, v in timing.items()}
    tissue = pd.DataFrame([{k2: v for k2, v in summary.items() if not isinstance(v, dict)}])
    out.save_tsv(tissue, out.path(sub, ses, "anat", "stats", space=None, entities={"desc": "tissue"}, ext=".tsv"),
                 sidecar={"Description": "tissue volumes (ml; TIV = GM + WM + CSF) and QC numbers",
                          "timing_s": summary["timing"]}, inputs=inputs, params=params_reg)
    log.info("anat: sub-%s TIV %.0f ml, GM %.0f ml, mask Dice %.3f, %.1f s", sub, vols["tiv_ml"],
             vols["gm_ml"], mask_dice, timing["total_s"])
    return summary


def _maybe_flip(ctx, img, interpolation="continuous"):
    return flip_lr(img, interpolation=interpolation) if ctx.flip else img


def _vbm(ctx, tr, seg, aff_n, params, inputs, params_reg) -> dict:
    out, sub, ses = ctx.out, ctx.subject, ctx.session
    res = float(params.get("resolution", 2))
    fwhm = float(params.get("fwhm", 8.0))
    tmpl = load_template("T1", res)
    gm_nat = nib.Nifti1Image(seg["gm"], aff_n)
    gm_mni = apply_to_mni(gm_nat, tr, tmpl).get_fdata()
    jac = jacobian_determinant(tr, tmpl).get_fdata()
    mod = modulate(gm_mni, jac)
    vox_mni = voxel_volume_ml(tmpl)
    gm_mod_ml = float(mod.sum() * vox_mni)
    p = dict(params_reg, vbm={"resolution": res, "fwhm": fwhm}, flip=bool(ctx.flip))
    side = {"Description": "GM probability in MNI space, modulated by the Jacobian determinant of the "
                           "T1w->MNI transform (affine + SyN), Gaussian-smoothed",
            "SmoothingFWHMmm": fwhm, "Modulated": True, "Flipped": bool(ctx.flip), "Space": TEMPLATE_SPACE}
    if params.get("modulated", True):
        img = nib.Nifti1Image(smooth(mod, tmpl.affine, fwhm), tmpl.affine)
        path = out.path(sub, ses, "anat", "probseg", res=res, entities={"label": "GM", "desc": "modulated"})
        out.save_nifti(_maybe_flip(ctx, img), path, sidecar=side, inputs=inputs, params=p)
        ctx.anat["vbm_modulated"] = str(path)
    if params.get("unmodulated", False):
        img = nib.Nifti1Image(smooth(gm_mni, tmpl.affine, fwhm), tmpl.affine)
        path = out.path(sub, ses, "anat", "probseg", res=res, entities={"label": "GM", "desc": "unmodulated"})
        out.save_nifti(_maybe_flip(ctx, img), path, sidecar=dict(side, Modulated=False), inputs=inputs, params=p)
        ctx.anat["vbm_unmodulated"] = str(path)
    return {"gm_modulated_ml": gm_mod_ml}


def _thickness(ctx, tr, seg, t1_n4, params, inputs, params_reg) -> dict:
    out, sub, ses = ctx.out, ctx.subject, ctx.session
    method = str(params.get("method", "laplace")).lower()
    res = float(params.get("resolution", 2))
    fwhm = float(params.get("fwhm", 0.0))
    atlas_name = params.get("atlas", "harvard_oxford")
    aff_n = t1_n4.affine
    from ..spatial.resample import voxel_sizes

    labels = np.where(seg["seg"] == 0, 1, seg["seg"]).astype(np.int32)
    if method == "laplace":
        th = laplace_thickness(labels, voxel_sizes(t1_n4))
    elif method == "direct":
        th = direct_thickness(labels, seg["gm"], seg["wm"], aff_n, iterations=int(params.get("iterations", 10)),
                              nthreads=ctx.omp_nthreads)
    else:
        raise InputDataError(f"unknown thickness method {method!r}; choose 'laplace' or 'direct'",
                             field="analyses.thickness.method")
    p = dict(params_reg, thickness={"method": method, "resolution": res, "fwhm": fwhm, "atlas": atlas_name},
             flip=bool(ctx.flip))
    p_nat = out.path(sub, ses, "anat", "morph", space=None, entities={"desc": "thickness"})
    out.save_nifti(nib.Nifti1Image(th.astype(np.float32), aff_n), p_nat,
                   sidecar={"Description": f"volumetric cortical thickness (mm), {method} method", "Units": "mm"},
                   inputs=inputs, params=p)
    # regional means in native space
    from ..spatial.atlas import load_atlas

    atlas = load_atlas(atlas_name)
    lab_nat = apply_from_mni(atlas.img, tr, t1_n4, "label").get_fdata().astype(np.int32)
    table = regional_thickness(th, lab_nat, atlas.labels, seg=labels)
    table.insert(0, "atlas", atlas.name)
    out.save_tsv(table, out.path(sub, ses, "anat", "stats", space=None, entities={"desc": "thickness"}, ext=".tsv"),
                 sidecar={"Description": f"mean cortical thickness (mm) per {atlas.name} region (native space)"},
                 inputs=inputs, params=p)
    # MNI map: normalised interpolation of thickness over the GM support
    tmpl = load_template("T1", res)
    gm_sup = (th > 0).astype(np.float32)
    num = apply_to_mni(nib.Nifti1Image(th * gm_sup, aff_n), tr, tmpl).get_fdata()
    den = apply_to_mni(nib.Nifti1Image(gm_sup, aff_n), tr, tmpl).get_fdata()
    th_mni = masked_average_warp(num, den, 0.5)
    if fwhm > 0:
        sup = (th_mni > 0).astype(np.float32)
        s_num = smooth(th_mni, tmpl.affine, fwhm)
        s_den = smooth(sup, tmpl.affine, fwhm)
        th_mni = masked_average_warp(s_num, s_den, 1e-3) * sup
    img = nib.Nifti1Image(th_mni.astype(np.float32), tmpl.affine)
    path = out.path(sub, ses, "anat", "morph", res=res, entities={"desc": "thickness"})
    out.save_nifti(_maybe_flip(ctx, img), path,
                   sidecar={"Description": f"volumetric cortical thickness (mm, {method}) in MNI space "
                                           "(GM-normalised interpolation)", "Units": "mm",
                            "SmoothingFWHMmm": fwhm, "Flipped": bool(ctx.flip)}, inputs=inputs, params=p)
    ctx.anat["thickness_mni"] = str(path)
    v = th[th > 0]
    return {"thickness_mean_mm": float(v.mean()) if v.size else float("nan")}


def _roi_volumes(ctx, tr, seg, t1_n4, inputs, params_reg) -> None:
    from ..spatial.atlas import load_atlas

    out, sub, ses = ctx.out, ctx.subject, ctx.session
    vml = voxel_volume_ml(t1_n4)
    native = {}
    for name in ("harvard_oxford", "aal"):
        atlas = load_atlas(name)
        lab = apply_from_mni(atlas.img, tr, t1_n4, "label").get_fdata().astype(np.int32)
        native[name] = (lab, atlas.labels)
    review = review_roi_table(seg["gm"], native, vml)
    review.insert(1, "set", "review")
    aal = label_volumes(seg["gm"], native["aal"][0], native["aal"][1], vml)
    aal = aal.rename(columns={"label": "label_value"})
    aal.insert(1, "set", "aal")
    aal.insert(2, "atlas", "aal")
    aal["source_label"] = aal["region"]
    aal["region"] = "aal_" + aal["region"]
    cols = ["region", "set", "atlas", "source_label", "n_voxels", "volume_ml"]
    table = pd.concat([review[cols], aal[cols]], ignore_index=True)
    out.save_tsv(table, out.path(sub, ses, "anat", "stats", space=None, entities={"desc": "roivolumes"}, ext=".tsv"),
                 sidecar={"Description": "GM volume (ml) per region in native space: GM probability x voxel "
                                         "volume within atlas labels mapped through the inverse T1w->MNI "
                                         "transform", "Units": "ml"},
                 inputs=inputs, params=params_reg)
