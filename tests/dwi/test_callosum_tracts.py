"""Corpus-callosum partition (ordered, disjoint, fractions as documented) and tract ROIs."""
from __future__ import annotations

import numpy as np
import pytest

from hfsmri.dwi.callosum import SCHEMES, callosum_fraction, partition_callosum
from hfsmri.dwi.tracts import roi_means


def _arched_cc(res=2.0):
    """A synthetic arched callosum: an arc in the y-z plane, 10 mm thick, spanning |x| <= 20 mm."""
    n = int(100 / res)
    affine = np.diag([res, res, res, 1.0])
    affine[:3, 3] = [-res * (n // 2)] * 3
    idx = np.indices((n, n, n)).reshape(3, -1).T
    xyz = idx * res + affine[:3, 3]
    y, z = xyz[:, 1], xyz[:, 2]
    radius = np.hypot(y / 1.6, z - 0.0)
    arc = (np.abs(radius - 25) <= 5) & (z >= 0) & (np.abs(xyz[:, 0]) <= 20)
    return arc.reshape(n, n, n), affine


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_three_ordered_disjoint_parts(scheme):
    cc, affine = _arched_cc()
    parts = partition_callosum(cc, affine, scheme=scheme, halfwidth_mm=8)
    g, b, s, w = (parts[k] for k in ("genu", "body", "splenium", "whole"))
    assert g.any() and b.any() and s.any()
    assert not (g & b).any() and not (b & s).any() and not (g & s).any()
    np.testing.assert_array_equal(g | b | s, w)
    # whole = callosum within the mid-sagittal slab
    xs = np.indices(cc.shape)[0] * affine[0, 0] + affine[0, 3]
    np.testing.assert_array_equal(w, cc & (np.abs(xs) <= 8))
    # ordered anterior -> posterior: every genu voxel is more anterior than every splenium voxel
    ys = np.indices(cc.shape)[1] * affine[1, 1] + affine[1, 3]
    assert ys[g].min() > ys[s].max()
    assert ys[g].mean() > ys[b].mean() > ys[s].mean()
    # the fraction of the axis length in each part follows the scheme's cut points
    f = callosum_fraction(cc, affine, 8)
    a, c = SCHEMES[scheme]
    assert f[g].max() < a <= f[b].min() and f[b].max() < c <= f[s].min()


def test_fraction_on_a_straight_bar_is_linear_in_y():
    affine = np.eye(4)
    cc = np.zeros((3, 21, 3), bool)
    cc[1, :, 1] = True
    affine[:3, 3] = [-1, -10, 0]
    f = callosum_fraction(cc, affine, halfwidth_mm=0.5)
    np.testing.assert_allclose(f[1, :, 1], np.linspace(1, 0, 21))  # y=+10 is the anterior end (f = 0)
    parts = partition_callosum(cc, affine, "witelson", halfwidth_mm=0.5)
    # y from +10 (genu) to -10: f < 1/3 -> 7 voxels (f = 0..0.30), f >= 4/5 -> 5 voxels (0.80..1.0)
    assert parts["genu"].sum() == 7 and parts["splenium"].sum() == 5 and parts["body"].sum() == 9


def test_roi_means_against_numpy(rng):
    fa = rng.uniform(0.1, 0.9, (6, 6, 6))
    md = rng.uniform(0.5e-3, 1e-3, (6, 6, 6))
    fa[0] = 0.0  # outside the brain
    m1 = np.zeros_like(fa, bool)
    m1[:2] = True
    df = roi_means({"fa": fa, "md": md}, {"a": m1, "empty": np.zeros_like(m1)})
    assert df.loc["a", "n_voxels"] == 36
    assert df.loc["a", "fa"] == pytest.approx(fa[1].mean())
    assert df.loc["a", "md"] == pytest.approx(md[1].mean())
    assert np.isnan(df.loc["empty", "fa"])


def test_juelich_tract_and_cc_masks_on_mni_grid():
    from hfsmri.dwi.tracts import TRACTS, tract_masks
    from hfsmri.spatial.atlas import label_at
    from hfsmri.spatial.templates import load_template

    t = load_template("mask", 2)
    masks = tract_masks(t, names={"slfL", "slfR", "plicL", "ilfR", "ccGenu", "ccBody", "ccSplenium", "ccWhole"})
    aff = t.affine
    for name in ("slfL", "slfR", "plicL", "ilfR"):
        assert masks[name].sum() > 20, name
    # SLF left lies at x < 0 and its voxels carry the Jülich SLF_L label
    xyz = np.argwhere(masks["slfL"]) @ aff[:3, :3].T + aff[:3, 3]
    assert np.all(xyz[:, 0] < 0)
    assert set(label_at("juelich", xyz[:50])) == {"WM_Superior_longitudinal_fascicle_L"}
    xyz = np.argwhere(masks["plicL"]) @ aff[:3, :3].T + aff[:3, 3]
    assert xyz[:, 1].max() <= 0 and xyz[:, 2].min() >= -4
    g, b, s = (np.argwhere(masks[k]) @ aff[:3, :3].T + aff[:3, 3] for k in ("ccGenu", "ccBody", "ccSplenium"))
    assert g[:, 1].mean() > b[:, 1].mean() > s[:, 1].mean()
    assert g[:, 1].mean() > 10 and s[:, 1].mean() < -25  # MNI genu ~ +25 mm, splenium ~ -35 mm
    assert masks["ccWhole"].sum() == sum(masks[k].sum() for k in ("ccGenu", "ccBody", "ccSplenium"))
    assert len(TRACTS) == 19
