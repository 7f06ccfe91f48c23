"""Benchmark: hfsmri.graph (numba/numpy) vs networkx on the same connectomes and the same job.

Job per subject: threshold a 116-node Fisher-z matrix at 36 sparsities (0.05..0.40), and at each
sparsity compute the global metrics (clustering, global/local efficiency, path length,
modularity, assortativity, small-world gamma/lambda/sigma against ``n_random`` degree-preserving
random graphs) and the nodal metrics (degree, strength, nodal efficiency, betweenness,
clustering, local efficiency).

networkx reference: the same thresholded graphs; ``average_clustering``, ``global_efficiency``,
``local_efficiency``, ``all_pairs_shortest_path_length``, ``betweenness_centrality``,
``degree_assortativity_coefficient``, Louvain modularity (networkx has no spectral method; the
algorithms differ so only that value is not compared), and for each random graph
``double_edge_swap`` with the same number of swap attempts + clustering + path length.
networkx is run on ``--nx-subjects`` subjects only and its time extrapolated linearly to all
subjects (it is too slow to run on all 50 here). Timings on a shared machine are noisy.

Usage: python benchmarks/bench_graph.py [--quick] [--subjects 50] [--nodes 116] [--n-random 10]
"""
from __future__ import annotations

import argparse
import time

import networkx as nx
import numpy as np

from hfsmri.graph.metrics import DEFAULT_SPARSITIES, graph_analysis
from hfsmri.graph.threshold import threshold_sparsity


def make_connectomes(n_subjects, n_nodes, seed=0, n_t=200):
    rng = np.random.default_rng(seed)
    mods = rng.integers(0, 6, n_nodes)
    out = []
    for _ in range(n_subjects):
        f = rng.standard_normal((n_t, 6))
        x = f[:, mods] * 0.8 + rng.standard_normal((n_t, n_nodes)) + 0.3 * rng.standard_normal((n_t, 1))
        r = np.corrcoef(x.T)
        np.fill_diagonal(r, 0)
        out.append(np.arctanh(np.clip(r, -0.999999, 0.999999)))
    return out


def nx_subject(conn, sparsities, n_random, seed, swaps_per_edge=10):
    rows = []
    rng = np.random.default_rng(seed)
    for s in sparsities:
        A = threshold_sparsity(conn, s)
        G = nx.from_numpy_array(A)
        n = len(G)
        sp = dict(nx.all_pairs_shortest_path_length(G))
        d = [v for u in sp for w, v in sp[u].items() if u != w]
        C = nx.average_clustering(G)
        L = float(np.mean(d))
        row = {
            "clustering": C,
            "global_efficiency": nx.global_efficiency(G),
            "local_efficiency": nx.local_efficiency(G),
            "path_length": L,
            "assortativity": nx.degree_assortativity_coefficient(G),
            "modularity": nx.community.modularity(G, nx.community.louvain_communities(G, seed=0)),
        }
        bc = nx.betweenness_centrality(G)
        row["betweenness_mean"] = float(np.mean(list(bc.values())))
        row["nodal_eff_mean"] = float(np.mean([sum(1 / v for w, v in sp[u].items() if w != u) / (n - 1) for u in sp]))
        cr, lr = [], []
        for _ in range(n_random):
            R = G.copy()
            e = R.number_of_edges()
            nx.double_edge_swap(R, nswap=swaps_per_edge * e, max_tries=100 * swaps_per_edge * e,
                                seed=int(rng.integers(2**31)))
            cr.append(nx.average_clustering(R))
            spr = dict(nx.all_pairs_shortest_path_length(R))
            lr.append(np.mean([v for u in spr for w, v in spr[u].items() if u != w]))
        row["gamma"] = C / np.mean(cr)
        row["lambda"] = L / np.mean(lr)
        rows.append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 subjects, 6 sparsities, n_random 2")
    ap.add_argument("--subjects", type=int, default=50)
    ap.add_argument("--nodes", type=int, default=116)
    ap.add_argument("--n-random", type=int, default=10)
    ap.add_argument("--nx-subjects", type=int, default=1)
    args = ap.parse_args(argv)
    sparsities = DEFAULT_SPARSITIES
    if args.quick:
        args.subjects, args.n_random = 5, 2
        sparsities = DEFAULT_SPARSITIES[::7]
    conns = make_connectomes(args.subjects, args.nodes)
    print(f"{args.subjects} subjects x {args.nodes} nodes x {len(sparsities)} sparsities, "
          f"n_random={args.n_random} (binary graphs, global + nodal metrics)")

    graph_analysis(conns[0][:10, :10], [0.3], n_random=1)  # numba warm-up (compilation is cached)
    t0 = time.perf_counter()
    ours = [graph_analysis(c, sparsities, weighted=False, n_random=args.n_random, random_state=i)
            for i, c in enumerate(conns)]
    t_ours = time.perf_counter() - t0
    print(f"hfsmri   : {t_ours:8.2f} s for {args.subjects} subjects ({t_ours / args.subjects:.3f} s/subject)")

    k = min(args.nx_subjects, args.subjects)
    t0 = time.perf_counter()
    ref = [nx_subject(conns[i], sparsities, args.n_random, seed=i) for i in range(k)]
    t_nx = (time.perf_counter() - t0) / k
    print(f"networkx : {t_nx:8.2f} s/subject (measured on {k}), extrapolated {t_nx * args.subjects:.1f} s")
    print(f"speed-up : {t_nx * args.subjects / t_ours:.1f}x  (goal >= 20x)")

    # agreement on the subjects networkx ran
    worst = {}
    for i in range(k):
        g, nd = ours[i]
        for j, s in enumerate(sparsities):
            r = ref[i][j]
            for col in ("clustering", "global_efficiency", "local_efficiency", "path_length", "assortativity"):
                worst[col] = max(worst.get(col, 0.0), abs(g[col].iloc[j] - r[col]))
            worst["betweenness (mean)"] = max(worst.get("betweenness (mean)", 0.0),
                                              abs(nd.xs(s, level="sparsity")["betweenness"].mean() - r["betweenness_mean"]))
            worst["nodal efficiency (mean)"] = max(worst.get("nodal efficiency (mean)", 0.0),
                                                   abs(nd.xs(s, level="sparsity")["nodal_efficiency"].mean() - r["nodal_eff_mean"]))
    print("max |ours - networkx| over sparsities:")
    for col, v in worst.items():
        print(f"  {col:24s} {v:.2e}")
    g = ours[0][0]
    mq = np.array([r["modularity"] for r in ref[0]])
    print(f"modularity (spectral, ours) mean {g['modularity'].mean():.4f} vs Louvain (networkx) {mq.mean():.4f}")
    gam = np.array([r["gamma"] for r in ref[0]])
    lam = np.array([r["lambda"] for r in ref[0]])
    print(f"gamma mean ours {g['gamma'].mean():.3f} vs networkx-swaps {gam.mean():.3f}; "
          f"lambda {g['lambda'].mean():.3f} vs {lam.mean():.3f} (different random graphs)")


if __name__ == "__main__":
    main()
