"""Permutation inference split into Dask tasks (permutation blocks).

When the group level runs with ``--scheduler ADDRESS``, the group runner hands its
``dask.distributed`` client (:func:`hfsmri.parallel.client_for`) to :func:`permuted_glm` (a drop-in
for :func:`hfsmri.stats.glm.permuted_glm`), which then splits the permutation set into blocks
(:func:`hfsmri.stats.permutation.permutation_blocks`): each block is one Dask task that runs the
same Freedman–Lane kernel on ``[identity] + block`` and returns only what the merge needs — the
per-permutation maxima (t, TFCE, cluster size and mass, per tail) and per-voxel exceedance counts.
The client merges them into the same :class:`~hfsmri.stats.glm.PermutedGLMResult`.

Determinism: the permutation set is drawn once, on the client, from ``random_state`` exactly as
the local run draws it; blocks are cut at multiples of the kernel's batch size and run with that
batch size, so every permuted statistic is computed from the same matrix products as in the local
run. The result is bit-identical to :func:`hfsmri.stats.glm.permuted_glm` (tested), whatever the
number of workers or blocks.

Without a client (or for small problems, fewer than ``min_voxels`` columns or a single block)
the local function runs unchanged. There is no module-level client: it is always passed.
"""
from __future__ import annotations

import math

import numpy as np

from . import glm as _glm
from .fdr import fdr_bh
from .permutation import PermutationSet, make_permutation_set, perm_key, permutation_blocks


def default_batch_size(k: int, n_voxels: int, memory_mb: float = 256.0) -> int:
    """Permutations per matrix product in :func:`hfsmri.stats.glm.permuted_glm` (same rule)."""
    per_perm = (k + 3) * n_voxels * 8
    return int(max(1, min(64, memory_mb * 2 ** 20 // max(per_perm, 1))))


def _block_task(Y, design, contrast, rows, scheme, n_possible, tfce, mask, kwargs):
    """One Dask task: the permutations ``rows`` (row 0 = identity) -> null maxima and counts."""
    pset = PermutationSet(scheme, rows, False, n_possible)
    res = _glm.permuted_glm(Y, design, contrast, tfce=tfce, mask=mask, permutations=pset, **kwargs)
    nb = rows.shape[0]
    out = {"n": nb - 1, "abs": np.rint(res.two_sided["p_unc"] * nb).astype(np.int64) - 1}
    for key in ("pos", "neg"):
        tail = res.tail(key)
        d = {"max_t": tail.null_max_t[1:], "cnt_t": np.rint(tail.p_unc * nb).astype(np.int64) - 1}
        if tfce:
            d["max_tfce"] = tail.null_max_tfce[1:]
            d["cnt_tfce"] = np.rint(tail.p_unc_tfce * nb).astype(np.int64) - 1
        if tail.null_max_size is not None:
            d["max_size"] = tail.null_max_size[1:]
            d["max_mass"] = tail.null_max_mass[1:]
        out[key] = d
    return out


def _n_workers(client) -> int:
    try:
        return max(1, len(client.scheduler_info()["workers"]))
    except Exception:  # pragma: no cover
        return 1


def permuted_glm(Y, design, contrast, n_perm: int = 5000, tfce: bool = True, mask=None, *, client=None,
                 block_size: int | None = None, min_voxels: int = 1000, **kwargs):
    """:func:`hfsmri.stats.glm.permuted_glm`, with the permutations run as Dask tasks when a
    client is given; same arguments and result.

    Parameters
    ----------
    client : ``distributed.Client``, optional (None: the local function)
    block_size : permutations per task (rounded up to a multiple of the kernel batch size);
        default: about two blocks per worker
    min_voxels : run locally below this number of columns (ROI tables)
    **kwargs : passed to :func:`hfsmri.stats.glm.permuted_glm` (``random_state``, ``scheme``,
        ``blocks``, ``tfce_setting``, ``cluster_forming_p``, ``permutations``, ...)
    """
    Y = np.asarray(Y, dtype=np.float64)
    if client is None or Y.ndim != 2 or Y.shape[1] < min_voxels:
        return _glm.permuted_glm(Y, design, contrast, n_perm=n_perm, tfce=tfce, mask=mask, **kwargs)

    # the permutation set, drawn exactly as the local function draws it
    X, c, columns, _, _ = _glm._as_design(design, contrast)
    if c.ndim != 1:
        return _glm.permuted_glm(Y, design, contrast, n_perm=n_perm, tfce=tfce, mask=mask, **kwargs)
    _glm.check_rank(X, columns)
    pset = kwargs.pop("permutations", None)
    random_state = kwargs.pop("random_state", None)
    seed = kwargs.pop("seed", None)
    if random_state is None:
        random_state = 0 if seed is None else seed
    scheme = kwargs.pop("scheme", "auto")
    blocks = kwargs.get("blocks")
    whole_blocks = kwargs.get("whole_blocks", False)
    exact = kwargs.pop("exact", "auto")
    if pset is None:
        if scheme == "auto":
            scheme = _glm.choose_scheme(X, c)
        pset = make_permutation_set(X, n_perm, scheme, random_state, blocks, whole_blocks, exact)
    batch = kwargs.pop("batch_size", None) or default_batch_size(X.shape[1], Y.shape[1],
                                                                 kwargs.get("memory_mb", 256.0))
    n_rest = pset.n_null - 1
    if block_size is None:
        block_size = math.ceil(n_rest / (2 * _n_workers(client))) if n_rest else batch
    block_size = batch * max(1, math.ceil(block_size / batch))
    parts = permutation_blocks(pset, block_size)
    common = dict(kwargs, batch_size=batch, random_state=random_state)
    if len(parts) < 2:
        return _glm.permuted_glm(Y, design, contrast, n_perm=n_perm, tfce=tfce, mask=mask, permutations=pset,
                                 **common)

    # observed statistics (identity only) locally -- this also validates every input -- then the
    # null blocks on the cluster
    ident = PermutationSet(pset.scheme, pset.rows[:1], pset.exact, pset.n_possible)
    res = _glm.permuted_glm(Y, design, contrast, tfce=tfce, mask=mask, permutations=ident, **common)
    [y_f] = client.scatter([Y], broadcast=True)
    futures = [client.submit(_block_task, y_f, design, contrast, p.rows, pset.scheme, pset.n_possible, tfce, mask,
                             common, pure=False) for p in parts]
    blocks_out = client.gather(futures)
    return _merge(res, blocks_out, pset, tfce)


def _merge(res, parts, pset, tfce):
    """Fill the null distributions of the identity-only result ``res`` with the blocks' output."""
    N = pset.n_null
    t_obs = res.t
    maxima = {}
    for j, (key, sign) in enumerate((("pos", 1.0), ("neg", -1.0))):
        tail = res.tail(key)
        tail_t = sign * t_obs
        null_t = np.concatenate([tail.null_max_t[:1]] + [p[key]["max_t"] for p in parts])
        cnt = 1 + sum(p[key]["cnt_t"] for p in parts)
        tail.p_unc = cnt / N
        tail.p_fwe_t = _glm._p_from_null(tail_t, null_t)
        tail.p_fdr = fdr_bh(tail.p_unc)
        tail.null_max_t = null_t
        maxima[key] = {"t": null_t}
        if tfce:
            null_tf = np.concatenate([tail.null_max_tfce[:1]] + [p[key]["max_tfce"] for p in parts])
            cnt_tf = 1 + sum(p[key]["cnt_tfce"] for p in parts)
            tail.p_unc_tfce = cnt_tf / N
            tail.p_fwe_tfce = _glm._p_from_null(tail.tfce, null_tf)
            tail.null_max_tfce = null_tf
            maxima[key]["tfce"] = null_tf
        if tail.null_max_size is not None:
            null_size = np.concatenate([tail.null_max_size[:1]] + [p[key]["max_size"] for p in parts])
            null_mass = np.concatenate([tail.null_max_mass[:1]] + [p[key]["max_mass"] for p in parts])
            labels = tail.cluster_labels
            p_ext = np.ones(t_obs.shape[0])
            p_mass = np.ones(t_obs.shape[0])
            if tail.cluster_sizes is not None and tail.cluster_sizes.size:
                pe = _glm._p_from_null(tail.cluster_sizes, null_size)
                pm = _glm._p_from_null(tail.cluster_masses, null_mass)
                inside = labels > 0
                p_ext[inside] = pe[labels[inside] - 1]
                p_mass[inside] = pm[labels[inside] - 1]
            tail.p_fwe_extent = p_ext
            tail.p_fwe_mass = p_mass
            tail.null_max_size = null_size
            tail.null_max_mass = null_mass
    cnt_abs = 1 + sum(p["abs"] for p in parts)
    two = {"p_unc": cnt_abs / N,
           "p_fwe_t": _glm._p_from_null(np.abs(t_obs), np.maximum(maxima["pos"]["t"], maxima["neg"]["t"]))}
    if tfce:
        two["tfce"] = res.two_sided["tfce"]
        two["p_fwe_tfce"] = _glm._p_from_null(np.abs(two["tfce"]),
                                              np.maximum(maxima["pos"]["tfce"], maxima["neg"]["tfce"]))
    res.two_sided = two
    res.n_null = N
    res.n_perm = 0 if pset.exact else N - 1
    res.exact = pset.exact
    res.settings = dict(res.settings, n_possible=pset.n_possible, distributed_blocks=len(parts),
                        perm_key=perm_key(pset.rows))
    return res
