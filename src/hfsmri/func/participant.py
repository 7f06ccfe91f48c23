"""Participant stage of resting-state fMRI: preprocessing, nuisance cleaning and local metrics.

Input: fMRIPrep outputs when present (used as they are: MNI152NLin2009cAsym preproc BOLD, accepted as the MNI152NLin2009aSym template space,
confounds TSV, mask), else raw BOLD preprocessed by :mod:`hfsmri.func.preprocess`, with
slice-timing correction first when ``preprocessing.func.slice_timing`` asks for it
(:func:`slice_timing_plan`; recorded as ``SliceTimingCorrected``/``StartTime`` in the sidecars and
in the QC table's ``slice_timing`` column).

Nuisance model (DPABI defaults): Friston-24 motion, mean WM and CSF signals (template priors
>= 0.9 in the brain mask, WM eroded), optional global signal (``preprocessing.func.global_signal``),
mean + linear trend (``detrend``). Cleaning is :func:`hfsmri.func.clean.clean` (nilearn-equivalent):

* ``desc-clean_bold``: band-passed (``preprocessing.func.band``, default 0.01-0.08 Hz) and, when
  ``preprocessing.func.scrubbing`` is on, scrubbed (volumes with FD > ``fd_scrub_threshold`` mm
  interpolated before filtering and then removed). ReHo, DC, VMHC and the connectivity stage
  use it.
* ALFF/fALFF use the same regression without band-pass and without scrubbing (their FFT needs an
  evenly sampled series), as DPABI.

Outputs in ``sub-X/[ses-Y/]func/`` (space MNI152NLin2009aSym, ``res-<resolution>``, ``task-rest``):
``desc-clean_bold``, ``desc-brain_mask``, ``desc-confounds_timeseries.tsv``, ``desc-qc_stats.tsv``
and per requested analysis the metric maps ``_reho``, ``_alff``/``_falff``, ``_dcb``/``_dcw``,
``_vmhc`` (BEP012 suffixes), each as raw map (no desc), ``desc-z`` (z within the mask),
``desc-m`` (divided by the mask mean), and the group-analysis versions ``desc-zsmooth`` /
``desc-msmooth`` (standardised, then Gaussian smoothed with the analysis' ``fwhm`` mm; DPABI order).
Maps are written unflipped; affected-side flipping happens at group level.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from hfsmri.analyses import ANALYSES, PREPROCESSING_DEFAULTS
from hfsmri.errors import InputDataError
from hfsmri.func import confounds as cf
from hfsmri.func.alff import alff_falff_2d
from hfsmri.func.clean import clean
from hfsmri.func.dc import degree_centrality
from hfsmri.func.maps import smooth_in_mask, standardize_map
from hfsmri.func.reho import reho
from hfsmri.func.vmhc import vmhc
from hfsmri.spatial.templates import TEMPLATE_SPACE, load_template

__all__ = ["run", "METRICS", "FUNC_ANALYSES", "MAP_DESCS", "metric_path", "qc_path"]

#: analysis -> its voxel-wise metrics, asked from the registry (hfsmri.analyses: the one list)
METRICS = {name: tuple(m.name for m in spec.metrics) for name, spec in ANALYSES.items() if spec.stage == "func"}
FUNC_ANALYSES = tuple(METRICS)
#: desc entity of each map version (None = raw map)
MAP_DESCS = (None, "z", "m", "zsmooth", "msmooth")
GM_THRESHOLD = 0.2  # DPABI's default grey-matter probability threshold for DC
TASK = "rest"


def _func_params(ctx) -> dict:
    p = dict(PREPROCESSING_DEFAULTS["func"])
    p.update((getattr(ctx, "preprocessing", None) or {}).get("func", {}) or {})
    return p


def metric_path(out, sub, ses, suffix, resolution, desc=None) -> Path:
    return out.path(sub, ses, "func", suffix, space=TEMPLATE_SPACE, res=resolution,
                    entities={"task": TASK, "desc": desc})


def qc_path(out, sub, ses) -> Path:
    return out.path(sub, ses, "func", "stats", space=None, entities={"task": TASK, "desc": "qc"}, ext=".tsv")


def _anat_inputs(ctx):
    t1w = ctx.anat.t1w_preproc
    to_mni = ctx.anat.to_mni_transforms
    if t1w is not None and to_mni:
        if Path(t1w).exists() and all(Path(t).exists() for t in to_mni):
            return Path(t1w), [str(t) for t in to_mni]
    return None, None


def _inputs(ctx):
    si = ctx.inputs
    if getattr(si, "fmriprep_bold", None) is not None:
        files = [si.fmriprep_bold] + [p for p in (si.fmriprep_confounds, si.fmriprep_mask) if p is not None]
        if si.fmriprep_confounds is None:
            raise InputDataError("fMRIPrep BOLD found without its desc-confounds_timeseries.tsv",
                                 path=si.fmriprep_bold)
        return "fmriprep", [Path(f) for f in files]
    if getattr(si, "bold", None) is not None:
        return "raw", [Path(si.bold)]
    raise InputDataError(f"sub-{ctx.subject}: no resting-state BOLD input")


def slice_timing_plan(ctx, fp: dict, img, tr: float) -> dict | None:
    """What slice-timing correction does for this raw BOLD: None (off, or auto without
    ``SliceTiming``) or ``{"times", "axis", "reverse", "ref_time"}`` (validated; see
    :mod:`hfsmri.func.slicetime`). ``preprocessing.func.slice_timing: true`` without SliceTiming
    is an error naming the file."""
    from hfsmri.func.slicetime import reference_time, slice_axis, slice_timing_mode, validate_slice_timing
    from hfsmri.io import read_json

    mode = slice_timing_mode(fp.get("slice_timing", "auto"))
    si = ctx.inputs
    side = getattr(si, "bold_json", None)
    meta = getattr(si, "bold_meta", None)  # read at discovery; else (inputs built by hand) from the sidecar
    if not meta:
        meta = read_json(side, what="BOLD JSON sidecar") if side is not None and Path(side).exists() else {}
    if mode == "false":
        return None
    times = meta.get("SliceTiming")
    if times is None:
        if mode == "true":
            raise InputDataError("preprocessing.func.slice_timing is true but the sidecar has no SliceTiming",
                                 path=side or si.bold, field="SliceTiming")
        return None
    axis, reverse = slice_axis(meta.get("SliceEncodingDirection"), path=side)
    t = validate_slice_timing(times, tr, int(img.shape[axis]), path=side)
    return {"times": t.tolist(), "axis": axis, "reverse": reverse, "ref_time": reference_time(t),
            "direction": meta.get("SliceEncodingDirection", "k")}


def _write_map(ctx, arr, mask, affine, suffix, res, fwhm, params, inputs, meta):
    paths = {}
    vox = np.abs(np.diag(affine)[:3])
    versions = {None: np.where(mask, arr, 0.0)}
    versions["z"] = standardize_map(arr, mask, "z")
    versions["m"] = standardize_map(arr, mask, "m")
    versions["zsmooth"] = smooth_in_mask(versions["z"], mask, fwhm, vox)
    versions["msmooth"] = smooth_in_mask(versions["m"], mask, fwhm, vox)
    notes = {None: "raw map", "z": "z-standardised within the mask (MATLAB std, ddof 1)",
             "m": "divided by the mask mean",
             "zsmooth": f"z-standardised, then Gaussian smoothed {fwhm} mm FWHM within the mask",
             "msmooth": f"mean-divided, then Gaussian smoothed {fwhm} mm FWHM within the mask"}
    for desc, data in versions.items():
        p = metric_path(ctx.out, ctx.subject, ctx.session, suffix, res, desc)
        img = nib.Nifti1Image(data.astype(np.float32), affine)
        img.header.set_xyzt_units("mm")
        side = dict(meta)
        side["Standardisation"] = notes[desc]
        if desc and desc.endswith("smooth"):
            side["SmoothingFWHMmm"] = fwhm
        ctx.out.save_nifti(img, p, sidecar=side, inputs=inputs, params=params)
        paths[desc or "raw"] = str(p)
    return paths


def run(ctx) -> dict:
    """Run the func participant stage for one subject/session (see module doc). Returns QC summary."""
    fp = _func_params(ctx)
    res = int(fp["resolution"]) if float(fp["resolution"]).is_integer() else float(fp["resolution"])
    band = tuple(fp["band"]) if fp.get("band") else None
    requested = [a for a in FUNC_ANALYSES if a in (ctx.analyses or {})]
    source, inputs = _inputs(ctx)
    t1w, to_mni = _anat_inputs(ctx) if source == "raw" else (None, None)
    if t1w is not None:
        inputs = inputs + [t1w] + [Path(t) for t in to_mni if Path(t).is_file()]
    analysis_params = {a: dict((ctx.analyses or {}).get(a) or {}) for a in requested}
    st_plan = None
    if source == "raw":
        from hfsmri.func.preprocess import load_bold

        bold0 = load_bold(ctx.inputs.bold)
        st_plan = slice_timing_plan(ctx, fp, bold0, _tr(ctx, bold0, ctx.inputs.bold))
    params = {"func": fp, "source": source, "analyses": analysis_params, "anat_registration": t1w is not None,
              "slice_timing": st_plan}
    out = ctx.out
    sub, ses = ctx.subject, ctx.session
    clean_p = out.path(sub, ses, "func", "bold", space=TEMPLATE_SPACE, res=res,
                       entities={"task": TASK, "desc": "clean"})
    mask_p = out.path(sub, ses, "func", "mask", space=TEMPLATE_SPACE, res=res,
                      entities={"task": TASK, "desc": "brain"})
    conf_p = out.path(sub, ses, "func", "timeseries", space=None, entities={"task": TASK, "desc": "confounds"},
                      ext=".tsv")
    qc_p = qc_path(out, sub, ses)
    wanted = [clean_p, mask_p, conf_p, qc_p] + [
        metric_path(out, sub, ses, m, res, d) for a in requested for m in METRICS[a] for d in MAP_DESCS]
    from hfsmri.qc import record as qc_record  # QC: hfsmri.qc owns the IQMs, figures and their files
    iqm = qc_record.cached(out, sub, ses, "bold", inputs, params)
    if iqm is not None and all(out.is_done(p, inputs, params) for p in wanted):
        ctx.log.info("func: outputs up to date, skipped")
        qc = pd.read_csv(qc_p, sep="\t").iloc[0].to_dict()
        _fill_ctx(ctx, clean_p, mask_p, conf_p, qc_p, qc)
        return dict(_summary(qc), iqm=iqm)

    # ------------------------------------------------------------- preprocessing
    if source == "fmriprep":
        from hfsmri.func.preprocess import load_fmriprep

        si = ctx.inputs
        regs, fd_all, non_steady = cf.load_fmriprep_confounds(si.fmriprep_confounds, fp["global_signal"])
        first = nib.load(str(si.fmriprep_bold))
        tr = _tr(ctx, first, si.fmriprep_bold)
        if len(regs) != first.shape[3]:
            raise InputDataError(f"confounds table has {len(regs)} rows but the BOLD has {first.shape[3]} volumes",
                                 path=si.fmriprep_confounds)
        img, mask = load_fmriprep(si.fmriprep_bold, si.fmriprep_mask, res, drop=non_steady)
        keep0 = ~non_steady
        regs = regs.loc[keep0].reset_index(drop=True)
        fd = fd_all[keep0]
        fd[0] = 0.0
        n_dummy = int(non_steady.sum())
        registration = "fmriprep"
        data = np.asarray(img.dataobj, dtype=np.float32)
    else:
        from hfsmri.func.preprocess import load_bold, preprocess_raw

        bold = load_bold(ctx.inputs.bold)
        tr = _tr(ctx, bold, ctx.inputs.bold)
        pre = preprocess_raw(ctx.inputs.bold, tr, Path(ctx.work_dir) / "func", dummy_scans=int(fp["dummy_scans"]),
                             resolution=res, t1w=t1w, to_mni=to_mni, log=ctx.log, slice_timing=st_plan)
        img, mask = pre["img"], pre["mask"]
        data = np.asarray(img.dataobj, dtype=np.float32)
        fd = cf.framewise_displacement(pre["motion"])
        regs = pd.DataFrame(cf.friston24(pre["motion"]),
                            columns=[f"{c}{s}" for s in ("", "_lag", "_power2", "_lag_power2")
                                     for c in cf.MOTION_COLUMNS])
        n_dummy = pre["n_dummy"]
        registration = pre["registration"]
    affine = img.affine
    if mask.sum() < 100:
        raise InputDataError(f"only {int(mask.sum())} brain voxels with signal after preprocessing: "
                             "check the BOLD image and its registration", path=inputs[0])
    if source == "raw":
        from hfsmri.func.preprocess import tissue_masks

        wm, csf = tissue_masks(res, mask)
        regs["white_matter"] = cf.mean_signal(data, wm)
        regs["csf"] = cf.mean_signal(data, csf)
        if fp["global_signal"]:
            regs["global_signal"] = cf.mean_signal(data, mask)

    n_t = data.shape[3]
    ts = np.ascontiguousarray(data[mask].T, dtype=np.float64)  # (n_t, n_vox)
    dv = cf.dvars(ts)
    keep = None
    n_scrubbed = 0
    if fp["scrubbing"]:
        keep = fd <= float(fp["fd_scrub_threshold"])
        n_scrubbed = int((~keep).sum())
        if keep.sum() < max(30, n_t // 2):
            raise InputDataError(f"scrubbing at FD > {fp['fd_scrub_threshold']} mm leaves {int(keep.sum())} of "
                                 f"{n_t} volumes (fewer than half): too much motion", path=inputs[0],
                                 field="preprocessing.func.fd_scrub_threshold")
        if keep.all():
            keep = None
    conf = regs.to_numpy(float)
    clean_bp = clean(ts, conf, tr, band, detrend=True, sample_mask=keep)
    n_kept = clean_bp.shape[0]
    mean_fd = float(fd.mean())
    high_motion = mean_fd > float(fp["max_mean_fd"])

    bp4d = np.zeros(mask.shape + (n_kept,), dtype=np.float32)
    bp4d[mask] = clean_bp.T
    del clean_bp
    bold_img = nib.Nifti1Image(bp4d, affine)
    bold_img.header.set_xyzt_units("mm", "sec")
    bold_img.header.set_zooms(tuple(np.abs(np.diag(affine)[:3])) + (float(tr),))
    common = {"RepetitionTime": float(tr), "SkullStripped": True, "TaskName": TASK,
              "Source": source, "Registration": registration}
    if source == "raw":  # BIDS-Derivatives fields, as fMRIPrep writes them
        common["SliceTimingCorrected"] = st_plan is not None
        if st_plan is not None:
            common["StartTime"] = st_plan["ref_time"]
            common["SliceTimingMethod"] = ("Fourier phase shift of the mirror-extended series to the middle of "
                                           "the acquisition window (hfsmri.func.slicetime), before realignment")
            common["SliceEncodingDirection"] = st_plan["direction"]
    out.save_nifti(bold_img, clean_p, inputs=inputs, params=params, sidecar={
        **common, "Description": "nuisance-regressed (Friston-24, WM, CSF" + (", GS" if fp["global_signal"] else "")
        + ", linear trend) and band-passed BOLD (hfsmri.func.clean, nilearn-equivalent)",
        "BandPassHz": list(band) if band else None, "Scrubbing": bool(keep is not None),
        "VolumesKept": int(n_kept), "DummyScansRemoved": n_dummy})
    out.save_nifti(nib.Nifti1Image(mask.astype(np.uint8), affine), mask_p, inputs=inputs, params=params,
                   sidecar={"Type": "Brain", "Description": "template brain mask restricted to voxels with signal"})
    conf_df = regs.copy()
    conf_df["framewise_displacement"] = fd
    conf_df["dvars"] = dv
    if keep is not None:
        conf_df["scrubbed"] = (~keep).astype(int)
    out.save_tsv(conf_df, conf_p, inputs=inputs, params=params,
                 sidecar={"Description": "nuisance regressors (Friston-24 order: R, R(t-1), R^2, R(t-1)^2; "
                          "trans mm, rot rad), Power FD (mm, radius 50 mm), DVARS (grand mean 1000)"})

    maps: dict = {}
    meta_base = {**common, "SoftwareMethod": "hfsmri.func", "Space": TEMPLATE_SPACE}
    if "reho" in requested:
        nb = int(analysis_params["reho"].get("neighborhood", 27))
        w = reho(bp4d, mask, nb, n_jobs=max(1, int(getattr(ctx, "omp_nthreads", 1) or 1)))
        maps["reho"] = _write_map(ctx, w, mask, affine, "reho", res, float(analysis_params["reho"].get("fwhm", 4.0)),
                                  params, inputs, {**meta_base, "Method": "Kendall's W (ReHo), DPABI conventions",
                                                   "Neighborhood": nb})
        del w
    if "dc" in requested:
        thr = float(analysis_params["dc"].get("r_threshold", 0.25))
        gm = (np.asarray(load_template("GM", res).dataobj) >= GM_THRESHOLD) & mask
        b, wdc = degree_centrality(bp4d, gm, thr)
        fw = float(analysis_params["dc"].get("fwhm", 4.0))
        meta = {**meta_base, "CorrelationThreshold": thr, "NodeMask": f"template GM >= {GM_THRESHOLD} in brain mask"}
        maps["dcb"] = _write_map(ctx, b, gm, affine, "dcb", res, fw, params, inputs,
                                 {**meta, "Method": "binarised degree centrality (count of r > threshold)"})
        maps["dcw"] = _write_map(ctx, wdc, gm, affine, "dcw", res, fw, params, inputs,
                                 {**meta, "Method": "weighted degree centrality (sum of r > threshold)"})
    if "vmhc" in requested:
        lr_axis = _lr_axis(affine, mask.shape)
        z = vmhc(bp4d, mask, lr_axis=lr_axis, fisher=True)
        vm = mask & np.flip(mask, axis=lr_axis)
        mid = _midline(affine, mask.shape, lr_axis)
        vm &= ~mid
        z[~vm] = 0.0
        maps["vmhc"] = _write_map(ctx, z, vm, affine, "vmhc", res, float(analysis_params["vmhc"].get("fwhm", 4.0)),
                                  params, inputs, {**meta_base, "Method": "Fisher z of the correlation with the "
                                                   "mirror voxel (x -> -x) on the symmetric template grid; "
                                                   "mid-sagittal voxels 0"})
    del bp4d
    if "alff" in requested:
        clean_nb = clean(ts, conf, tr, None, detrend=True)  # (n_t, n_vox): no 4D copy needed
        ab = tuple(analysis_params["alff"].get("band", (0.01, 0.08)))
        a1, f1 = alff_falff_2d(clean_nb, tr, ab)
        del clean_nb
        a = np.zeros(mask.shape)
        f = np.zeros(mask.shape)
        a[mask] = a1
        f[mask] = f1
        fw = float(analysis_params["alff"].get("fwhm", 4.0))
        meta = {**meta_base, "BandHz": list(ab), "Input": "nuisance-regressed, unfiltered, unscrubbed BOLD"}
        maps["alff"] = _write_map(ctx, a, mask, affine, "alff", res, fw, params, inputs,
                                  {**meta, "Method": "ALFF, DPABI rules (mean 2|FFT|/n over the band)"})
        maps["falff"] = _write_map(ctx, f, mask, affine, "falff", res, fw, params, inputs,
                                   {**meta, "Method": "fALFF, DPABI rules (band sum / sum over 0 < f <= Nyquist)"})

    # image-quality metrics and QC figures (MRIQC definitions; hfsmri.qc.record writes desc-iqm_stats.tsv)
    coreg = None
    if source == "raw" and registration == "anat" and ctx.anat.wm_probseg:
        coreg = {"mean_epi": pre["mean_epi"], "epi_to_t1w": list(pre["to_template"])[len(to_mni):], "t1w": t1w,
                 "wm_probseg": ctx.anat.wm_probseg}
    iqm = qc_record.func(ctx, ts=ts, data4d=data, mask=mask, affine=affine, fd=fd, tr=tr,
                         fd_threshold=float(fp["fd_scrub_threshold"]), scrubbing=bool(fp["scrubbing"]),
                         source=source, registration=registration, coreg=coreg, inputs=inputs, params=params)
    tsnr_med = iqm["tsnr"]  # one definition: median tSNR of the linearly detrended series (hfsmri.qc)

    qc = {"participant_id": f"sub-{sub}", "session": ses or "n/a", "source": source,
          "registration": registration, "tr": float(tr), "n_volumes": int(n_t + n_dummy), "n_dummy": n_dummy,
          "n_kept": int(n_kept), "n_scrubbed": n_scrubbed, "mean_fd": mean_fd, "max_fd": float(fd.max()),
          "n_fd_gt_0p5": int((fd > 0.5).sum()), "mean_dvars": float(dv[1:].mean()) if n_t > 1 else 0.0,
          "tsnr_median": tsnr_med, "n_mask_voxels": int(mask.sum()),
          "max_mean_fd": float(fp["max_mean_fd"]), "high_motion": bool(high_motion),
          "slice_timing": _slice_timing_label(source, st_plan, fp)}
    out.save_tsv(pd.DataFrame([qc]), qc_p, inputs=inputs, params=params,
                 sidecar={"Description": "functional QC: Power FD (mm), DVARS, median tSNR (linearly detrended "
                                         "series, hfsmri.qc.functional), kept volumes",
                          "high_motion": f"mean FD > {fp['max_mean_fd']} mm"})
    if high_motion:
        ctx.log.warning("sub-%s: mean FD %.3f mm above the %.2f mm limit", sub, mean_fd, fp["max_mean_fd"])
    _fill_ctx(ctx, clean_p, mask_p, conf_p, qc_p, qc)
    summary = _summary(qc)
    summary["maps"] = maps
    summary["iqm"] = iqm
    return summary


def _slice_timing_label(source, plan, fp) -> str:
    """QC-table value: what happened to slice timing in this run."""
    if source != "raw":
        return f"by {source}"
    if plan is not None:
        return f"corrected to {plan['ref_time']:.4g} s"
    return "off" if str(fp.get("slice_timing", "auto")).lower() == "false" else "not corrected (no SliceTiming)"


def _summary(qc: dict) -> dict:
    keys = ("source", "registration", "mean_fd", "max_fd", "tsnr_median", "n_kept", "n_scrubbed", "high_motion",
            "slice_timing")
    return {k: (qc[k].item() if hasattr(qc[k], "item") else qc[k]) for k in keys if k in qc}


def _fill_ctx(ctx, clean_p, mask_p, conf_p, qc_p, qc):
    for key, value in {"clean_bold": str(clean_p), "brain_mask": str(mask_p), "confounds": str(conf_p),
                       "qc": str(qc_p), "tr": float(qc["tr"]), "mean_fd": float(qc["mean_fd"])}.items():
        setattr(ctx.func, key, value)


def _tr(ctx, img, path) -> float:
    from hfsmri.func.preprocess import repetition_time

    si = ctx.inputs
    js = getattr(si, "bold_json", None)
    if js is None and str(path).endswith(".nii.gz"):
        cand = Path(str(path)[:-7] + ".json")
        js = cand if cand.exists() else None
    return repetition_time(img, js, getattr(si, "tr", None), path)


def _lr_axis(affine, shape) -> int:
    lin = np.asarray(affine)[:3, :3]
    ax = int(np.argmax(np.abs(lin[0])))
    n = shape[ax]
    x0 = affine[0, 3]
    x1 = affine[0, 3] + lin[0, ax] * (n - 1)
    if abs(x0 + x1) > 1e-3 * max(1.0, abs(lin[0, ax])):
        raise InputDataError("VMHC needs a grid symmetric about x = 0 (the hfsmri MNI grid); got first/last x "
                             f"{x0:.2f}/{x1:.2f} mm")
    return ax


def _midline(affine, shape, ax) -> np.ndarray:
    n = shape[ax]
    xs = affine[0, 3] + affine[0, ax] * np.arange(n)
    m = np.zeros(shape, bool)
    idx = np.flatnonzero(np.abs(xs) < 1e-3 * max(1.0, abs(affine[0, ax])))
    sl = [slice(None)] * 3
    for i in idx:
        sl[ax] = i
        m[tuple(sl)] = True
    return m


def load_qc_table(out, subjects_sessions) -> pd.DataFrame:
    """Concatenate participant QC tables for (subject, session) pairs that have one."""
    rows = []
    for sub, ses in subjects_sessions:
        p = qc_path(out, sub, ses)
        if p.exists():
            rows.append(pd.read_csv(p, sep="\t"))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()

