"""Permutation and sign-flip sets for the GLM (random, exact, with exchangeability blocks).

Convention used everywhere in :mod:`hfsmri.stats`: a permutation is an integer vector ``perm``
of length n and the permuted data are ``Y*[i] = E[perm[i]]`` (+ nuisance fit), where ``E`` are
the residuals of the reduced model (Freedman–Lane). A sign flip is a ±1 vector ``s`` and
``Y*[i] = s[i] * E[i]``. The first row of every set is the identity (the unpermuted data), as
FSL randomise does; p-values are ``#{null >= observed} / n_null`` with the identity counted, i.e.
``(1 + #{random permutations >= observed}) / (n_perm + 1)`` (nilearn's formula).

Exact enumeration: permutations that only reorder identical design rows give identical statistics,
so the number of distinct permutations is the multinomial ``n! / prod(m_r!)`` over identical rows
(within each block, or over identical blocks for whole-block permutation); sign flips have ``2**n``
(``2**n_blocks`` whole-block). When that number is at most ``n_perm + 1`` all are enumerated once.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..errors import DesignError

MAX_ENUMERATE = 1_000_000


@dataclass
class PermutationSet:
    """Rows to apply: ``perms`` (N, n) int (``scheme == "permute"``) or ``signs`` (N, n) float
    (``scheme == "signflip"``); row 0 is the identity. ``exact``: complete enumeration."""

    scheme: str
    rows: np.ndarray
    exact: bool
    n_possible: float

    @property
    def n_null(self) -> int:
        return int(self.rows.shape[0])


def row_labels(X: np.ndarray, decimals: int = 10) -> np.ndarray:
    """Integer label per design row; identical rows (to ``decimals``) share a label."""
    X = np.round(np.asarray(X, dtype=float), decimals) + 0.0
    _, inv = np.unique(X, axis=0, return_inverse=True)
    return inv.ravel().astype(np.int64)


def _multinomial(labels) -> int:
    c = Counter(labels.tolist() if hasattr(labels, "tolist") else labels)
    out = math.factorial(sum(c.values()))
    for m in c.values():
        out //= math.factorial(m)
    return out


def _check_blocks(blocks, n: int):
    if blocks is None:
        return None
    b = np.asarray(blocks)
    if b.shape != (n,):
        raise DesignError(f"exchangeability blocks must have one entry per subject ({n}), got shape {b.shape}",
                          field="blocks")
    _, inv = np.unique(b, return_inverse=True)
    return inv.ravel()


def count_distinct(scheme: str, labels: np.ndarray, blocks=None, whole_blocks: bool = False) -> int:
    """Number of distinct rearrangements (identity included) for this scheme and design."""
    n = labels.shape[0]
    blocks = _check_blocks(blocks, n)
    if scheme == "signflip":
        if blocks is None:
            return 2 ** n
        return 2 ** (len(np.unique(blocks)) if whole_blocks else n)
    if blocks is None:
        return _multinomial(labels)
    ids = np.unique(blocks)
    if whole_blocks:
        seqs = [tuple(labels[blocks == b]) for b in ids]
        return _multinomial_objects(seqs)
    out = 1
    for b in ids:
        out *= _multinomial(labels[blocks == b])
    return out


def _multinomial_objects(items) -> int:
    c = Counter(items)
    out = math.factorial(len(items))
    for m in c.values():
        out //= math.factorial(m)
    return out


def _distinct_arrangements(labels: np.ndarray):
    """All distinct orderings of the multiset ``labels`` (lexicographic), as label arrays."""
    seq = sorted(labels.tolist())
    n = len(seq)
    while True:
        yield np.array(seq)
        i = n - 2
        while i >= 0 and seq[i] >= seq[i + 1]:
            i -= 1
        if i < 0:
            return
        j = n - 1
        while seq[j] <= seq[i]:
            j -= 1
        seq[i], seq[j] = seq[j], seq[i]
        seq[i + 1:] = reversed(seq[i + 1:])


def _arrangement_to_perm(labels: np.ndarray, arrangement: np.ndarray) -> np.ndarray:
    """Index permutation ``perm`` with ``labels[inv(perm)] == arrangement`` (our convention:
    residual row j is paired with design row inv(perm)[j])."""
    pools = {}
    for i, lab in enumerate(labels.tolist()):
        pools.setdefault(lab, []).append(i)
    ptr = {k: 0 for k in pools}
    inv = np.empty(len(labels), dtype=np.int64)
    for j, lab in enumerate(arrangement.tolist()):
        inv[j] = pools[lab][ptr[lab]]
        ptr[lab] += 1
    return np.argsort(inv)


def _enumerate_perms(labels, blocks, whole_blocks) -> np.ndarray:
    n = labels.shape[0]
    if blocks is None:
        rows = [_arrangement_to_perm(labels, a) for a in _distinct_arrangements(labels)]
    elif whole_blocks:
        ids = list(np.unique(blocks))
        pos = [np.flatnonzero(blocks == b) for b in ids]
        seqs = [tuple(labels[p]) for p in pos]
        seq_id = {s: i for i, s in enumerate(dict.fromkeys(seqs))}
        blabels = np.array([seq_id[s] for s in seqs])
        rows = []
        for arr in _distinct_arrangements(blabels):
            bperm = _arrangement_to_perm(blabels, arr)  # block at slot i takes residuals of block bperm[i]
            perm = np.empty(n, dtype=np.int64)
            for i, src in enumerate(bperm):
                perm[pos[i]] = pos[src]
            rows.append(perm)
    else:
        ids = list(np.unique(blocks))
        per_block = []
        for b in ids:
            p = np.flatnonzero(blocks == b)
            per_block.append((p, [_arrangement_to_perm(labels[p], a) for a in _distinct_arrangements(labels[p])]))
        rows = []
        import itertools

        for combo in itertools.product(*[pb[1] for pb in per_block]):
            perm = np.arange(n)
            for (p, _), local in zip(per_block, combo):
                perm[p] = p[local]
            rows.append(perm)
    rows = np.array(rows, dtype=np.int64)
    ident = np.flatnonzero((rows == np.arange(n)).all(axis=1))
    if ident.size == 0:  # cannot happen, arrangements include the original order
        rows = np.vstack([np.arange(n), rows])
    else:
        order = np.r_[ident[0], np.delete(np.arange(rows.shape[0]), ident[0])]
        rows = rows[order]
    return rows


def _enumerate_signs(n, blocks, whole_blocks) -> np.ndarray:
    if blocks is not None and whole_blocks:
        ids = np.unique(blocks)
        m = len(ids)
        bits = ((np.arange(2 ** m)[:, None] >> np.arange(m)[None, :]) & 1)
        sb = 1.0 - 2.0 * bits
        return sb[:, np.searchsorted(ids, blocks)]
    bits = ((np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1)
    return 1.0 - 2.0 * bits  # row 0 = all +1 (identity)


def random_perms(n: int, n_perm: int, rng: np.random.Generator, blocks=None, whole_blocks=False) -> np.ndarray:
    """``n_perm`` random permutations (our convention), within or of blocks."""
    blocks = _check_blocks(blocks, n)
    out = np.empty((n_perm, n), dtype=np.int64)
    if blocks is None:
        for i in range(n_perm):
            out[i] = rng.permutation(n)
        return out
    ids = np.unique(blocks)
    pos = [np.flatnonzero(blocks == b) for b in ids]
    if whole_blocks:
        sizes = {len(p) for p in pos}
        if len(sizes) != 1:
            raise DesignError("whole-block permutation needs blocks of equal size", field="blocks")
        for i in range(n_perm):
            bperm = rng.permutation(len(ids))
            perm = np.empty(n, dtype=np.int64)
            for slot, src in enumerate(bperm):
                perm[pos[slot]] = pos[src]
            out[i] = perm
        return out
    for i in range(n_perm):
        perm = np.arange(n)
        for p in pos:
            perm[p] = p[rng.permutation(len(p))]
        out[i] = perm
    return out


def random_signs(n: int, n_perm: int, rng: np.random.Generator, blocks=None, whole_blocks=False) -> np.ndarray:
    blocks = _check_blocks(blocks, n)
    if blocks is not None and whole_blocks:
        ids = np.unique(blocks)
        sb = rng.integers(0, 2, size=(n_perm, len(ids))) * 2.0 - 1.0
        return sb[:, np.searchsorted(ids, blocks)]
    return rng.integers(0, 2, size=(n_perm, n)) * 2.0 - 1.0


def make_permutation_set(X: np.ndarray, n_perm: int, scheme: str, random_state=None, blocks=None,
                         whole_blocks: bool = False, exact: str | bool = "auto") -> PermutationSet:
    """Identity + ``n_perm`` random rearrangements, or all distinct ones when few enough.

    Parameters
    ----------
    X : design (n, k); identical rows define which permutations are equivalent
    n_perm : number of random permutations (the null has ``n_perm + 1`` entries)
    scheme : "permute" or "signflip"
    random_state : int / numpy Generator / None (seeds ``np.random.default_rng``)
    blocks : exchangeability block label per row (permute / flip within blocks), optional
    whole_blocks : permute blocks as units (equal sizes) / flip whole blocks together
    exact : "auto" (enumerate when the distinct count is <= n_perm + 1), True (always; error if
        more than 1e6), False (never)
    """
    X = np.asarray(X, dtype=float)
    n = X.shape[0]
    if scheme not in ("permute", "signflip"):
        raise ValueError(f"scheme must be 'permute' or 'signflip', got {scheme!r}")
    if n_perm < 0:
        raise DesignError(f"n_perm must be >= 0, got {n_perm}", field="n_perm")
    labels = row_labels(X)
    bl = _check_blocks(blocks, n)
    n_possible = count_distinct(scheme, labels, bl, whole_blocks)
    do_exact = (exact is True) or (exact == "auto" and n_possible <= n_perm + 1 and n_perm > 0)
    if do_exact:
        if n_possible > MAX_ENUMERATE:
            raise DesignError(f"{n_possible} distinct permutations: too many to enumerate", field="n_perm")
        rows = (_enumerate_signs(n, bl, whole_blocks) if scheme == "signflip"
                else _enumerate_perms(labels, bl, whole_blocks))
        return PermutationSet(scheme, rows, True, float(n_possible))
    rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)
    if scheme == "signflip":
        rnd = random_signs(n, n_perm, rng, bl, whole_blocks)
        rows = np.vstack([np.ones((1, n)), rnd])
    else:
        rnd = random_perms(n, n_perm, rng, bl, whole_blocks)
        rows = np.vstack([np.arange(n)[None, :], rnd])
    return PermutationSet(scheme, rows, False, float(n_possible))


def nilearn_permutations(n_samples: int, n_perm: int, random_state=None, sign_flip: bool = False,
                         n_jobs: int = 1) -> PermutationSet:
    """The exact permutation stream of ``nilearn.mass_univariate.permuted_ols``, in our convention
    (identity first).

    nilearn splits ``n_perm`` into ``n_jobs`` chunks (``n_perm // n_jobs`` each, the remainder to
    the last; ``n_jobs`` after nilearn's own capping to the CPU count), draws one seed per chunk
    ``RandomState(random_state).randint(1, 2**31 - 2)``, then at each step of a chunk either
    multiplies the (already flipped) data by fresh random signs, or re-shuffles the (already
    shuffled) tested and confounding variates with ``rng.permutation(n)``: the effective
    rearrangement is the running composition within the chunk. Regressing the residuals on design
    rows ``cum`` equals our ``Y*[i] = E[perm[i]]`` with ``perm = argsort(cum)``. Feeding this set
    to :func:`hfsmri.stats.glm.permuted_glm` reproduces nilearn's null distributions in the same
    order (see docs/statistics.md).
    """
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    if n_perm > n_jobs:
        chunks = [n_perm // n_jobs] * n_jobs
        chunks[-1] += n_perm % n_jobs
    else:
        chunks = [1] * n_perm
    if sign_flip:
        rows = [np.ones(n_samples)]
        for m in chunks:
            inner = check_random_state(rng.randint(1, np.iinfo(np.int32).max - 1))
            cum = np.ones(n_samples)
            for _ in range(m):
                cum = cum * (inner.randint(2, size=(n_samples, 1)) * 2 - 1)[:, 0]
                rows.append(cum.copy())
        return PermutationSet("signflip", np.array(rows, dtype=float), False, float(2 ** n_samples))
    rows = [np.arange(n_samples)]
    for m in chunks:
        inner = check_random_state(rng.randint(1, np.iinfo(np.int32).max - 1))
        cum = np.arange(n_samples)
        for _ in range(m):
            cum = cum[inner.permutation(n_samples)]
            rows.append(np.argsort(cum))
    return PermutationSet("permute", np.array(rows, dtype=np.int64), False, float(math.factorial(n_samples)))


def permutation_blocks(pset: PermutationSet, block_size: int) -> list[PermutationSet]:
    """Split the non-identity rows of ``pset`` into consecutive blocks of ``block_size`` rows.

    Each block is a :class:`PermutationSet` whose row 0 is the identity (so it is a valid input to
    :func:`hfsmri.stats.glm.permuted_glm`) followed by its share of ``pset.rows[1:]`` in order; the
    blocks together hold every row once. Used to run permutation work as Dask tasks
    (:mod:`hfsmri.stats.distributed`). An empty set (identity only) gives no block.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    rows = pset.rows
    ident = rows[:1]
    out = []
    for s in range(1, rows.shape[0], int(block_size)):
        out.append(PermutationSet(pset.scheme, np.vstack([ident, rows[s:s + block_size]]), pset.exact,
                                  pset.n_possible))
    return out


def perm_key(rows: np.ndarray) -> str:
    """Short digest of a permutation set's rows: results with the same key used the same
    permutations (their null distributions can be combined per permutation, :mod:`hfsmri.stats.family`)."""
    import hashlib

    r = np.ascontiguousarray(np.asarray(rows))
    return hashlib.sha1(str(r.shape).encode() + str(r.dtype).encode() + r.tobytes()).hexdigest()[:16]
