"""Graph metrics of brain connectivity matrices over a range of sparsities (GRETNA style).

Public API
----------
``graph_metrics(conn, sparsities, weighted=False, ...) -> DataFrame``  (contract)
    One row per sparsity (index ``sparsity``), global metrics as columns.
``nodal_metrics(conn, sparsities, weighted=False, ...) -> DataFrame``
    One row per (sparsity, node) (MultiIndex ``sparsity``, ``node``), nodal metrics as columns.
``graph_analysis(...) -> (global_df, nodal_df)``  both at once (shares the path computations).
``graph_auc(table)`` / ``nodal_auc(nodal_table)``  area under the curve over sparsity.

Conventions
-----------
* Thresholding: :mod:`hfsmri.graph.threshold` (keep the ``round(s N(N-1)/2)`` strongest positive
  edges; negatives -> 0; ties by upper-triangle order; diagonal ignored).
* Binary graphs (``weighted=False``): kept edges become 1. Weighted graphs keep the (positive)
  weights, e.g. Fisher z; the *length* of an edge is ``1 / weight`` for paths and efficiency.
* ``clustering``: mean over all nodes of the node clustering coefficient, 0 for nodes with degree
  < 2 (networkx ``average_clustering``). Weighted: Onnela et al. 2005 geometric-mean definition
  with weights divided by the graph's largest weight (networkx ``clustering(weight=...)``).
* ``global_efficiency``: mean over ordered node pairs of 1 / shortest path length (0 when
  unreachable); ``nodal_efficiency`` of node i: mean over j != i of 1 / d_ij (Achard & Bullmore
  2007).
* ``local_efficiency``: mean over nodes of the global efficiency of the subgraph induced by the
  node's neighbours (Latora & Marchiori 2001; networkx ``local_efficiency``); weighted: the same
  with weighted shortest lengths inside the neighbour subgraph.
* ``path_length``: characteristic path length = mean shortest path length over ordered pairs that
  are connected (unreachable pairs are excluded, BCT ``charpath`` default); equal to networkx
  ``average_shortest_path_length`` on connected graphs. NaN when no pair is connected.
* ``modularity``: Q of the partition found by Newman's spectral method with fine-tuning
  (:mod:`hfsmri.graph.modularity`, deterministic).
* ``assortativity``: Pearson correlation of the degrees (weighted: strengths) at both ends of
  the edges (networkx ``degree_assortativity_coefficient``); NaN for regular graphs.
* Small-world: ``gamma = C / C_rand``, ``lambda = L / L_rand``, ``sigma = gamma / lambda`` with
  ``C_rand`` and ``L_rand`` the means over ``n_random`` degree-preserving randomisations
  (:mod:`hfsmri.graph.random_graphs`, seeded by ``random_state``; weights travel with edges).
* ``betweenness`` (nodal): Brandes shortest-path betweenness, normalised by (N-1)(N-2)/2 for
  undirected graphs (networkx ``betweenness_centrality`` default); weighted uses lengths 1/w.
* ``degree`` counts kept edges, ``strength`` sums their weights (the original positive
  connectivity values, in both binary and weighted mode).
* AUC: trapezoidal integral over sparsity (``numpy.trapezoid``), per global metric or per node
  and nodal metric (the integral of that node's metric curve).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hfsmri.errors import InputDataError
from hfsmri.graph import _kernels as K
from hfsmri.graph.modularity import spectral_modularity
from hfsmri.graph.random_graphs import random_reference
from hfsmri.graph.threshold import (_adjacency, check_connectivity, check_sparsities, edge_order,
                                    n_edges_for)

GLOBAL_COLUMNS = ("clustering", "global_efficiency", "local_efficiency", "path_length", "modularity",
                  "assortativity", "sigma", "gamma", "lambda", "n_edges", "density")
NODAL_COLUMNS = ("degree", "strength", "nodal_efficiency", "betweenness", "clustering", "local_efficiency")
DEFAULT_SPARSITIES = np.round(np.arange(0.05, 0.40 + 1e-9, 0.01), 2)


def _lengths(W: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        L = np.where(W > 0, 1.0 / np.where(W > 0, W, 1.0), np.inf)
    np.fill_diagonal(L, np.inf)
    return L


def _clustering_nodes(W: np.ndarray, weighted: bool) -> np.ndarray:
    A = (W > 0).astype(float)
    deg = A.sum(axis=1)
    if weighted:
        wmax = W.max()
        if wmax <= 0:
            return np.zeros(W.shape[0])
        X = np.cbrt(W / wmax)
    else:
        X = A
    tri = ((X @ X) * X).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(deg >= 2, tri / np.maximum(deg * (deg - 1), 1), 0.0)


def _distances(W: np.ndarray, weighted: bool, want_betweenness: bool):
    if weighted:
        return K.paths_weighted(_lengths(W), want_betweenness)
    return K.paths_binary((W > 0).astype(np.uint8), want_betweenness)


def _offdiag(D: np.ndarray) -> np.ndarray:
    n = D.shape[0]
    return D[~np.eye(n, dtype=bool)]


def _path_length(D: np.ndarray) -> float:
    d = _offdiag(D)
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else float("nan")


def _inverse(D: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        E = 1.0 / D
    np.fill_diagonal(E, 0.0)
    return E


def _assortativity(W: np.ndarray, weighted: bool) -> float:
    A = W > 0
    deg = W.sum(axis=1) if weighted else A.sum(axis=1).astype(float)
    i, j = np.nonzero(A)  # both directions
    if i.size == 0:
        return float("nan")
    x = deg[i]
    y = deg[j]
    xc = x - x.mean()
    yc = y - y.mean()
    den = np.sqrt((xc * xc).sum() * (yc * yc).sum())
    if den <= 1e-12 * max(1.0, float((x * x).sum())):
        return float("nan")
    return float((xc * yc).sum() / den)


def _one_graph(W: np.ndarray, weighted: bool):
    """Global and nodal measures of one thresholded graph ``W`` (0 = no edge)."""
    n = W.shape[0]
    A = W > 0
    deg = A.sum(axis=1).astype(float)
    D, bc = _distances(W, weighted, True)
    E = _inverse(D)
    clust = _clustering_nodes(W, weighted)
    eloc = K.local_efficiency_weighted(_lengths(W)) if weighted else K.local_efficiency_binary(A.astype(np.uint8))
    n_edges = int(A.sum() // 2)
    _, q = spectral_modularity(W if weighted else A.astype(float))
    glob = {
        "clustering": float(clust.mean()),
        "global_efficiency": float(E.sum() / (n * (n - 1))),
        "local_efficiency": float(eloc.mean()),
        "path_length": _path_length(D),
        "modularity": q,
        "assortativity": _assortativity(W, weighted),
        "n_edges": n_edges,
        "density": n_edges / (n * (n - 1) / 2),
    }
    nodal = {
        "degree": deg,
        "strength": None,  # filled by caller (original weights)
        "nodal_efficiency": E.sum(axis=1) / (n - 1),
        "betweenness": bc / ((n - 1) * (n - 2)),
        "clustering": clust,
        "local_efficiency": eloc,
    }
    return glob, nodal


def _random_c_l(W: np.ndarray, weighted: bool, n_random: int, seed_seq, n_swaps_per_edge: float):
    cs, ls = [], []
    for child in seed_seq.spawn(n_random):
        R = random_reference(W, n_swaps_per_edge=n_swaps_per_edge, random_state=np.random.default_rng(child))
        cs.append(_clustering_nodes(R, weighted).mean())
        if weighted:
            D, _ = _distances(R, weighted, False)
            ls.append(_path_length(D))
        else:
            count, sumd, _ = K.distance_sums_binary((R > 0).astype(np.uint8))
            tot = count.sum()
            ls.append(sumd.sum() / tot if tot else np.nan)
    return float(np.mean(cs)), float(np.nanmean(ls)) if np.any(np.isfinite(ls)) else float("nan")


def _ratio(a: float, b: float) -> float:
    if not (np.isfinite(a) and np.isfinite(b)) or b == 0:
        return float("nan")
    return float(a / b)


def graph_analysis(conn, *args, **kwargs):
    """Global (and nodal) graph metrics of one connectivity matrix over sparsities.

    See :func:`_graph_analysis` for parameters. BLAS is limited to one thread inside (the
    matrices are small; threading only adds overhead and contention).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return _graph_analysis(conn, *args, **kwargs)
    with threadpool_limits(limits=1, user_api="blas"):
        return _graph_analysis(conn, *args, **kwargs)


def _graph_analysis(conn, sparsities=DEFAULT_SPARSITIES, weighted: bool = False, n_random: int = 20,
                   random_state=0, n_swaps_per_edge: float = 10, node_names=None, nodal: bool = True):
    """Global (and nodal) graph metrics of one connectivity matrix over sparsities.

    Parameters
    ----------
    conn : (N, N) symmetric connectivity matrix (e.g. Fisher z); diagonal ignored.
    sparsities : fractions of the N(N-1)/2 possible edges to keep (default 0.05..0.40 step 0.01).
    weighted : binary (False) or weighted (True) graphs.
    n_random : number of degree-preserving random graphs per sparsity for sigma/gamma/lambda
        (0 skips the small-world columns, which are then NaN).
    random_state : int seed for the random graphs (results are reproducible).
    n_swaps_per_edge : rewiring attempts per edge for each random graph.
    node_names : optional list of N node labels (default "0".."N-1").
    nodal : also compute the nodal table (else the second return value is None).

    Returns
    -------
    (global_df, nodal_df) — see :func:`graph_metrics` and :func:`nodal_metrics`.
    """
    a = check_connectivity(conn)
    s = check_sparsities(sparsities)
    n = a.shape[0]
    names = [str(i) for i in range(n)] if node_names is None else [str(x) for x in node_names]
    if len(names) != n:
        raise InputDataError(f"{len(names)} node names for a {n}-node matrix", field="node_names")
    if n_random < 0:
        raise InputDataError(f"n_random must be >= 0, got {n_random}", field="n_random")
    rows, cols, w, npos = edge_order(a)
    seeds = np.random.SeedSequence(random_state if random_state is not None else 0).spawn(s.size)
    glob_rows, nodal_frames = [], []
    for si, sp in enumerate(s):
        k = min(n_edges_for(sp, n), int(npos))
        Ww = _adjacency(n, rows, cols, w, k, True)
        W = Ww if weighted else (Ww > 0).astype(float)
        g, nd = _one_graph(W, weighted)
        if n_random > 0 and k >= 2:
            c_r, l_r = _random_c_l(W, weighted, n_random, seeds[si], n_swaps_per_edge)
            gamma = _ratio(g["clustering"], c_r)
            lam = _ratio(g["path_length"], l_r)
            g.update(gamma=gamma, **{"lambda": lam}, sigma=_ratio(gamma, lam))
        else:
            g.update(gamma=np.nan, sigma=np.nan, **{"lambda": np.nan})
        glob_rows.append(g)
        if nodal:
            nd["strength"] = Ww.sum(axis=1)
            frame = pd.DataFrame({c: nd[c] for c in NODAL_COLUMNS})
            frame.insert(0, "node", names)
            frame.insert(0, "sparsity", sp)
            nodal_frames.append(frame)
    gdf = pd.DataFrame(glob_rows, index=pd.Index(s, name="sparsity"))[list(GLOBAL_COLUMNS)]
    ndf = pd.concat(nodal_frames).set_index(["sparsity", "node"]) if nodal else None
    return gdf, ndf


def graph_metrics(conn, sparsities=DEFAULT_SPARSITIES, weighted: bool = False, n_random: int = 20,
                  random_state=0, n_swaps_per_edge: float = 10) -> pd.DataFrame:
    """Global graph metrics per sparsity (contract).

    Returns a DataFrame indexed by ``sparsity`` with columns ``clustering, global_efficiency,
    local_efficiency, path_length, modularity, assortativity, sigma, gamma, lambda, n_edges,
    density`` (definitions in the module docstring). See :func:`graph_analysis` for parameters.
    """
    gdf, _ = graph_analysis(conn, sparsities, weighted, n_random, random_state, n_swaps_per_edge, nodal=False)
    return gdf


def nodal_metrics(conn, sparsities=DEFAULT_SPARSITIES, weighted: bool = False, node_names=None) -> pd.DataFrame:
    """Nodal metrics per sparsity and node.

    Returns a DataFrame with MultiIndex (``sparsity``, ``node``) and columns ``degree, strength,
    nodal_efficiency, betweenness, clustering, local_efficiency``.
    """
    _, ndf = graph_analysis(conn, sparsities, weighted, n_random=0, node_names=node_names, nodal=True)
    return ndf


def _trapz(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    if x.size < 2:
        return y[0] if y.ndim == 1 else y[0]
    return np.trapezoid(y, x, axis=0)


def graph_auc(table: pd.DataFrame, columns=None) -> pd.Series:
    """Area under each global metric's curve over sparsity (trapezoidal rule).

    ``table`` is a :func:`graph_metrics` result. NaN values make that metric's AUC NaN. With a
    single sparsity the value at that sparsity is returned.
    """
    cols = list(columns) if columns is not None else [c for c in table.columns if c not in ("n_edges", "density")]
    t = table.sort_index()
    x = t.index.to_numpy(dtype=float)
    return pd.Series(_trapz(t[cols].to_numpy(dtype=float), x), index=cols, name="auc")


def nodal_auc(table: pd.DataFrame, columns=None) -> pd.DataFrame:
    """Per node, the area under each *nodal* metric's curve over sparsity (trapezoidal rule).

    ``table`` is a :func:`nodal_metrics` result (MultiIndex sparsity, node). Returns a DataFrame
    indexed by node (in first-appearance order) with one column per nodal metric; each value is
    the integral of that node's own metric over sparsity.
    """
    cols = list(columns) if columns is not None else list(table.columns)
    sp = table.index.get_level_values("sparsity").to_numpy(dtype=float)
    nodes = pd.unique(table.index.get_level_values("node"))
    xs = np.unique(sp)
    cube = np.empty((xs.size, len(nodes), len(cols)))
    for i, x in enumerate(xs):
        sub = table.xs(x, level="sparsity")
        cube[i] = sub.loc[nodes, cols].to_numpy(dtype=float)
    out = _trapz(cube, xs)
    return pd.DataFrame(out, index=pd.Index(nodes, name="node"), columns=cols)
