"""Degree-preserving random reference graphs (Maslov & Sneppen 2002), seeded.

Same procedure as the Brain Connectivity Toolbox ``randmio_und`` (used by GRETNA): repeated
double-edge swaps (a–b, c–d) -> (a–d, c–b), rejecting swaps that would create self-loops or
multiple edges. Every node keeps its degree exactly; in weighted graphs the weights travel with
the edges (the weight distribution is kept, node strengths are not). Connectedness is not
enforced.
"""
from __future__ import annotations

import numpy as np

from hfsmri.graph._kernels import rewire


def random_reference(W, n_swaps_per_edge: float = 10, random_state=None) -> np.ndarray:
    """One degree-preserving randomisation of the undirected graph ``W``.

    Parameters
    ----------
    W : (N, N) symmetric array, 0 = no edge (binary 0/1 or positive weights); diagonal ignored.
    n_swaps_per_edge : swap *attempts* per edge (BCT ``ITER``; total attempts = this x n_edges).
    random_state : int, numpy Generator or None.

    Returns a new (N, N) float array with the same degree sequence (and the same multiset of
    edge weights).
    """
    rng = np.random.default_rng(random_state)
    R = np.array(W, dtype=float)
    np.fill_diagonal(R, 0.0)
    eu, ev = np.nonzero(np.triu(R, 1))
    n_edges = eu.size
    if n_edges < 2:
        return R
    n_try = int(round(n_swaps_per_edge * n_edges))
    pick1 = rng.integers(0, n_edges, n_try)
    pick2 = rng.integers(0, n_edges, n_try)
    flip = rng.random(n_try) < 0.5
    rewire(R, eu.astype(np.int64), ev.astype(np.int64), pick1, pick2, flip)
    return R
