"""Graph metrics vs networkx (reference) on random and known graphs."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from hfsmri.errors import InputDataError
from hfsmri.graph.metrics import (GLOBAL_COLUMNS, _one_graph, graph_analysis, graph_auc, graph_metrics,
                                  nodal_auc, nodal_metrics)
from hfsmri.graph.modularity import modularity_q, spectral_modularity
from hfsmri.graph.random_graphs import random_reference
from hfsmri.graph.threshold import n_edges_for, threshold_sparsity

TOL = 1e-9


def _corr(n, seed, t=80):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((t, n)) + 0.4 * rng.standard_normal((t, 1))
    return np.corrcoef(x.T)


def _nx_graph(W, weighted):
    G = nx.from_numpy_array(W if weighted else (W > 0).astype(float))
    for _, _, d in G.edges(data=True):
        d["dist"] = 1.0 / d["weight"]
    return G


def _nx_eff(G, nodes, weighted):
    """Global efficiency of G restricted to ``nodes`` (networkx paths; weighted by 1/w)."""
    H = G.subgraph(nodes)
    m = len(H)
    if m < 2:
        return 0.0
    sp = dict(nx.all_pairs_dijkstra_path_length(H, weight="dist")) if weighted else dict(
        nx.all_pairs_shortest_path_length(H))
    return sum(1.0 / d for u in sp for v, d in sp[u].items() if u != v) / (m * (m - 1))


# ---------------------------------------------------------------- thresholding
def test_threshold_keeps_k_strongest_positive_and_ties_in_upper_triangle_order():
    c = np.array([[9, 0.5, 0.5, -0.9],
                  [0.5, 9, 0.2, 0.5],
                  [0.5, 0.2, 9, 0.1],
                  [-0.9, 0.5, 0.1, 9]], float)
    # M = 6; s = 0.5 -> k = 3: ties at 0.5 are (0,1), (0,2), (1,3) in upper-triangle order
    A = threshold_sparsity(c, 0.5)
    assert {tuple(e) for e in np.argwhere(np.triu(A, 1))} == {(0, 1), (0, 2), (1, 3)}
    # s = 1: all positive edges, the negative one never
    A = threshold_sparsity(c, 1.0, weighted=True)
    assert A[0, 3] == 0 and np.count_nonzero(np.triu(A, 1)) == 5 and A[1, 2] == 0.2
    assert n_edges_for(0.05, 116) == 334  # 333.5 rounds half up


def test_threshold_matches_brute_force_sort():
    c = _corr(20, 1)
    for s in (0.1, 0.23, 0.4):
        A = threshold_sparsity(c, s, weighted=True)
        iu = np.triu_indices(20, 1)
        k = n_edges_for(s, 20)
        cut = np.sort(c[iu])[::-1][k - 1]
        np.testing.assert_array_equal(np.triu(A, 1) > 0, np.triu(c >= cut, 1))
        assert np.allclose(A, A.T) and np.all(np.diag(A) == 0)


# ---------------------------------------------------------------- vs networkx on random graphs
@pytest.mark.parametrize("seed,sparsity", [(0, 0.12), (1, 0.25), (2, 0.4)])
@pytest.mark.parametrize("weighted", [False, True])
def test_metrics_match_networkx_random(seed, sparsity, weighted):
    n = 24
    W = threshold_sparsity(_corr(n, seed), sparsity, weighted=True)
    if not weighted:
        W = (W > 0).astype(float)
    G = _nx_graph(W, weighted)
    glob, nod = _one_graph(W, weighted)
    wkey = "weight" if weighted else None
    # clustering
    cl = nx.clustering(G, weight=wkey)
    np.testing.assert_allclose(nod["clustering"], [cl[i] for i in range(n)], atol=TOL, rtol=0)
    assert abs(glob["clustering"] - nx.average_clustering(G, weight=wkey)) < TOL
    # paths, efficiency
    sp = dict(nx.all_pairs_dijkstra_path_length(G, weight="dist")) if weighted else dict(
        nx.all_pairs_shortest_path_length(G))
    d = [dd for u in sp for v, dd in sp[u].items() if u != v]
    assert abs(glob["path_length"] - np.mean(d)) < TOL
    assert abs(glob["global_efficiency"] - _nx_eff(G, G.nodes, weighted)) < TOL
    nodal_eff = [sum(1 / dd for v, dd in sp[i].items() if v != i) / (n - 1) for i in range(n)]
    np.testing.assert_allclose(nod["nodal_efficiency"], nodal_eff, atol=TOL, rtol=0)
    if not weighted:
        assert abs(glob["global_efficiency"] - nx.global_efficiency(G)) < TOL
        assert abs(glob["local_efficiency"] - nx.local_efficiency(G)) < TOL
    le = [_nx_eff(G, list(G[i]), weighted) for i in range(n)]
    np.testing.assert_allclose(nod["local_efficiency"], le, atol=TOL, rtol=0)
    # betweenness (normalised, networkx default)
    bc = nx.betweenness_centrality(G, weight="dist" if weighted else None)
    np.testing.assert_allclose(nod["betweenness"], [bc[i] for i in range(n)], atol=TOL, rtol=0)
    # assortativity, degree
    assert abs(glob["assortativity"] - nx.degree_assortativity_coefficient(G, weight=wkey)) < TOL
    np.testing.assert_array_equal(nod["degree"], [G.degree(i) for i in range(n)])
    # modularity of our partition, scored by networkx
    labels, q = spectral_modularity(W)
    parts = [set(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    assert abs(q - nx.community.modularity(G, parts, weight="weight")) < TOL
    assert abs(glob["modularity"] - q) < TOL


def test_path_length_on_disconnected_graph_excludes_unreachable_pairs():
    G = nx.disjoint_union(nx.path_graph(4), nx.cycle_graph(5))
    W = nx.to_numpy_array(G)
    glob, nod = _one_graph(W, False)
    d = [dd for u, row in nx.all_pairs_shortest_path_length(G) for v, dd in row.items() if u != v]
    assert abs(glob["path_length"] - np.mean(d)) < TOL
    assert abs(glob["global_efficiency"] - nx.global_efficiency(G)) < TOL


# ---------------------------------------------------------------- known graphs (closed form)
def test_complete_graph():
    n = 12
    glob, nod = _one_graph(np.ones((n, n)) - np.eye(n), False)
    assert glob["clustering"] == 1 and glob["path_length"] == 1 and glob["global_efficiency"] == 1
    assert glob["local_efficiency"] == 1 and np.all(nod["betweenness"] == 0)
    assert np.isnan(glob["assortativity"])  # regular graph: undefined (networkx gives NaN too)
    assert abs(glob["modularity"]) < 1e-12  # no split improves Q


def test_ring_closed_forms():
    n = 20  # cycle C_n, n even: mean distance n^2 / (4 (n-1)); betweenness known
    W = nx.to_numpy_array(nx.cycle_graph(n))
    glob, nod = _one_graph(W, False)
    assert glob["clustering"] == 0 and glob["local_efficiency"] == 0
    assert abs(glob["path_length"] - n * n / (4 * (n - 1))) < TOL
    # each node lies on the shortest paths of sum_{d} ... : compare with networkx exactly
    bc = nx.betweenness_centrality(nx.cycle_graph(n))
    np.testing.assert_allclose(nod["betweenness"], [bc[i] for i in range(n)], atol=TOL)


def test_ring_lattice_clustering_closed_form():
    n, k = 30, 6  # Watts-Strogatz ring lattice: C = 3(k-2) / (4(k-1))
    W = nx.to_numpy_array(nx.watts_strogatz_graph(n, k, 0.0))
    glob, _ = _one_graph(W, False)
    assert abs(glob["clustering"] - 3 * (k - 2) / (4 * (k - 1))) < TOL


def test_grid_lattice_vs_networkx():
    G = nx.convert_node_labels_to_integers(nx.grid_2d_graph(5, 6))
    W = nx.to_numpy_array(G)
    glob, nod = _one_graph(W, False)
    assert abs(glob["path_length"] - nx.average_shortest_path_length(G)) < TOL
    assert glob["clustering"] == 0
    assert abs(glob["assortativity"] - nx.degree_assortativity_coefficient(G)) < TOL
    bc = nx.betweenness_centrality(G)
    np.testing.assert_allclose(nod["betweenness"], [bc[i] for i in range(len(G))], atol=TOL)


# ---------------------------------------------------------------- modularity
def test_planted_communities_recovered():
    G = nx.planted_partition_graph(4, 10, 0.9, 0.02, seed=3)
    W = nx.to_numpy_array(G)
    labels, q = spectral_modularity(W)
    truth = np.repeat(np.arange(4), 10)
    # same partition up to renaming
    assert len(set(zip(labels, truth))) == 4 and len(np.unique(labels)) == 4
    assert abs(q - modularity_q(W, truth)) < TOL
    louvain = nx.community.louvain_communities(G, seed=0)
    assert q >= nx.community.modularity(G, louvain) - 1e-9


# ---------------------------------------------------------------- random reference / small world
def test_random_reference_preserves_degrees_and_weights_and_is_seeded():
    W = threshold_sparsity(_corr(30, 4), 0.2, weighted=True)
    R1 = random_reference(W, random_state=7)
    R2 = random_reference(W, random_state=7)
    np.testing.assert_array_equal(R1, R2)
    np.testing.assert_array_equal((R1 > 0).sum(1), (W > 0).sum(1))
    np.testing.assert_allclose(np.sort(R1[np.triu_indices(30, 1)]), np.sort(W[np.triu_indices(30, 1)]))
    assert np.allclose(R1, R1.T) and np.all(np.diag(R1) == 0)
    changed = np.mean((R1 > 0) != (W > 0))
    assert changed > 0.1  # really rewired


def test_small_world_watts_strogatz_vs_random():
    n = 60
    ws = nx.to_numpy_array(nx.connected_watts_strogatz_graph(n, 8, 0.05, seed=1))
    sp = [ws.sum() / 2 / (n * (n - 1) / 2)]
    g = graph_metrics(ws, sp, n_random=5, random_state=0)
    assert g["sigma"].iloc[0] > 2 and g["gamma"].iloc[0] > 3
    er = nx.to_numpy_array(nx.gnm_random_graph(n, int(ws.sum() / 2), seed=2))
    g2 = graph_metrics(er, [er.sum() / 2 / (n * (n - 1) / 2)], n_random=5, random_state=0)
    assert 0.6 < g2["gamma"].iloc[0] < 1.5 and 0.9 < g2["lambda"].iloc[0] < 1.1
    # gamma is C over the mean clustering of the seeded random graphs: reproduce by hand
    c_rand = []
    for child in np.random.SeedSequence(0).spawn(1)[0].spawn(5):
        R = random_reference(ws, random_state=np.random.default_rng(child))
        c_rand.append(nx.average_clustering(nx.from_numpy_array(R)))
    assert abs(g["gamma"].iloc[0] - nx.average_clustering(nx.from_numpy_array(ws)) / np.mean(c_rand)) < TOL


# ---------------------------------------------------------------- tables and AUC
def test_tables_shape_and_auc_is_integral_of_own_curve():
    c = _corr(16, 5)
    sp = [0.1, 0.2, 0.3, 0.4]
    g, nd = graph_analysis(c, sp, weighted=False, n_random=2, random_state=1, node_names=list("abcdefghijklmnop"))
    assert g.index.name == "sparsity" and list(g.index) == sp
    assert set(GLOBAL_COLUMNS) <= set(g.columns)
    assert nd.index.names == ["sparsity", "node"] and len(nd) == 4 * 16
    auc = graph_auc(g)
    assert abs(auc["global_efficiency"] - np.trapezoid(g["global_efficiency"], sp)) < TOL
    nauc = nodal_auc(nd)
    for node in ("a", "h"):
        curve = nd.xs(node, level="node")["degree"].to_numpy()
        assert abs(nauc.loc[node, "degree"] - np.trapezoid(curve, sp)) < TOL
    # nodal AUC is per node, not the global curve's AUC (known bug elsewhere)
    assert nauc["degree"].std() > 0
    # nodal_metrics() and graph_metrics() agree with graph_analysis()
    pd.testing.assert_frame_equal(nodal_metrics(c, sp, node_names=list("abcdefghijklmnop")), nd)
    pd.testing.assert_frame_equal(graph_metrics(c, sp, n_random=2, random_state=1), g)


def test_strength_is_sum_of_kept_weights():
    c = _corr(15, 8)
    nd = nodal_metrics(c, [0.3])
    W = threshold_sparsity(c, 0.3, weighted=True)
    np.testing.assert_allclose(nd["strength"].to_numpy(), W.sum(1), atol=TOL)


def test_bad_input_raises_user_errors():
    with pytest.raises(InputDataError, match="square"):
        graph_metrics(np.ones((3, 4)), [0.1])
    c = _corr(6, 0)
    c[0, 1] = np.nan
    with pytest.raises(InputDataError, match="NaN"):
        graph_metrics(c, [0.1])
    with pytest.raises(InputDataError, match="sparsit"):
        graph_metrics(_corr(6, 0), [0.0, 0.5])


def test_against_bctpy_if_installed():
    bct = pytest.importorskip("bct")
    c = _corr(30, 9)
    W = threshold_sparsity(c, 0.25, weighted=True)
    A = (W > 0).astype(float)
    glob, nod = _one_graph(A, False)
    # (bctpy 0.6.1's modularity_und fails with numpy 2; modularity is checked against networkx above)
    assert abs(glob["global_efficiency"] - bct.efficiency_bin(A)) < TOL
    np.testing.assert_allclose(nod["clustering"], bct.clustering_coef_bu(A), atol=TOL)
    np.testing.assert_allclose(nod["betweenness"] * (29 * 28), bct.betweenness_bin(A), atol=1e-6)
    np.testing.assert_allclose(nod["local_efficiency"], bct.efficiency_bin(A, local=True), atol=TOL)
    assert abs(glob["assortativity"] - bct.assortativity_bin(A, flag=0)) < TOL
    lam = bct.charpath(bct.distance_bin(A), include_infinite=False)[0]
    assert abs(glob["path_length"] - lam) < TOL


def test_weighted_graph_metrics_table_matches_networkx():
    c = _corr(20, 11)
    g = graph_metrics(c, [0.2, 0.35], weighted=True, n_random=3, random_state=2)
    for s in (0.2, 0.35):
        W = threshold_sparsity(c, s, weighted=True)
        G = _nx_graph(W, True)
        assert abs(g.loc[s, "clustering"] - nx.average_clustering(G, weight="weight")) < TOL
        assert abs(g.loc[s, "assortativity"] - nx.degree_assortativity_coefficient(G, weight="weight")) < TOL
    assert np.all(np.isfinite(g[["gamma", "lambda", "sigma"]].to_numpy()))
    # reproducible with the same seed, different with another
    pd.testing.assert_frame_equal(g, graph_metrics(c, [0.2, 0.35], weighted=True, n_random=3, random_state=2))
    assert not np.allclose(g["gamma"], graph_metrics(c, [0.2, 0.35], weighted=True, n_random=3, random_state=3)["gamma"])
