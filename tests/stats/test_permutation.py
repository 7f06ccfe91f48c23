import math

import numpy as np
import pytest

from hfsmri.stats.permutation import count_distinct, make_permutation_set, nilearn_permutations, row_labels


def test_counts_and_unique_enumeration():
    g = np.r_[np.ones(3), np.zeros(4)]
    X = np.column_stack([g, 1 - g])
    labels = row_labels(X)
    assert count_distinct("permute", labels) == math.comb(7, 3)
    ps = make_permutation_set(X, 100, "permute")
    assert ps.exact and ps.n_null == 35
    assert np.array_equal(ps.rows[0], np.arange(7))
    # every row is a permutation, and the induced group labelling of the residuals is unique
    assigned = {tuple(labels[np.argsort(r)]) for r in ps.rows}
    assert len(assigned) == 35
    assert all(sorted(r) == list(range(7)) for r in ps.rows)
    # within blocks: C(4,2) * C(3,1) relabellings
    blocks = np.array([0, 0, 1, 0, 0, 1, 1])
    g2 = np.array([1, 1, 1, 0, 0, 0, 0.0])
    X2 = np.column_stack([g2, 1 - g2])
    assert count_distinct("permute", row_labels(X2), blocks) == math.comb(4, 2) * math.comb(3, 1)
    ps2 = make_permutation_set(X2, 100, "permute", blocks=blocks)
    assert ps2.exact and ps2.n_null == 18
    for r in ps2.rows:
        assert np.all(blocks[r] == blocks)


def test_random_when_too_many_and_signflip_counts():
    X = np.column_stack([np.ones(12), np.arange(12.0)])
    ps = make_permutation_set(X, 50, "permute", random_state=0)
    assert not ps.exact and ps.n_null == 51
    sf = make_permutation_set(np.ones((5, 1)), 100, "signflip")
    assert sf.exact and sf.n_null == 32 and np.all(sf.rows[0] == 1)
    assert len({tuple(r) for r in sf.rows}) == 32
    blocks = np.array([0, 0, 1, 1, 2])
    sfb = make_permutation_set(np.ones((5, 1)), 100, "signflip", blocks=blocks, whole_blocks=True)
    assert sfb.n_null == 8 and np.all(sfb.rows[:, 0] == sfb.rows[:, 1])


def test_nilearn_stream_reproduces_nilearn_draws():
    from sklearn.utils import check_random_state

    n, n_perm = 9, 5
    ps = nilearn_permutations(n, n_perm, random_state=42)
    rng = check_random_state(42)
    inner = check_random_state(rng.randint(1, np.iinfo(np.int32).max - 1))
    x = np.arange(n) * 10.0  # nilearn shuffles the tested variate cumulatively
    for i in range(n_perm):
        x = x[inner.permutation(n)]
        # our convention pairs residual row j with design row argsort(perm)[j]
        perm = ps.rows[i + 1]
        assert np.array_equal((np.arange(n) * 10.0)[np.argsort(perm)], x)
    with pytest.raises(Exception):
        make_permutation_set(np.ones((3, 1)), -1, "permute")
