"""Structural participant stage: N4, brain extraction, T1w -> MNI, segmentation, VBM, thickness,
ROI volumes and QC for one subject/session.

Steps (docs/anatomy.md has the measured choices):
 1. N4 bias correction of the whole-head T1w.
 2. Template-based brain extraction: affine registration to the MNI template with a dilated
    brain-mask metric mask (schedule capped at 12 mm voxels, plausibility guard with retries);
    template mask mapped back.
 3. Deformable registration (SyN after that affine) of the masked T1w to the MNI template;
    the brain mask is the template mask through the affine united with it through the full
    transform (:func:`_union_mask`).
 4. Atropos GM/WM/CSF with the template's tissue maps as priors (warped to native). Profile
    ``fast`` (``preprocessing.anat.profile``): one Atropos pass with affine priors (also the
    input of the SyN), SyN 20x10x0, lighter N4 (:data:`PROFILES`).
 5. VBM: GM probability -> MNI, x Jacobian determinant, Gaussian smoothing (``fwhm`` mm).
 6. Thickness (Laplace by default, DiReCT optional) in native space -> regional means
    (Harvard-Oxford) and an MNI map.
 7. ROI volumes: atlases mapped to native space; GM probability x voxel volume.
 8. QC: overlay PNG, tissue volumes, Dice of the warped brain mask with the template mask.

Outputs other stages reuse are put in ``ctx.anat`` (:class:`hfsmri.stage_outputs.AnatOutputs`;
paths as strings): ``t1w_preproc`` (native, bias-corrected, skull-stripped), ``brain_mask`` (native),
``to_mni_transforms`` (list for ``ants.apply_transforms(fixed=MNI, moving=native)``),
``from_mni_transforms`` + ``from_mni_whichtoinvert`` (MNI -> native),
``gm_probseg``/``wm_probseg``/``csf_probseg`` (native), ``tiv_ml``,
``template_resolution``, ``midspace`` (path of the subject template or None). Transform files live
in ``<work_dir>/anat/`` (kept for resume); on resume (every output up to date and the transforms
still on disk) nothing is recomputed and ``ctx.anat`` is filled from the files.

Longitudinal subjects (more than one session with a T1w, ``preprocessing.anat.longitudinal:
midspace``, the default): the sessions' N4 images are rigidly registered into an unbiased mid-space
(:mod:`hfsmri.anat.midspace`), averaged into a subject template, the template goes through steps
2-3 once, and each session's T1w -> MNI transform is its rigid map composed with the template's.
The template lives in ``<work_dir>/../sub-X_midspace/`` (shared by the session jobs, file lock) and
is also written as ``sub-X/anat/sub-X_desc-midspace_T1w.nii.gz``. The other sessions' T1w come from
``ctx.session_t1w`` ({session: path}) when the pipeline provides it, else from the sibling
``ses-*/anat/`` folders of the BIDS layout (same file name, session label swapped).
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..derivatives import provenance_hash
from ..errors import InputDataError
from ..io import load_image
from ..spatial.flip import flip_lr
from ..spatial.registration import Transforms, apply_from_mni, apply_to_mni, jacobian_determinant, set_threads
from ..spatial.resample import voxel_volume_ml
from ..spatial.templates import TEMPLATE_SPACE, load_template
from . import brain_extraction as bx
from . import qc as qcmod
from .midspace import build_midspace, compose_with_midspace, write_ants_affine
from .registration import tissue_syn
from .roi_volumes import label_volumes, review_roi_table
from .segmentation import atropos_segment, tissue_volumes
from .thickness import direct_thickness, laplace_thickness, regional_thickness
from .vbm import masked_average_warp, modulate, smooth

ANAT_DEFAULTS = {"template_resolution": 2, "registration": "SyN", "brain_extraction": "template",
                 "bet_margin_mm": 5.0, "longitudinal": "midspace", "profile": "standard"}
STAGE_VERSION = "6"  # 6: NIfTI-stable ANTs geometry, robust FOV, multi-start affine (issue 19)
# ``preprocessing.anat.profile`` (docs/anatomy.md has the speed/accuracy table):
#   standard: Atropos twice (affine priors -> tissue SyN -> SyN priors), SyN 40x20x0;
#   fast:     one Atropos pass (affine priors; it drives the SyN and is the final segmentation),
#             deformable iterations of SyNFast (20x10x0), lighter N4
#             (two levels 50x50 at ~12 mm voxels instead of 50x50x30 at shrink 4).
PROFILES = {"standard": {"segmentation_passes": 2, "syn": {"SyN": "SyN", "SyNFast": "SyNFast"}, "n4": {}},
            "fast": {"segmentation_passes": 1, "syn": {"SyN": "SyNFast", "SyNFast": "SyNFast"},
                     "n4": {"iterations": (50, 50), "shrink_mm": 12.0}}}


def _now() -> tuple[float, float]:
    """(wall-clock, process CPU) seconds; CPU time is the load-independent cost of a step (the
    machine running a job may be shared), wall time what the user waits."""
    return time.time(), time.process_time()


def _tick(timing: dict, name: str, t0: tuple[float, float]) -> None:
    """Record ``<name>_s`` (wall) and ``<name>_cpu_s`` (CPU of this process, all its threads)."""
    timing[f"{name}_s"] = time.time() - t0[0]
    timing[f"{name}_cpu_s"] = time.process_time() - t0[1]


def _params(ctx) -> dict:
    pre = dict(ANAT_DEFAULTS)
    pre.update((ctx.preprocessing or {}).get("anat", {}) or {})
    if pre["profile"] not in PROFILES:
        raise InputDataError(f"unknown anat profile {pre['profile']!r}; choose from {sorted(PROFILES)}",
                             field="preprocessing.anat.profile")
    if pre["registration"] not in ("Affine", "SyN", "SyNFast"):
        raise InputDataError(f"unknown registration {pre['registration']!r}; choose 'SyN', 'SyNFast' or 'Affine'",
                             field="preprocessing.anat.registration")
    return pre


def linear_part(tr: Transforms) -> Transforms:
    """The transforms of ``tr`` without its deformable (warp-field) files: the affine (and, for
    longitudinal sessions, rigid) part only, in the same conventions."""
    def is_warp(f):
        return str(f).endswith(("Warp.nii.gz", "Warp.nii"))

    inv = [(f, w) for f, w in zip(tr.inv, tr.inv_invert) if not is_warp(f)]
    return Transforms(fwd=[f for f in tr.fwd if not is_warp(f)], inv=[f for f, _ in inv],
                      inv_invert=[w for _, w in inv], type_of_transform="Affine")


def _atropos_with_template_priors(t1_n4, mask, tr: Transforms, res: float, nthreads):
    """Atropos of the masked N4 T1w with the template CSF/GM/WM maps mapped through ``tr``."""
    priors = [apply_from_mni(load_template(k, res), tr, t1_n4, "linear").get_fdata() for k in ("CSF", "GM", "WM")]
    return atropos_segment(bx.apply_mask(t1_n4, mask), mask, priors=priors, nthreads=nthreads)


def _img(path_or_img):
    return nib.load(str(path_or_img)) if isinstance(path_or_img, (str, Path)) else path_or_img


def _register_head(t1_n4, pre: dict, work: Path, key: str, seed: int, nthreads, log):
    """Brain extraction + T1w -> MNI registration of one (N4-corrected, whole-head) image, cached in
    ``work`` under ``key``.

    Affine: whole-head N4 T1w -> template T1 (Mattes MI, metric restricted to the template brain
    mask dilated by ``bet_margin_mm``). Deformable (``SyN``/``SyNFast``): SyN only, started from that
    affine, between the subject's tissue maps (GM and WM probabilities from a first Atropos pass
    with affine-aligned priors) and the template's GM/WM maps, mean-squares metric (DARTEL-like
    tissue registration; docs/anatomy.md). Returns (Transforms, native brain mask, timing, QC dict).
    """
    res = float(pre["template_resolution"])
    tmpl, tmask = load_template("T1", res), load_template("mask", res)
    work.mkdir(parents=True, exist_ok=True)
    meta_path = work / "transforms.json"
    mask_path = work / "brain_mask_native.nii.gz"
    if meta_path.exists() and mask_path.exists():
        meta = json.loads(meta_path.read_text())
        tr = Transforms(**meta["transforms"])
        if meta.get("key") == key and tr.exist():
            log.info("anat: reusing T1w -> MNI transforms from %s", work)
            return tr, nib.load(str(mask_path)), meta.get("timing", {}), meta.get("qc", {}), None
    timing = {}
    prof = PROFILES[pre["profile"]]
    t0 = _now()
    mask0, aff, bet = bx.template_brain_mask(t1_n4, tmpl, tmask, margin_mm=float(pre.get("bet_margin_mm", 5.0)),
                                             seed=seed, nthreads=nthreads, out_dir=work, prefix="bet-affine_",
                                             return_info=True)
    _tick(timing, "brain_extraction_affine", t0)
    if bet["bet_retried"]:
        log.warning("anat: affine brain extraction implausible (%s); kept the %s candidate",
                    ", ".join(f"{k}: {v['volume_ml']:.0f} ml, {100 * v['outside_head']:.1f} % outside head"
                              for k, v in bet["bet_candidates"].items()), bet["bet_candidate"])
    kind = pre["registration"]
    seg0 = None
    if kind == "Affine":
        tr = aff
    else:
        t0 = _now()
        seg0 = _atropos_with_template_priors(t1_n4, mask0, aff, res, nthreads)
        _tick(timing, "segmentation_pass1", t0)
        t0 = _now()
        tr = tissue_syn(nib.Nifti1Image(seg0["gm"], t1_n4.affine), nib.Nifti1Image(seg0["wm"], t1_n4.affine),
                        aff.fwd, res, prof["syn"][kind], seed=seed, nthreads=nthreads, out_dir=work)
        _tick(timing, "registration", t0)
    full = mask0 if kind == "Affine" else bx.mask_from_template(tmask, tr, t1_n4)
    m0, m1 = np.asarray(mask0.dataobj) > 0, np.asarray(full.dataobj) > 0
    # standard: the final segmentation runs in the union mask; fast: the affine-mask pass that drove
    # the SyN is the final segmentation, so its mask is kept with it; Affine: both masks are one
    mask = _union_mask(mask0, full) if kind != "Affine" and prof["segmentation_passes"] == 2 else mask0
    # QC: the template mask through the full (deformable) transform vs the affine one; a low Dice
    # or a volume ratio far from 1 flags a registration problem (measured ratio ~0.96)
    qc = {"bet_affine_vs_final_dice": qcmod.dice(m0, m1),
          "bet_affine_vs_final_volume_ratio": float(m1.sum() / max(m0.sum(), 1)),
          "bet_candidate": bet["bet_candidate"], "bet_retried": bool(bet["bet_retried"]),
          "bet_outside_head": float(bet["bet_outside_head"]),
          "bet_template_correlation": float(bet["bet_template_correlation"]),
          "bet_fov_removed_ml": float(bet["bet_fov_removed_ml"])}
    nib.save(mask, str(mask_path))
    meta_path.write_text(json.dumps({"key": key, "transforms": tr.__dict__, "timing": timing, "qc": qc}, indent=2))
    return tr, mask, timing, qc, seg0


def _union_mask(affine_mask: nib.Nifti1Image, full_mask: nib.Nifti1Image) -> nib.Nifti1Image:
    """Native brain mask: the template brain mask through the affine transform united with the same
    mask through the full (deformable) transform. Each alone misses brain where its transform
    fails: the affine cannot follow a head's non-linear shape, and the GM/WM tissue SyN does not
    constrain the outer CSF boundary (shrinks the mask by ~4 %). Measured on 4 deformed simulated
    heads at 2 mm, TIV / truth: affine 0.964-0.993, full 0.941-0.959, union 0.974-1.001, GM Dice
    unchanged (docs/anatomy.md)."""
    u = (np.asarray(affine_mask.dataobj) > 0) | (np.asarray(full_mask.dataobj) > 0)
    return nib.Nifti1Image(u.astype(np.uint8), affine_mask.affine, affine_mask.header)


def session_t1ws(ctx) -> dict:
    """{session: T1w path} of every session of ``ctx.subject`` with a T1w (see module doc)."""
    given = getattr(ctx, "session_t1w", None)
    if given:
        return {str(k): Path(v) for k, v in given.items() if v is not None}
    if ctx.session is None or ctx.inputs.t1w is None:
        return {}
    t1 = Path(ctx.inputs.t1w)
    ses_dir = t1.parent.parent
    if ses_dir.name != f"ses-{ctx.session}" or f"_ses-{ctx.session}_" not in t1.name:
        return {ctx.session: t1}
    found = {}
    for d in sorted(ses_dir.parent.glob("ses-*")):
        s = d.name[4:]
        cand = d / t1.parent.name / t1.name.replace(f"_ses-{ctx.session}_", f"_ses-{s}_")
        if cand.exists():
            found[s] = cand
    found[ctx.session] = t1
    return dict(sorted(found.items()))


@contextmanager
def _file_lock(path: Path):
    """Exclusive lock (POSIX ``flock``) so parallel session jobs build the mid-space once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except (ImportError, OSError):  # no POSIX locks: each job builds its own (same result)
            pass
        try:
            yield
        finally:
            try:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            except (ImportError, OSError):
                pass


def _n4_cached(path: Path, src: Path, nthreads, n4_params: dict | None = None) -> nib.Nifti1Image:
    n4_params = dict(n4_params or {})
    keyf = path.with_suffix("").with_suffix(".key")
    k = provenance_hash([src], {"n4": STAGE_VERSION, "n4_params": {k2: list(v) if isinstance(v, tuple) else v
                                                                  for k2, v in n4_params.items()}})
    if path.exists() and keyf.exists() and keyf.read_text() == k:
        return nib.load(str(path))
    raw = load_image(src, ndim=3, what="T1w", check_finite=True)
    img = bx.n4(nib.Nifti1Image(np.asarray(raw.dataobj, dtype=np.float32), raw.affine), nthreads=nthreads,
                **n4_params)
    nib.save(img, str(path))
    keyf.write_text(k)
    return img


def _midspace_registration(ctx, sessions: dict, pre: dict, log):
    """Mid-space template of the subject's sessions -> MNI, composed per session (module doc).

    Returns (Transforms of this session, native brain mask, N4 image of this session, timing, QC,
    template path)."""
    root = Path(ctx.work_dir).parent / f"sub-{ctx.subject}_midspace"
    labels = sorted(sessions)
    key = provenance_hash([sessions[s] for s in labels],
                          {"stage": STAGE_VERSION, "pre": pre, "seed": ctx.seed, "sessions": labels})
    timing: dict = {}
    with _file_lock(root / ".lock"):
        meta_path = root / "midspace.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        tmpl_path = root / "template_T1w.nii.gz"
        mats = {s: root / f"mid-to-ses-{s}_0GenericAffine.mat" for s in labels}
        n4s = {s: root / f"ses-{s}_n4.nii.gz" for s in labels}
        fresh = not (meta.get("key") == key and tmpl_path.exists() and all(p.exists() for p in mats.values())
                     and all(p.exists() for p in n4s.values()))
        if fresh:
            t0 = _now()
            imgs = [_n4_cached(n4s[s], sessions[s], ctx.omp_nthreads, PROFILES[pre["profile"]]["n4"])
                    for s in labels]
            _tick(timing, "n4", t0)
            t0 = _now()
            ms = build_midspace(imgs, seed=ctx.seed, nthreads=ctx.omp_nthreads)
            nib.save(ms.template, str(tmpl_path))
            for s, A in zip(labels, ms.to_session):
                write_ants_affine(A, mats[s])
            _tick(timing, "midspace", t0)
            meta = {"key": key, "sessions": labels, "timing": timing}
            log.info("anat: mid-space template of sessions %s built in %.1f s", ", ".join(labels),
                     timing["midspace_s"])
        template = nib.load(str(tmpl_path))
        tr_mid, _, reg_timing, qc, _ = _register_head(template, pre, root / "to-MNI", key, ctx.seed,
                                                   ctx.omp_nthreads, log)
        if fresh:
            meta["timing"].update(reg_timing)
            meta_path.write_text(json.dumps(meta, indent=2))
        # the subject template in the derivatives (once per subject; provenance = all sessions)
        p_tmpl = ctx.out.path(ctx.subject, None, "anat", "T1w", space=None, entities={"desc": "midspace"})
        t_inputs = [sessions[s] for s in labels]
        t_params = {"pre": pre, "seed": ctx.seed, "sessions": labels}
        if not ctx.out.is_done(p_tmpl, t_inputs, t_params):
            ctx.out.save_nifti(template, p_tmpl, sidecar={
                "Description": "unbiased within-subject template: N4 T1w of every session rigidly registered "
                               "to the halfway (mid) space and averaged", "Sessions": labels},
                inputs=t_inputs, params=t_params)
    n4 = nib.load(str(n4s[ctx.session]))
    tr = compose_with_midspace(tr_mid, str(mats[ctx.session]))
    tmask = load_template("mask", float(pre["template_resolution"]))
    mask = bx.mask_from_template(tmask, linear_part(tr), n4)
    if pre["registration"] != "Affine":  # deformable: united with the mask through the full transform
        mask = _union_mask(mask, bx.mask_from_template(tmask, tr, n4))
    return tr, mask, n4, dict(meta.get("timing", {})), qc, str(p_tmpl)


def _transforms_meta(work: Path) -> Path:
    return work / "session_transforms.json"


def _cached_session(work: Path, key: str):
    """(Transforms, extra dict) saved by a previous complete run with the same key, or None."""
    p = _transforms_meta(work)
    if not p.exists():
        return None
    try:
        meta = json.loads(p.read_text())
        tr = Transforms(**meta["transforms"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if meta.get("key") != key or not tr.exist():
        return None
    return tr, meta.get("extra", {})


def _outputs(ctx, pre: dict, res: float, params_reg: dict) -> dict:
    """Every derivative the stage writes for ``ctx.analyses``: {name: (path, params)}."""
    out, sub, ses = ctx.out, ctx.subject, ctx.session
    analyses = ctx.analyses or {}
    o = {"preproc": (out.path(sub, ses, "anat", "T1w", space=None, entities={"desc": "preproc"}), params_reg),
         "mask": (out.path(sub, ses, "anat", "mask", space=None, entities={"desc": "brain"}), params_reg),
         "dseg": (out.path(sub, ses, "anat", "dseg", space=None), params_reg)}
    for lab in ("GM", "WM", "CSF"):
        o[lab] = (out.path(sub, ses, "anat", "probseg", space=None, entities={"label": lab}), params_reg)
    if "vbm" in analyses:
        pv = _vbm_params(ctx, analyses["vbm"] or {}, params_reg)
        r = pv["vbm"]["resolution"]
        if pv["vbm"]["modulated"]:
            o["vbm_modulated"] = (out.path(sub, ses, "anat", "probseg", res=r,
                                           entities={"label": "GM", "desc": "modulated"}), pv)
        if pv["vbm"]["unmodulated"]:
            o["vbm_unmodulated"] = (out.path(sub, ses, "anat", "probseg", res=r,
                                             entities={"label": "GM", "desc": "unmodulated"}), pv)
    if "thickness" in analyses:
        pt = _thickness_params(ctx, analyses["thickness"] or {}, params_reg)
        o["thickness_native"] = (out.path(sub, ses, "anat", "morph", space=None, entities={"desc": "thickness"}), pt)
        o["thickness_table"] = (out.path(sub, ses, "anat", "stats", space=None, entities={"desc": "thickness"},
                                         ext=".tsv"), pt)
        o["thickness_mni"] = (out.path(sub, ses, "anat", "morph", res=pt["thickness"]["resolution"],
                                       entities={"desc": "thickness"}), pt)
    if "roi_volumes" in analyses or "vbm" in analyses:
        o["roi_volumes"] = (out.path(sub, ses, "anat", "stats", space=None, entities={"desc": "roivolumes"},
                                     ext=".tsv"), params_reg)
    o["tissue"] = (out.path(sub, ses, "anat", "stats", space=None, entities={"desc": "tissue"}, ext=".tsv"),
                   dict(params_reg, analyses=sorted(a for a in analyses if a in ("vbm", "thickness", "roi_volumes")),
                        vbm=o.get("vbm_modulated", (None, {}))[1].get("vbm"),
                        thickness=o.get("thickness_mni", (None, {}))[1].get("thickness")))
    return o


def _fill_ctx(ctx, tr: Transforms, outs: dict, res: float, tiv_ml: float, extra: dict) -> None:
    for key, value in {
        "t1w": str(ctx.inputs.t1w), "t1w_preproc": str(outs["preproc"][0]), "brain_mask": str(outs["mask"][0]),
        "to_mni_transforms": list(tr.fwd),
        "from_mni_transforms": list(tr.inv), "from_mni_whichtoinvert": list(tr.inv_invert),
        "transforms_json": str(extra.get("transforms_json", "")), "template_resolution": res,
        "gm_probseg": str(outs["GM"][0]), "wm_probseg": str(outs["WM"][0]), "csf_probseg": str(outs["CSF"][0]),
        "dseg": str(outs["dseg"][0]), "tiv_ml": float(tiv_ml), "flip": bool(ctx.flip),
        "midspace": extra.get("midspace"),
    }.items():
        setattr(ctx.anat, key, value)
    for name in ("vbm_modulated", "vbm_unmodulated", "thickness_mni"):
        if name in outs:
            setattr(ctx.anat, name, str(outs[name][0]))


def run(ctx) -> dict:
    """Run the structural stage for ``ctx`` (see module doc); returns QC/summary numbers."""
    log = ctx.log
    set_threads(ctx.omp_nthreads)
    if ctx.inputs.t1w is None:
        raise InputDataError(f"sub-{ctx.subject}: no T1w image")
    pre = _params(ctx)
    if pre["longitudinal"] not in ("midspace", "independent"):
        raise InputDataError(f"unknown value {pre['longitudinal']!r}; choose 'midspace' or 'independent'",
                             field="preprocessing.anat.longitudinal")
    res = float(pre["template_resolution"])
    out, sub, ses = ctx.out, ctx.subject, ctx.session
    work = Path(ctx.work_dir) / "anat"
    work.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    t_start = _now()

    sessions = session_t1ws(ctx) if pre["longitudinal"] == "midspace" else {}
    use_mid = len(sessions) > 1 and ses in sessions
    inputs = [Path(sessions[s]) for s in sorted(sessions)] if use_mid else [Path(ctx.inputs.t1w)]
    if use_mid and Path(ctx.inputs.t1w) not in inputs:
        inputs.append(Path(ctx.inputs.t1w))
    params_reg = {"pre": pre, "seed": ctx.seed, "stage": STAGE_VERSION,
                  "midspace": sorted(sessions) if use_mid else None}
    key = provenance_hash(inputs, params_reg)
    outs = _outputs(ctx, pre, res, params_reg)
    common = {"Sources": [str(p) for p in inputs]}

    # resume: every output up to date and the transforms still on disk -> nothing to do
    cached = _cached_session(work, key)
    from ..qc import figures as qc_figures, record as qc_record  # QC: hfsmri.qc owns the IQMs, names, files
    png = qc_figures.figure_path(out, sub, ses, "t1w_mni")
    iqm = qc_record.cached(out, sub, ses, "T1w", inputs, params_reg)
    if cached is not None and iqm is not None and png.exists() and all(out.is_done(p, inputs, prm)
                                                                        for p, prm in outs.values()):
        tr, extra = cached
        summary = pd.read_csv(outs["tissue"][0], sep="\t").iloc[0].to_dict()
        summary = {k2: (v.item() if hasattr(v, "item") else v) for k2, v in summary.items()}
        summary["iqm"] = iqm
        _fill_ctx(ctx, tr, outs, res, summary["tiv_ml"], extra)
        log.info("anat: outputs up to date, skipped")
        summary["skipped"] = True
        return summary

    # 1-3. N4, brain extraction + registration (mid-space for longitudinal subjects)
    extra = {"transforms_json": str(_transforms_meta(work)), "midspace": None}
    seg0 = None
    if use_mid:
        tr, mask, t1_n4, reg_timing, reg_qc, p_tmpl = _midspace_registration(ctx, sessions, pre, log)
        extra["midspace"] = p_tmpl
    else:
        t0 = _now()
        t1_n4 = _n4_cached(work / "t1w_n4.nii.gz", Path(ctx.inputs.t1w), ctx.omp_nthreads,
                           PROFILES[pre["profile"]]["n4"])
        _tick(timing, "n4", t0)
        tr, mask, reg_timing, reg_qc, seg0 = _register_head(t1_n4, pre, work, key, ctx.seed, ctx.omp_nthreads,
                                                            log)
    timing.update(reg_timing)
    m = np.asarray(mask.dataobj) > 0
    brain = bx.apply_mask(t1_n4, mask)
    out.save_nifti(brain, outs["preproc"][0], sidecar=dict(common, Description="N4 bias-corrected, brain-extracted "
                                                                               "T1w (native)", SkullStripped=True,
                                                           T1wToMNI=tr.type_of_transform),
                   inputs=inputs, params=params_reg)
    out.save_nifti(mask, outs["mask"][0], sidecar=dict(common, Description="brain mask: MNI template mask through "
                                                                           "the inverse affine T1w->MNI transform, "
                                                                           "united with it through the full "
                                                                           "(deformable) inverse transform",
                                                       Type="Brain"),
                   inputs=inputs, params=params_reg)

    # 4. tissue segmentation with template priors (through the final transform)
    t0 = _now()
    if PROFILES[pre["profile"]]["segmentation_passes"] == 2 or pre["registration"] == "Affine":
        seg = _atropos_with_template_priors(t1_n4, mask, tr, res, ctx.omp_nthreads)
    else:  # fast: the pass that drove the SyN (affine priors, affine mask) is the segmentation
        seg = seg0 if seg0 is not None else _atropos_with_template_priors(t1_n4, mask, linear_part(tr), res,
                                                                          ctx.omp_nthreads)
    _tick(timing, "segmentation", t0)
    aff_n = t1_n4.affine
    vml = voxel_volume_ml(t1_n4)
    vols = tissue_volumes(seg["csf"], seg["gm"], seg["wm"], vml)
    for lab in ("GM", "WM", "CSF"):
        out.save_nifti(nib.Nifti1Image(seg[lab.lower()], aff_n), outs[lab][0],
                       sidecar=dict(common, Description=f"{lab} probability (Atropos, template priors)"),
                       inputs=inputs, params=params_reg)
    out.save_nifti(nib.Nifti1Image(seg["seg"].astype(np.int16), aff_n), outs["dseg"][0],
                   sidecar=dict(common, Labels={"0": "background", "1": "CSF", "2": "GM", "3": "WM"}),
                   inputs=inputs, params=params_reg)
    _fill_ctx(ctx, tr, outs, res, vols["tiv_ml"], extra)

    # QC: warped T1w, brain-mask and GM Dice in MNI, TIV implied by the affine alone
    t0 = _now()
    tmpl, tmask, tgm = load_template("T1", res), load_template("mask", res), load_template("GM", res)
    warped_t1 = apply_to_mni(brain, tr, tmpl).get_fdata()
    warped_mask = apply_to_mni(nib.Nifti1Image(m.astype(np.float32), aff_n), tr, tmpl).get_fdata() >= 0.5
    warped_gm = apply_to_mni(nib.Nifti1Image(seg["gm"], aff_n), tr, tmpl).get_fdata()
    mask_dice = qcmod.dice(warped_mask, tmask.get_fdata() > 0)
    gm_dice = qcmod.dice(warped_gm >= 0.5, tgm.get_fdata() >= 0.5)
    qcmod.registration_overlay(warped_t1, tmpl.get_fdata(), tmask.get_fdata(), png,
                               title=f"sub-{sub}{' ses-' + ses if ses else ''}: T1w in MNI, template edges "
                                     f"(GM Dice {gm_dice:.3f})", template_gm=tgm.get_fdata())
    _tick(timing, "qc", t0)

    summary = {"tiv_ml": vols["tiv_ml"], "gm_ml": vols["gm_ml"], "wm_ml": vols["wm_ml"],
               "csf_ml": vols["csf_ml"], "brain_mask_dice": mask_dice, "gm_dice": gm_dice,
               "brain_mask_ml": float(m.sum() * vml), **reg_qc,
               "midspace": bool(use_mid), "flipped": bool(ctx.flip)}
    analyses = ctx.analyses or {}

    # 5. VBM
    if "vbm" in analyses:
        t0 = _now()
        summary.update(_vbm(ctx, tr, seg, aff_n, analyses["vbm"] or {}, inputs, params_reg))
        _tick(timing, "vbm", t0)
    # 6. thickness
    if "thickness" in analyses:
        t0 = _now()
        summary.update(_thickness(ctx, tr, seg, t1_n4, analyses["thickness"] or {}, inputs, params_reg))
        _tick(timing, "thickness", t0)
    # 7. ROI volumes (always cheap; the group stage needs them when roi_volumes is requested)
    if "roi_volumes" in analyses or "vbm" in analyses:
        t0 = _now()
        _roi_volumes(ctx, tr, seg, t1_n4, inputs, params_reg)
        _tick(timing, "roi_volumes", t0)

    # image-quality metrics (MRIQC definitions) of this T1w: hfsmri.qc.record writes desc-iqm_stats.tsv
    t0 = _now()
    summary["iqm"] = qc_record.anat(ctx, n4=t1_n4, brain_mask=m, seg=seg, transforms=tr,
                                    dice={"brain_mask_dice": mask_dice, "gm_dice": gm_dice},
                                    inputs=inputs, params=params_reg)
    _tick(timing, "iqm", t0)

    _tick(timing, "total", t_start)
    summary["timing"] = {k2: round(v, 2) for k2, v in timing.items()}
    tissue = pd.DataFrame([{k2: v for k2, v in summary.items() if not isinstance(v, dict)}])
    out.save_tsv(tissue, outs["tissue"][0],
                 sidecar={"Description": "tissue volumes (ml; TIV = GM + WM + CSF in native space) and QC numbers: "
                                         "brain_mask_dice / gm_dice = Dice of the warped brain mask / GM (p >= 0.5) "
                                         "with the template's; bet_affine_vs_final_* compare the brain mask (template "
                                         "mask through the affine) with the template mask through the full "
                                         "deformable transform (a low Dice or a ratio far from 1 flags a "
                                         "registration problem)", "timing_s": summary["timing"]},
                 inputs=inputs, params=outs["tissue"][1])
    _transforms_meta(work).write_text(json.dumps({"key": key, "transforms": tr.__dict__, "extra": extra}, indent=2))
    log.info("anat: sub-%s TIV %.0f ml, GM %.0f ml, GM Dice %.3f, %.1f s", sub, vols["tiv_ml"],
             vols["gm_ml"], gm_dice, timing["total_s"])
    return summary


def _vbm_params(ctx, params, params_reg) -> dict:
    v = {"resolution": float(params.get("resolution", 2)), "fwhm": float(params.get("fwhm", 8.0)),
         "modulated": bool(params.get("modulated", True)), "unmodulated": bool(params.get("unmodulated", False))}
    return dict(params_reg, vbm=v, flip=bool(ctx.flip))


def _thickness_params(ctx, params, params_reg) -> dict:
    method = str(params.get("method", "laplace")).lower()
    t = {"method": method, "resolution": float(params.get("resolution", 2)), "fwhm": float(params.get("fwhm", 0.0)),
         "atlas": params.get("atlas", "harvard_oxford")}
    if method == "direct":
        t["iterations"] = int(params.get("iterations", 10))
    return dict(params_reg, thickness=t, flip=bool(ctx.flip))


def _maybe_flip(ctx, img, interpolation="continuous"):
    return flip_lr(img, interpolation=interpolation) if ctx.flip else img


def _vbm(ctx, tr, seg, aff_n, params, inputs, params_reg) -> dict:
    out, sub, ses = ctx.out, ctx.subject, ctx.session
    p = _vbm_params(ctx, params, params_reg)
    res, fwhm = p["vbm"]["resolution"], p["vbm"]["fwhm"]
    tmpl = load_template("T1", res)
    gm_nat = nib.Nifti1Image(seg["gm"], aff_n)
    gm_mni = apply_to_mni(gm_nat, tr, tmpl).get_fdata()
    jac = jacobian_determinant(tr, tmpl).get_fdata()
    mod = modulate(gm_mni, jac)
    vox_mni = voxel_volume_ml(tmpl)
    gm_mod_ml = float(mod.sum() * vox_mni)
    side = {"Description": "GM probability in MNI space, modulated by the Jacobian determinant of the "
                           "T1w->MNI transform (affine + SyN), Gaussian-smoothed",
            "SmoothingFWHMmm": fwhm, "Modulated": True, "Flipped": bool(ctx.flip), "Space": TEMPLATE_SPACE}
    if p["vbm"]["modulated"]:
        img = nib.Nifti1Image(smooth(mod, tmpl.affine, fwhm), tmpl.affine)
        path = out.path(sub, ses, "anat", "probseg", res=res, entities={"label": "GM", "desc": "modulated"})
        out.save_nifti(_maybe_flip(ctx, img), path, sidecar=side, inputs=inputs, params=p)
        ctx.anat.vbm_modulated = str(path)
    if p["vbm"]["unmodulated"]:
        img = nib.Nifti1Image(smooth(gm_mni, tmpl.affine, fwhm), tmpl.affine)
        path = out.path(sub, ses, "anat", "probseg", res=res, entities={"label": "GM", "desc": "unmodulated"})
        out.save_nifti(_maybe_flip(ctx, img), path, sidecar=dict(side, Modulated=False), inputs=inputs, params=p)
        ctx.anat.vbm_unmodulated = str(path)
    return {"gm_modulated_ml": gm_mod_ml}


def _thickness(ctx, tr, seg, t1_n4, params, inputs, params_reg) -> dict:
    out, sub, ses = ctx.out, ctx.subject, ctx.session
    p = _thickness_params(ctx, params, params_reg)
    method, res, fwhm, atlas_name = (p["thickness"][k] for k in ("method", "resolution", "fwhm", "atlas"))
    aff_n = t1_n4.affine
    from ..spatial.resample import voxel_sizes

    labels = np.where(seg["seg"] == 0, 1, seg["seg"]).astype(np.int32)
    if method == "laplace":
        th = laplace_thickness(labels, voxel_sizes(t1_n4))
    elif method == "direct":
        th = direct_thickness(labels, seg["gm"], seg["wm"], aff_n, iterations=p["thickness"]["iterations"],
                              nthreads=ctx.omp_nthreads)
    else:
        raise InputDataError(f"unknown thickness method {method!r}; choose 'laplace' or 'direct'",
                             field="analyses.thickness.method")
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
    ctx.anat.thickness_mni = str(path)
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
