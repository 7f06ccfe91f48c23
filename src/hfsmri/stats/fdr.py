"""False discovery rate (Benjamini–Hochberg 1995)."""
from __future__ import annotations

import numpy as np


def fdr_bh(p, alpha: float | None = None):
    """Benjamini–Hochberg adjusted p-values ("q-values" in the step-up sense).

    Parameters
    ----------
    p : array-like of p-values in [0, 1] (any shape; NaN entries are ignored and stay NaN)
    alpha : float, optional
        If given, also return the boolean rejection mask at FDR level ``alpha``.

    Returns
    -------
    q : array of the same shape, ``q_(i) = min_{j >= i} min(1, m p_(j) / j)`` (identical to
    ``statsmodels.stats.multitest.multipletests(p, method="fdr_bh")[1]``); and the rejection
    mask ``q <= alpha`` when ``alpha`` is given.
    """
    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.isfinite(flat)
    pv = flat[ok]
    if np.any((pv < 0) | (pv > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = pv.size
    if m:
        order = np.argsort(pv, kind="mergesort")
        ranked = pv[order] * m / np.arange(1, m + 1)
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        out = np.empty(m)
        out[order] = np.minimum(ranked, 1.0)
        qf = q.ravel()
        qf[ok] = out
        q = qf.reshape(p.shape)
    if alpha is None:
        return q
    return q, np.nan_to_num(q, nan=np.inf) <= alpha
