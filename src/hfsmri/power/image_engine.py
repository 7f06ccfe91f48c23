"""Image-level power (``engine="image"``): whole simulated studies through the whole pipeline.

For every group size ``n`` and simulation ``k``:

1. ``simulate_study`` writes ``n`` patients + ``n`` controls (seed from ``[seed, n, k]``) with the
   planted effects and their ground truth (``derivatives/ground_truth/effects.tsv`` + masks);
2. ``hfsmri BIDS OUT participant`` and ``group`` run the chosen analyses with the study's
   permutation settings (TFCE, FWE);
3. :func:`score_group_outputs` reads the group maps: an effect is *detected* when a voxel of its
   ground-truth mask has corrected p < alpha in the contrast of its planted direction
   (``contrast-patient-gt-control`` / ``-lt-``, or ``corr-<score>-pos/neg``); a *false positive* is
   a significant voxel farther than ``margin_vox`` voxels from every planted mask of that map.

This measures everything the ROI engine leaves out (measurement noise, registration, smoothing,
voxel-wise multiplicity and TFCE), at a cost of one full pipeline run per simulated study: plan
for minutes per study on a laptop; use a cluster (``scheduler``) for n_sim in the hundreds.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from ..errors import HfsmriError

log = logging.getLogger("hfsmri.power")

__all__ = ["score_group_outputs", "image_power"]

_DESC = {"fwe": "fwe", "fdr": "fdr", "uncorrected": "uncorrected"}


def _load_on(path: Path, ref: nib.Nifti1Image | None = None, nearest: bool = True) -> np.ndarray:
    img = nib.load(str(path))
    if ref is not None and (img.shape[:3] != ref.shape[:3] or not np.allclose(img.affine, ref.affine)):
        from nilearn import image

        img = image.resample_to_img(img, ref, interpolation="nearest" if nearest else "continuous",
                                    force_resample=True, copy_header=True)
    return np.asarray(img.dataobj)


def _contrast_of(direction: int, score: str | None = None, r: float = 0.0) -> str:
    from ..stats.design import clinical_contrast, group_contrast

    return clinical_contrast(score, r > 0) if score else group_contrast(direction)


def score_group_outputs(deriv_dir, ground_truth_dir, alpha: float = 0.05, margin_vox: int = 2,
                        mask_column: str = "mask_unaligned"):
    """Detections and false positives of one pipeline run against the simulator's ground truth.

    Returns ``(detections, false_positives)``: detections has one row per effect row and contrast
    (``effect_id, analysis, metric, contrast, kind, scored, detected_fwe, detected_fdr,
    detected_uncorrected``); false_positives one row per group map (``analysis, metric, contrast,
    fp_fwe, fp_fdr, fp_uncorrected``). Effects whose map does not exist are ``scored=False``.
    """
    import yaml

    from ..derivatives import group_path
    from ..stats.design import contrast_names

    deriv, gt = Path(deriv_dir), Path(ground_truth_dir)
    resolved = deriv / "study.resolved.yaml"
    study = (yaml.safe_load(resolved.read_text()) or {}) if resolved.is_file() else {}
    eff_path = gt / "effects.tsv"
    if not eff_path.is_file():
        raise HfsmriError("ground truth effects.tsv not found", path=eff_path)
    effects = pd.read_csv(eff_path, sep="\t")
    if mask_column not in effects:
        mask_column = "mask"
    thr = -np.log10(alpha)
    masks: dict = {}

    def mask_on(rel, ref):
        key = (rel, ref.shape[:3], tuple(np.round(ref.affine, 4).ravel()))
        if key not in masks:
            masks[key] = _load_on(gt / rel, ref) > 0
        return masks[key]

    rows = []
    planted: dict = {}
    for _, e in effects.iterrows():
        score = e.get("clinical_score")
        score = score if isinstance(score, str) and score not in ("n/a", "") else None
        tests = [("group", _contrast_of(int(e["direction"])))]
        if score and float(e.get("clinical_r", 0) or 0) != 0:
            tests.append(("clinical", _contrast_of(0, score, float(e["clinical_r"]))))
        for kind, contrast in tests:
            if kind == "group" and float(e.get("cohens_d", 0) or 0) == 0:
                continue
            an, met = str(e["analysis"]), str(e["metric"])
            row = {"effect_id": e["effect_id"], "analysis": e["analysis"], "metric": e["metric"],
                   "contrast": contrast, "kind": kind, "scored": False}
            planted.setdefault((an, met, contrast), []).append(e[mask_column])
            fwe = group_path(deriv, an, met, contrast, "fwe")
            if fwe.is_file():
                ref = nib.load(str(fwe))
                m = mask_on(e[mask_column], ref)
                row["scored"] = True
                for corr, kind_ in _DESC.items():
                    f = group_path(deriv, an, met, contrast, kind_)
                    row[f"detected_{corr}"] = bool((_load_on(f)[m] > thr).any()) if f.is_file() else np.nan
            rows.append(row)
    fp_rows = []
    scores = {s for s in effects.get("clinical_score", []) if isinstance(s, str) and s not in ("n/a", "")}
    contrasts = contrast_names(sorted(scores | set(study.get("clinical") or [])), study.get("sessions"))
    folders = sorted(m for a in group_path(deriv, kind="folder").glob("*") if a.is_dir() for m in a.iterdir()
                     if m.is_dir())
    for folder in folders:
        analysis, metric = folder.parent.name, folder.name
        for contrast in contrasts:
            fwe = group_path(deriv, analysis, metric, contrast, "fwe")
            if not fwe.is_file():
                continue
            ref = nib.load(str(fwe))
            allowed = np.zeros(ref.shape[:3], bool)
            for rel in planted.get((analysis, metric, contrast), []):
                allowed |= mask_on(rel, ref)
            if margin_vox and allowed.any():
                allowed = ndimage.binary_dilation(allowed, iterations=int(margin_vox))
            row = {"analysis": analysis, "metric": metric, "contrast": contrast}
            for corr, kind_ in _DESC.items():
                f = group_path(deriv, analysis, metric, contrast, kind_)
                row[f"fp_{corr}"] = bool(((_load_on(f) > thr) & ~allowed).any()) if f.is_file() else np.nan
            fp_rows.append(row)
    return pd.DataFrame(rows), pd.DataFrame(fp_rows)


def _study_yaml(effects_rows: pd.DataFrame, analyses, n_perm: int, alpha: float, seed: int) -> dict:
    scores = sorted({s for s in effects_rows.get("clinical_score", []) if isinstance(s, str) and s != "n/a"})
    cfg = {"group_column": "group", "groups": {"patient": "HFS", "control": "HC"}, "covariates": ["age", "sex"],
           "clinical": scores, "affected_side_column": "affected_side", "flip_to": None,
           "stats": {"n_perm": int(n_perm), "tfce": True, "alpha": float(alpha), "cluster_forming_p": 0.001,
                     "random_seed": int(seed)}}
    if analyses:
        cfg["analyses"] = {a: {} for a in analyses}
    return cfg


def image_power(effects, ns, n_sim: int, seed: int, work_dir, alpha: float = 0.05, analyses=None,
                n_perm: int = 500, nprocs: int | None = None, keep: bool = False, simulate_kwargs=None,
                margin_vox: int = 2):
    """Power of the full image pipeline (see module doc). Returns ``(power, false_positives)``
    tables with the columns of :func:`hfsmri.power.roi_engine.roi_power` (``analytic_uncorrected``
    is NaN: there is no closed form for voxel-wise TFCE)."""
    import yaml

    from ..api import run_level
    from ..simulate import simulate_study

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    det_all, fp_all = [], []
    for n in [int(x) for x in ns]:
        for k in range(int(n_sim)):
            sim_seed = int(np.random.SeedSequence([int(seed), n, k]).generate_state(1)[0] % (2 ** 31))
            root = work / f"n-{n}" / f"sim-{k:04d}"
            bids, deriv = root / "bids", root / "derivatives"
            done = root / "scores.tsv"
            if done.is_file() and (root / "fp.tsv").is_file():
                det, fp = pd.read_csv(done, sep="\t"), pd.read_csv(root / "fp.tsv", sep="\t")
            else:
                shutil.rmtree(root, ignore_errors=True)
                root.mkdir(parents=True)
                simulate_study(bids, n_patients=n, n_controls=n, seed=sim_seed, effects=effects,
                               **(simulate_kwargs or {}))
                gt = bids / "derivatives" / "ground_truth"
                cfg = _study_yaml(pd.read_csv(gt / "effects.tsv", sep="\t"), analyses, n_perm, alpha, sim_seed)
                (root / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
                for level in ("participant", "group"):   # the pipeline's Python API; no report needed
                    try:
                        run_level(level, bids, deriv, root / "study.yaml", nprocs=nprocs, report=False)
                    except HfsmriError as exc:
                        raise HfsmriError(f"power (image engine): pipeline {level} level failed for n={n}, "
                                          f"simulation {k}: {exc}") from None
                det, fp = score_group_outputs(deriv, gt, alpha, margin_vox)
                det.to_csv(done, sep="\t", index=False)
                fp.to_csv(root / "fp.tsv", sep="\t", index=False)
                if not keep:
                    shutil.rmtree(bids, ignore_errors=True)
                    shutil.rmtree(deriv, ignore_errors=True)
            det_all.append(det.assign(n_per_group=n, sim=k))
            fp_all.append(fp.assign(n_per_group=n, sim=k))
            log.info("power (image engine): n=%d simulation %d/%d scored", n, k + 1, n_sim)
    return _aggregate(pd.concat(det_all, ignore_index=True), pd.concat(fp_all, ignore_index=True), effects)


def _aggregate(det: pd.DataFrame, fp: pd.DataFrame, effects):
    from .specs import power_tests

    try:
        spec = power_tests(effects)
        primary = set(zip(spec.loc[spec["primary"], "effect_id"], spec.loc[spec["primary"], "analysis"],
                          spec.loc[spec["primary"], "metric"]))
        sizes = {(r.effect_id, r.analysis, r.metric): (r.cohens_d, r.clinical_r) for r in spec.itertuples()}
    except HfsmriError:
        primary, sizes = set(), {}
    rows = []
    scored = det[det["scored"].astype(bool)] if len(det) else det
    for (n, eid, an, met, con), g in scored.groupby(["n_per_group", "effect_id", "analysis", "metric", "contrast"]):
        d, r = sizes.get((eid, an, met), (np.nan, np.nan))
        clinical = con.startswith("corr-")
        p = {c: float(g[f"detected_{c}"].astype(float).mean()) for c in _DESC}
        rows.append({"n_per_group": n, "effect_id": eid, "analysis": an, "metric": met, "primary": (eid, an, met) in primary,
                     "n_sim": len(g), "contrast": con.rsplit("-", 1)[0] if clinical else "patient-vs-control",
                     "direction": (1 if con.endswith("pos") else -1) if clinical else (1 if "gt" in con else -1),
                     "effect_size_type": "pearson_r" if clinical else "cohens_d", "effect_size": r if clinical else d,
                     "power_uncorrected": p["uncorrected"], "power_fdr": p["fdr"], "power_fwe": p["fwe"],
                     "analytic_uncorrected": np.nan,
                     "mc_se": float(np.sqrt(max(p["fwe"] * (1 - p["fwe"]), 0.25 / len(g)) / len(g)))})
    fp_rows = []
    for (n, an, met, con), g in fp.groupby(["n_per_group", "analysis", "metric", "contrast"]):
        row = {"n_per_group": n, "analysis": an, "metric": met, "contrast": con, "n_null_tests": np.nan, "n_sim": len(g)}
        for c in _DESC:
            row[f"fwer_{c}"] = float(g[f"fp_{c}"].astype(float).mean())
            row[f"fpr_{c}"] = np.nan
        fp_rows.append(row)
    for n, g in fp.groupby("n_per_group"):
        per_sim = g.groupby("sim")[[f"fp_{c}" for c in _DESC]].max()
        row = {"n_per_group": n, "analysis": "all", "metric": "all", "contrast": "all", "n_null_tests": np.nan,
               "n_sim": len(per_sim)}
        for c in _DESC:
            row[f"fwer_{c}"] = float(per_sim[f"fp_{c}"].astype(float).mean())
            row[f"fpr_{c}"] = np.nan
        fp_rows.append(row)
    return pd.DataFrame(rows), pd.DataFrame(fp_rows)
