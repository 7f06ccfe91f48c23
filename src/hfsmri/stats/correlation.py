"""Partial correlation (Pearson and Spearman) of metrics with a clinical score, with CI.

``r`` is the correlation of the residuals of ``x`` and ``y`` after regressing both on
``[1, covariates]`` (equivalently ``t / sqrt(t² + df)`` of ``y``'s slope in ``x ~ 1 + y + Z``).
p-value: two-sided from ``t = r·sqrt(df / (1 - r²))``, ``df = n - 2 - q`` (q covariates).
95 % CI: Fisher z, ``arctanh(r) ± z_(1-α/2) / sqrt(n - q - 3)``. Spearman: every variable (x, y
and covariates) is replaced by its ranks (mean ranks for ties) first. These are pingouin's
``partial_corr`` conventions.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as sps


def _resid(A: np.ndarray, Zc: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(Zc, A, rcond=None)
    return A - Zc @ coef


def partial_corr(x, y, covariates=None, method: str = "pearson", confidence: float = 0.95) -> dict:
    """Partial correlation of ``x`` (n,) or many metrics ``x`` (n, m) with ``y`` (n,).

    Returns a dict of arrays (scalars for 1D ``x``): ``n``, ``r``, ``ci_low``, ``ci_high``, ``p``,
    ``df``. Rows with a non-finite value in ``y`` or the covariates must be removed by the caller.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    x = np.asarray(x, dtype=float)
    single = x.ndim == 1
    X = x[:, None] if single else x
    y = np.asarray(y, dtype=float)
    n = y.shape[0]
    Z = np.zeros((n, 0)) if covariates is None else np.asarray(covariates, dtype=float).reshape(n, -1)
    if method == "spearman":
        X = np.apply_along_axis(sps.rankdata, 0, X)
        y = sps.rankdata(y)
        Z = np.apply_along_axis(sps.rankdata, 0, Z) if Z.shape[1] else Z
    q = Z.shape[1]
    Zc = np.column_stack([np.ones(n), Z])
    rx = _resid(X, Zc)
    ry = _resid(y[:, None], Zc)[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (rx * ry[:, None]).sum(0) / np.sqrt((rx ** 2).sum(0) * (ry ** 2).sum())
        r = np.clip(r, -1.0, 1.0)
        df = n - 2 - q
        t = r * np.sqrt(df / (1 - r ** 2))
        p = 2 * sps.t.sf(np.abs(t), df)
        zc = sps.norm.ppf(0.5 + confidence / 2)
        se = 1.0 / np.sqrt(n - q - 3) if n - q - 3 > 0 else np.nan
        z = np.arctanh(r)
        lo, hi = np.tanh(z - zc * se), np.tanh(z + zc * se)
    out = {"n": n, "r": r, "ci_low": lo, "ci_high": hi, "p": p, "df": df}
    if single:
        out = {k: (v[0] if isinstance(v, np.ndarray) else v) for k, v in out.items()}
    return out
