"""Closed-form power of the tests the ROI engine runs (uncorrected, one test)."""
from __future__ import annotations

import numpy as np
from scipy import stats as sps

__all__ = ["ttest_power", "correlation_power"]


def ttest_power(d, n1: int, n2: int | None = None, alpha: float = 0.05, two_sided: bool = True,
                directional: bool = True):
    """Power of the pooled-variance two-sample t-test for a true standardised difference ``d``.

    Noncentral t with ``df = n1 + n2 - 2`` and noncentrality ``d * sqrt(n1 n2 / (n1 + n2))``.

    Parameters
    ----------
    d : float or array, Cohen's d (group 1 minus group 2, in SD units)
    n1, n2 : group sizes (``n2`` defaults to ``n1``)
    alpha : test level
    two_sided : two-sided test at ``alpha`` (critical |t| at 1 - alpha/2) or one-sided
    directional : count only rejections in the direction of ``d`` (what "detecting the planted
        effect" means); with ``False`` and two-sided, rejections in either tail count.
    """
    n2 = n1 if n2 is None else n2
    d = np.asarray(d, dtype=float)
    df = n1 + n2 - 2
    ncp = np.abs(d) * np.sqrt(n1 * n2 / (n1 + n2))
    crit = sps.t.ppf(1 - alpha / 2 if two_sided else 1 - alpha, df)
    power = sps.nct.sf(crit, df, ncp)
    if two_sided and not directional:
        power = power + sps.nct.cdf(-crit, df, ncp)
    return power


def correlation_power(r, n: int, alpha: float = 0.05, two_sided: bool = True, directional: bool = True):
    """Power of the Pearson correlation test (t = r sqrt((n-2)/(1-r^2))) for a true ``r``.

    Fisher-z approximation: ``atanh(r_hat) ~ N(atanh(r), 1/(n-3))`` (accurate to ~1 percentage
    point for n >= 10).
    """
    r = np.asarray(r, dtype=float)
    z = np.arctanh(np.abs(r)) * np.sqrt(n - 3)
    crit = sps.norm.ppf(1 - alpha / 2 if two_sided else 1 - alpha)
    power = sps.norm.sf(crit - z)
    if two_sided and not directional:
        power = power + sps.norm.cdf(-crit - z)
    return power
