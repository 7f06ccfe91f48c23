"""Edge statistics, FDR and NBS against references (statsmodels OLS, closed-form BH, planted effect)."""
from __future__ import annotations

import numpy as np
import pytest

from hfsmri.errors import DesignError, InputDataError
from hfsmri.graph.nbs import edge_statistics, fdr_bh, glm_t, nbs, partition_design


def _design(n_pat, n_con, rng):
    g = np.r_[np.ones(n_pat), np.zeros(n_con)]
    age = rng.normal(50, 10, g.size)
    return np.column_stack([np.ones(g.size), g, age])


def test_glm_t_matches_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(0)
    X = _design(12, 10, rng)
    Y = rng.standard_normal((22, 15)) + 0.5 * X[:, [1]]
    t = glm_t(Y, X, [0, 1, 0])
    ref = [sm.OLS(Y[:, j], X).fit().tvalues[1] for j in range(15)]
    np.testing.assert_allclose(t, ref, rtol=1e-10)


def test_partition_preserves_contrast_t():
    rng = np.random.default_rng(1)
    X = _design(10, 10, rng)
    Y = rng.standard_normal((20, 6))
    for c in ([0, 1, 0], [0, 0, 1], [0, 1, 0.5]):
        Xx, Z = partition_design(X, c)
        M = np.hstack([Xx, Z])
        e = np.zeros(M.shape[1])
        e[0] = 1
        np.testing.assert_allclose(glm_t(Y, M, e), glm_t(Y, X, c), rtol=1e-9)


def test_fdr_bh_matches_statsmodels():
    smm = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(2).uniform(size=200) ** 3
    np.testing.assert_allclose(fdr_bh(p), smm.multipletests(p, method="fdr_bh")[1], rtol=1e-12)


def _planted(n_nodes=20, n_pat=20, n_con=20, effect=1.6, seed=0):
    rng = np.random.default_rng(seed)
    X = _design(n_pat, n_con, rng)
    iu, ju = np.triu_indices(n_nodes, 1)
    sub_nodes = {2, 5, 7, 11, 13}
    planted = np.array([(i in sub_nodes and j in sub_nodes) for i, j in zip(iu, ju)])
    Y = rng.standard_normal((X.shape[0], iu.size)) + 0.02 * (X[:, [2]] - 50)
    Y[:n_pat, planted] += effect
    return X, Y, planted, sub_nodes


def test_nbs_finds_planted_subnetwork_and_is_seeded():
    X, Y, planted, sub_nodes = _planted()
    res = nbs(Y, X, [0, 1, 0], threshold=3.0, n_perm=200, random_state=0)
    top = res.components.iloc[0]
    assert top.p_fwe < 0.05
    assert {int(x) for x in top.nodes.split(";")} == sub_nodes
    assert top.n_edges >= 8  # nearly all 10 planted edges pass t > 3
    found = res.edges[res.edges.component == 1]
    assert all(int(i) in sub_nodes and int(j) in sub_nodes for i, j in zip(found.node_i, found.node_j))
    again = nbs(Y, X, [0, 1, 0], threshold=3.0, n_perm=200, random_state=0)
    np.testing.assert_array_equal(res.null, again.null)
    # the opposite tail finds nothing significant
    neg = nbs(Y, X, [0, -1, 0], threshold=3.0, n_perm=200, random_state=0)
    assert neg.components.empty or neg.components.p_fwe.min() > 0.05


def test_nbs_null_calibration():
    # no effect: the planted-free data rarely give p < 0.05 (uniform p under H0)
    rng = np.random.default_rng(5)
    ps = []
    for s in range(12):
        X, Y, _, _ = _planted(n_nodes=12, n_pat=10, n_con=10, effect=0.0, seed=100 + s)
        r = nbs(Y, X, [0, 1, 0], threshold=2.0, n_perm=99, random_state=int(rng.integers(1000)))
        ps.append(r.components.p_fwe.min() if not r.components.empty else 1.0)
    assert np.mean(np.array(ps) < 0.05) <= 0.25


def test_edge_statistics_fdr_finds_planted_edges():
    X, Y, planted, _ = _planted(effect=1.5)
    df = edge_statistics(Y, X, [0, 1, 0])
    sig = df.q_fdr.to_numpy() < 0.05
    assert sig[planted].mean() > 0.8 and sig[~planted].mean() < 0.02


def test_bad_design_raises():
    with pytest.raises(DesignError):
        glm_t(np.zeros((5, 3)), np.ones((5, 2)), [1, 0, 0])
    with pytest.raises(InputDataError):
        glm_t(np.full((5, 3), np.nan), np.ones((5, 1)), [1])
