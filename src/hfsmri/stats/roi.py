"""ROI-level group tests: per-ROI GLM with covariates, permutation and parametric p, FDR, Hedges g.

Effect size: Hedges' g of the covariate-adjusted group difference, ``d = t·sqrt(1/n1 + 1/n2)``
(equal to Cohen's d with pooled SD when there are no covariates), ``g = J·d`` with
``J = 1 - 3/(4·df - 1)``; 95 % CI ``g ± t_(0.975, df)·sqrt((n1+n2)/(n1·n2) + g²/(2(n1+n2)))`` (Hedges & Olkin
1985; pingouin's ``compute_effsize``/``compute_esci`` conventions; df = GLM residual df).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import InputDataError
from .fdr import fdr_bh
from .glm import permuted_glm


def hedges_g(t, n1: int, n2: int, df: int | None = None, confidence: float = 0.95):
    """Hedges' g and its CI from a two-group t statistic: returns (g, ci_low, ci_high)."""
    t = np.asarray(t, dtype=float)
    df = (n1 + n2 - 2) if df is None else df
    d = t * np.sqrt(1.0 / n1 + 1.0 / n2)
    J = 1.0 - 3.0 / (4.0 * df - 1.0)
    g = J * d
    se = np.sqrt((n1 + n2) / (n1 * n2) + g ** 2 / (2 * (n1 + n2)))
    crit = sps.t.ppf(0.5 + confidence / 2, df)
    return g, g - crit * se, g + crit * se


def roi_glm(table: pd.DataFrame, design, contrast: str = "patient-gt-control", n_perm: int = 5000,
            random_state=0, alpha: float = 0.05) -> pd.DataFrame:
    """Group test per ROI column of ``table`` (index = ``design.subjects``).

    Columns of the result: ``roi, n_patient, n_control, mean_patient, sd_patient, mean_control,
    sd_control, estimate, se, t, df, p_param, p_perm, p_perm_fwe, p_fdr, significant_fdr, hedges_g,
    g_ci_low, g_ci_high, direction``. ``estimate``: adjusted difference (contrast of the betas);
    ``p_perm``: two-sided Freedman–Lane permutation p (``|t*| >= |t|``); ``p_perm_fwe``: max-|t|
    across ROIs; ``p_fdr``: BH across ROIs of ``p_perm`` (of ``p_param`` when ``n_perm == 0``), and
    never above ``p_perm_fwe``: a row the FWE (max-|t|) procedure rejects is an FDR rejection too,
    since FWE control implies FDR control, so ``p_fdr = min(BH q, p_perm_fwe)`` (FDR <= FWE by
    construction). Run with enough permutations (``stats.roi_n_perm``) so that the permutation
    p-values are not floored at ``1/(n_perm+1)`` before BH multiplies them by up to the number of ROIs.
    """
    tab = table.copy()
    tab.index = [str(i).removeprefix("sub-") for i in tab.index]
    missing = [s for s in design.subjects if s not in tab.index]
    if missing:
        raise InputDataError(f"ROI table has no row for participant(s) {['sub-' + m for m in missing]}")
    tab = tab.loc[design.subjects]
    Y = tab.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(Y)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputDataError(f"ROI table: missing/non-numeric value for sub-{design.subjects[i]} in ROI "
                             f"{tab.columns[j]!r} ({int(bad.sum())} missing in all)")
    res = permuted_glm(Y, design, contrast, n_perm=max(int(n_perm), 0), tfce=False, mask=None,
                       random_state=random_state)
    roles = np.asarray(design.roles)
    ip, ic = roles == "patient", roles == "control"
    n1, n2 = int(ip.sum()), int(ic.sum())
    g, lo, hi = hedges_g(res.t, n1, n2, res.df)
    p_perm = res.two_sided["p_unc"] if n_perm > 0 else np.full(Y.shape[1], np.nan)
    p_fwe = res.two_sided["p_fwe_t"] if n_perm > 0 else np.full(Y.shape[1], np.nan)
    p_fdr = fdr_bh(p_perm if n_perm > 0 else res.p_param)
    if n_perm > 0:
        p_fdr = np.minimum(p_fdr, p_fwe)
    out = pd.DataFrame({
        "roi": list(map(str, tab.columns)), "n_patient": n1, "n_control": n2,
        "mean_patient": Y[ip].mean(0), "sd_patient": Y[ip].std(0, ddof=1),
        "mean_control": Y[ic].mean(0), "sd_control": Y[ic].std(0, ddof=1),
        "estimate": res.effect, "se": res.se, "t": res.t, "df": res.df, "p_param": res.p_param,
        "p_perm": p_perm, "p_perm_fwe": p_fwe, "p_fdr": p_fdr, "significant_fdr": p_fdr < alpha,
        "hedges_g": g, "g_ci_low": lo, "g_ci_high": hi,
        "direction": np.where(res.t >= 0, "patient>control", "patient<control"),
    })
    out.attrs["n_null"] = res.n_null
    out.attrs["exact"] = res.exact
    return out


# ----------------------------------------------------------------------------- ROI tables of a study
#: columns of the clinical correlation table (``correlations.tsv``)
CORR_COLUMNS = ["roi", "score", "n", "r", "r_ci_low", "r_ci_high", "p", "p_perm", "p_fdr", "rho",
                "rho_ci_low", "rho_ci_high", "p_spearman", "p_fdr_spearman", "covariates"]


@dataclass
class RoiResult:
    """ROI group test (:func:`roi_glm`), clinical correlations (:data:`CORR_COLUMNS`), the values
    behind both (``participant_id`` = ``sub-<label>``) and a description for the sidecars."""

    rois: pd.DataFrame
    correlations: pd.DataFrame
    values: pd.DataFrame
    meta: dict = field(default_factory=dict)


def roi_tests(table: pd.DataFrame, study, *, extra: pd.DataFrame | None = None, n_perm: int = 5000,
              alpha: float = 0.05, random_state: int = 0, harmonise=None) -> RoiResult:
    """Group test (patient vs control) of every ROI column and partial correlations of every ROI
    with every clinical score within patients (controlling the study covariates; Pearson and
    Spearman with Fisher-z CI, parametric and Freedman–Lane permutation p, two-sided, BH FDR over
    all ROI x score rows). ``table``: index participant (with or without ``sub-``), one column per
    ROI; ``extra``: extra continuous covariates (e.g. TIV) indexed by participant; ``harmonise``:
    as :func:`hfsmri.stats.voxelwise.voxelwise` (ComBat on the values of each design)."""
    from .correlation import partial_corr
    from .design import designs_for
    from .voxelwise import harmonised

    tab = table.copy()
    tab.index = [str(i).removeprefix("sub-") for i in tab.index]
    designs, skipped = designs_for(study, list(tab.index), extra)
    design = designs.pop("group")
    harm = {}
    tab_g = tab
    if (design.info.get("harmonize") or {}).get("method") == "combat":
        num = tab.loc[design.subjects].apply(pd.to_numeric, errors="coerce")
        if np.all(np.isfinite(num.to_numpy(dtype=float))):
            tab_g, harm["group"] = harmonised(num, design, harmonise)
        else:
            harm["group"] = {"method": "combat", "applied": False, "reason": "ROI table has missing values"}
    elif design.info.get("harmonize"):
        harm["group"] = dict(design.info["harmonize"])
    rois = roi_glm(tab_g, design, "patient-gt-control", n_perm=n_perm, random_state=random_state, alpha=alpha)
    rows = []
    for score, d in designs.items():
        Y = tab.loc[d.subjects].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(Y)):
            raise InputDataError(f"ROI table has missing values for patients used in the {score!r} correlation")
        Y, rec = harmonised(Y, d, harmonise)
        if rec is not None:
            harm[f"corr-{score}"] = rec
        y, Z = d.X[:, 1], d.X[:, 2:]
        pear, spear = partial_corr(Y, y, Z, "pearson"), partial_corr(Y, y, Z, "spearman")
        if n_perm > 0:
            res = permuted_glm(Y, d, next(iter(d.contrasts)), n_perm=n_perm, tfce=False, mask=None,
                               random_state=random_state)
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
    meta = {"Design": design.to_dict(), "NPermutations": n_perm, "RandomSeed": random_state,
            "FlippedSubjects": list(design.flipped)}
    if skipped:
        meta["CorrelationsSkipped"] = skipped
    if harm:
        meta["Harmonization"] = harm
    values = tab.apply(pd.to_numeric, errors="coerce")
    values.index = [f"sub-{i}" for i in values.index]
    return RoiResult(rois, corr[CORR_COLUMNS], values.rename_axis("participant_id").reset_index(), meta)


def longitudinal_roi_tests(tables: dict, study, *, n_perm: int = 5000, random_state: int = 0) -> pd.DataFrame:
    """ROI change tests. ``tables``: session -> participant x ROI table; the ROIs of both the
    baseline and the follow-up table with a value in every row go through every longitudinal
    design (:func:`hfsmri.stats.design.longitudinal_designs`) on the change follow-up − baseline of
    the participants with both sessions. One row per design contrast (the first of each direction
    pair; p is two-sided) and ROI: mean change, t, df, sign-flip / permutation p and BH FDR across
    ROIs per contrast; ``attrs["n_rois"]``: the ROIs tested."""
    from .design import longitudinal_designs, session_pair
    from .glm import ols
    from .voxelwise import pair_contrasts

    pre, post = session_pair(study)
    a, b = (tables[x][[c for c in tables[pre].columns if c in set(tables[post].columns)]] for x in (pre, post))
    keep = pd.concat([a, b]).apply(pd.to_numeric, errors="coerce").notna().all(axis=0)
    a, b = (t.loc[:, keep].apply(pd.to_numeric, errors="coerce") for t in (a, b))
    rows = []
    subjects = [s for s in study.labels if s in a.index and s in b.index]
    for name, d in (longitudinal_designs(study, subjects) if a.shape[1] else {}).items():
        Y = np.stack([b.loc[s].to_numpy(float) - a.loc[s].to_numpy(float) for s in d.subjects])
        for c, members in pair_contrasts(d):
            cname = members[0][0]
            fit = ols(Y, d.X, c)
            perm = permuted_glm(Y, d, cname, n_perm=n_perm, tfce=False, cluster_forming_p=None, seed=random_state)
            p_two = np.minimum(1.0, 2 * np.minimum(perm.pos.p_unc, perm.neg.p_unc))
            for j, roi in enumerate(a.columns):
                rows.append({"design": name, "contrast": cname, "roi": roi, "n": len(d.subjects),
                             "mean_change": float(np.mean(Y[:, j])), "t": float(fit.t[j]), "df": int(fit.df),
                             "p_perm": float(p_two[j])})
    df = pd.DataFrame(rows)
    if len(df):
        df["p_fdr"] = np.nan
        for _, idx in df.groupby("contrast").groups.items():
            df.loc[idx, "p_fdr"] = fdr_bh(df.loc[idx, "p_perm"].to_numpy())
    df.attrs["n_rois"] = int(a.shape[1])
    return df
