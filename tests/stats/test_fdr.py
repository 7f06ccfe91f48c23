import numpy as np
from statsmodels.stats.multitest import multipletests

from hfsmri.stats.fdr import fdr_bh


def test_fdr_matches_statsmodels():
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.uniform(size=200), rng.uniform(0, 1e-3, size=20), [0.0, 1.0, 0.5, 0.5]])
    q, rej = fdr_bh(p, alpha=0.05)
    rej_sm, q_sm, *_ = multipletests(p, alpha=0.05, method="fdr_bh")
    np.testing.assert_allclose(q, q_sm, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(rej, rej_sm)


def test_fdr_keeps_shape_and_ignores_nan():
    p = np.array([[0.01, np.nan], [0.04, 0.03]])
    q = fdr_bh(p)
    assert q.shape == p.shape and np.isnan(q[0, 1])
    _, q_sm, *_ = multipletests([0.01, 0.04, 0.03], method="fdr_bh")
    np.testing.assert_allclose(q[~np.isnan(q)], q_sm, atol=1e-15)
