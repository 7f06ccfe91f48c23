"""The headline peak is the largest |t| in the significant set, the cluster table's top row (issue 22 item 1).

Permutation p-values tie: every voxel beyond the largest null maximum shares p = 1/(n_perm + 1). The
old rule (first voxel at the minimum p) reported a t of 2.09 beside a cluster table peak of 13.1.
"""
import numpy as np

from hfsmri.stats.clusters import cluster_table, significant_peak


def _maps():
    rng = np.random.default_rng(3)
    t = rng.normal(0, 1, (20, 22, 18))
    t[3:8, 3:8, 3:8] = 2.5          # a low-t cluster met first in C order
    t[12:17, 12:17, 10:15] = 4.0
    t[14, 15, 12] = 13.1            # the true peak, far from the first voxel
    p = np.ones_like(t)
    sig = t > 2.0
    p[sig] = 1.0 / 1001             # tied p floor everywhere significant
    return t, sig, p


def test_peak_is_max_abs_t_not_first_min_p():
    t, sig, p = _maps()
    first_min_p = np.unravel_index(int(np.argmax(np.where(sig, -np.log10(p), -np.inf))), t.shape)
    assert t[first_min_p] < 3                      # the old rule picks a low-t voxel
    assert significant_peak(t, sig) == (14, 15, 12)


def test_peak_matches_cluster_table_top_row():
    t, sig, p = _maps()
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    table = cluster_table(t, sig, p, aff, atlases=())
    top = table.loc[table["peak_stat"].idxmax()]
    ijk = significant_peak(t, sig)
    xyz = (aff @ np.r_[np.array(ijk, float), 1.0])[:3]
    np.testing.assert_allclose([top.peak_x, top.peak_y, top.peak_z], xyz)
    assert top.peak_stat == t[ijk] == 13.1


def test_negative_tail_uses_absolute_value_and_empty_set_is_none():
    t, sig, _ = _maps()
    assert significant_peak(-t, sig) == (14, 15, 12)
    assert significant_peak(t, np.zeros_like(sig)) is None
