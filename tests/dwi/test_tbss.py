"""TBSS on synthetic phantoms with planted centre lines / planes and planted subject maxima."""
from __future__ import annotations

import numpy as np
import pytest

from hfsmri.dwi.tbss import DIRECTIONS, mean_fa_and_mask, project, skeletonise, tbss, to_volume
from hfsmri.errors import InputDataError


def test_thirteen_directions_cover_the_neighbourhood():
    full = {tuple(d) for d in DIRECTIONS} | {tuple(-d) for d in DIRECTIONS}
    assert len(full) == 26 and (0, 0, 0) not in full


def test_straight_tube_skeleton_is_the_centre_line():
    ii, jj, kk = np.indices((30, 32, 28)).astype(float)
    r = np.hypot(jj - 16, kk - 13)
    fa = 0.05 + 0.65 * np.exp(-r ** 2 / (2 * 2.0 ** 2))
    sk = skeletonise(fa, fa > 0, threshold=0.2)
    pts = np.argwhere(sk.skeleton)
    assert set(map(tuple, pts[:, 1:])) == {(16, 13)}
    assert sorted(pts[:, 0]) == list(range(30))  # the whole line, one voxel thick


def test_ring_tube_skeleton_lies_on_the_centre_circle():
    ii, jj, kk = np.indices((40, 40, 30)).astype(float)
    rho = np.hypot(ii - 19.6, jj - 20.3)
    r = np.hypot(rho - 12, kk - 15.2)
    fa = 0.05 + 0.65 * np.exp(-r ** 2 / (2 * 2.0 ** 2))
    sk = skeletonise(fa, threshold=0.2)
    pts = np.argwhere(sk.skeleton).astype(float)
    dist = np.hypot(np.hypot(pts[:, 0] - 19.6, pts[:, 1] - 20.3) - 12, pts[:, 2] - 15.2)
    assert dist.max() < 1.0  # within one voxel of the true centre circle
    # covers the circle: every 10-degree sector has skeleton voxels
    ang = np.degrees(np.arctan2(pts[:, 1] - 20.3, pts[:, 0] - 19.6)) % 360
    assert len(np.unique((ang // 10).astype(int))) == 36
    # threshold: raising it above the peak leaves nothing
    assert skeletonise(fa, threshold=0.71).n_voxels == 0


def test_projection_picks_each_subject_maximum_and_reuses_indices():
    shape = (20, 18, 30)
    ii, jj, kk = np.indices(shape).astype(float)
    shifts = [-2, -1, 0, 1, 2, 0]  # subjects misregistered across the sheet
    peaks = [0.50, 0.55, 0.60, 0.65, 0.70, 0.75]
    fa = np.array([0.05 + (p - 0.05) * np.exp(-(kk - 15 - s) ** 2 / (2 * 1.5 ** 2)) for p, s in zip(peaks, shifts)])
    md = np.array([np.where(kk == 15 + s, 1e-3 * (1 + 0.1 * i), 2e-3) for i, s in enumerate(shifts)])
    res = tbss(fa, {"md": md}, voxel_size=(2, 2, 2))
    pts = np.argwhere(res.skeleton.skeleton)
    assert np.all(pts[:, 2] == 15) and pts.shape[0] == 20 * 18  # the mid-plane of the sheet
    np.testing.assert_allclose(res.values["fa"], np.repeat(np.array(peaks)[:, None], pts.shape[0], 1), atol=1e-12)
    np.testing.assert_allclose(res.values["md"], np.repeat(1e-3 * (1 + 0.1 * np.arange(6))[:, None], pts.shape[0], 1))
    # indices point to the subject's own peak plane
    k_idx = np.unravel_index(res.indices, shape)[2]
    np.testing.assert_array_equal(k_idx, np.repeat((15 + np.array(shifts))[:, None], pts.shape[0], 1))
    vol = to_volume(res.skeleton, res.values["fa"])
    assert vol.shape == shape + (6,) and vol[3, 4, 15, 4] == pytest.approx(0.70)


def test_search_limit_and_distance_map():
    # two parallel sheets 10 voxels apart: a subject peak beyond the half-way point is not reached
    shape = (8, 8, 40)
    kk = np.indices(shape)[2].astype(float)
    base = 0.05 + 0.6 * np.exp(-(kk - 10) ** 2 / 4) + 0.6 * np.exp(-(kk - 20) ** 2 / 4)
    sk = skeletonise(base, threshold=0.2, max_search_mm=30)
    assert set(np.argwhere(sk.skeleton)[:, 2]) == {10, 20}
    np.testing.assert_allclose(sk.distance[0, 0, 10:21], [0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0])
    subj = base.copy()
    subj[:, :, 14] = 0.95  # belongs to sheet 10's territory (distance increases 10 -> 14)
    vals, idx = project(sk, subj)
    kz = np.unravel_index(idx, shape)[2]
    sk_k = np.argwhere(sk.skeleton)[:, 2]
    assert np.all(vals[sk_k == 10] == 0.95) and np.all(kz[sk_k == 10] == 14)
    assert np.all(vals[sk_k == 20] < 0.95)  # sheet 20 stops at the half-way point (k = 15)
    sk_short = skeletonise(base, threshold=0.2, max_search_mm=3)
    assert np.all(project(sk_short, subj)[0] < 0.95)  # 4 voxels away > 3 mm


def test_mask_requires_all_subjects_and_errors():
    fa = np.full((3, 4, 4, 4), 0.5)
    fa[1, 0, 0, 0] = 0.0
    mean, mask = mean_fa_and_mask(fa)
    assert not mask[0, 0, 0] and mask.sum() == 63 and mean[1, 1, 1] == 0.5
    with pytest.raises(InputDataError):
        mean_fa_and_mask(fa[0])
    bad = fa.copy()
    bad[0, 1, 1, 1] = np.nan
    with pytest.raises(InputDataError, match="NaN"):
        mean_fa_and_mask(bad)
