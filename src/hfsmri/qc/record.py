"""Stage hooks: the participant stages hand their in-memory arrays to :func:`anat`, :func:`func`
and :func:`dwi`, which compute the IQMs, draw the QC figures and write one IQM table per modality.

Files (names built by :class:`hfsmri.derivatives.Derivatives`; this module owns them):

* ``sub-X/[ses-Y/]anat/sub-X_[ses-Y_]desc-iqm_stats.tsv`` (T1w),
  ``func/..._task-rest_desc-iqm_stats.tsv`` (BOLD), ``dwi/..._desc-iqm_stats.tsv`` (DWI): one row,
  ``participant_id``, ``session``, ``modality`` and the modality's columns of
  :data:`hfsmri.qc.table.COLUMNS`; the JSON sidecar gives every column's description and units
  plus how it was computed, and the provenance of the stage's inputs and parameters (so the stage's
  resume check, :func:`cached`, recomputes them when the stage's inputs change).
* figures in ``sub-X/[ses-Y/]figures/`` (:mod:`hfsmri.qc.figures`).

Each hook returns the row's metrics as a dict (NaN as None) that the stage puts in its summary
(``desc-hfsmri_summary.json`` under ``<stage>.iqm``). A figure that cannot be drawn is logged as a
warning and named under ``figure_errors``; the metrics are still written.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from . import figures as F
from .table import column_sidecar, modality_columns

__all__ = ["QC_VERSION", "DATATYPE", "iqm_path", "cached", "anat", "func", "dwi"]

#: bump when a metric's definition changes: every IQM table is then recomputed on the next run
QC_VERSION = "1"
DATATYPE = {"T1w": "anat", "bold": "func", "dwi": "dwi"}
TASK = "rest"


def iqm_path(out, sub: str, ses: str | None, modality: str, task: str = TASK) -> Path:
    """Path of the IQM table of one subject/session and modality (``T1w``, ``bold``, ``dwi``)."""
    ents = {"task": task if modality == "bold" else None, "desc": "iqm"}
    return out.path(sub, ses, DATATYPE[modality], "stats", space=None, entities=ents, ext=".tsv")


def _params(params) -> dict:
    return {"stage": params or {}, "iqm": QC_VERSION}


def _plain(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        out[k] = v
    return out


def _stored(v) -> float:
    """A metric as the TSV stores it (10 significant digits), so that the summary equals the file."""
    v = float(v) if v is not None else float("nan")
    return float(f"{v:.10g}") if np.isfinite(v) else float("nan")


def cached(out, sub: str, ses: str | None, modality: str, inputs, params) -> dict | None:
    """The metrics of an up-to-date IQM table (same inputs, stage parameters and
    :data:`QC_VERSION`), or None when it must be computed."""
    p = iqm_path(out, sub, ses, modality)
    if not out.is_done(p, inputs, _params(params)):
        return None
    row = pd.read_csv(p, sep="\t", na_values=["n/a"], keep_default_na=False).iloc[0].to_dict()
    return _plain({k: row.get(k, np.nan) for k in modality_columns(modality)})


def _write(ctx, modality: str, values: dict, inputs, params, method: dict, errors: dict, t0=None) -> dict:
    cols = modality_columns(modality)
    row = {"participant_id": f"sub-{ctx.subject}", "session": ctx.session or "n/a", "modality": modality}
    row.update({c: _stored(values.get(c, np.nan)) for c in cols})
    side = column_sidecar(cols)
    side["Description"] = f"{modality} image-quality metrics (hfsmri.qc; definitions in docs/qc.md)"
    side["Method"] = method
    if errors:
        side["FigureErrors"] = errors
    p = iqm_path(ctx.out, ctx.subject, ctx.session, modality)
    ctx.out.save_tsv(pd.DataFrame([row]), p, sidecar=side, inputs=list(inputs), params=_params(params))
    if t0 is not None:
        _log(ctx).info("%s: %s QC metrics and figures in %.1f s", _who(ctx), modality, time.perf_counter() - t0)
    res = _plain({c: row[c] for c in cols})
    if errors:
        res["figure_errors"] = errors
    return res


def _log(ctx):
    return getattr(ctx, "log", None) or logging.getLogger("hfsmri.qc")


def _draw(ctx, errors: dict, kind: str, fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # a figure must not cost the subject its metrics
        msg = f"{type(exc).__name__}: {exc}"
        errors[kind] = msg
        _log(ctx).warning("QC figure %s not drawn: %s", kind, msg)


def _who(ctx) -> str:
    return f"sub-{ctx.subject}" + (f" ses-{ctx.session}" if ctx.session else "")


def _canonical(data: np.ndarray, affine) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, np.float32), affine))
    return np.asarray(img.dataobj), np.asarray(img.header.get_zooms()[:3], float)


def _to_grid(moving: np.ndarray, moving_affine, ref_img, transforms) -> np.ndarray:
    """``moving`` resampled (linear) onto ``ref_img``'s grid through ANTs ``transforms`` (list of
    files mapping moving to reference; empty = identity in world coordinates)."""
    import ants

    from ..spatial.resample import to_ants

    fixed = to_ants(ref_img)
    mov = to_ants(nib.Nifti1Image(np.asarray(moving, np.float32), moving_affine))
    return ants.apply_transforms(fixed=fixed, moving=mov, transformlist=list(transforms) or [],
                                 interpolator="linear").numpy()


# ----------------------------------------------------------------------------- T1w
def anat(ctx, *, n4, brain_mask, seg: dict, transforms, dice: dict, inputs, params) -> dict:
    """T1w IQMs (:mod:`hfsmri.qc.structural`) of the structural stage's subject/session.

    ``n4``: N4-corrected whole-head T1w (nibabel image, native grid); ``brain_mask`` (bool array)
    and ``seg`` ({"csf", "gm", "wm"} probabilities) on that grid; ``transforms``: the T1w -> MNI
    :class:`~hfsmri.spatial.registration.Transforms` (its affine part places the glabella-inion
    plane of the air mask); ``dice``: the stage's ``brain_mask_dice`` and ``gm_dice``. The raw T1w
    (for the N4 bias field) is read from ``ctx.inputs.t1w``. The T1w -> MNI figure is drawn by the
    stage (:func:`hfsmri.qc.figures.registration_overlay`).
    """
    from ..io import load_image
    from .structural import HAT_LANDMARKS_MNI, t1w_iqms

    t0 = time.perf_counter()
    log = _log(ctx)
    n4d = np.asarray(n4.dataobj, dtype=np.float32)
    raw = None
    try:
        r = load_image(ctx.inputs.t1w, ndim=3, what="T1w", check_header=False)
        if r.shape[:3] == n4d.shape and np.allclose(r.affine, n4.affine, atol=1e-3):
            raw = np.clip(np.asarray(r.dataobj, dtype=np.float32), 0, None)
    except Exception as exc:  # the stage already read it; a failure here only costs inu_range
        log.warning("%s: raw T1w not readable for the INU measure (%s)", _who(ctx), exc)
    hat, hat_note = None, "whole background (no T1w -> MNI transform)"
    if transforms is not None:
        try:
            from ..anat.participant import linear_part
            from ..spatial.registration import warp_points_to_native

            hat = warp_points_to_native(HAT_LANDMARKS_MNI, linear_part(transforms))
            hat_note = "background above the glabella-inion plane (MNI z = -14 mm through the affine T1w -> MNI)"
        except Exception as exc:
            log.warning("%s: glabella/inion not mapped (%s); the air mask is the whole background", _who(ctx), exc)
    zooms = np.asarray(n4.header.get_zooms()[:3], float)
    iq = t1w_iqms(n4d, raw, np.asarray(brain_mask, bool), {k: seg[k] for k in ("csf", "gm", "wm")}, zooms,
                  n4.affine, hat)
    values = dict(iq, t1w_dice=dice.get("brain_mask_dice", np.nan), gm_dice=dice.get("gm_dice", np.nan))
    method = {"image": "N4-corrected whole-head T1w, native grid (MRIQC in_noinu)",
              "tissues": "structural stage's CSF/GM/WM probabilities and brain mask",
              "air_mask": hat_note, "air_voxels": iq["n_air"], "sigma_air": iq["sigma_air"],
              "inu": "raw / N4 in the brain mask" if raw is not None else "n/a (raw T1w not on the N4 grid)"}
    return _write(ctx, "T1w", values, inputs, params, method, {}, t0)


# ----------------------------------------------------------------------------- BOLD
def _tissue_labels(mask: np.ndarray, affine) -> tuple[np.ndarray, dict]:
    """Carpet labels of the in-mask voxels on the MNI grid: 1 GM, 2 WM, 3 CSF (largest template
    prior); one label "brain" when the grid is not a template grid."""
    from ..spatial.templates import load_template, template_grid

    res = float(abs(affine[0, 0]))
    try:
        shape, aff = template_grid(res)
        if tuple(shape) != tuple(mask.shape) or not np.allclose(aff, affine, atol=1e-3):
            raise ValueError("not a template grid")
        pri = np.stack([np.asarray(load_template(k, res).dataobj, float)[mask] for k in ("GM", "WM", "CSF")])
        return pri.argmax(axis=0) + 1, {1: "GM", 2: "WM", 3: "CSF"}
    except ValueError:
        return np.ones(int(mask.sum()), int), {1: "brain"}


def func(ctx, *, ts, data4d, mask, affine, fd, tr: float, fd_threshold: float | None, scrubbing: bool,
         source: str, registration: str, coreg: dict | None, inputs, params) -> dict:
    """BOLD IQMs (:mod:`hfsmri.qc.functional`) and figures of the functional stage's run.

    ``ts``: (n, v) in-mask series of the realigned BOLD on the MNI grid (before nuisance
    regression), ``data4d`` the same 4D array, ``mask`` its brain mask, ``affine`` the grid's,
    ``fd`` (n,) Power FD (mm), ``fd_threshold`` the scrubbing threshold (mm). ``coreg``: for raw
    BOLD registered through the T1w, ``{"mean_epi": path (native mean EPI), "epi_to_t1w": [rigid
    transform files], "t1w": path, "wm_probseg": path}``; else the figure shows the EPI in MNI with
    the template's WM boundary.
    """
    from .functional import bold_iqms, carpet_matrix, detrend

    t0 = time.perf_counter()
    errors: dict = {}
    y = np.asarray(ts, dtype=np.float64)
    res = detrend(y)
    iq = bold_iqms(y, fd, fd_threshold, residuals=res)
    sub, ses, out, who = ctx.subject, ctx.session, ctx.out, _who(ctx)
    m = np.asarray(mask, bool)
    # carpet
    labels, names = _tissue_labels(m, affine)
    mat, rows = carpet_matrix(y, labels, tuple(names), residuals=res)
    del res
    _draw(ctx, errors, "bold_carpet", F.carpet_plot, mat, rows, names, fd, iq["dvars_std_t"],
          F.figure_path(out, sub, ses, "bold_carpet"), tr=tr, fd_threshold=fd_threshold,
          title=f"{who}: FD, DVARS and carpet (detrended, z-scored; no global-signal regression); "
                f"GCOR {iq['gcor']:.3f}")
    # tSNR mosaic
    tmap = np.zeros(m.shape, np.float32)
    tmap[m] = iq["tsnr_voxels"]
    _draw(ctx, errors, "bold_tsnr", F.mosaic, tmap, m, F.figure_path(out, sub, ses, "bold_tsnr"),
          title=f"{who}: tSNR (median {iq['tsnr']:.1f})", label="tSNR")
    # EPI -> T1w (or -> MNI) overlay
    kind = "EPI -> T1w (rigid), T1w WM boundary"
    if coreg:
        def _coreg():
            t1 = nib.load(str(coreg["t1w"]))
            mean = nib.load(str(coreg["mean_epi"]))
            bg = _to_grid(np.asarray(mean.dataobj, np.float32), mean.affine, t1, coreg["epi_to_t1w"])
            wm = np.asarray(nib.load(str(coreg["wm_probseg"])).dataobj, np.float32)
            bgc, zooms = _canonical(bg, t1.affine)
            wmc, _ = _canonical(wm, t1.affine)
            F.coreg_overlay(bgc, wmc, F.figure_path(out, sub, ses, "bold_coreg"),
                            title=f"{who}: mean EPI in T1w space, T1w WM boundary", zooms=zooms)
    else:
        kind = f"EPI in MNI ({'fMRIPrep' if source == 'fmriprep' else 'direct EPI -> MNI affine'}), template WM boundary"

        def _coreg():
            from ..spatial.templates import load_template

            mean = np.asarray(data4d, dtype=np.float32).mean(axis=3)
            wm = np.asarray(load_template("WM", float(abs(affine[0, 0]))).dataobj, np.float32)
            F.coreg_overlay(mean, wm, F.figure_path(out, sub, ses, "bold_coreg"),
                            title=f"{who}: mean EPI in MNI, template WM boundary", zooms=np.abs(np.diag(affine)[:3]))
    _draw(ctx, errors, "bold_coreg", _coreg)
    values = {k: iq[k] for k in ("tsnr", "dvars_std", "gcor", "mean_fd", "scrubbed")}
    method = {"series": f"realigned BOLD on the MNI grid, before nuisance regression ({source}; "
                        f"registration {registration})", "n_volumes": int(y.shape[0]), "n_voxels": int(y.shape[1]),
              "fd_scrub_threshold_mm": fd_threshold, "scrubbing_applied": bool(scrubbing),
              "max_fd_mm": iq["max_fd"], "coreg_figure": kind}
    return _write(ctx, "bold", values, inputs, params, method, errors, t0)


# ----------------------------------------------------------------------------- DWI
def _slice_axis(ctx) -> tuple[int, str]:
    from ..func.slicetime import slice_axis
    from ..io import read_json

    js = getattr(ctx.inputs, "dwi_json", None)
    if js is not None and Path(js).exists():
        meta = read_json(js, what="DWI JSON sidecar")
        if "SliceEncodingDirection" in meta:
            return slice_axis(meta["SliceEncodingDirection"], path=js)[0], "SliceEncodingDirection"
    return 2, "third voxel axis (no SliceEncodingDirection)"


def dwi(ctx, *, raw, affine, bvals, b0_threshold: float, mask, b0, motion: dict | None, reg: dict,
        t1w_to_mni, inputs, params) -> dict:
    """DWI IQMs (:mod:`hfsmri.qc.diffusion`) and figures of the diffusion stage's run.

    ``raw``: the DWI as read (4D, before denoising / motion correction), ``affine`` its grid,
    ``bvals`` (s/mm^2), ``mask`` the stage's native brain mask, ``b0`` the stage's mean b0 (native),
    ``motion``: the stage's motion-correction result (``rotation_deg``, ``translation_mm`` per
    volume) or None, ``reg``: the stage's b0 -> MNI registration (``transforms``, ``how``) and
    ``t1w_to_mni`` the anatomical transforms it starts with (its rigid b0 -> T1w part follows them).
    """
    from .diffusion import b0_snr, motion_mm, slice_outliers

    t0 = time.perf_counter()
    errors: dict = {}
    sub, ses, out, who = ctx.subject, ctx.session, ctx.out, _who(ctx)
    m = np.asarray(mask, bool)
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    snr = b0_snr(raw, m, bvals, b0_threshold, zooms)
    axis, axis_note = _slice_axis(ctx)
    so = slice_outliers(raw, m, bvals, b0_threshold, axis=axis)
    mot = motion_mm(motion["rotation_deg"], motion["translation_mm"]) if motion else float("nan")
    if so["outlier_volumes"].size:
        _log(ctx).warning("%s: signal dropout in %d slices of %d diffusion-weighted volumes (%s)", who,
                          int(so["outlier"].sum()), so["outlier_volumes"].size,
                          ", ".join(map(str, so["outlier_volumes"].tolist())))
    _draw(ctx, errors, "dwi_slices", F.slice_outlier_plot, so["z"], so["outlier"],
          F.figure_path(out, sub, ses, "dwi_slices"),
          title=f"{who}: slice signal dropout, {100 * np.nan_to_num(so['dwi_outlier']):.1f} % of volumes")
    anat_ = ctx.anat  # hfsmri.stage_outputs.AnatOutputs of the structural stage
    if reg.get("how") == "anat" and anat_.t1w_preproc and anat_.wm_probseg:
        def _coreg():
            t1 = nib.load(str(anat_.t1w_preproc))
            rigid = list(reg["transforms"])[len(list(t1w_to_mni or [])):]
            bg = _to_grid(b0, affine, t1, rigid)
            wm = np.asarray(nib.load(str(anat_.wm_probseg)).dataobj, np.float32)
            bgc, zz = _canonical(bg, t1.affine)
            wmc, _ = _canonical(wm, t1.affine)
            F.coreg_overlay(bgc, wmc, F.figure_path(out, sub, ses, "dwi_coreg"),
                            title=f"{who}: mean b0 in T1w space, T1w WM boundary", zooms=zz)
    else:
        def _coreg():
            from ..dwi.preprocess import apply_to_mni
            from ..spatial.templates import load_template

            b0m = apply_to_mni({"b0": b0}, affine, reg["transforms"], 2)["b0"]
            wm = np.asarray(load_template("WM", 2).dataobj, np.float32)
            F.coreg_overlay(b0m, wm, F.figure_path(out, sub, ses, "dwi_coreg"),
                            title=f"{who}: mean b0 in MNI (direct affine), template WM boundary", zooms=(2, 2, 2))
    _draw(ctx, errors, "dwi_coreg", _coreg)
    values = {"b0_snr": snr["b0_snr"], "dwi_outlier": so["dwi_outlier"],
              "dwi_outlier_slices": so["dwi_outlier_slices"], "dwi_motion": mot}
    method = {"data": "DWI as read (before denoising and motion correction), stage brain mask",
              "b0_snr_method": snr["b0_snr_method"], "n_b0": snr["n_b0"], "slice_axis": int(axis),
              "slice_axis_from": axis_note, "checked_slices": so["n_checked"],
              "outlier_volumes": so["outlier_volumes"].tolist(),
              "motion": "from the stage's motion correction" if motion else "n/a (motion correction off)"}
    return _write(ctx, "dwi", values, inputs, params, method, errors, t0)
