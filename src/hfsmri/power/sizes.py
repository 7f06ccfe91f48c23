"""Group sizes of a power analysis: the one parser of ``--n`` / ``ns``.

Accepted forms (all equivalent): ``[10, 20, 30]``, ``"10,20,30"``, ``["10", "20", "30"]`` (the
command line's ``--n 10 20 30``) and mixtures such as ``["10,20", "30"]``. Sizes are subjects
**per group**, integers >= :data:`MIN_N`; duplicates are dropped and the result is sorted.
"""
from __future__ import annotations

from ..errors import HfsmriError

__all__ = ["parse_group_sizes", "MIN_N"]

#: smallest group size a two-sample test with covariates can be run on
MIN_N = 3


def parse_group_sizes(values) -> list[int]:
    """``values`` (int, str or an iterable of them; strings may hold commas) -> sorted unique ints.

    Raises :class:`HfsmriError` (field ``n``) naming the offending token for anything that is not
    a whole number >= :data:`MIN_N`, or for an empty list.
    """
    if isinstance(values, (int, str)):
        values = [values]
    tokens = []
    for v in values:
        if isinstance(v, str):
            tokens += [t.strip() for t in v.replace(";", ",").split(",")]
        else:
            tokens.append(v)
    sizes = []
    for t in tokens:
        if isinstance(t, str) and t == "":
            continue
        try:
            f = float(t)
            n = int(f)
        except (TypeError, ValueError, OverflowError):
            raise HfsmriError(f"--n: group sizes must be whole numbers (e.g. --n 10 20 30 or --n 10,20,30), "
                              f"got {t!r}", field="ns") from None
        if n != f or n < MIN_N:
            raise HfsmriError(f"--n: group sizes must be whole numbers >= {MIN_N} (subjects per group), "
                              f"got {t!r}", field="ns")
        sizes.append(n)
    if not sizes:
        raise HfsmriError("--n: give at least one group size, e.g. --n 10 20 30", field="ns")
    return sorted(set(sizes))
