"""Brain extraction of a real head (Colin27, 2 mm) with a neck and shoulders in the field of view and
under large header rotations (issue 19): the robustfov-like crop and the multi-start rotation search.

References: the distributed brain-extracted Colin27 (``ch2bet``) on the same voxels; the planted
header rotation (the search's best start must be its nearest grid rotation)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from hfsmri.anat import brain_extraction as bx
from hfsmri.anat.qc import dice
from hfsmri.spatial.initialise import euler_rotation, robust_fov, rotation_search
from hfsmri.spatial.templates import load_template
from tests import realdata as R
from tests.anat.test_realhead import acquire


@pytest.fixture(scope="module")
def neck_head():
    """Colin27 with an emulated neck and shoulders (110 mm below), sampled at 2 mm, N4-corrected,
    and its ch2bet brain mask on the same voxels."""
    head = nib.load(str(R.colin27_head()))
    bet = nib.load(str(R.colin27_brain()))
    full = R.with_neck(head)
    below = full.shape[2] - head.shape[2]
    ref = np.zeros(full.shape, np.float32)
    ref[:, :, below:] = np.asarray(bet.dataobj) > 0
    t1 = acquire(full, (2.0, 2.0, 2.0), np.float32)
    ref2 = np.asarray(acquire(nib.Nifti1Image(ref, full.affine), (2.0, 2.0, 2.0), np.float32).dataobj) >= 0.5
    return bx.n4(t1, nthreads=1, iterations=(50, 50), shrink_mm=12.0), ref2


def test_robust_fov_keeps_the_brain_and_cuts_the_shoulders(neck_head):
    img, ref = neck_head
    head = bx.head_mask(img)
    crop, kept, sl, removed = robust_fov(img, head)
    assert removed > 0  # neck/shoulder voxels below the cut
    inside = np.zeros(img.shape, bool)
    inside[sl] = np.asarray(crop.dataobj) > 0
    assert (ref & ~inside).sum() == 0  # every brain voxel kept
    # the cut: nothing kept more than 180 mm below the top of the head (world z)
    z = img.affine[2, :3] @ np.array(np.nonzero(inside), float) + img.affine[2, 3]
    ztop = (img.affine[2, :3] @ np.array(np.nonzero(head), float) + img.affine[2, 3]).max()
    assert z.min() >= ztop - 180.0 - 1e-6
    # same grid: the crop's affine is the original's shifted by whole voxels
    assert np.allclose(crop.affine[:3, :3], img.affine[:3, :3])
    assert np.allclose(np.linalg.inv(img.affine) @ crop.affine @ [0, 0, 0, 1], [s.start for s in sl] + [1])


@pytest.mark.parametrize("degrees", [(12, 0, 0), (-25, 10, 5)])
def test_brain_mask_of_full_fov_head_with_neck(neck_head, degrees, tmp_path):
    img, ref = neck_head
    mask, _, info = bx.template_brain_mask(R.reheader(img, degrees), load_template("T1", 2),
                                           load_template("mask", 2), nthreads=1, out_dir=tmp_path, return_info=True)
    assert info["bet_fov_removed_ml"] > 500  # the shoulders were cut
    d = dice(np.asarray(mask.dataobj) > 0, ref)
    assert d >= 0.93, (degrees, d, info["bet_candidate"])


@pytest.mark.parametrize("truth", [(60, 0, -30), (20, -35, 10)])
def test_rotation_search_finds_the_header_rotation(neck_head, truth):
    """The best start is the grid rotation nearest the planted one (0 deg on the grid, <= 21 deg off
    it with a 30 deg grid), despite the neck and shoulders rotated with the head."""
    img, _ = neck_head
    rot = R.reheader(img, truth)
    crop, kept, _, _ = robust_fov(rot, bx.head_mask(rot))
    tm = load_template("mask", 2)
    fmask = nib.Nifti1Image(bx.dilate_mask(tm.get_fdata() > 0, tm.affine, 5.0).astype(np.uint8), tm.affine)
    best = rotation_search(load_template("T1", 2), fmask, crop, kept, fixed_brain=tm)
    rel = best[0]["map"][:3, :3] @ euler_rotation(truth).T
    angle = np.degrees(np.arccos(np.clip((np.trace(rel) - 1) / 2, -1, 1)))
    nearest = min(np.degrees(np.arccos(np.clip((np.trace(euler_rotation(g) @ euler_rotation(truth).T) - 1) / 2,
                                                -1, 1))) for g in _grid())
    assert angle <= nearest + 1e-6, (best[0]["degrees"], angle, nearest)


def _grid():
    import itertools

    a = np.arange(-90.0, 91.0, 30.0)
    return itertools.product(a, a, a)


@pytest.mark.slow
def test_large_header_rotation_uses_the_search_and_recovers_the_mask(neck_head, tmp_path):
    """60 deg pitch: the centre-of-mass start locks into a wrong pose (Dice 0.87 before the search);
    the search starts recover the mask."""
    img, ref = neck_head
    mask, _, info = bx.template_brain_mask(R.reheader(img, (60, 0, 0)), load_template("T1", 2),
                                           load_template("mask", 2), nthreads=1, out_dir=tmp_path, return_info=True)
    assert info["bet_candidate"].startswith("search")
    assert info["bet_template_correlation"] >= bx.MIN_TEMPLATE_CORRELATION
    d = dice(np.asarray(mask.dataobj) > 0, ref)
    assert d >= 0.93, d
