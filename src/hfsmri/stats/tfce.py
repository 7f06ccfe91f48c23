"""Threshold-free cluster enhancement (TFCE), exact and fast.

Definition (Smith & Nichols 2009, with the conventions of FSL randomise and nilearn)::

    TFCE(v) = sum_{k : h_k <= stat(v)} extent_k(v) ** E * h_k ** H

where ``h_k = k * dh`` (k = 1, 2, ... while ``h_k <= max``) and ``extent_k(v)`` is the number of
voxels (not mm³) of the connected component of ``{u : stat(u) >= h_k}`` that contains ``v``.
There is **no** ``dh`` factor (as fslmaths / randomise / nilearn). With ``dh=None`` the step is
``max(stat) / 100`` and the last threshold is exactly ``max(stat)`` (``np.linspace(0, max, 101)[1:]``,
nilearn's grid, so our maps equal nilearn's ``calculate_tfce`` to rounding). The function scores one
tail: the negative tail is ``tfce(-stat)``.

Defaults are randomise ``-T`` (H=2, E=0.5, 6-connectivity); for skeletonised data use randomise's
``--T2`` setting (H=2, E=1, 26-connectivity), see :data:`SETTINGS`.

Algorithm: voxels are bucketed by the number of thresholds they pass (one counting sort), then
added from the highest level down into a union-find forest (union by size, path halving). Each
root carries a lazily flushed "potential": when a component changes at level ``k`` it is first
credited ``size**E * sum_{j=k+1}^{top-1} h_j**H`` for the levels it spent unchanged (prefix sums of
``h**H``); merged roots store their potential relative to the new root, so a voxel's TFCE is the sum
of potentials on its path to the root. Cost O(V·C·α) per map, independent of the number of
thresholds (nilearn labels the full grid once per threshold).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

SETTINGS = {
    "3d": {"h": 2.0, "e": 0.5, "connectivity": 6},        # randomise -T
    "skeleton": {"h": 2.0, "e": 1.0, "connectivity": 26},  # randomise --T2
}

_N_STEPS_AUTO = 100
MAX_THRESHOLDS = 2_000_000


# ----------------------------------------------------------------------------- neighbourhoods
def _offsets(connectivity: int) -> np.ndarray:
    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity!r}")
    off = []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                n = abs(dx) + abs(dy) + abs(dz)
                if n == 0:
                    continue
                if (connectivity == 6 and n > 1) or (connectivity == 18 and n > 2):
                    continue
                off.append((dx, dy, dz))
    return np.array(off, dtype=np.int64)


def mask_neighbors(mask3d: np.ndarray, connectivity: int = 6) -> np.ndarray:
    """Neighbour table of the in-mask voxels.

    Parameters
    ----------
    mask3d : bool array (X, Y, Z)
    connectivity : 6 (faces), 18 (faces+edges) or 26 (faces+edges+corners)

    Returns
    -------
    int32 array (V, C): for in-mask voxel ``i`` (C order of ``np.flatnonzero(mask3d)``), the
    in-mask indices of its C neighbours, ``-1`` where the neighbour is outside the mask / grid.
    """
    mask3d = np.asarray(mask3d, dtype=bool)
    if mask3d.ndim != 3:
        raise ValueError(f"mask must be 3D, got shape {mask3d.shape}")
    index = np.full(tuple(s + 2 for s in mask3d.shape), -1, dtype=np.int64)
    n = int(mask3d.sum())
    index[1:-1, 1:-1, 1:-1][mask3d] = np.arange(n)
    ijk = np.argwhere(mask3d) + 1
    off = _offsets(connectivity)
    nbr = np.empty((n, len(off)), dtype=np.int32)
    for c, (dx, dy, dz) in enumerate(off):
        nbr[:, c] = index[ijk[:, 0] + dx, ijk[:, 1] + dy, ijk[:, 2] + dz]
    return nbr


# ----------------------------------------------------------------------------- thresholds
def thresholds(max_value: float, dh: float | None = None, snap_last: bool | None = None) -> np.ndarray:
    """TFCE thresholds ``dh, 2·dh, ... <= max_value`` (empty when ``max_value <= 0``).

    With ``dh=None``: ``dh = max_value/100`` and the 100th threshold is exactly ``max_value``
    (nilearn's ``np.linspace(0, max, 101)[1:]``).
    """
    max_value = float(max_value)
    if not np.isfinite(max_value) or max_value <= 0:
        return np.empty(0, dtype=np.float64)
    if dh is None:
        thr = np.arange(1, _N_STEPS_AUTO + 1, dtype=np.float64) * (max_value / _N_STEPS_AUTO)
        thr[-1] = max_value
        return thr
    dh = float(dh)
    if not dh > 0:
        raise ValueError(f"TFCE step dh must be > 0, got {dh}")
    k = int(np.floor(max_value / dh))
    if k > MAX_THRESHOLDS:
        raise ValueError(f"TFCE step dh={dh:g} gives {k} thresholds up to {max_value:g}; use a larger dh")
    while (k + 1) * dh <= max_value:
        k += 1
    while k > 0 and k * dh > max_value:
        k -= 1
    return np.arange(1, k + 1, dtype=np.float64) * dh


@njit(cache=True)
def _thresholds_nb(max_value, dh, snap):
    """numba twin of :func:`thresholds` (dh > 0 given; ``snap``: last threshold = max, 100 steps)."""
    if not (max_value > 0.0):
        return np.empty(0, np.float64)
    if snap:
        out = np.empty(_N_STEPS_AUTO, np.float64)
        step = max_value / _N_STEPS_AUTO
        for i in range(_N_STEPS_AUTO):
            out[i] = (i + 1) * step
        out[_N_STEPS_AUTO - 1] = max_value
        return out
    k = int(np.floor(max_value / dh))
    while (k + 1) * dh <= max_value:
        k += 1
    while k > 0 and k * dh > max_value:
        k -= 1
    out = np.empty(k, np.float64)
    for i in range(k):
        out[i] = (i + 1) * dh
    return out


# ----------------------------------------------------------------------------- kernel
@njit(cache=True, inline="always")
def _find(parent, pot, x):
    while parent[x] != x:
        p = parent[x]
        gp = parent[p]
        if gp != p:
            pot[x] += pot[p]
            parent[x] = gp
        x = parent[x]
    return x


@njit(cache=True, inline="always")
def _powE(s, E):
    if E == 0.5:
        return np.sqrt(s)
    if E == 1.0:
        return s
    return s ** E


@njit(cache=True, inline="always")
def _flush(r, k, size, pot, top, prefix, E):
    t = top[r]
    if t > k + 1:
        pot[r] += _powE(size[r], E) * (prefix[t - 1] - prefix[k])
        top[r] = k + 1


@njit(cache=True)
def _tfce_core(values, nbr, thr, E, H, out):
    """TFCE of one map on the masked graph (see module doc). ``out`` (V,) is overwritten."""
    V = values.shape[0]
    C = nbr.shape[1]
    K = thr.shape[0]
    for v in range(V):
        out[v] = 0.0
    if K == 0:
        return
    level = np.zeros(V, np.int32)
    counts = np.zeros(K + 2, np.int64)
    step = thr[0]  # thresholds are k*step (the last one possibly snapped to the maximum)
    for v in range(V):
        x = values[v]
        if x >= thr[0]:  # NaN -> False
            lo = int(x / step)  # number of thr <= x, corrected for rounding below
            if lo > K:
                lo = K
            while lo < K and thr[lo] <= x:
                lo += 1
            while lo > 0 and thr[lo - 1] > x:
                lo -= 1
            level[v] = lo
            counts[lo] += 1
    # bucket start positions, highest level first
    start = np.zeros(K + 2, np.int64)
    pos = 0
    for k in range(K, 0, -1):
        start[k] = pos
        pos += counts[k]
    n_active = pos
    order = np.empty(n_active, np.int32)
    fill = start.copy()
    for v in range(V):
        k = level[v]
        if k > 0:
            order[fill[k]] = v
            fill[k] += 1
    prefix = np.zeros(K + 1, np.float64)
    for k in range(1, K + 1):
        prefix[k] = prefix[k - 1] + thr[k - 1] ** H
    parent = np.full(V, -1, np.int32)
    size = np.zeros(V, np.float64)
    pot = np.zeros(V, np.float64)
    top = np.zeros(V, np.int32)
    for k in range(K, 0, -1):
        for idx in range(start[k], start[k] + counts[k]):
            v = order[idx]
            parent[v] = v
            size[v] = 1.0
            top[v] = k + 1
            rv = v
            for c in range(C):
                u = nbr[v, c]
                if u < 0 or parent[u] < 0:
                    continue
                ru = _find(parent, pot, u)
                if ru == rv:
                    continue
                _flush(ru, k, size, pot, top, prefix, E)
                _flush(rv, k, size, pot, top, prefix, E)
                if size[ru] < size[rv]:
                    ru, rv = rv, ru
                parent[rv] = ru
                pot[rv] -= pot[ru]
                size[ru] += size[rv]
                rv = ru
    for idx in range(n_active):
        v = order[idx]
        if parent[v] == v:
            _flush(v, 0, size, pot, top, prefix, E)
    for idx in range(n_active):
        v = order[idx]
        s = 0.0
        x = v
        while True:
            s += pot[x]
            if parent[x] == x:
                break
            x = parent[x]
        out[v] = s


@njit(cache=True)
def _tail_max(values, sign):
    m = -np.inf
    for v in range(values.shape[0]):
        x = sign * values[v]
        if x > m:
            m = x
    return m


@njit(cache=True)
def _abs_max(values):
    m = 0.0
    for v in range(values.shape[0]):
        x = abs(values[v])
        if x > m:
            m = x
    return m


@njit(cache=True)
def tfce_tail(values, nbr, sign, dh, dh_mode, E, H, out):
    """TFCE of ``sign * values`` into ``out``; returns the map maximum.

    dh_mode 0: fixed ``dh`` (thresholds k·dh ≤ tail max); 1: dh = tail max / 100 with the last
    threshold = tail max (nilearn one-sided); 2: thresholds from max|values| (nilearn two-sided).
    """
    V = values.shape[0]
    x = np.empty(V, np.float64)
    for v in range(V):
        x[v] = sign * values[v]
    m = _tail_max(values, sign)
    if dh_mode == 0:
        thr = _thresholds_nb(m, dh, False)
    elif dh_mode == 1:
        thr = _thresholds_nb(m, 0.0, True)
    else:
        thr = _thresholds_nb(_abs_max(values), 0.0, True)
    _tfce_core(x, nbr, thr, E, H, out)
    best = 0.0
    for v in range(V):
        if out[v] > best:
            best = out[v]
    return best


# ----------------------------------------------------------------------------- clusters
@njit(cache=True)
def label_above(values, nbr, thr):
    """Connected components of ``values > thr`` on the masked graph.

    Returns ``labels`` (V,) int64 (0 = below threshold, 1..n by order of first voxel) and ``n``.
    """
    V = values.shape[0]
    C = nbr.shape[1]
    parent = np.full(V, -1, np.int64)
    for v in range(V):
        if values[v] > thr:
            parent[v] = v
    for v in range(V):
        if parent[v] < 0:
            continue
        for c in range(C):
            u = nbr[v, c]
            if u < 0 or parent[u] < 0:
                continue
            a = v
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            b = u
            while parent[b] != b:
                parent[b] = parent[parent[b]]
                b = parent[b]
            if a != b:
                if a < b:
                    parent[b] = a
                else:
                    parent[a] = b
    labels = np.zeros(V, np.int64)
    n = 0
    for v in range(V):
        if parent[v] < 0:
            continue
        a = v
        while parent[a] != a:
            a = parent[a]
        if labels[a] == 0:
            n += 1
            labels[a] = n
        labels[v] = labels[a]
    return labels, n


@njit(cache=True)
def cluster_max(values, nbr, thr):
    """(largest cluster size in voxels, largest cluster mass) of ``values > thr``.

    Mass = sum over the cluster of ``values - thr`` (as nilearn ``permuted_ols``).
    """
    labels, n = label_above(values, nbr, thr)
    if n == 0:
        return 0.0, 0.0
    sizes = np.zeros(n + 1, np.float64)
    mass = np.zeros(n + 1, np.float64)
    for v in range(values.shape[0]):
        lab = labels[v]
        if lab > 0:
            sizes[lab] += 1.0
            mass[lab] += values[v] - thr
    return sizes[1:].max(), mass[1:].max()


@njit(cache=True, parallel=True)
def batch_spatial(T, nbr, do_tfce, dh_pos, dh_neg, dh_mode, E, H, do_clusters, cl_thr,
                  tfce_pos, tfce_neg, max_tfce, max_size, max_mass):
    """Per-permutation spatial statistics for a batch of t maps ``T`` (B, V), both tails.

    Fills ``tfce_pos/neg`` (B, V) and the maxima arrays (B, 2) (column 0 positive tail, 1 negative).
    """
    B = T.shape[0]
    V = T.shape[1]
    for b in prange(B):
        row = T[b]
        if do_tfce:
            max_tfce[b, 0] = tfce_tail(row, nbr, 1.0, dh_pos, dh_mode, E, H, tfce_pos[b])
            max_tfce[b, 1] = tfce_tail(row, nbr, -1.0, dh_neg, dh_mode, E, H, tfce_neg[b])
        if do_clusters:
            s, m = cluster_max(row, nbr, cl_thr)
            max_size[b, 0] = s
            max_mass[b, 0] = m
            neg = np.empty(V, np.float64)
            for v in range(V):
                neg[v] = -row[v]
            s, m = cluster_max(neg, nbr, cl_thr)
            max_size[b, 1] = s
            max_mass[b, 1] = m


# ----------------------------------------------------------------------------- public API
def tfce(stat3d, mask3d=None, h: float = 2.0, e: float = 0.5, connectivity: int = 6,
         dh: float | None = None) -> np.ndarray:
    """Threshold-free cluster enhancement of the positive tail of a 3D statistic map.

    Parameters
    ----------
    stat3d : array (X, Y, Z)
        Statistic map (e.g. t). Only values ``>= dh`` contribute; call ``tfce(-stat3d, ...)``
        for the negative tail.
    mask3d : bool array (X, Y, Z), optional
        Voxels taking part (default: all finite voxels). Outside the mask the result is 0.
    h, e : float
        Height and extent exponents (randomise ``-T``: H=2, E=0.5; ``--T2``: H=2, E=1).
    connectivity : {6, 18, 26}
        Voxel adjacency defining clusters (randomise ``-T``: 6; ``--T2``: 26).
    dh : float, optional
        Threshold step in statistic units. Default ``max/100`` with the last threshold at the
        maximum (fslmaths / nilearn). In permutation testing pass the unpermuted map's step.

    Returns
    -------
    float64 array (X, Y, Z): TFCE scores (>= 0), no ``dh`` factor, extent in voxels.
    """
    stat3d = np.asarray(stat3d, dtype=np.float64)
    if stat3d.ndim != 3:
        raise ValueError(f"stat3d must be 3D, got shape {stat3d.shape}")
    if mask3d is None:
        mask3d = np.isfinite(stat3d)
    mask3d = np.asarray(mask3d, dtype=bool)
    if mask3d.shape != stat3d.shape:
        raise ValueError(f"mask shape {mask3d.shape} differs from stat shape {stat3d.shape}")
    nbr = mask_neighbors(mask3d, connectivity)
    vals = np.ascontiguousarray(stat3d[mask3d])
    out = np.zeros(stat3d.shape, dtype=np.float64)
    if vals.size == 0:
        return out
    finite = vals[np.isfinite(vals)]
    mx = float(finite.max()) if finite.size else 0.0
    thr = thresholds(mx, dh)
    res = np.zeros(vals.size, dtype=np.float64)
    _tfce_core(vals, nbr, thr, float(e), float(h), res)
    out[mask3d] = res
    return out
