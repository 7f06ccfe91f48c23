"""Longitudinal (pre/post-MVD) group designs, for every voxel-wise metric and ROI table.

With ``sessions: [pre, post]`` in study.yaml (first = baseline, last = follow-up), the per-subject
change ``Δ = follow-up − baseline`` is analysed with the stats engine:

* **paired within patients** — one-sample test of Δ over patients with both sessions, by
  sign flipping (the exchangeability of a paired design): contrasts ``patient-<post>-gt-<pre>``
  and ``patient-<post>-lt-<pre>``; the same for controls when at least two were scanned twice
  (``control-...``).
* **group × time interaction** — patients' Δ vs controls' Δ with the study covariates (the
  interaction of a 2 × 2 mixed design is exactly the two-sample test on the within-subject
  differences; permuting whole subjects keeps each subject's two scans together, which is what
  exchangeability blocks per subject mean here): ``change-patient-gt-control`` /
  ``change-patient-lt-control``.
* **change vs change** — within patients, Δ regressed on the change of each clinical score
  (from BIDS ``sub-X_sessions.tsv``): ``corr-delta<score>-pos`` / ``-neg``. Does the brain change
  track clinical recovery?

Results go to the metric's usual group folder (``group/<analysis>/<metric>/``) next to the
cross-sectional (baseline) contrasts.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .derivatives import read_derivative
from .errors import DesignError

log = logging.getLogger("hfsmri.longitudinal")


def _lab(s) -> str:
    return re.sub(r"^sub-", "", str(s))


def session_pair(study) -> tuple[str, str]:
    if not study.sessions or len(study.sessions) < 2:
        raise DesignError("longitudinal analysis needs at least two sessions in study.yaml", field="sessions")
    return study.sessions[0], study.sessions[-1]


def paired_subjects(study, available) -> list[str]:
    """Participants (in study order) having both the baseline and the follow-up in ``available``
    (an iterable of (label, session) keys)."""
    pre, post = session_pair(study)
    keys = {(_lab(s), ses) for s, ses in available}
    return [lab for lab in study.labels if (lab, pre) in keys and (lab, post) in keys]


def longitudinal_designs(study, subjects: list[str], min_per_group: int = 2) -> dict:
    """Designs for the change maps of ``subjects`` (each has both sessions): name -> Design."""
    from .stats.design import Design, design_from_study

    pre, post = session_pair(study)
    designs = {}
    for role in ("patient", "control"):
        subs = [s for s in subjects if study.group_of(s) == role]
        if len(subs) >= max(min_per_group, 2):
            X = np.ones((len(subs), 1))
            designs[f"paired-{role}"] = Design(
                X=X, columns=["intercept"], subjects=subs,
                contrasts={f"{role}-{post}-gt-{pre}": np.array([1.0]), f"{role}-{post}-lt-{pre}": np.array([-1.0])},
                roles=[role] * len(subs), info={"kind": "paired", "sessions": [pre, post], "group": role})
    roles = [study.group_of(s) for s in subjects]
    if roles.count("patient") >= 2 and roles.count("control") >= 2:
        d = design_from_study(study, subjects)
        ren = {"patient-gt-control": "change-patient-gt-control", "patient-lt-control": "change-patient-lt-control"}
        d.contrasts = {ren.get(k, k): v for k, v in d.contrasts.items() if k in ren}
        d.info = {**d.info, "kind": "group-by-time", "sessions": [pre, post]}
        designs["interaction"] = d
    scores = study.session_scores()
    patients = [s for s in subjects if study.group_of(s) == "patient"]
    for score in study.clinical:
        if score not in scores.columns or len(patients) < 4:
            continue
        delta = {}
        for s in patients:
            try:
                a, b = scores.loc[(s, pre), score], scores.loc[(s, post), score]
            except KeyError:
                continue
            if np.isfinite(a) and np.isfinite(b):
                delta[s] = b - a
        subs = [s for s in patients if s in delta]
        dv = np.array([delta[s] for s in subs], dtype=float)
        if len(subs) < 4 or np.ptp(dv) == 0:
            continue
        X = np.column_stack([np.ones(len(subs)), dv - dv.mean()])
        designs[f"delta-{score}"] = Design(
            X=X, columns=["intercept", f"delta_{score}"], subjects=subs,
            contrasts={f"corr-delta{re.sub('[^A-Za-z0-9]', '', score)}-pos": np.array([0.0, 1.0]),
                       f"corr-delta{re.sub('[^A-Za-z0-9]', '', score)}-neg": np.array([0.0, -1.0])},
            roles=["patient"] * len(subs), info={"kind": "change-vs-change", "score": score})
    return designs


def change_maps(study, maps: dict, mask: np.ndarray, subjects: list[str]) -> np.ndarray:
    """(n_subjects, n_in_mask) array of follow-up − baseline values (maps: (label, session) -> image/path)."""
    import nibabel as nib

    pre, post = session_pair(study)

    def load(v):
        img = read_derivative(v) if isinstance(v, (str, Path)) else v
        return np.asarray(img.get_fdata(), dtype=np.float64)[mask]

    by_key = {(_lab(s), ses): v for (s, ses), v in maps.items()}
    return np.stack([load(by_key[(s, post)]) - load(by_key[(s, pre)]) for s in subjects])


def longitudinal_voxelwise(study, maps: dict, mask_img, out_dir, stats: dict, tfce_setting: str = "3d",
                           sidecar: dict | None = None) -> pd.DataFrame:
    """Run every longitudinal design on the change maps; writes the contract's files per contrast.

    Parameters
    ----------
    maps : (participant label, session label) -> 3D image or path on the mask's grid
    mask_img : 3D mask image or path (the analysis grid)
    out_dir : the metric's group folder
    """
    import nibabel as nib

    from .stats.group_analysis import voxelwise_group

    mimg = nib.load(str(mask_img)) if isinstance(mask_img, (str, Path)) else mask_img
    mask = np.asarray(mimg.get_fdata()) > 0
    subjects = paired_subjects(study, maps)
    designs = longitudinal_designs(study, subjects)
    if not designs:
        log.info("longitudinal: fewer than two subjects with both sessions: nothing to test")
        return pd.DataFrame()
    delta = change_maps(study, maps, mask, subjects)
    row = {s: i for i, s in enumerate(subjects)}
    frames = []
    for name, d in designs.items():
        Y = delta[[row[s] for s in d.subjects]]
        extra = {"Longitudinal": {"design": name, **d.info}}
        frames.append(voxelwise_group(Y, mimg, d, out_dir, stats=stats, tfce_setting=tfce_setting,
                                      sidecar={**(sidecar or {}), **extra}))
    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def longitudinal_roi(study, table: pd.DataFrame, out_dir, stats: dict) -> pd.DataFrame:
    """ROI change tests. ``table`` is indexed by (participant, session) with one column per ROI.

    Writes ``rois_longitudinal.tsv``: for each design contrast and ROI, the mean change, t, df,
    parametric and sign-flip/permutation p (two-sided) and BH-FDR across ROIs.
    """
    from .derivatives import save_tsv_atomic
    from .stats.fdr import fdr_bh
    from .stats.glm import ols, permuted_glm

    pre, post = session_pair(study)
    tab = table.copy()
    tab.index = pd.MultiIndex.from_tuples([(_lab(a), str(b)) for a, b in tab.index], names=["participant", "session"])
    subjects = paired_subjects(study, tab.index)
    designs = longitudinal_designs(study, subjects)
    rows = []
    for name, d in designs.items():
        Y = np.stack([tab.loc[(s, post)].to_numpy(float) - tab.loc[(s, pre)].to_numpy(float) for s in d.subjects])
        for cname, c in d.contrasts.items():
            if cname.endswith("-lt-" + pre) or cname.endswith("-neg") or "lt-control" in cname:
                continue  # two-sided p below covers both directions
            fit = ols(Y, d.X, c)
            perm = permuted_glm(Y, d, cname, n_perm=int(stats.get("n_perm", 5000)), tfce=False,
                                cluster_forming_p=None, seed=int(stats.get("random_seed", 0)))
            p_two = np.minimum(1.0, 2 * np.minimum(perm.pos.p_unc, perm.neg.p_unc))
            for j, roi in enumerate(tab.columns):
                rows.append({"design": name, "contrast": cname, "roi": roi, "n": len(d.subjects),
                             "mean_change": float(np.mean(Y[:, j])), "t": float(fit.t[j]), "df": int(fit.df),
                             "p_perm": float(p_two[j])})
    df = pd.DataFrame(rows)
    if len(df):
        df["p_fdr"] = np.nan
        for _, idx in df.groupby("contrast").groups.items():
            df.loc[idx, "p_fdr"] = fdr_bh(df.loc[idx, "p_perm"].to_numpy())
        save_tsv_atomic(df, Path(out_dir) / "rois_longitudinal.tsv")
    return df


# ---------------------------------------------------------------------------------------------
# Entry points for the modality group stages (anat, dwi, func, conn): each stage calls these with
# its own per-session map paths / ROI tables after its cross-sectional analysis.

def is_longitudinal(study) -> bool:
    """True when study.yaml lists at least two sessions."""
    return len(getattr(study, "sessions", None) or []) >= 2


def _map_present(v) -> bool:
    """A per-session map given to :func:`run_longitudinal_maps`: an image, or a path that exists."""
    if v is None:
        return False
    return Path(v).exists() if isinstance(v, (str, Path)) else True


def _as_image(v):
    """Load a path (str / Path) completely (:func:`hfsmri.derivatives.read_derivative`: a damaged file
    is an error naming it); an image object is returned unchanged."""
    from hfsmri.derivatives import read_derivative

    return read_derivative(v) if isinstance(v, (str, Path)) else v


def run_longitudinal_maps(gctx, analysis: str, metric: str, path_of, *, flip: bool = False, base_mask=None,
                          tfce_setting: str = "3d", sidecar: dict | None = None, out_dir=None,
                          roi_specs: dict | None = None) -> dict:
    """Longitudinal designs on one metric's per-session maps, for a modality group stage.

    Parameters
    ----------
    gctx : GroupContext (``study``, ``out`` Derivatives, ``stats``, ``log``)
    analysis, metric : group folder names (results go to ``group/<analysis>/<metric>/``)
    path_of : callable ``(participant label, session label) -> path`` of the subject's map in MNI
        space, or an in-memory 3D nibabel image (stages that derive the per-session maps at the
        group level: TBSS skeleton projections, ICA dual-regression maps); ``None`` or a path that
        does not exist skips that map (a subject needs both sessions)
    flip : mirror (x -> -x) the maps of patients flagged by ``study.flipped`` (stages whose
        participant maps are not already aligned to the affected side)
    base_mask : optional bool array on the maps' grid restricting the analysis (e.g. the
        stage's white-matter mask); the mask used is ``base_mask`` (else the template brain mask
        when it is on the same grid) where every map of both sessions is finite and non-zero.
    tfce_setting : "3d" or "skeleton"
    sidecar : extra entries for the sidecars
    roi_specs : optional ROI name -> :func:`hfsmri.spatial.atlas.region_mask` spec (or bool
        array); the mean of each ROI (within the analysis mask) per subject and session also goes
        through :func:`longitudinal_roi` (``rois_longitudinal.tsv``)

    Returns a JSON-able summary (``{}`` for cross-sectional studies; ``{"error": ...}`` when the
    designs cannot be run — never raises an :class:`~hfsmri.errors.HfsmriError`, so the
    cross-sectional results of the stage are kept).
    """
    import nibabel as nib

    from .derivatives import save_nifti_atomic, write_json_atomic
    from .errors import HfsmriError

    study = gctx.study
    if not is_longitudinal(study):
        return {}
    log_ = getattr(gctx, "log", None) or log
    try:
        pre, post = session_pair(study)
        maps = {}
        for s in study.labels:
            p0, p1 = path_of(s, pre), path_of(s, post)
            if not (_map_present(p0) and _map_present(p1)):
                continue
            for ses, p in ((pre, p0), (post, p1)):
                img = _as_image(p)
                if flip and study.flipped(s):
                    from .spatial.flip import flip_lr
                    img = flip_lr(img)
                maps[(s, ses)] = img
        subjects = paired_subjects(study, maps)
        if len(subjects) < 2:
            return {"skipped": f"{len(subjects)} subject(s) with maps at both {pre} and {post}"}
        first = maps[(subjects[0], pre)]
        shape, affine = first.shape[:3], first.affine
        if base_mask is not None:
            mask = np.asarray(base_mask, dtype=bool).copy()
            if mask.shape != tuple(shape):
                raise HfsmriError(f"{analysis}/{metric}: analysis mask grid {mask.shape} differs from the maps' "
                                  f"{tuple(shape)}")
        else:
            mask = np.ones(shape, dtype=bool)
            try:
                from .spatial.templates import load_template
                res = abs(float(affine[0, 0]))
                t = np.asarray(load_template("mask", int(res) if res.is_integer() else res).dataobj) > 0
                if t.shape == shape:
                    mask = t
            except Exception:  # noqa: BLE001 - a template on another grid: keep the data-driven mask
                pass
        arrays = {}
        for s in subjects:
            for ses in (pre, post):
                a = np.asarray(maps[(s, ses)].dataobj, dtype=np.float64)
                if a.shape[:3] != shape:
                    raise HfsmriError(f"{analysis}/{metric}: map of sub-{s} ses-{ses} has grid {a.shape} "
                                      f"differing from {shape}")
                a = a.reshape(shape)
                mask &= np.isfinite(a) & (a != 0)
                arrays[(s, ses)] = nib.Nifti1Image(np.nan_to_num(a).astype(np.float32), affine)
        if mask.sum() < 10:
            return {"skipped": "fewer than 10 voxels covered by every map of both sessions"}
        out_dir = Path(out_dir) if out_dir is not None else gctx.out.group_dir(analysis, metric)
        mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
        save_nifti_atomic(mask_img, out_dir / "mask_longitudinal.nii.gz")
        side = {"Analysis": analysis, "Metric": metric, "Sessions": [pre, post],
                "Flipped": [s for s in subjects if flip and study.flipped(s)], **(sidecar or {})}
        log_.info("%s/%s: longitudinal designs on %d subjects with %s and %s", analysis, metric,
                  len(subjects), pre, post)
        clusters = longitudinal_voxelwise(study, arrays, mask_img, out_dir, dict(gctx.stats or {}),
                                          tfce_setting=tfce_setting, sidecar=side)
        designs = longitudinal_designs(study, subjects)
        summary = {"sessions": [pre, post], "n_subjects": len(subjects), "n_mask_voxels": int(mask.sum()),
                   "designs": {k: {"n": len(d.subjects), "contrasts": list(d.contrasts)} for k, d in designs.items()},
                   "n_cluster_rows": int(len(clusters))}
        if roi_specs:
            from .spatial.atlas import region_mask

            tables = {}
            for ses in (pre, post):
                cols = {}
                for name, spec in roi_specs.items():
                    try:
                        m = (np.asarray(spec, dtype=bool) if isinstance(spec, np.ndarray)
                             else region_mask(spec, mask_img)) & mask
                    except (ValueError, HfsmriError):
                        continue
                    if m.any():
                        cols[name] = {s: float(np.asarray(arrays[(s, ses)].dataobj)[m].mean()) for s in subjects}
                tables[ses] = pd.DataFrame(cols)
            summary["rois"] = run_longitudinal_roi(gctx, analysis, metric, tables, out_dir=out_dir)
        write_json_atomic(out_dir / "summary_longitudinal.json", summary)
        return summary
    except HfsmriError as exc:
        log_.warning("%s/%s: longitudinal analysis skipped: %s", analysis, metric, exc)
        return {"error": str(exc)}


def run_longitudinal_roi(gctx, analysis: str, metric: str, tables: dict, out_dir=None) -> dict:
    """Longitudinal ROI tests for a modality group stage.

    ``tables``: session label -> DataFrame (index participant, one column per ROI; the stage's
    per-session ROI table, already side-aligned). Writes ``rois_longitudinal.tsv`` in
    ``group/<analysis>/<metric>/``. Same error policy as :func:`run_longitudinal_maps`.
    """
    from .errors import HfsmriError

    study = gctx.study
    if not is_longitudinal(study):
        return {}
    log_ = getattr(gctx, "log", None) or log
    try:
        pre, post = session_pair(study)
        if pre not in tables or post not in tables:
            return {"skipped": f"no ROI table for session {pre if pre not in tables else post}"}
        cols = [c for c in tables[pre].columns if c in set(tables[post].columns)]
        frames = []
        for ses in (pre, post):
            t = tables[ses][cols].copy()
            t.index = pd.MultiIndex.from_tuples([(_lab(i), ses) for i in t.index], names=["participant", "session"])
            frames.append(t)
        tab = pd.concat(frames).apply(pd.to_numeric, errors="coerce")
        tab = tab.loc[:, tab.notna().all(axis=0)]
        if tab.shape[1] == 0:
            return {"skipped": "no ROI with values at both sessions"}
        out_dir = Path(out_dir) if out_dir is not None else gctx.out.group_dir(analysis, metric)
        df = longitudinal_roi(study, tab, out_dir, dict(gctx.stats or {}))
        return {"sessions": [pre, post], "n_rois": int(tab.shape[1]), "n_rows": int(len(df))}
    except HfsmriError as exc:
        log_.warning("%s/%s: longitudinal ROI analysis skipped: %s", analysis, metric, exc)
        return {"error": str(exc)}


def roi_tables_by_session(study, read_row) -> dict:
    """Per-session ROI tables for :func:`run_longitudinal_roi`.

    ``read_row(participant label, session label)`` returns the subject's ROI values as a
    ``pandas.Series`` (index = ROI names) or ``None`` when the subject has no table for that
    session. Returns ``{session: DataFrame (participants x ROIs)}`` for the baseline and follow-up.
    """
    pre, post = session_pair(study)
    out = {}
    for ses in (pre, post):
        rows = {}
        for s in study.labels:
            r = read_row(s, ses)
            if r is not None:
                rows[s] = r
        out[ses] = pd.DataFrame(rows).T
    return out
