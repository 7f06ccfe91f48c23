"""ComBat applied to the data of one GLM design (what the group analyses call).

The design built by :mod:`hfsmri.stats.design` for a study with ``harmonize: combat`` carries the
site of every subject in ``design.info["harmonize"]`` (and no site columns). Before the GLM, the
data (subjects x voxels, or subjects x ROIs) are harmonised with ComBat, protecting *everything the
design models*: group, the study covariates, extra covariates (TIV, mean FD) and, in clinical
designs, the clinical score. The protected covariates are passed to ComBat as an orthogonal basis
of the column space of the mean-centred design (ComBat's output depends only on that span, and
centring removes the part collinear with the site intercepts), so cell-means group coding,
dummy-coded categorical covariates and interaction columns all work unchanged.

When ComBat cannot be applied (a site with fewer than 2 subjects of this design, a single site
among these subjects, or biology confounded with site), the data are returned unchanged and the
record says why: the analysis goes on without harmonisation rather than failing.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..errors import HfsmriError
from .combat import ComBat

__all__ = ["harmonize_for_design", "protected_basis"]

log = logging.getLogger("hfsmri.harmonize")

METHOD = "ComBat, parametric empirical Bayes (Johnson 2007; Fortin 2017, 2018)"


def protected_basis(X: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Orthogonal basis (n, r) of the column space of ``X`` after centring each column.

    The span of ``[site one-hot, basis]`` equals the span of ``[site one-hot, X]`` whenever ``X``'s
    columns (or their sum) contain the intercept, so ComBat fitted with this basis protects exactly
    what the design models.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] == 0:
        return np.zeros((X.shape[0], 0))
    Xc = X - X.mean(axis=0, keepdims=True)
    U, s, _ = np.linalg.svd(Xc, full_matrices=False)
    if s.size == 0 or s[0] <= 0:
        return np.zeros((X.shape[0], 0))
    r = int(np.sum(s > tol * s[0]))
    return U[:, :r] * np.sqrt(X.shape[0])


def harmonize_for_design(Y, design, **combat_kwargs):
    """Harmonise ``Y`` (rows in ``design.subjects`` order) when the design asks for ComBat.

    Parameters
    ----------
    Y : (n_subjects, n_features) array or DataFrame (voxels in a mask, or ROI values)
    design : :class:`hfsmri.stats.design.Design`; ``design.info["harmonize"]`` is
        ``{"method": "combat", "site_column": ..., "sites": [site per subject]}`` for ComBat.
    combat_kwargs : passed to :class:`~hfsmri.harmonize.combat.ComBat` (parametric, eb, ...)

    Returns
    -------
    (Y_out, record): ``Y_out`` has the type and shape of ``Y``; ``record`` is a JSON-able dict
    for the sidecars (``None`` when the design has no site information): method, site column,
    subjects per site, protected design columns, ``applied`` (bool), ``reason`` when not applied,
    and per site the mean additive effect (data units, averaged over features) and the mean scale.
    """
    h = (getattr(design, "info", None) or {}).get("harmonize")
    if not h:
        return Y, None
    method = h.get("method")
    if method != "combat":
        return Y, {k: v for k, v in h.items() if k != "sites"}
    sites = np.asarray([str(s) for s in h.get("sites", [])], dtype=object)
    n = len(design.subjects)
    counts = pd.Series(sites).value_counts().sort_index()
    record = {"method": "combat", "description": METHOD, "site_column": h.get("site_column"),
              "subjects_per_site": {str(k): int(v) for k, v in counts.items()},
              "protected": [c for c in design.columns if c != "intercept"], "applied": False}
    if len(sites) != n:
        raise HfsmriError(f"design has {n} subjects but {len(sites)} site labels", field="harmonize")
    if len(counts) < 2:
        record["reason"] = f"only one site ({counts.index[0]}) among the subjects of this design"
        return Y, record
    small = [str(k) for k, v in counts.items() if v < 2]
    if small:
        record["reason"] = f"site(s) {small} have fewer than 2 subjects in this design"
        log.warning("ComBat skipped: %s", record["reason"])
        return Y, record
    is_frame = isinstance(Y, pd.DataFrame)
    arr = Y.to_numpy(dtype=float) if is_frame else np.asarray(Y, dtype=float)
    C = protected_basis(np.asarray(design.X, dtype=float))
    covars = pd.DataFrame(C, columns=[f"b{k}" for k in range(C.shape[1])])
    model = ComBat(covariates=list(covars.columns), categorical=[], **combat_kwargs)
    try:
        out = model.fit_transform(arr, sites, covars if C.shape[1] else None)
    except HfsmriError as exc:
        record["reason"] = str(exc)
        log.warning("ComBat skipped: %s", exc)
        return Y, record
    sd = np.sqrt(np.where(model.valid_, model.var_pooled_, 0.0))
    record.update({
        "applied": True,
        "n_features": int(arr.shape[1]),
        "n_features_harmonized": int(np.sum(model.valid_)),
        "mean_additive_effect": {str(b): float(np.mean((model.gamma_star_[k] * sd)[model.valid_]))
                                 for k, b in enumerate(model.sites_)},
        "mean_scale_effect": {str(b): float(np.mean(np.sqrt(model.delta_star_[k])[model.valid_]))
                              for k, b in enumerate(model.sites_)},
    })
    if is_frame:
        return pd.DataFrame(out, index=Y.index, columns=Y.columns), record
    return out, record
