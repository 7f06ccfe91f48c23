"""Community structure: Newman's (2006) spectral modularity maximisation with Kernighan–Lin
fine-tuning, the algorithm of the Brain Connectivity Toolbox ``modularity_und`` (also what
GRETNA's modularity uses). Deterministic (no random restarts), works on binary and weighted
undirected graphs.
"""
from __future__ import annotations

import numpy as np

from hfsmri.graph._kernels import modularity_finetune


def modularity_q(W: np.ndarray, labels: np.ndarray, gamma: float = 1.0) -> float:
    """Newman modularity Q of a partition of an undirected (weighted) graph.

    ``Q = 1/(2m) * sum_ij [W_ij - gamma k_i k_j / (2m)] delta(c_i, c_j)`` with ``k`` the
    (weighted) degrees and ``2m = sum(k)``; same value as ``networkx.community.modularity``.
    Returns NaN for a graph without edges.
    """
    W = np.asarray(W, dtype=float)
    k = W.sum(axis=1)
    two_m = k.sum()
    if two_m <= 0:
        return float("nan")
    labels = np.asarray(labels)
    q = 0.0
    for c in np.unique(labels):
        idx = labels == c
        q += W[np.ix_(idx, idx)].sum() / two_m - gamma * (k[idx].sum() / two_m) ** 2
    return float(q)


def spectral_modularity(W, gamma: float = 1.0) -> tuple[np.ndarray, float]:
    """Partition maximising modularity by recursive spectral bisection + fine-tuning.

    Parameters
    ----------
    W : (N, N) symmetric non-negative array (0/1 or weights), diagonal ignored.
    gamma : resolution parameter (1 = classic modularity).

    Returns
    -------
    labels : (N,) int array, communities numbered 1..C
    q : modularity of ``labels`` (NaN if the graph has no edges)
    """
    W = np.array(W, dtype=float)
    np.fill_diagonal(W, 0.0)
    n = W.shape[0]
    k = W.sum(axis=0)
    m = k.sum()
    if m <= 0:
        return np.ones(n, dtype=int), float("nan")
    B = W - gamma * np.outer(k, k) / m
    ci = np.ones(n, dtype=int)
    cn = 1
    stack = [1]
    ind = np.arange(n)
    Bg = B.copy()
    while stack:
        ng = ind.size
        split = False
        if ng > 1:
            vals, vecs = np.linalg.eigh(Bg)
            v1 = vecs[:, int(np.argmax(vals))]
            S = np.where(v1 < 0, -1.0, 1.0)
            q = float(S @ Bg @ S)
            if q > 1e-10:
                S, q = modularity_finetune(np.ascontiguousarray(Bg), S, q)
                if abs(S.sum()) != ng:
                    split = True
        if split:
            cn += 1
            ci[ind[S == 1]] = stack[0]
            ci[ind[S == -1]] = cn
            stack.insert(0, cn)
        else:
            stack.pop(0)
        if not stack:
            break
        ind = np.flatnonzero(ci == stack[0])
        bg = B[np.ix_(ind, ind)]
        Bg = bg - np.diag(bg.sum(axis=0))
    # renumber 1..C in order of first appearance
    _, first, inv = np.unique(ci, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    labels = rank[inv] + 1
    return labels, modularity_q(W, labels, gamma)
