"""Group-level wrappers used by every modality: voxel-wise and ROI-wise analyses with outputs.

:func:`voxelwise_group` writes, for every contrast ``<c>`` of the design, into ``out_dir``
(``OUTPUT_DIR/group/<analysis>/<metric>/``):

* ``contrast-<c>_stat-t_statmap.nii.gz``  — t map of the contrast
* ``contrast-<c>_stat-tfce_statmap.nii.gz`` — TFCE of the contrast's positive tail
* ``contrast-<c>_desc-fwe_logp.nii.gz`` — −log10 FWE p of the primary inference (TFCE when
  ``stats["tfce"]``, else voxel-wise max-t)
* ``contrast-<c>_clusters.tsv`` — clusters of ``FWE p < alpha`` (:mod:`hfsmri.stats.clusters`)
* extra maps: ``_desc-voxelfwe_logp`` (max-t), ``_desc-clusterfwe_logp`` (cluster extent at the
  cluster-forming p), ``_desc-uncorrected_logp``, ``_desc-fdr_logp`` (BH of the uncorrected
  permutation p), and a JSON sidecar next to every file (design, permutations, settings, flipped
  subjects).

A contrast and its negation (``patient-gt-control`` / ``patient-lt-control``) share one
permutation run: the second is the negative tail of the first (identical to running it alone with
the same permutations). :func:`roi_group` writes ``rois.tsv`` and ``correlations.tsv``.

Multi-site studies (``site_column`` with ``harmonize: combat``, the default with >= 2 sites): the
data of every design are ComBat-harmonised just before its GLM
(:func:`hfsmri.harmonize.harmonize_for_design`; protected = everything the design models: group,
covariates, extra covariates, clinical score), and the sidecars / ``rois.json`` /
``correlations.json`` record it under ``Harmonization``. With ``harmonize: covariate`` the site is
a dummy-coded column of the design instead (:mod:`hfsmri.stats.design`).
All files are written atomically (temporary name in the folder, then ``os.replace``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..analyses import STATS_DEFAULTS
from ..derivatives import read_derivative, save_nifti_atomic, save_tsv_atomic, sidecar_path, write_json_atomic
from ..errors import DesignError, InputDataError
from .clusters import COLUMNS as CLUSTER_COLUMNS
from .clusters import cluster_table
from .correlation import partial_corr
from .design import clinical_designs, design_from_study
from .fdr import fdr_bh
from .distributed import permuted_glm  # = glm.permuted_glm; Dask permutation blocks with --scheduler
from .roi import roi_glm
from .tfce import SETTINGS, tfce

SPACE = "MNI152NLin2009cAsym"


def _version() -> str:
    try:
        from .. import __version__
        return str(__version__)
    except Exception:  # pragma: no cover
        return "unknown"


def _stats(stats: dict | None) -> dict:
    out = dict(STATS_DEFAULTS)
    out.update({k: v for k, v in (stats or {}).items() if v is not None})
    return out


def _load_mask(mask_img):
    img = nib.load(str(mask_img)) if isinstance(mask_img, (str, Path)) else mask_img
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputDataError(f"mask must be a 3D image, got shape {data.shape}",
                             path=mask_img if isinstance(mask_img, (str, Path)) else None)
    mask = data > 0
    if not mask.any():
        raise InputDataError("mask image is empty", path=mask_img if isinstance(mask_img, (str, Path)) else None)
    return mask, np.asarray(img.affine, dtype=float)


def _load_data(data, mask: np.ndarray, affine: np.ndarray, subjects) -> np.ndarray:
    V = int(mask.sum())
    if isinstance(data, np.ndarray):
        Y = np.asarray(data, dtype=np.float64)
        if Y.ndim != 2 or Y.shape[1] != V:
            raise InputDataError(f"data array must be (n_subjects, {V} in-mask voxels), got shape {Y.shape}")
    else:
        rows = []
        for item, sub in zip(data, subjects):
            img = read_derivative(item) if isinstance(item, (str, Path)) else item
            where = item if isinstance(item, (str, Path)) else None
            arr = np.asarray(img.dataobj, dtype=np.float64)
            if arr.ndim == 4 and arr.shape[3] == 1:
                arr = arr[..., 0]
            if arr.shape != mask.shape or not np.allclose(img.affine, affine, atol=1e-3):
                raise InputDataError(f"image of sub-{sub} has shape {arr.shape} / affine differing from the mask "
                                     f"grid {mask.shape}", path=where)
            rows.append(arr[mask])
        Y = np.vstack(rows) if rows else np.zeros((0, V))
    if Y.shape[0] != len(subjects):
        raise InputDataError(f"{Y.shape[0]} data rows for {len(subjects)} subjects in the design")
    bad = ~np.all(np.isfinite(Y), axis=1)
    if bad.any():
        raise InputDataError(f"non-finite values in the maps of subject(s) "
                             f"{['sub-' + str(s) for s, b in zip(subjects, bad) if b]}")
    return Y


def _to_img(values: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    vol = np.zeros(mask.shape, dtype=np.float32)
    vol[mask] = values
    img = nib.Nifti1Image(vol, affine)
    img.header.set_xyzt_units("mm")
    return img


def _logp(p: np.ndarray) -> np.ndarray:
    return -np.log10(np.clip(p, 1e-300, 1.0))


def _pair_contrasts(design):
    """[(run_vector, [(name, sign), ...])] grouping each contrast with its negation."""
    runs = []
    for name, vec in design.contrasts.items():
        vec = np.asarray(vec, dtype=float)
        for run in runs:
            if np.allclose(run[0], vec):
                run[1].append((name, 1.0))
                break
            if np.allclose(run[0], -vec):
                run[1].append((name, -1.0))
                break
        else:
            runs.append((vec, [(name, 1.0)]))
    return runs


def _harmonize(Y, design):
    """ComBat on ``Y`` when ``design.info["harmonize"]`` asks for it: (Y, record or None)."""
    from ..harmonize.apply import harmonize_for_design

    return harmonize_for_design(Y, design)


def _save_img(img, path: Path, meta: dict) -> None:
    save_nifti_atomic(img, path)
    write_json_atomic(sidecar_path(path), meta)


def clinical_score_of(design) -> str | None:
    """The clinical score a correlation design tests (contrasts ``corr-<score>-pos/neg``), else None."""
    for name in getattr(design, "contrasts", {}) or {}:
        if name.startswith("corr-") and name.endswith(("-pos", "-neg")):
            score = name[len("corr-"):-len("-pos")]
            return score[len("delta"):] if score.startswith("delta") else score  # longitudinal change
    return None


def voxelwise_clinical_wanted(stats: dict, score: str) -> bool:
    """Whether ``stats["voxelwise_clinical"]`` (true / false / list of scores) asks for maps of ``score``."""
    vc = (stats or {}).get("voxelwise_clinical", True)
    if isinstance(vc, bool):
        return vc
    return score in set(vc)


def voxelwise_group(data, mask_img, design, out_dir, stats: dict | None = None, tfce_setting: str = "3d",
                    contrasts: list[str] | None = None, sidecar: dict | None = None) -> pd.DataFrame:
    """Permutation GLM of voxel-wise maps, writing the contract's files for every contrast.

    Parameters
    ----------
    data : array (n_subjects, n_in_mask_voxels) in ``design.subjects`` order (C order of the
        mask), or a list of 3D images / paths on the mask's grid
    mask_img : 3D mask image (or path) defining the voxels and the MNI grid
    design : :class:`~hfsmri.stats.design.Design`
    out_dir : folder (created), normally ``Derivatives.group_dir(analysis, metric)``
    stats : ``n_perm``, ``tfce``, ``alpha``, ``cluster_forming_p``, ``random_seed`` (study.stats)
    tfce_setting : "3d" (randomise -T) or "skeleton" (randomise --T2, e.g. TBSS)
    contrasts : subset of ``design.contrasts`` to run (default all)
    sidecar : extra entries for every JSON sidecar (e.g. input files, smoothing)

    Returns
    -------
    DataFrame of all cluster rows with a leading ``contrast`` column (empty if nothing survives).
    """
    st = _stats(stats)
    out_dir = Path(out_dir)
    score = clinical_score_of(design)
    if score is not None and not voxelwise_clinical_wanted(st, score):
        logging.getLogger("hfsmri").info("%s: voxel-wise correlation with %s skipped (stats.voxelwise_clinical)",
                                         out_dir, score)
        return pd.DataFrame(columns=["contrast"] + CLUSTER_COLUMNS)
    out_dir.mkdir(parents=True, exist_ok=True)
    mask, affine = _load_mask(mask_img)
    Y = _load_data(data, mask, affine, design.subjects)
    Y, harmonization = _harmonize(Y, design)
    setting = SETTINGS[tfce_setting]
    alpha = float(st["alpha"])
    use_tfce = bool(st["tfce"])
    wanted = set(design.contrasts) if contrasts is None else set(contrasts)
    tables = []
    for vec, members in _pair_contrasts(design):
        members = [(n, s) for n, s in members if n in wanted]
        if not members:
            continue
        res = permuted_glm(Y, design, vec, n_perm=int(st["n_perm"]), tfce=use_tfce, mask=mask,
                           random_state=int(st["random_seed"]), tfce_setting=tfce_setting,
                           cluster_forming_p=st["cluster_forming_p"])
        for name, sign in members:
            tail = res.pos if sign > 0 else res.neg
            t_c = sign * res.t
            p_main = tail.p_fwe_tfce if use_tfce else tail.p_fwe_t
            if use_tfce:
                tf_map = tail.tfce
            else:  # observed map only (no TFCE null when the study does not use TFCE)
                t3 = np.zeros(mask.shape)
                t3[mask] = t_c
                tf_map = tfce(t3, mask, h=setting["h"], e=setting["e"], connectivity=setting["connectivity"])[mask]
            meta = {
                "Description": f"group analysis, contrast {name}",
                "Space": SPACE, "Software": f"hfsmri {_version()}",
                "Contrast": name, "ContrastVector": [float(x) for x in design.contrasts[name]],
                "DesignColumns": list(design.columns), "Subjects": list(design.subjects),
                "NSubjects": len(design.subjects), "FlippedSubjects": list(design.flipped),
                "DroppedSubjects": dict(design.dropped), "DesignInfo": dict(design.info),
                "Inference": "TFCE max-statistic FWE" if use_tfce else "voxel max-t FWE",
                "PermutationMethod": "Freedman-Lane" if res.scheme == "permute" else "sign flipping (Freedman-Lane)",
                "NPermutations": int(st["n_perm"]), "NNull": res.n_null, "Exact": res.exact,
                "RandomSeed": int(st["random_seed"]), "DegreesOfFreedom": int(res.df),
                "TFCE": {"H": setting["h"], "E": setting["e"], "connectivity": setting["connectivity"],
                         "dh": tail.tfce_dh, "dh_mode": "fixed from the unpermuted map (randomise)",
                         "setting": tfce_setting},
                "Alpha": alpha, "ClusterFormingP": st["cluster_forming_p"],
                "ClusterFormingT": res.cluster_threshold, "ClusterConnectivity": setting["connectivity"],
            }
            if harmonization is not None:
                meta["Harmonization"] = harmonization
            meta.update(sidecar or {})
            pre = out_dir / f"contrast-{name}"
            _save_img(_to_img(t_c, mask, affine), Path(f"{pre}_stat-t_statmap.nii.gz"), {**meta, "Statistic": "t"})
            _save_img(_to_img(tf_map, mask, affine), Path(f"{pre}_stat-tfce_statmap.nii.gz"),
                      {**meta, "Statistic": "TFCE"})
            _save_img(_to_img(_logp(p_main), mask, affine), Path(f"{pre}_desc-fwe_logp.nii.gz"),
                      {**meta, "Statistic": "-log10 FWE p (" + ("TFCE" if use_tfce else "voxel max-t") + ")"})
            extra = {"voxelfwe": tail.p_fwe_t, "uncorrected": tail.p_unc, "fdr": tail.p_fdr}
            if tail.p_fwe_extent is not None:
                extra["clusterfwe"] = tail.p_fwe_extent
            for desc, p in extra.items():
                _save_img(_to_img(_logp(p), mask, affine), Path(f"{pre}_desc-{desc}_logp.nii.gz"),
                          {**meta, "Statistic": f"-log10 p ({desc})"})
            t3 = np.zeros(mask.shape)
            t3[mask] = t_c
            p3 = np.ones(mask.shape)
            p3[mask] = p_main
            sig = mask & (p3 < alpha) & (t3 > 0)
            table = cluster_table(t3, sig, p3, affine, connectivity=setting["connectivity"])
            tsv = Path(f"{pre}_clusters.tsv")
            save_tsv_atomic(table, tsv)
            write_json_atomic(sidecar_path(tsv), {**meta, "Columns": {
                "n_voxels": "voxels in the cluster", "volume_mm3": "cluster volume (mm^3)",
                "peak_x/y/z": "peak in MNI mm", "peak_stat": "t at the peak",
                "p_fwe": "smallest FWE p in the cluster (sub-peak rows: p at that voxel)",
                "aal_label/ho_label": "AAL2 / Harvard-Oxford (maxprob 25%) label at the peak",
                "com_x/y/z": "centre of mass in MNI mm", "aal_shares/ho_shares": "share of the cluster per label",
                "is_subpeak": "local maximum >= 8 mm from the reported peaks"}})
            if len(table):
                tables.append(table.assign(contrast=name))
    if not tables:
        return pd.DataFrame(columns=["contrast"] + CLUSTER_COLUMNS)
    out = pd.concat(tables, ignore_index=True)
    return out[["contrast"] + CLUSTER_COLUMNS]


CORR_COLUMNS = ["roi", "score", "n", "r", "r_ci_low", "r_ci_high", "p", "p_perm", "p_fdr", "rho",
                "rho_ci_low", "rho_ci_high", "p_spearman", "p_fdr_spearman", "covariates"]


def roi_group(table: pd.DataFrame, study, out_dir, stats: dict | None = None,
              extra_covariates: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ROI group tests and clinical partial correlations; writes ``rois.tsv`` and ``correlations.tsv``.

    Parameters
    ----------
    table : DataFrame indexed by participant (with or without ``sub-``), one column per ROI
    study : the Study (group, covariates, clinical scores)
    out_dir : output folder
    stats : study.stats (``n_perm``, ``alpha``, ``random_seed``)
    extra_covariates : extra continuous covariates (e.g. TIV) indexed by participant

    Returns
    -------
    (rois_df, corr_df): see :func:`hfsmri.stats.roi.roi_glm` for rois columns; correlations have
    :data:`CORR_COLUMNS` (partial Pearson r / Spearman rho within patients controlling the study
    covariates, Fisher-z 95 % CI, parametric and Freedman–Lane permutation p (two-sided), BH FDR
    across all ROI x score rows).
    """
    st = _stats(stats)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tab = table.copy()
    tab.index = [str(i).removeprefix("sub-") for i in tab.index]
    design = design_from_study(study, list(tab.index), extra_covariates)
    n_perm = int(st["n_perm"])
    seed = int(st["random_seed"])
    harm = {}
    tab_g = tab
    if (design.info.get("harmonize") or {}).get("method") == "combat":
        num = tab.loc[design.subjects].apply(pd.to_numeric, errors="coerce")
        if np.all(np.isfinite(num.to_numpy(dtype=float))):
            tab_g, harm["group"] = _harmonize(num, design)
        else:
            harm["group"] = {"method": "combat", "applied": False, "reason": "ROI table has missing values"}
    elif design.info.get("harmonize"):
        harm["group"] = dict(design.info["harmonize"])
    rois = roi_glm(tab_g, design, "patient-gt-control", n_perm=n_perm, random_state=seed, alpha=float(st["alpha"]))
    rows = []
    skipped = None
    try:
        cdesigns = clinical_designs(study, list(tab.index), extra_covariates)
    except DesignError as exc:  # e.g. too few patients for score + covariates: keep the group test
        logging.getLogger("hfsmri").warning("%s: clinical correlations skipped: %s", out_dir, exc)
        cdesigns = {}
        skipped = str(exc)
    for score, d in cdesigns.items():
        Y = tab.loc[d.subjects].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(Y)):
            raise InputDataError(f"ROI table has missing values for patients used in the {score!r} correlation")
        Y, rec = _harmonize(Y, d)
        if rec is not None:
            harm[f"corr-{score}"] = rec
        y = d.X[:, 1]
        Z = d.X[:, 2:]
        pear = partial_corr(Y, y, Z, "pearson")
        spear = partial_corr(Y, y, Z, "spearman")
        if n_perm > 0:
            res = permuted_glm(Y, d, f"corr-{score}-pos", n_perm=n_perm, tfce=False, mask=None, random_state=seed)
            p_perm = res.two_sided["p_unc"]
        else:
            p_perm = np.full(Y.shape[1], np.nan)
        for j, roi in enumerate(tab.columns):
            rows.append({"roi": str(roi), "score": score, "n": len(d.subjects), "r": pear["r"][j],
                         "r_ci_low": pear["ci_low"][j], "r_ci_high": pear["ci_high"][j], "p": pear["p"][j],
                         "p_perm": p_perm[j], "rho": spear["r"][j], "rho_ci_low": spear["ci_low"][j],
                         "rho_ci_high": spear["ci_high"][j], "p_spearman": spear["p"][j],
                         "covariates": ",".join(d.columns[2:])})
    corr = pd.DataFrame(rows, columns=[c for c in CORR_COLUMNS if c not in ("p_fdr", "p_fdr_spearman")])
    if len(corr):
        corr["p_fdr"] = fdr_bh(corr["p_perm"].to_numpy() if n_perm > 0 else corr["p"].to_numpy())
        corr["p_fdr_spearman"] = fdr_bh(corr["p_spearman"].to_numpy())
    else:
        corr["p_fdr"] = pd.Series(dtype=float)
        corr["p_fdr_spearman"] = pd.Series(dtype=float)
    corr = corr[CORR_COLUMNS]
    meta = {"Software": f"hfsmri {_version()}", "Design": design.to_dict(), "NPermutations": n_perm,
            "RandomSeed": seed, "FlippedSubjects": list(design.flipped)}
    if skipped:
        meta["CorrelationsSkipped"] = skipped
    if harm:
        meta["Harmonization"] = harm
    save_tsv_atomic(rois, out_dir / "rois.tsv")
    write_json_atomic(out_dir / "rois.json", {**meta, "Description": "ROI group comparison (patient vs control)"})
    save_tsv_atomic(corr, out_dir / "correlations.tsv")
    write_json_atomic(out_dir / "correlations.json",
                      {**meta, "Description": "partial correlations with clinical scores within patients"})
    # the per-subject values behind both tables (report strip and scatter plots)
    values = tab.apply(pd.to_numeric, errors="coerce")
    values.index = [f"sub-{i}" for i in values.index]
    save_tsv_atomic(values.rename_axis("participant_id").reset_index(), out_dir / "values.tsv")
    return rois, corr
