"""Sparsity (density) thresholding of connectivity matrices.

Convention (contract): at sparsity ``s`` an ``N``-node matrix keeps its
``k = round(s * N (N - 1) / 2)`` strongest *positive* edges. Negative weights are set to 0 first
(they are never kept), ties are broken by upper-triangle order (row-major order of
``np.triu_indices(N, 1)``: the earlier edge wins), and the diagonal is ignored. ``round`` is
round-half-up. When fewer than ``k`` positive edges exist, all positive edges are kept (the
realised density is then below ``s``).
"""
from __future__ import annotations

import numpy as np

from hfsmri.errors import InputDataError


def check_connectivity(conn, name: str = "conn") -> np.ndarray:
    """Validate a square, symmetric, finite connectivity matrix; return it as float64.

    The diagonal is ignored (set to 0 in the returned copy). Asymmetry up to 1e-6 (relative to the
    largest absolute weight) is tolerated and removed by averaging with the transpose.
    """
    a = np.asarray(conn, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise InputDataError(f"connectivity matrix must be square (N x N), got shape {a.shape}", field=name)
    if a.shape[0] < 3:
        raise InputDataError(f"connectivity matrix needs at least 3 nodes, got {a.shape[0]}", field=name)
    a = a.copy()
    np.fill_diagonal(a, 0.0)
    if not np.all(np.isfinite(a)):
        raise InputDataError("connectivity matrix has NaN or infinite off-diagonal values", field=name)
    scale = max(np.abs(a).max(), 1e-300)
    if np.abs(a - a.T).max() > 1e-6 * scale:
        raise InputDataError("connectivity matrix is not symmetric", field=name)
    return (a + a.T) / 2.0


def n_edges_for(sparsity: float, n_nodes: int) -> int:
    """Number of edges ``k = round(s * N(N-1)/2)`` (round half up) kept at sparsity ``s``."""
    m = n_nodes * (n_nodes - 1) / 2.0
    return int(np.floor(float(sparsity) * m + 0.5 + 1e-9))


def check_sparsities(sparsities) -> np.ndarray:
    s = np.atleast_1d(np.asarray(sparsities, dtype=float))
    if s.ndim != 1 or s.size == 0 or np.any(~np.isfinite(s)) or np.any(s <= 0) or np.any(s > 1):
        raise InputDataError(f"sparsities must be a non-empty list of numbers in (0, 1], got {sparsities!r}",
                             field="sparsity")
    return s


def edge_order(conn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle edges sorted strongest first (stable: ties keep upper-triangle order).

    Returns ``(rows, cols, weights, n_positive)`` with weights clipped at 0; ``n_positive`` is the
    number of strictly positive edges (0-d array).
    """
    n = conn.shape[0]
    iu, ju = np.triu_indices(n, 1)
    w = np.maximum(conn[iu, ju], 0.0)
    order = np.argsort(-w, kind="stable")
    return iu[order], ju[order], w[order], np.asarray(int(np.count_nonzero(w > 0)))


def threshold_sparsity(conn, sparsity: float, weighted: bool = False) -> np.ndarray:
    """Threshold ``conn`` at one sparsity (module convention).

    Returns an ``N x N`` symmetric float64 matrix with zero diagonal: 0/1 when ``weighted`` is
    False, the kept (positive) weights otherwise.
    """
    a = check_connectivity(conn)
    rows, cols, w, npos = edge_order(a)
    return _adjacency(a.shape[0], rows, cols, w, min(n_edges_for(sparsity, a.shape[0]), int(npos)), weighted)


def _adjacency(n, rows, cols, w, k, weighted):
    out = np.zeros((n, n))
    val = w[:k] if weighted else 1.0
    out[rows[:k], cols[:k]] = val
    out[cols[:k], rows[:k]] = val
    return out
