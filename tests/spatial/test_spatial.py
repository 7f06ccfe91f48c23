"""Templates, atlases and left-right flipping."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from hfsmri.spatial import atlas, flip, templates


@pytest.mark.parametrize("res", [1, 2, 3])
def test_grid_symmetric_about_x0(res):
    shape, aff = templates.template_grid(res)
    x_first, x_last = aff[0, 3], aff[0, 3] + aff[0, 0] * (shape[0] - 1)
    assert x_first == -x_last
    if res in (1, 2):  # identical to nilearn's own grid at 1 and 2 mm
        from nilearn import datasets

        ref = datasets.load_mni152_template(resolution=res)
        assert ref.shape == shape and np.allclose(ref.affine, aff)


def test_template_kinds():
    mask = templates.load_template("mask", 3)
    gm = templates.load_template("GM", 3).get_fdata()
    csf = templates.load_template("CSF", 3).get_fdata()
    assert set(np.unique(mask.get_fdata())) == {0.0, 1.0}
    n = int(mask.get_fdata().sum())
    assert 60000 < n < 80000  # ~70k voxels at 3 mm (as in the benchmarks)
    assert gm.max() <= 1 and csf.min() >= 0
    a = templates.load_template("T1", 3)
    a.get_fdata()[:] = 0  # copies: the cache is not modified
    assert templates.load_template("T1", 3).get_fdata().max() > 0


def test_label_at_known_points():
    assert atlas.label_at("ho", [[-12, -18, 8]]) == ["Left_Thalamus"]
    assert atlas.label_at("aal", [[-12, -18, 8]]) == ["Thalamus_L"]
    assert atlas.label_at("aal", [[40, -50, 45]]) == ["Parietal_Inf_R"]
    assert atlas.label_at("juelich", [[0, -10, 25]]) == ["WM_Callosal_body"]
    assert atlas.label_at("aal", [[0, 0, 300]]) == [""]


def test_region_mask_forms():
    ref = templates.load_template("mask", 2)
    amy = atlas.region_mask("ho:Left_Amygdala", ref)
    # the left amygdala lies in x < 0
    xyz = np.argwhere(amy) @ ref.affine[:3, :3].T + ref.affine[:3, 3]
    assert amy.sum() > 100 and (xyz[:, 0] < 0).all()
    cer = atlas.region_mask("aal:/Cerebelum_(6|8)_R/", ref)
    both = atlas.region_mask("aal:Cerebelum_6_R+aal:Cerebelum_8_R", ref)
    assert cer.sum() > 0 and np.array_equal(cer, both)
    sph = atlas.region_mask({"sphere": [0, 0, 0], "radius": 4.0}, ref)
    # 2 mm grid, radius 4 mm: the lattice points within distance 2 voxels: 33
    assert sph.sum() == 33
    with pytest.raises(ValueError, match="no label"):
        atlas.region_mask("aal:Nowhere", ref)


def test_label_shares():
    ref = templates.load_template("mask", 2)
    m = atlas.region_mask("aal:Thalamus_L", ref)
    shares = atlas.label_shares("aal", m, ref.affine)
    assert shares[0][0] == "Thalamus_L" and shares[0][1] > 0.95


def test_flip_world_coordinates():
    ref = templates.load_template("mask", 2)
    left = atlas.region_mask("ho:Left_Putamen", ref).astype(np.float32)
    img = nib.Nifti1Image(left, ref.affine)
    flipped = flip.flip_lr(img).get_fdata() > 0.5
    xyz = np.argwhere(flipped) @ ref.affine[:3, :3].T + ref.affine[:3, 3]
    assert (xyz[:, 0] > 0).all()
    # an asymmetric grid (x from -97 to 99) goes through resampling and still mirrors in world space
    aff = ref.affine.copy()
    aff[0, 3] += 1.0
    data = np.zeros(ref.shape, np.float32)
    i = 20  # world x = -98 + 1 + 40 = -57
    data[i, 50, 40] = 1
    out = flip.flip_lr(nib.Nifti1Image(data, aff), interpolation="nearest").get_fdata()
    j = np.argwhere(out > 0.5)
    xw = aff[0, 3] + 2 * j[:, 0]
    assert np.allclose(xw, 57, atol=1.0)


def test_flip_is_involution_and_reverses_las_axis():
    data = np.random.default_rng(0).random((5, 4, 3)).astype(np.float32)
    aff = np.diag([-2.0, 2, 2, 1])
    aff[0, 3] = 4.0  # x = 4, 2, 0, -2, -4: symmetric
    img = nib.Nifti1Image(data, aff)
    once = flip.flip_lr(img)
    np.testing.assert_array_equal(once.get_fdata(), data[::-1])
    np.testing.assert_array_equal(flip.flip_lr(once).get_fdata(), data)
