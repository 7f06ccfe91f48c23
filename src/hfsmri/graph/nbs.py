"""Edge-wise statistics on connectomes: GLM t per edge, Benjamini–Hochberg FDR, and the
network-based statistic (NBS; Zalesky, Fornito & Bullmore 2010).

Conventions
-----------
* Data: ``Y`` is (n_subjects, n_edges), the upper triangles (row-major, ``np.triu_indices(N, 1)``)
  of the subjects' (Fisher z) matrices; the design ``X`` (n_subjects, p) includes the intercept
  or group columns and covariates; ``contrast`` is a length-p t-contrast. Tests are one-sided in
  the contrast's direction (use the negated contrast for the other tail), as FSL/NBS do.
* Parametric p for FDR: Student t with n - rank(X) degrees of freedom; BH step-up q-values.
* NBS: supra-threshold edges (t > ``threshold``) form components (connected sub-graphs); a
  component's size is its number of edges ("extent"). Its FWE p is the share of permutations
  whose largest component is at least as large, counting the identity:
  ``(1 + #{null >= size}) / (n_perm + 1)``.
* Permutations: Freedman–Lane with the design partitioned into the effect of interest and
  nuisance (Smith et al. / Winkler et al. 2014, "Beckmann" partition); rows of the nuisance-model
  residuals are permuted. Seeded (``random_state``) and reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse, stats
from scipy.sparse.csgraph import connected_components

from hfsmri.errors import DesignError, InputDataError


def _check(Y, X, contrast):
    Y = np.asarray(Y, dtype=float)
    X = np.asarray(X, dtype=float)
    c = np.asarray(contrast, dtype=float).ravel()
    if Y.ndim != 2 or X.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise InputDataError(f"data {Y.shape} and design {X.shape} must have the same number of rows (subjects)")
    if c.size != X.shape[1]:
        raise DesignError(f"contrast has {c.size} entries for a design with {X.shape[1]} columns")
    if not np.all(np.isfinite(Y)) or not np.all(np.isfinite(X)):
        raise InputDataError("edge data or design contain NaN/inf (drop nodes missing in any subject)")
    rank = np.linalg.matrix_rank(X)
    if rank >= X.shape[0]:
        raise DesignError(f"design rank {rank} leaves no residual degrees of freedom with {X.shape[0]} subjects")
    return Y, X, c, rank


def glm_t(Y, X, contrast) -> np.ndarray:
    """OLS t statistic of ``contrast`` for every column of ``Y`` (n, E) on design ``X`` (n, p)."""
    Y, X, c, rank = _check(Y, X, contrast)
    pinv = np.linalg.pinv(X)
    beta = pinv @ Y
    res = Y - X @ beta
    dof = X.shape[0] - rank
    s2 = (res * res).sum(axis=0) / dof
    var_c = float(c @ pinv @ pinv.T @ c)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (c @ beta) / np.sqrt(s2 * var_c)
    return np.where(s2 > 0, t, 0.0)


def fdr_bh(p) -> np.ndarray:
    """Benjamini–Hochberg q-values (step-up, monotone, capped at 1) of p-values ``p``."""
    p = np.asarray(p, dtype=float)
    flat = p.ravel()
    n = flat.size
    order = np.argsort(flat)
    ranked = flat[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out.reshape(p.shape)


def edge_statistics(Y, X, contrast, node_names=None, n_nodes=None) -> pd.DataFrame:
    """Edge-wise t, one-sided parametric p and BH-FDR q for ``contrast``.

    Returns a DataFrame with columns ``node_i, node_j, t, p, q_fdr`` (one row per edge, in
    upper-triangle order).
    """
    Y, X, c, rank = _check(Y, X, contrast)
    t = glm_t(Y, X, c)
    dof = X.shape[0] - rank
    p = stats.t.sf(t, dof)
    n = n_nodes or _n_nodes(Y.shape[1])
    names = list(node_names) if node_names is not None else [str(i) for i in range(n)]
    iu, ju = np.triu_indices(n, 1)
    return pd.DataFrame({"node_i": np.asarray(names)[iu], "node_j": np.asarray(names)[ju],
                         "t": t, "p": p, "q_fdr": fdr_bh(p)})


def _n_nodes(n_edges: int) -> int:
    n = int(round((1 + np.sqrt(1 + 8 * n_edges)) / 2))
    if n * (n - 1) // 2 != n_edges:
        raise InputDataError(f"{n_edges} edges is not the upper triangle of a square matrix")
    return n


def partition_design(X, contrast):
    """Split design ``X`` into the effect of interest ``Xx`` (n, 1) and nuisance ``Z`` (n, p-1)
    such that the t of Xx in [Xx, Z] equals the t of ``contrast`` in X (Beckmann partition)."""
    X = np.asarray(X, float)
    c = np.asarray(contrast, float).reshape(-1, 1)
    D = np.linalg.pinv(X.T @ X)
    Xx = X @ D @ c @ np.linalg.pinv(c.T @ D @ c)
    cu = _null_space(c.T)
    if cu.shape[1] == 0:
        return Xx, np.zeros((X.shape[0], 0))
    cv = cu - c @ np.linalg.pinv(c.T @ D @ c) @ c.T @ D @ cu
    Z = X @ D @ cv @ np.linalg.pinv(cv.T @ D @ cv)
    return Xx, Z


def _null_space(a, rtol=1e-10):
    u, s, vh = np.linalg.svd(a)
    rank = int((s > rtol * max(s.max(initial=0), 1e-300)).sum())
    return vh[rank:].T


def _components(t, threshold, n, iu, ju):
    """Connected components of the supra-threshold edge graph: list of (edge_idx, node_idx)."""
    sup = np.flatnonzero(t > threshold)
    if sup.size == 0:
        return []
    g = sparse.coo_matrix((np.ones(sup.size), (iu[sup], ju[sup])), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    edge_lab = lab[iu[sup]]
    out = []
    for c in np.unique(edge_lab):
        e = sup[edge_lab == c]
        out.append((e, np.unique(np.concatenate([iu[e], ju[e]]))))
    return out


def _max_size(t, threshold, n, iu, ju):
    sup = np.flatnonzero(t > threshold)
    if sup.size == 0:
        return 0
    g = sparse.coo_matrix((np.ones(sup.size), (iu[sup], ju[sup])), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    return int(np.bincount(lab[iu[sup]]).max())


@dataclass
class NBSResult:
    """Result of :func:`nbs`.

    t : (n_edges,) observed t; threshold : primary threshold; components : DataFrame with one
    row per component (``component, n_edges, n_nodes, p_fwe, nodes``); edges : DataFrame of the
    supra-threshold edges with their component and its p; null : (n_perm,) largest component
    size in each permutation.
    """

    t: np.ndarray
    threshold: float
    components: pd.DataFrame
    edges: pd.DataFrame
    null: np.ndarray = field(repr=False)


def nbs(Y, X, contrast, threshold: float = 3.0, n_perm: int = 1000, random_state=0,
        node_names=None) -> NBSResult:
    """Network-based statistic for one t-contrast (see module doc for conventions).

    Parameters
    ----------
    Y : (n_subjects, n_edges) upper triangles of the connectivity matrices.
    X : (n_subjects, p) design; contrast : (p,) t-contrast (one-sided, positive direction).
    threshold : primary t threshold for supra-threshold edges (NBS default 3.0).
    n_perm : permutations (Freedman–Lane); random_state : seed.
    node_names : optional names of the N nodes.
    """
    Y, X, c, rank = _check(Y, X, contrast)
    n_sub, n_edges = Y.shape
    n = _n_nodes(n_edges)
    names = np.asarray(list(node_names) if node_names is not None else [str(i) for i in range(n)])
    iu, ju = np.triu_indices(n, 1)
    t_obs = glm_t(Y, X, c)

    Xx, Z = partition_design(X, c)
    M = np.hstack([Xx, Z])
    pinv_m = np.linalg.pinv(M)
    dof = n_sub - np.linalg.matrix_rank(M)
    var0 = float((pinv_m @ pinv_m.T)[0, 0])
    Rz = Y - Z @ (np.linalg.pinv(Z) @ Y) if Z.shape[1] else Y - 0.0
    rng = np.random.default_rng(random_state)
    null = np.zeros(n_perm, dtype=int)
    for k in range(n_perm):
        Yp = Rz[rng.permutation(n_sub)]
        beta = pinv_m @ Yp
        res = Yp - M @ beta
        s2 = (res * res).sum(axis=0) / dof
        with np.errstate(divide="ignore", invalid="ignore"):
            tp = np.where(s2 > 0, beta[0] / np.sqrt(s2 * var0), 0.0)
        null[k] = _max_size(tp, threshold, n, iu, ju)

    comps = _components(t_obs, threshold, n, iu, ju)
    comps.sort(key=lambda ce: -ce[0].size)
    rows, edge_rows = [], []
    for ci, (e, nodes) in enumerate(comps, start=1):
        p = (1 + int((null >= e.size).sum())) / (n_perm + 1)
        rows.append({"component": ci, "n_edges": int(e.size), "n_nodes": int(nodes.size), "p_fwe": p,
                     "nodes": ";".join(names[nodes])})
        for ei in e:
            edge_rows.append({"component": ci, "node_i": names[iu[ei]], "node_j": names[ju[ei]],
                              "t": float(t_obs[ei]), "p_fwe": p})
    comp_df = pd.DataFrame(rows, columns=["component", "n_edges", "n_nodes", "p_fwe", "nodes"])
    edge_df = pd.DataFrame(edge_rows, columns=["component", "node_i", "node_j", "t", "p_fwe"])
    return NBSResult(t_obs, float(threshold), comp_df, edge_df, null)
