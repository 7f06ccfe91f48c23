"""ROI-level group tests: per-ROI GLM with covariates, permutation and parametric p, FDR, Hedges g.

Effect size: Hedges' g of the covariate-adjusted group difference, ``d = t·sqrt(1/n1 + 1/n2)``
(equal to Cohen's d with pooled SD when there are no covariates), ``g = J·d`` with
``J = 1 - 3/(4·df - 1)``; 95 % CI ``g ± t_(0.975, df)·sqrt((n1+n2)/(n1·n2) + g²/(2(n1+n2)))`` (Hedges & Olkin
1985; pingouin's ``compute_effsize``/``compute_esci`` conventions; df = GLM residual df).
"""
from __future__ import annotations

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
    across ROIs; ``p_fdr``: BH across ROIs of ``p_perm`` (of ``p_param`` when ``n_perm == 0``).
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
