"""Regional homogeneity (ReHo): Kendall's coefficient of concordance W of a voxel and its neighbours.

Conventions (DPABI / REST, Zang et al. 2004):

* the "raters" are the voxel itself and its *in-mask* neighbours in a 7 (faces), 19 (faces + edges)
  or 27 (faces + edges + corners) voxel neighbourhood; at the mask border K < neighbourhood size;
* each voxel's time series is ranked over time (1 .. n); ties get the mean of their ranks;
* ``W = (sum_t R_t^2 - n Rbar^2) / (K^2 (n^3 - n) / 12)``, ``R_t`` = sum of the K ranks at time t,
  ``Rbar = K (n + 1) / 2``; no tie correction;
* voxels outside the mask are 0.

Implementation: ranks are stored doubled (``2 * rank`` is an integer even with mean ranks), the
neighbour rank sums are integer, so W is computed from an exact integer numerator. Ranking is one
vectorised ``numpy.argsort`` over time (chunked) plus a numba pass that averages tied ranks; the
rank sums are a numba loop over voxels through a precomputed neighbour index table. Cost is about
1.5x one argsort of the data (see benchmarks/bench_reho.py).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hfsmri.errors import InputDataError

__all__ = ["reho", "neighbour_offsets", "neighbour_table", "rank_timeseries"]


def neighbour_offsets(neighborhood: int = 27) -> np.ndarray:
    """``(K, 3)`` integer offsets of the neighbourhood, the centre voxel first."""
    if neighborhood not in (7, 19, 27):
        raise InputDataError(f"ReHo neighbourhood must be 7, 19 or 27, got {neighborhood}",
                             field="neighborhood")
    offs = [(0, 0, 0)]
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                d = abs(dx) + abs(dy) + abs(dz)
                if d == 0:
                    continue
                if neighborhood == 7 and d > 1:
                    continue
                if neighborhood == 19 and d > 2:
                    continue
                offs.append((dx, dy, dz))
    return np.asarray(offs, dtype=np.int64)


def neighbour_table(mask3d: np.ndarray, neighborhood: int = 27) -> np.ndarray:
    """``(n_in_mask, K)`` indices (C order of ``mask3d.nonzero()``) of each voxel's in-mask neighbours.

    -1 marks a neighbour outside the mask or the volume. Column 0 is the voxel itself.
    """
    mask = np.asarray(mask3d, dtype=bool)
    idx = -np.ones(np.add(mask.shape, 2), dtype=np.int64)
    inner = idx[1:-1, 1:-1, 1:-1]
    inner[mask] = np.arange(int(mask.sum()))
    coords = np.argwhere(mask) + 1
    offs = neighbour_offsets(neighborhood)
    table = np.empty((coords.shape[0], offs.shape[0]), dtype=np.int32)
    for j, (dx, dy, dz) in enumerate(offs):
        table[:, j] = idx[coords[:, 0] + dx, coords[:, 1] + dy, coords[:, 2] + dz]
    return table


@njit(cache=True, nogil=True)
def _ranks2_from_order(x, order, out):  # pragma: no cover - numba
    n_v, n = x.shape
    for v in range(n_v):
        i = 0
        while i < n:
            j = i
            xi = x[v, order[v, i]]
            while j + 1 < n and x[v, order[v, j + 1]] == xi:
                j += 1
            r = i + j + 2  # 2 * mean rank of sorted positions i..j (1-based)
            for k in range(i, j + 1):
                out[v, order[v, k]] = r
            i = j + 1


def _ranks2(x: np.ndarray, chunk_size: int = 4096, n_jobs: int = 1) -> np.ndarray:
    """Doubled mean ranks along axis 1 (int16 when 2n fits, else int32).

    numpy's vectorised argsort + a numba tie pass, in chunks small enough to stay in cache.
    """
    dtype = np.int16 if 2 * x.shape[1] <= np.iinfo(np.int16).max else np.int32
    out = np.empty(x.shape, dtype=dtype)

    def work(s, e):
        order = np.argsort(x[s:e], axis=1).astype(np.int32, copy=False)
        _ranks2_from_order(x[s:e], order, out[s:e])

    _run_chunks(work, x.shape[0], chunk_size, n_jobs)
    return out


@njit(cache=True, nogil=True)
def _kendall_w(ranks2, table, n, out):  # pragma: no cover - numba
    n_v, kmax = table.shape
    acc = np.empty(n, dtype=np.int32)  # 2 * rank sums <= 27 * 2n: fits int32
    nn = float(n)
    for v in range(n_v):
        for t in range(n):
            acc[t] = 0
        k = 0
        for j in range(kmax):
            u = table[v, j]
            if u >= 0:
                k += 1
                row = ranks2[u]
                for t in range(n):
                    acc[t] += row[t]
        s = 0  # int64: exact
        for t in range(n):
            a = np.int64(acc[t])
            s += a * a
        # acc = 2 R: sum R^2 - n Rbar^2 = (s - n k^2 (n+1)^2) / 4 ; W = 12 (...) / (k^2 (n^3 - n))
        num = s - np.int64(n) * k * k * (n + 1) * (n + 1)
        out[v] = 3.0 * num / (k * k * (nn * nn * nn - nn))


def _run_chunks(fn, n_items: int, chunk_size: int, n_jobs: int):
    starts = range(0, n_items, chunk_size)
    if n_jobs <= 1 or n_items <= chunk_size:
        for s in starts:
            fn(s, min(n_items, s + chunk_size))
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=n_jobs) as ex:  # numpy sort and the numba loops release the GIL
        list(ex.map(lambda s: fn(s, min(n_items, s + chunk_size)), starts))


def rank_timeseries(ts2d: np.ndarray) -> np.ndarray:
    """Mean ranks (1 .. n, ties averaged) of each row of ``ts2d`` (n_series, n_t) as float64."""
    x = np.ascontiguousarray(ts2d, dtype=np.float64)
    return _ranks2(x).astype(np.float64) / 2.0


def reho(data4d, mask3d, neighborhood: int = 27, *, n_jobs: int = 1) -> np.ndarray:
    """Kendall's W of each in-mask voxel with its in-mask neighbours (see module doc).

    Parameters
    ----------
    data4d : array (X, Y, Z, T)
        BOLD data (usually nuisance-regressed and band-passed), any units; T >= 2.
    mask3d : array (X, Y, Z)
        Brain mask; nonzero = in mask.
    neighborhood : {7, 19, 27}
    n_jobs : int
        Threads (chunks of voxels; the result does not depend on it).

    Returns
    -------
    array (X, Y, Z), float64, W in [0, 1] inside the mask, 0 outside.
    """
    data = np.asarray(data4d)
    mask = np.asarray(mask3d)
    if data.ndim != 4:
        raise InputDataError(f"ReHo needs 4D data (X, Y, Z, T), got shape {data.shape}")
    if mask.shape != data.shape[:3]:
        raise InputDataError(f"mask shape {mask.shape} does not match data shape {data.shape[:3]}")
    n = data.shape[3]
    if n < 2:
        raise InputDataError(f"ReHo needs at least 2 volumes, got {n}")
    mask = mask.astype(bool)
    out = np.zeros(mask.shape, dtype=np.float64)
    if not mask.any():
        return out
    # ranks only need comparisons: sort in the input precision (float32 stays float32, exact)
    dtype = data.dtype if data.dtype in (np.float32, np.float64) else np.float64
    ts = np.ascontiguousarray(data[mask], dtype=dtype)
    if not np.all(np.isfinite(ts)):
        raise InputDataError("BOLD data contain NaN or infinite values inside the mask")
    n_jobs = max(1, int(n_jobs))
    ranks2 = _ranks2(ts, n_jobs=n_jobs)
    table = neighbour_table(mask, neighborhood)
    w = np.empty(table.shape[0])
    _run_chunks(lambda s, e: _kendall_w(ranks2, table[s:e], n, w[s:e]), table.shape[0], 8192, n_jobs)
    out[mask] = w
    return out
