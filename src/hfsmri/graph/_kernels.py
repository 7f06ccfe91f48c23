"""Numba kernels for graph metrics on dense undirected graphs (internal).

Inputs are dense ``N x N`` arrays: ``A`` (uint8 0/1 adjacency) for binary graphs, ``L`` (float64
edge lengths, ``inf`` where there is no edge) for weighted graphs. Lengths are ``1 / weight``.
All functions are deterministic and follow networkx's definitions (see ``metrics.py``).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _csr_from_adj(A):
    n = A.shape[0]
    ptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        c = 0
        for j in range(n):
            if A[i, j] != 0 and i != j:
                c += 1
        ptr[i + 1] = ptr[i] + c
    idx = np.empty(ptr[n], dtype=np.int64)
    for i in range(n):
        p = ptr[i]
        for j in range(n):
            if A[i, j] != 0 and i != j:
                idx[p] = j
                p += 1
    return ptr, idx


@njit(cache=True)
def paths_binary(A, want_betweenness):
    """All-pairs hop distances (inf if unreachable) and Brandes betweenness (sum over ordered
    source/target pairs, unnormalised)."""
    n = A.shape[0]
    ptr, idx = _csr_from_adj(A)
    D = np.full((n, n), np.inf)
    bc = np.zeros(n)
    dist = np.empty(n, dtype=np.int64)
    sigma = np.empty(n)
    delta = np.empty(n)
    queue = np.empty(n, dtype=np.int64)
    for s in range(n):
        for i in range(n):
            dist[i] = -1
            sigma[i] = 0.0
            delta[i] = 0.0
        dist[s] = 0
        sigma[s] = 1.0
        head = 0
        tail = 1
        queue[0] = s
        while head < tail:
            v = queue[head]
            head += 1
            dv = dist[v]
            for p in range(ptr[v], ptr[v + 1]):
                w = idx[p]
                if dist[w] < 0:
                    dist[w] = dv + 1
                    queue[tail] = w
                    tail += 1
                if dist[w] == dv + 1:
                    sigma[w] += sigma[v]
        for t in range(tail):
            v = queue[t]
            D[s, v] = dist[v]
        if want_betweenness:
            for t in range(tail - 1, -1, -1):
                w = queue[t]
                coeff = (1.0 + delta[w]) / sigma[w]
                for p in range(ptr[w], ptr[w + 1]):
                    v = idx[p]
                    if dist[v] == dist[w] - 1:
                        delta[v] += sigma[v] * coeff
                if w != s:
                    bc[w] += delta[w]
    return D, bc


@njit(cache=True)
def paths_weighted(L, want_betweenness):
    """All-pairs shortest path lengths for edge lengths ``L`` (Dijkstra, dense selection, sparse
    relaxation) and Brandes betweenness (ordered pairs, unnormalised; equal-length paths by exact
    float equality, as networkx)."""
    n = L.shape[0]
    ptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        c = 0
        for j in range(n):
            if i != j and np.isfinite(L[i, j]):
                c += 1
        ptr[i + 1] = ptr[i] + c
    idx = np.empty(ptr[n], dtype=np.int64)
    lens = np.empty(ptr[n])
    for i in range(n):
        p = ptr[i]
        for j in range(n):
            if i != j and np.isfinite(L[i, j]):
                idx[p] = j
                lens[p] = L[i, j]
                p += 1
    D = np.full((n, n), np.inf)
    bc = np.zeros(n)
    dist = np.empty(n)
    sigma = np.empty(n)
    delta = np.empty(n)
    done = np.empty(n, dtype=np.bool_)
    order = np.empty(n, dtype=np.int64)
    for s in range(n):
        for i in range(n):
            dist[i] = np.inf
            sigma[i] = 0.0
            delta[i] = 0.0
            done[i] = False
        dist[s] = 0.0
        sigma[s] = 1.0
        cnt = 0
        for _ in range(n):
            v = -1
            best = np.inf
            for i in range(n):
                if dist[i] < best and not done[i]:
                    best = dist[i]
                    v = i
            if v < 0:
                break
            done[v] = True
            order[cnt] = v
            cnt += 1
            sv = sigma[v]
            for p in range(ptr[v], ptr[v + 1]):
                w = idx[p]
                if done[w]:
                    continue
                alt = best + lens[p]
                if alt < dist[w]:
                    dist[w] = alt
                    sigma[w] = sv
                elif alt == dist[w]:
                    sigma[w] += sv
        for t in range(cnt):
            v = order[t]
            D[s, v] = dist[v]
        if want_betweenness:
            for t in range(cnt - 1, -1, -1):
                w = order[t]
                coeff = (1.0 + delta[w]) / sigma[w]
                dw = dist[w]
                for p in range(ptr[w], ptr[w + 1]):
                    v = idx[p]
                    if dist[v] + lens[p] == dw:
                        delta[v] += sigma[v] * coeff
                if w != s:
                    bc[w] += delta[w]
    return D, bc


_U1 = np.uint64(1)
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@njit(cache=True)
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return np.int64((x * _H01) >> np.uint64(56))


@njit(cache=True)
def _bitset_adjacency(A, nodes, m, words):
    adj = np.zeros((m, words), dtype=np.uint64)
    for a in range(m):
        ra = nodes[a]
        for b in range(m):
            if a != b and A[ra, nodes[b]] != 0:
                adj[a, b >> 6] |= _U1 << np.uint64(b & 63)
    return adj


@njit(cache=True)
def _bfs_sums(adj, m, words, count, sumd, suminv):
    """Breadth-first search from every node at once on a bitset adjacency: per source the
    number of reachable nodes, the sum of hop distances and the sum of inverse distances."""
    visited = np.empty(words, dtype=np.uint64)
    frontier = np.empty(words, dtype=np.uint64)
    new = np.empty(words, dtype=np.uint64)
    for s in range(m):
        for w in range(words):
            visited[w] = 0
            frontier[w] = 0
        bit = _U1 << np.uint64(s & 63)
        visited[s >> 6] = bit
        frontier[s >> 6] = bit
        d = 0
        cnt = 0
        sd = 0.0
        si = 0.0
        while True:
            d += 1
            for w in range(words):
                new[w] = 0
            for v in range(m):
                if (frontier[v >> 6] >> np.uint64(v & 63)) & _U1:
                    for w in range(words):
                        new[w] |= adj[v, w]
            c = 0
            for w in range(words):
                nw = new[w] & ~visited[w]
                new[w] = nw
                visited[w] |= nw
                c += _popcount(nw)
            if c == 0:
                break
            cnt += c
            sd += c * d
            si += c / d
            for w in range(words):
                frontier[w] = new[w]
        count[s] = cnt
        sumd[s] = sd
        suminv[s] = si


@njit(cache=True)
def distance_sums_binary(A):
    """Per node: number of reachable other nodes, sum of hop distances to them and sum of
    inverse hop distances (bit-parallel BFS)."""
    n = A.shape[0]
    nodes = np.arange(n)
    words = (n + 63) // 64
    adj = _bitset_adjacency(A, nodes, n, words)
    count = np.zeros(n, dtype=np.int64)
    sumd = np.zeros(n)
    suminv = np.zeros(n)
    _bfs_sums(adj, n, words, count, sumd, suminv)
    return count, sumd, suminv


@njit(cache=True)
def local_efficiency_binary(A):
    """Per-node local efficiency: global efficiency of the subgraph of the node's neighbours
    (Latora & Marchiori 2001; networkx ``local_efficiency`` before averaging)."""
    n = A.shape[0]
    out = np.zeros(n)
    nb = np.empty(n, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    sumd = np.zeros(n)
    suminv = np.zeros(n)
    for i in range(n):
        m = 0
        for j in range(n):
            if A[i, j] != 0 and j != i:
                nb[m] = j
                m += 1
        if m >= 2:
            words = (m + 63) // 64
            adj = _bitset_adjacency(A, nb, m, words)
            _bfs_sums(adj, m, words, count, sumd, suminv)
            tot = 0.0
            for a in range(m):
                tot += suminv[a]
            out[i] = tot / (m * (m - 1))
    return out


@njit(cache=True)
def _sub_efficiency_weighted(L, nb, m, sub):
    # Floyd-Warshall on the subgraph induced by nb[:m]; returns its global efficiency
    for a in range(m):
        for b in range(m):
            sub[a, b] = L[nb[a], nb[b]] if a != b else 0.0
    for k in range(m):
        for a in range(m):
            dak = sub[a, k]
            if dak == np.inf:
                continue
            for b in range(m):
                alt = dak + sub[k, b]
                if alt < sub[a, b]:
                    sub[a, b] = alt
    tot = 0.0
    for a in range(m):
        for b in range(m):
            if a != b:
                tot += 1.0 / sub[a, b]
    return tot / (m * (m - 1))


@njit(cache=True)
def local_efficiency_weighted(L):
    """Per-node weighted local efficiency: weighted global efficiency (mean 1/shortest length)
    of the subgraph induced by the node's neighbours."""
    n = L.shape[0]
    out = np.zeros(n)
    nb = np.empty(n, dtype=np.int64)
    sub = np.empty((n, n))
    for i in range(n):
        m = 0
        for j in range(n):
            if j != i and np.isfinite(L[i, j]):
                nb[m] = j
                m += 1
        if m >= 2:
            out[i] = _sub_efficiency_weighted(L, nb, m, sub)
    return out


@njit(cache=True)
def rewire(W, eu, ev, pick1, pick2, flip):
    """Maslov–Sneppen double-edge swaps in place on symmetric weight matrix ``W`` (0 = no edge)
    with edge list ``(eu, ev)``. Attempt ``t`` swaps edges ``pick1[t]`` and ``pick2[t]``:
    (a,b),(c,d) -> (a,d),(c,b) (with c,d exchanged when ``flip[t]``); weights travel with the
    edges. Swaps creating self-loops or multi-edges are rejected. Returns the number done."""
    done = 0
    for t in range(pick1.shape[0]):
        e1 = pick1[t]
        e2 = pick2[t]
        if e1 == e2:
            continue
        a = eu[e1]
        b = ev[e1]
        c = eu[e2]
        d = ev[e2]
        if flip[t]:
            c, d = d, c
        if a == c or a == d or b == c or b == d:
            continue
        if W[a, d] != 0 or W[c, b] != 0:
            continue
        wab = W[a, b]
        wcd = W[c, d]
        W[a, b] = 0.0
        W[b, a] = 0.0
        W[c, d] = 0.0
        W[d, c] = 0.0
        W[a, d] = wab
        W[d, a] = wab
        W[c, b] = wcd
        W[b, c] = wcd
        eu[e1] = a
        ev[e1] = d
        eu[e2] = c
        ev[e2] = b
        done += 1
    return done


@njit(cache=True)
def modularity_finetune(Bg, S, q):
    """Kernighan–Lin style refinement of a two-way split (Newman 2006, as BCT
    ``modularity_und``): flip each node once, greedily, keep the best split seen."""
    n = S.shape[0]
    B = Bg.copy()
    for i in range(n):
        B[i, i] = 0.0
    Sit = S.copy()
    Sbest = S.copy()
    BS = B @ Sit
    free = np.ones(n, dtype=np.bool_)
    qmax = q
    for _ in range(n):
        best = -np.inf
        imax = -1
        for i in range(n):
            if free[i]:
                val = qmax - 4.0 * Sit[i] * BS[i]
                if val > best:
                    best = val
                    imax = i
        qmax = best
        Sit[imax] = -Sit[imax]
        free[imax] = False
        f = 2.0 * Sit[imax]
        for j in range(n):
            BS[j] += f * B[j, imax]
        if qmax > q:
            q = qmax
            Sbest[:] = Sit
    return Sbest, q
