"""Cluster table on a synthetic MNI-space map with known clusters and atlas labels."""
import numpy as np
import pytest

from hfsmri.stats.clusters import COLUMNS, cluster_table, local_maxima


def mni_box(res=2.0, lo=(-40, -50, -30), hi=(40, 20, 30)):
    shape = tuple(int(round((h - l) / res)) + 1 for l, h in zip(lo, hi))
    aff = np.diag([res, res, res, 1.0])
    aff[:3, 3] = lo
    return shape, aff


def world_grid(shape, aff):
    ijk = np.indices(shape).reshape(3, -1).T
    return (ijk @ aff[:3, :3].T + aff[:3, 3]).reshape(shape + (3,))


def test_cluster_table_known_clusters():
    shape, aff = mni_box()
    xyz = world_grid(shape, aff)
    thal = np.array([-10.0, -18.0, 8.0])   # AAL Thalamus_L / HO Left_Thalamus
    amyg = np.array([22.0, -4.0, -18.0])   # AAL Amygdala_R / HO Right_Amygdala
    d1 = np.linalg.norm(xyz - thal, axis=-1)
    d2 = np.linalg.norm(xyz - amyg, axis=-1)
    sub = thal + [0.0, 12.0, 0.0]          # a second local maximum 12 mm away in the same cluster
    d3 = np.linalg.norm(xyz - sub, axis=-1)
    stat = np.maximum.reduce([6 - 0.5 * d1, 4 - 0.5 * d2, 5 - 0.5 * d3, np.zeros(shape)])
    sig = stat > 2.0
    p = np.where(sig, 0.01, 1.0)
    p[tuple(np.argwhere(d1 == 0)[0])] = 0.002
    table = cluster_table(stat, sig, p, aff, connectivity=26)
    assert list(table.columns) == COLUMNS
    main = table[~table.is_subpeak].set_index("cluster_id")
    assert list(main.index) == [1, 2]
    c1, c2 = main.loc[1], main.loc[2]
    # sizes computed independently from the planted geometry
    n1 = int(sig[(d1 < d2)].sum())
    n2 = int(sig[(d2 <= d1)].sum())
    assert c1.n_voxels == n1 and c2.n_voxels == n2
    assert c1.volume_mm3 == pytest.approx(8.0 * n1)
    assert (c1.peak_x, c1.peak_y, c1.peak_z) == tuple(thal)
    assert (c2.peak_x, c2.peak_y, c2.peak_z) == tuple(amyg)
    assert c1.peak_stat == pytest.approx(6.0) and c1.p_fwe == pytest.approx(0.002)
    assert c1.aal_label == "Thalamus_L" and c1.ho_label == "Left_Thalamus"
    assert c2.aal_label == "Amygdala_R" and c2.ho_label == "Right_Amygdala"
    com2 = xyz[sig & (d2 <= d1)].mean(axis=0)
    np.testing.assert_allclose([c2.com_x, c2.com_y, c2.com_z], com2, atol=1e-9)
    assert c1.aal_shares.split(":")[0] in {"Thalamus_L", "unlabelled"} and "Thalamus_L" in c1.aal_shares
    # sub-peak of cluster 1 at the planted second maximum
    subs = table[table.is_subpeak & (table.cluster_id == 1)]
    assert len(subs) >= 1
    assert (subs.iloc[0].peak_x, subs.iloc[0].peak_y, subs.iloc[0].peak_z) == tuple(sub)
    assert subs.iloc[0].peak_stat == pytest.approx(5.0)
    assert (table.groupby("cluster_id").size() <= 3).all()


def test_empty_table_and_no_atlas():
    shape, aff = mni_box(lo=(-10, -10, -10), hi=(10, 10, 10))
    t = np.zeros(shape)
    empty = cluster_table(t, t > 1, np.ones(shape), aff)
    assert list(empty.columns) == COLUMNS and len(empty) == 0
    t[3, 3, 3] = 4.0
    one = cluster_table(t, t > 1, np.full(shape, 0.04), aff, atlases=None)
    assert len(one) == 1 and one.n_voxels.iloc[0] == 1 and one.aal_label.iloc[0] == ""


def test_local_maxima_sorted():
    x = np.zeros((7, 7, 7))
    x[1, 1, 1] = 3
    x[5, 5, 5] = 5
    region = x > 0
    idx = local_maxima(x, region | (x == 0))
    assert tuple(idx[0]) == (5, 5, 5) and tuple(idx[1]) == (1, 1, 1)
