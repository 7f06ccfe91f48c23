"""Where does the planted signal go? Planted effect size -> participant-level effect size ->
group result, per planted effect, modality and metric (issue 23, item 1).

For each setting (``demo``: the demo's simulation and study settings; ``default``: the simulator's
and pipeline's defaults), group size n (per group) and simulated study k:

1. ``simulate_study`` n patients + n controls (the review's effects planted, seed from
   ``[--seed, n, k]``, seeds the tests never use);
2. ``hfsmri participant`` with the analyses that carry planted voxel-wise effects
   (vbm, roi_volumes, dti, reho, alff, seed_fc);
3. per planted effect row (``effects.tsv``: effect x analysis/metric), the participant-level value
   of each subject: the mean of its map over the effect's ground-truth mask (``mask_unaligned``:
   the union of both sides for ipsi/contra effects, as the unflipped demo), or for roi_volumes the
   summed GM volume of the effect's atlas labels, and per voxel of the mask the map value;
   **observed d** = Hedges-corrected Cohen's d of patients vs controls (sign: planted direction
   positive) with a 95 % CI (Hedges & Olkin normal approximation), for the ROI mean and the median
   over the mask's voxels of the voxel-wise d; the controls' between-subject CV (SD/mean) of the
   ROI value; for effects with a clinical link, the observed correlation (patients) of the ROI
   value with the score beside the planted ``clinical_r``;
4. with ``--group``: ``hfsmri group`` (the setting's statistics) and
   :func:`hfsmri.power.score_group_outputs` -> recovered yes/no per planted test (FWE p < alpha in
   a voxel of the mask, planted direction); recovery rate = share of studies.

Usage::

    python benchmarks/bench_sensitivity.py --settings demo --n 10 --studies 1 --out /tmp/sens
    python benchmarks/bench_sensitivity.py --quick        # demo setting, n = 6, one study, no group
    python benchmarks/bench_sensitivity.py --summarise /tmp/sens   # tables of finished studies only
    python benchmarks/bench_sensitivity.py --kernel 120 --n 10 --clean   # fMRI metrics without the pipeline
    python benchmarks/bench_sensitivity.py --kernel 120 --n 10 --clean --calibrate   # BOLD_MEASUREMENT_SD

Per study the measurements are cached (``<out>/<setting>/n-<n>/sim-<k>/observed.tsv``), so an
interrupted run resumes; images are deleted after measuring unless ``--keep``.
Writes ``<out>/sensitivity.tsv`` (one row per setting x n x planted test, pooled over studies) and
prints the tables. ``--store`` writes the pooled observed effect sizes of the largest measured
cohort of each setting to ``src/hfsmri/simulate/observed_effects.tsv`` (read by
:func:`hfsmri.simulate.effects.observed_effect_sizes`, used by ``hfsmri power --effect-sizes observed``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml

ANALYSES = ("vbm", "roi_volumes", "dti", "reho", "alff", "seed_fc")
SEED_BASE = 2311           # the tests never use seeds in this range


def settings_of(name: str, quick: bool = False) -> tuple[dict, dict]:
    """(simulate_study kwargs, study.yaml) of a named setting."""
    from hfsmri.demo import demo_study_config
    from hfsmri.simulate.dataset import DEFAULT_VOLUMES, DEMO_VOLUMES
    from hfsmri.simulate.scanner import USER_PRESET

    cfg = demo_study_config(quick=quick)
    keep = {a: cfg["analyses"].get(a, {}) for a in ANALYSES}
    cfg["analyses"] = keep
    if name == "demo":
        sim = {"n_volumes": 60 if quick else DEMO_VOLUMES, "scanner": USER_PRESET}
    elif name == "default":
        sim = {"n_volumes": DEFAULT_VOLUMES, "scanner": USER_PRESET}
        cfg.pop("preprocessing", None)                 # the standard anatomical profile
        cfg["stats"] = dict(cfg["stats"], n_perm=1000)  # fewer than the 5000 default: compute budget
    else:
        raise SystemExit(f"unknown setting {name!r} (demo, default)")
    return sim, cfg


def study_seed(seed: int, n: int, k: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(n), int(k)]).generate_state(1)[0] % (2 ** 31))


# ------------------------------------------------------------------------------------------ maps
def _participant_map(deriv: Path, sub: str, analysis: str, metric: str) -> Path | None:
    """The participant-level map the group level reads for analysis/metric (None if absent)."""
    d = deriv / f"sub-{sub}"
    pats = {
        "vbm": ["anat/*label-GM_desc-modulated_probseg.nii.gz"],
        "dti": [f"dwi/*model-tensor_param-{metric}_dwimap.nii.gz"],
        "reho": ["func/*desc-zsmooth_reho.nii.gz"],
        "alff": [f"func/*desc-zsmooth_{metric}.nii.gz"],
        "seed_fc": [f"func/*{metric}*desc-fisherzsmooth*.nii.gz", f"func/*{metric}*fisherz*.nii.gz"],
    }.get(analysis, [])
    for pat in pats:
        hits = sorted(p for p in d.glob(pat) if "desc-" not in p.name or analysis != "dti" or "desc-smooth" not in p.name)
        if hits:
            return hits[0]
    return None


def _roi_volume(table: pd.DataFrame, region: str) -> float | None:
    """Summed GM volume (ml) of the atlas labels of a region spec ('aal:A+aal:B') in a participant's
    ``desc-roivolumes_stats.tsv`` (long format: ``region, source_label, volume_ml``); a label matches
    the table's ``region`` or ``source_label`` (case-insensitive). None if a label is missing."""
    if not isinstance(region, str) or ":" not in region:
        return None
    names = [part.split(":", 1)[1].lower() for part in region.split("+")]
    keys = [{str(r).lower(), str(s).lower()} for r, s in zip(table["region"], table["source_label"])]
    total = 0.0
    for n in names:
        hit = [i for i, k in enumerate(keys) if n in k]
        if not hit:
            return None
        total += float(table["volume_ml"].iloc[hit[0]])
    return total


def hedges_d(x_pat: np.ndarray, x_con: np.ndarray, direction: int) -> tuple[float, float, float]:
    """Hedges' g (patients - controls, times the planted direction) and its 95 % CI."""
    n1, n2 = len(x_pat), len(x_con)
    sp = np.sqrt(((n1 - 1) * np.var(x_pat, ddof=1) + (n2 - 1) * np.var(x_con, ddof=1)) / (n1 + n2 - 2))
    d = direction * (np.mean(x_pat) - np.mean(x_con)) / sp if sp > 0 else np.nan
    j = 1 - 3 / (4 * (n1 + n2) - 9)
    g = j * d
    se = np.sqrt((n1 + n2) / (n1 * n2) + g ** 2 / (2 * (n1 + n2)))
    return float(g), float(g - 1.96 * se), float(g + 1.96 * se)


def measure_study(bids: Path, deriv: Path) -> pd.DataFrame:
    """One row per planted test: participant-level values -> observed effect sizes (see module doc)."""
    gt = bids / "derivatives" / "ground_truth"
    effects = pd.read_csv(gt / "effects.tsv", sep="\t")
    subj = pd.read_csv(gt / "subjects.tsv", sep="\t")
    subj["sub"] = subj["participant_id"].str[4:]
    pat = subj.loc[subj["group"] == "HFS", "sub"].tolist()
    con = subj.loc[subj["group"] == "HC", "sub"].tolist()
    parts = pd.read_csv(bids / "participants.tsv", sep="\t")
    parts = parts.assign(sub=parts["participant_id"].str[4:]).set_index("sub")
    rows, cache, masks = [], {}, {}
    for e in effects.itertuples():
        row = {"effect_id": e.effect_id, "analysis": e.analysis, "metric": e.metric, "modality": e.modality,
               "direction": int(e.direction), "planted_d": float(e.cohens_d), "n_pat": len(pat), "n_con": len(con)}
        vals, vox = {}, {}
        if e.analysis == "roi_volumes":
            for s in pat + con:
                tp = next(iter(sorted((deriv / f"sub-{s}" / "anat").glob("*desc-roivolumes_stats.tsv"))), None)
                if tp is None:
                    continue
                v = _roi_volume(pd.read_csv(tp, sep="\t"), e.region)
                if v is not None:
                    vals[s] = v
        else:
            mrel = e.mask_unaligned if isinstance(e.mask_unaligned, str) and e.mask_unaligned != "n/a" else e.mask
            for s in pat + con:
                p = _participant_map(deriv, s, e.analysis, e.metric)
                if p is None:
                    continue
                if p not in cache:
                    cache[p] = nib.load(p)
                img = cache[p]
                key = (mrel, img.shape[:3], tuple(np.round(img.affine.ravel(), 4)))
                if key not in masks:
                    masks[key] = _on_grid(gt / mrel, img) > 0
                m = masks[key]
                data = np.asarray(img.dataobj, dtype=np.float32)
                v = data[m]
                vals[s], vox[s] = float(np.mean(v)), v
        if len(vals) < 4 or not any(s in vals for s in pat) or not any(s in vals for s in con):
            rows.append(dict(row, status="no participant values"))
            continue
        xp = np.array([vals[s] for s in pat if s in vals])
        xc = np.array([vals[s] for s in con if s in vals])
        g, lo, hi = hedges_d(xp, xc, int(e.direction))
        row.update({"status": "ok", "observed_d_roi": g, "ci_lo": lo, "ci_hi": hi,
                    "control_cv_roi": float(np.std(xc, ddof=1) / abs(np.mean(xc))) if np.mean(xc) != 0 else np.nan})
        if vox:
            Vp = np.stack([vox[s] for s in pat if s in vox])
            Vc = np.stack([vox[s] for s in con if s in vox])
            sp = np.sqrt(((len(Vp) - 1) * Vp.var(0, ddof=1) + (len(Vc) - 1) * Vc.var(0, ddof=1)) / (len(Vp) + len(Vc) - 2))
            with np.errstate(divide="ignore", invalid="ignore"):
                dv = int(e.direction) * (Vp.mean(0) - Vc.mean(0)) / sp
            dv = dv[np.isfinite(dv)]
            j = 1 - 3 / (4 * (len(Vp) + len(Vc)) - 9)
            row["observed_d_voxel_median"] = float(j * np.median(dv)) if dv.size else np.nan
            row["n_voxels"] = int(dv.size)
            with np.errstate(divide="ignore", invalid="ignore"):
                row["control_cv_voxel_median"] = float(np.nanmedian(Vc.std(0, ddof=1) / np.abs(Vc.mean(0))))
        score = e.clinical_score if isinstance(e.clinical_score, str) and e.clinical_score != "n/a" else None
        if score and score in parts:
            ps = [s for s in pat if s in vals]
            sc = parts.loc[ps, score].to_numpy(float)
            if len(ps) >= 4 and np.std(sc) > 0:
                # the metric's correlation with the score among patients (planted: clinical_r)
                row["planted_r"] = float(e.clinical_r)
                row["observed_r"] = float(np.corrcoef(sc, np.array([vals[s] for s in ps]))[0, 1])
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ runs
def run_study(out: Path, setting: str, n: int, k: int, seed: int, quick: bool, group: bool, nprocs: int,
              keep: bool) -> pd.DataFrame:
    from hfsmri.cli import main as cli_main
    from hfsmri.simulate import simulate_study

    root = out / setting / f"n-{n}" / f"sim-{k:03d}"
    done = root / "observed.tsv"
    if done.is_file() and (not group or (root / "scores.tsv").is_file()):
        return pd.read_csv(done, sep="\t")
    sim_kw, cfg = settings_of(setting, quick)
    s = study_seed(seed, n, k)
    bids, deriv = root / "bids", root / "derivatives"
    timing = {}
    if not (bids / "derivatives" / "ground_truth" / "subjects.tsv").is_file():
        shutil.rmtree(bids, ignore_errors=True)
        t = time.perf_counter()
        simulate_study(bids, n_patients=n, n_controls=n, seed=s, n_jobs=nprocs, **sim_kw)
        timing["simulate_s"] = time.perf_counter() - t
    cfg["stats"] = dict(cfg["stats"], random_seed=s)
    (root / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    common = ["--study", str(root / "study.yaml"), "--nprocs", str(nprocs)]
    t = time.perf_counter()
    if cli_main([str(bids), str(deriv), "participant", *common]) != 0:
        raise SystemExit(f"participant level failed; see {deriv / 'logs'}")
    timing["participant_s"] = time.perf_counter() - t
    obs = measure_study(bids, deriv).assign(setting=setting, n_per_group=n, sim=k, study_seed=s)
    if group:
        from hfsmri.power import score_group_outputs

        t = time.perf_counter()
        if cli_main([str(bids), str(deriv), "group", *common, "--no-report"]) != 0:
            raise SystemExit(f"group level failed; see {deriv / 'logs'}")
        timing["group_s"] = time.perf_counter() - t
        det, fp = score_group_outputs(deriv, bids / "derivatives" / "ground_truth", cfg["stats"]["alpha"])
        det.to_csv(root / "scores.tsv", sep="\t", index=False)
        fp.to_csv(root / "fp.tsv", sep="\t", index=False)
    (root / "timing.json").write_text(json.dumps(timing))
    obs.to_csv(done, sep="\t", index=False)
    if not keep:
        shutil.rmtree(bids / "sub-01", ignore_errors=True)
        for p in list(bids.glob("sub-*")) + list(deriv.glob("sub-*")) + [deriv / "work"]:
            shutil.rmtree(p, ignore_errors=True)
    return obs


# ------------------------------------------------------------------------------------------ kernel level
def kernel_study(out: Path, n: int, volumes: int, seed: int, calibrate: bool = False,
                 clean: bool = False, keep: bool = False) -> pd.DataFrame:
    """fMRI without the pipeline: BOLD simulated in exact MNI position (``scanner='ideal'``, no
    deformation, 3 mm), ReHo (27 neighbours) and ALFF/fALFF computed by the kernels on the raw data
    inside the template brain, each map divided by its brain mean (as the pipeline's z-standardised
    maps, before smoothing); seed FC = Fisher z of the correlation of the seed ROI's mean series
    with the target ROI's mean series (ROI) or with each target voxel (voxel), on the raw data.
    Lateralised (ipsi/contra) effects are measured on each patient's own side (controls: the
    right-affected mask). Observed d per effect = the loss due to the BOLD metric itself (run
    length, noise, motion) with no registration, cleaning or smoothing.

    ``clean``: first regress the true head motion (6 parameters of the ground-truth confounds) and
    a quadratic trend out of every voxel (what an ideal denoising step removes) and compute ReHo on
    the 0.01-0.08 Hz band (ideal FFT band-pass), as the pipeline and the literature (Zang 2004) do;
    ALFF/fALFF from the cleaned unfiltered series.

    ``calibrate``: simulate with no measurement-noise compensation
    (:data:`hfsmri.simulate.effects.BOLD_MEASUREMENT_SD` = 0, the latent shift is the planted d)."""
    from hfsmri.func.alff import alff_falff
    from hfsmri.func.reho import reho
    from hfsmri.simulate import effects as effects_mod
    from hfsmri.simulate import simulate_study
    from hfsmri.simulate.bold import TR

    tag = f"kernel-{volumes}vol" + ("-clean" if clean else "") + ("-calibrate" if calibrate else "")
    root = out / tag / f"n-{n}"
    done = root / "observed.tsv"
    if done.is_file():
        return pd.read_csv(done, sep="\t")
    bids = root / "bids"
    if not (bids / "derivatives" / "ground_truth" / "subjects.tsv").is_file():
        shutil.rmtree(bids, ignore_errors=True)
        saved = dict(effects_mod.BOLD_MEASUREMENT_SD)
        if calibrate:
            effects_mod.BOLD_MEASUREMENT_SD.update({k: 0.0 for k in saved})
        try:
            simulate_study(bids, n_patients=n, n_controls=n, seed=study_seed(seed, n, volumes), modalities=("func",),
                           scanner="ideal", deform=False, n_volumes=volumes, n_jobs=1)
        finally:
            effects_mod.BOLD_MEASUREMENT_SD.update(saved)
    gt = bids / "derivatives" / "ground_truth"
    effects = pd.read_csv(gt / "effects.tsv", sep="\t")
    effects = effects[effects["analysis"].isin(["reho", "alff", "seed_fc"])]
    used = {e.id: e for e in effects_mod.load_effects(gt / "effects_used.yaml").effects}
    subj = pd.read_csv(gt / "subjects.tsv", sep="\t")
    side = pd.read_csv(bids / "participants.tsv", sep="\t").set_index("participant_id")["affected_side"]
    maps, data = {}, {}
    for pid in subj["participant_id"]:
        img = nib.load(next((bids / pid / "func").glob("*_bold.nii.gz")))
        d4 = np.asarray(img.dataobj, dtype=np.float32)
        brain = _template_brain_on(img) & (d4.mean(-1) > 0)
        if clean:
            conf = pd.read_csv(next((gt / pid / "func").glob("*_desc-confounds_timeseries.tsv")), sep="\t")
            d4 = _regress_true_confounds(d4, brain, conf)
        r = reho(_band_pass(d4, brain, TR) if clean else d4, brain, 27)
        a, f = alff_falff(d4, brain, TR)
        maps[pid] = {m: v / v[brain].mean() for m, v in (("reho", r), ("alff", a), ("falff", f))}
        maps[pid]["_img"] = img
        data[pid] = d4
    rows = []
    pat = subj.loc[subj["group"] == "HFS", "participant_id"].tolist()
    con = subj.loc[subj["group"] == "HC", "participant_id"].tolist()
    ref = maps[pat[0]]["_img"]
    mask_cache = {}

    def mask_of(rel):
        if rel not in mask_cache:
            mask_cache[rel] = _on_grid(gt / rel, ref) > 0
        return mask_cache[rel]

    def subject_mask(e, pid):
        """Voxel indices (tuple of arrays) of the effect's mask where this subject carries it:
        lateralised effects of left-affected patients at the mirror voxels (x -> -x), in the same
        order as the right-affected mask, so that voxel-wise statistics pair them."""
        idx = np.nonzero(mask_of(e.mask))
        if e.hemisphere in ("ipsi", "contra") and pid in pat and side.get(pid) == "L":
            ijk = np.stack(idx + (np.ones_like(idx[0]),))
            xyz = ref.affine @ ijk
            xyz[0] *= -1
            mir = np.rint(np.linalg.inv(ref.affine) @ xyz)[:3].astype(int)
            for ax in range(3):
                mir[ax] = np.clip(mir[ax], 0, ref.shape[ax] - 1)
            idx = tuple(mir)
        return idx

    def fisher_z(x, y):
        x = x - x.mean(0)
        y = y - y.mean(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (x * y).sum(0) / np.sqrt((x * x).sum(0) * (y * y).sum(0))
        return np.arctanh(np.clip(r, -0.999999, 0.999999))

    for e in effects.itertuples():
        if e.analysis == "seed_fc":
            eff = used[e.effect_id]
            seed_m = effects_mod.resolve_region(eff.seed_region, ref)
            roi, vox = {}, {}
            for pid in pat + con:
                tm = subject_mask(e, pid)
                seed_ts = data[pid][seed_m].mean(0)
                tv = data[pid][tm].T                   # (t, voxels)
                roi[pid] = float(fisher_z(seed_ts, tv.mean(1)))
                vox[pid] = fisher_z(seed_ts[:, None], tv)
            xp, xc = np.array([roi[p] for p in pat]), np.array([roi[c] for c in con])
            same = all(vox[p].shape == vox[pat[0]].shape for p in pat + con)
            Vp = np.stack([vox[p] for p in pat]) if same else None
            Vc = np.stack([vox[c] for c in con]) if same else None
            metric = "fc"
        else:
            Vp = np.stack([maps[p][e.metric][subject_mask(e, p)] for p in pat])
            Vc = np.stack([maps[c][e.metric][subject_mask(e, c)] for c in con])
            xp, xc = Vp.mean(1), Vc.mean(1)
            metric = e.metric
        g, lo, hi = hedges_d(xp, xc, int(e.direction))
        dv_med = np.nan
        if Vp is not None:
            sp = np.sqrt((Vp.var(0, ddof=1) + Vc.var(0, ddof=1)) / 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                dv = int(e.direction) * (Vp.mean(0) - Vc.mean(0)) / sp
            j = 1 - 3 / (4 * (len(Vp) + len(Vc)) - 9)
            dv_med = float(j * np.nanmedian(dv))
        rows.append({"setting": tag, "n_per_group": n,
                     "effect_id": e.effect_id, "analysis": e.analysis, "metric": metric, "planted_d": e.cohens_d,
                     "observed_d_roi": g, "ci_lo": lo, "ci_hi": hi, "observed_d_voxel_median": dv_med,
                     "control_sd_roi": float(xc.std(ddof=1)),
                     "control_cv_roi": float(xc.std(ddof=1) / abs(xc.mean())), "n_voxels": int(Vp.shape[1]) if Vp is not None else 0})
    t = pd.DataFrame(rows)
    t.to_csv(done, sep="\t", index=False)
    if not keep:
        shutil.rmtree(bids, ignore_errors=True)
    return t


# the observed d that defines each BOLD quantity's calibration (see calibration())
CALIBRATION_MEASURE = {"reho": ("reho", "observed_d_voxel_median"), "alff": ("alff", "observed_d_voxel_median"),
                       "fc": ("fc", "observed_d_roi")}


def calibration(tab: pd.DataFrame) -> pd.DataFrame:
    """From a ``--calibrate`` kernel run (latent shift = planted d): per BOLD quantity the median
    ratio observed/planted d (ReHo, ALFF: at a voxel; FC: ROI to ROI) and the measurement noise
    ``m = sigma * sqrt(1/ratio^2 - 1)`` (latent-equivalent SD) for
    :data:`hfsmri.simulate.effects.BOLD_MEASUREMENT_SD`, with the implied reliability."""
    from hfsmri.simulate.effects import DEFAULT_SIGMA

    rows = []
    for q, (metric, col) in CALIBRATION_MEASURE.items():
        t = tab[tab["metric"] == metric]
        ratio = float(np.median(t[col] / t["planted_d"]))
        sig = DEFAULT_SIGMA[q]
        m = sig * np.sqrt(max(1.0 / ratio ** 2 - 1.0, 0.0)) if ratio > 0 else np.inf
        rows.append({"quantity": q, "measure": col, "n_effects": len(t), "ratio_observed_planted": ratio,
                     "sigma": sig, "measurement_sd": m, "implied_reliability": sig ** 2 / (sig ** 2 + m ** 2),
                     "gain": float(np.sqrt(1 + (m / sig) ** 2))})
    return pd.DataFrame(rows)


def _regress_true_confounds(d4: np.ndarray, brain: np.ndarray, conf: pd.DataFrame) -> np.ndarray:
    """Residuals of the in-brain voxels' series on [1, t, t^2, true motion (6)], mean added back."""
    n_t = d4.shape[-1]
    t = np.linspace(-1, 1, n_t)
    X = np.column_stack([np.ones(n_t), t, t ** 2,
                         conf[["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]].to_numpy(float)])
    Y = d4[brain].T.astype(np.float64)
    beta, *_ = np.linalg.lstsq(X, Y, rcond=None)
    out = d4.copy()
    out[brain] = (Y - X[:, 1:] @ beta[1:]).T.astype(np.float32)
    return out


def _band_pass(d4: np.ndarray, brain: np.ndarray, tr: float, band=(0.01, 0.08)) -> np.ndarray:
    """Ideal (FFT) band-pass of the in-brain voxels' series."""
    n_t = d4.shape[-1]
    f = np.fft.rfftfreq(n_t, d=tr)
    spec = np.fft.rfft(d4[brain], axis=-1)
    spec[:, (f < band[0]) | (f > band[1])] = 0
    out = np.zeros_like(d4)
    out[brain] = np.fft.irfft(spec, n=n_t, axis=-1).astype(np.float32)
    return out


def _template_brain_on(img) -> np.ndarray:
    """The MNI template brain mask (2 mm) on ``img``'s grid (nearest neighbour)."""
    from hfsmri.spatial.templates import load_template

    return _on_grid(load_template("mask", 2.0), img) > 0


def _on_grid(src, ref) -> np.ndarray:
    """``src`` (image or path) resampled (nearest) onto the 3-D grid of ``ref``."""
    from nilearn import image

    src = nib.load(str(src)) if not isinstance(src, nib.Nifti1Image) else src
    ref3 = nib.Nifti1Image(np.zeros(ref.shape[:3], np.uint8), ref.affine)
    if src.shape[:3] == ref3.shape and np.allclose(src.affine, ref3.affine):
        return np.asarray(src.dataobj)
    return np.asarray(image.resample_to_img(src, ref3, interpolation="nearest", force_resample=True,
                                            copy_header=True).dataobj)


# ------------------------------------------------------------------------------------------ tables
def pooled(obs: pd.DataFrame, scores: pd.DataFrame | None) -> pd.DataFrame:
    """One row per setting x n x planted test: observed d pooled over studies (mean; CI of one study
    when there is one, else mean +- 1.96 SE over studies), recovery rate over studies."""
    keys = ["setting", "n_per_group", "effect_id", "analysis", "metric"]
    ok = obs[obs["status"] == "ok"]
    agg = ok.groupby(keys, sort=False).agg(
        modality=("modality", "first"), planted_d=("planted_d", "first"), n_studies=("sim", "nunique"),
        observed_d_roi=("observed_d_roi", "mean"), ci_lo=("ci_lo", "mean"), ci_hi=("ci_hi", "mean"),
        observed_d_voxel_median=("observed_d_voxel_median", "mean"),
        control_cv_roi=("control_cv_roi", "mean"),
        planted_r=("planted_r", "first"), observed_r=("observed_r", "mean")).reset_index()
    agg["ratio_roi"] = agg["observed_d_roi"] / agg["planted_d"]
    agg["ratio_voxel"] = agg["observed_d_voxel_median"] / agg["planted_d"]
    if scores is not None and len(scores):
        sc = scores[scores["scored"].astype(bool) & ~scores["contrast"].str.startswith("corr")]
        rec = sc.groupby(keys, sort=False)["detected_fwe"].mean().rename("recovery_fwe").reset_index()
        agg = agg.merge(rec, on=keys, how="left")
    return agg


def _print(tab: pd.DataFrame) -> None:
    cols = ["setting", "n_per_group", "effect_id", "analysis", "metric", "planted_d", "observed_d_roi", "ci_lo",
            "ci_hi", "observed_d_voxel_median", "control_cv_roi", "planted_r", "observed_r", "recovery_fwe", "n_studies"]
    cols = [c for c in cols if c in tab]
    with pd.option_context("display.width", 250, "display.max_rows", 500, "display.max_columns", 30):
        print(tab[cols].round(3).to_string(index=False))
        by = tab.groupby(["setting", "n_per_group", "analysis", "metric"]).agg(
            planted_d=("planted_d", "median"), observed_d_roi=("observed_d_roi", "median"),
            observed_d_voxel=("observed_d_voxel_median", "median"), control_cv_roi=("control_cv_roi", "median"),
            **({"recovery_fwe": ("recovery_fwe", "mean")} if "recovery_fwe" in tab else {}),
            n_tests=("effect_id", "count"))
        print("\nper analysis/metric (medians over planted effects; recovery = mean over effects and studies)")
        print(by.round(3).to_string())


def _markdown(tab: pd.DataFrame, path: Path) -> None:
    """The per-test table as markdown (for docs/simulator.md)."""
    cols = {"effect_id": "effect", "analysis": "analysis", "metric": "metric", "planted_d": "planted d",
            "observed_d_roi": "observed d (ROI mean)", "ci": "95 % CI", "observed_d_voxel_median": "observed d (voxel median)",
            "control_cv_roi": "controls' CV", "r": "clinical r planted / observed", "recovery_fwe": "recovered (FWE)"}
    t = tab.copy()
    t["ci"] = [f"{lo:.2f} to {hi:.2f}" for lo, hi in zip(t["ci_lo"], t["ci_hi"])]
    t["r"] = [f"{p:.2f} / {o:.2f}" if pd.notna(p) and pd.notna(o) else "" for p, o in zip(t["planted_r"], t["observed_r"])]
    if "recovery_fwe" in t:
        t["recovery_fwe"] = [("yes" if v >= 0.5 else "no") if t["n_studies"].max() == 1 and pd.notna(v) else
                             ("" if pd.isna(v) else f"{v:.0%}") for v in t["recovery_fwe"]]
    parts = []
    for (setting, n), g in t.groupby(["setting", "n_per_group"]):
        parts.append(f"**{setting}, n = {n} per group, {int(g['n_studies'].max())} simulated study(ies)**\n")
        parts.append(g[[c for c in cols if c in g]].rename(columns=cols).to_markdown(index=False, floatfmt=".2f"))
        parts.append("")
    path.write_text("\n".join(parts))


def collect(out: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    obs = [pd.read_csv(p, sep="\t") for p in sorted(out.glob("*/n-*/sim-*/observed.tsv"))]
    sc = []
    for p in sorted(out.glob("*/n-*/sim-*/scores.tsv")):
        setting, n, k = p.parts[-4], int(p.parts[-3][2:]), int(p.parts[-2][4:])
        sc.append(pd.read_csv(p, sep="\t").assign(setting=setting, n_per_group=n, sim=k))
    if not obs:
        raise SystemExit(f"no finished study under {out}")
    return pd.concat(obs, ignore_index=True), (pd.concat(sc, ignore_index=True) if sc else None)


def store(tab: pd.DataFrame) -> Path:
    """Observed effect sizes of the largest measured cohort per setting -> the simulator's table."""
    from hfsmri.simulate.effects import OBSERVED_FILE, OBSERVED_COLUMNS

    rows = []
    for setting, g in tab.groupby("setting"):
        n = g["n_per_group"].max()
        g = g[g["n_per_group"] == n]
        rows.append(g.assign(n_per_group_measured=n))
    t = pd.concat(rows, ignore_index=True).rename(columns={"observed_d_roi": "observed_d"})
    t[OBSERVED_COLUMNS].to_csv(OBSERVED_FILE, sep="\t", index=False, float_format="%.4g")
    return OBSERVED_FILE


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["demo", "default"], choices=("demo", "default"),
                    help="simulation + pipeline settings (default: demo default)")
    ap.add_argument("--n", nargs="+", type=int, default=[10, 20, 30], help="subjects per group (default: 10 20 30)")
    ap.add_argument("--studies", type=int, default=10, help="simulated studies per setting and size (default: 10)")
    ap.add_argument("--seed", type=int, default=SEED_BASE, help=f"base seed (default: {SEED_BASE})")
    ap.add_argument("--group", action="store_true", help="also run the group level and score recovery")
    ap.add_argument("--quick", action="store_true", help="demo setting, n = 6, 1 study, short BOLD, no group")
    ap.add_argument("--nprocs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench_sensitivity_out"))
    ap.add_argument("--keep", action="store_true", help="keep the simulated images and derivatives")
    ap.add_argument("--kernel", nargs="+", type=int, metavar="VOLUMES",
                    help="instead: fMRI kernel-level sensitivity (no pipeline) for these BOLD lengths, e.g. 120 240")
    ap.add_argument("--calibrate", action="store_true",
                    help="with --kernel: simulate without measurement-noise compensation and print the BOLD "
                         "calibration (hfsmri.simulate.effects.BOLD_MEASUREMENT_SD)")
    ap.add_argument("--clean", action="store_true",
                    help="with --kernel: regress the true motion parameters and a quadratic trend first; "
                         "ReHo on the 0.01-0.08 Hz band")
    ap.add_argument("--summarise", action="store_true", help="only print the tables of finished studies")
    ap.add_argument("--store", action="store_true",
                    help="write the observed effect sizes into src/hfsmri/simulate/observed_effects.tsv")
    a = ap.parse_args(argv)
    if a.quick:
        a.settings, a.n, a.studies, a.group = ["demo"], [6], 1, False
    if a.kernel:
        tabs = [kernel_study(a.out, n, v, a.seed, a.calibrate, a.clean, a.keep) for v in a.kernel for n in a.n]
        tab = pd.concat(tabs, ignore_index=True)
        a.out.mkdir(parents=True, exist_ok=True)
        tab.to_csv(a.out / ("kernel_calibrate.tsv" if a.calibrate else "kernel_sensitivity.tsv"), sep="\t", index=False)
        cols = ["setting", "n_per_group", "effect_id", "metric", "planted_d", "observed_d_roi", "ci_lo", "ci_hi",
                "observed_d_voxel_median", "control_sd_roi"]
        with pd.option_context("display.width", 250, "display.max_rows", 500):
            print(tab[cols].round(3).to_string(index=False))
            print(tab.groupby(["setting", "n_per_group", "metric"])[["planted_d", "observed_d_roi",
                  "observed_d_voxel_median", "control_sd_roi"]].median().round(3).to_string())
            if a.calibrate:
                print("\ncalibration (-> hfsmri.simulate.effects.BOLD_MEASUREMENT_SD)")
                print(calibration(tab).round(4).to_string(index=False))
        return 0
    if not a.summarise:
        for setting in a.settings:
            for n in a.n:
                for k in range(a.studies):
                    t = time.perf_counter()
                    run_study(a.out, setting, n, k, a.seed, a.quick, a.group, a.nprocs, a.keep)
                    print(f"[{setting} n={n} study {k}] {time.perf_counter() - t:.0f} s", flush=True)
    obs, scores = collect(a.out)
    tab = pooled(obs, scores)
    tab.to_csv(a.out / "sensitivity.tsv", sep="\t", index=False)
    _print(tab)
    _markdown(tab, a.out / "sensitivity.md")
    if a.store:
        print(f"stored: {store(tab)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
