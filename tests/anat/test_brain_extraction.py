"""Template-based brain extraction on simulated whole-head T1w (3 mm, the coarse setting where the
antspyx default affine schedule failed): mask volume vs the simulator's true TIV, the affine
schedule, the plausibility guard and its retry path.

References: the simulator's ground truth (``info["tiv_ml"]``), closed-form schedule arithmetic,
masks built by hand (a mask grown past the head must be flagged)."""
import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hfsmri.anat import brain_extraction as bx
from hfsmri.anat.participant import PROFILES, linear_part
from hfsmri.spatial.registration import Transforms
from hfsmri.spatial.resample import voxel_volume_ml
from hfsmri.spatial.templates import load_template

RES = 3


def _subject(scale, seed, res=RES):
    """Simulated whole head (skull, scalp), small or large, rotated and shifted, no planted effect."""
    from hfsmri.simulate.anatomy import MniMap
    from hfsmri.simulate.deformation import SubjectTransform
    from hfsmri.simulate.t1w import simulate_t1w

    rng = np.random.default_rng(seed)
    tf = SubjectTransform.random(rng, deform=True, scale_mean=scale, scale_sd=1e-6)
    z = MniMap(np.zeros((4, 4, 4), np.float32), np.diag([100.0, 100, 100, 1]))
    data, aff, info = simulate_t1w(tf, z, 0.0, rng, resolution_mm=res)
    return nib.Nifti1Image(data.astype(np.float32), aff), info


@pytest.fixture(scope="module")
def small_head():
    img, info = _subject(0.85, 3)  # TIV ~1150 ml: the case that failed at 3 mm before the fix
    return bx.n4(img, nthreads=1, iterations=(50, 50), shrink_mm=12.0), info


def test_affine_schedule_caps_coarsest_level():
    s2 = bx.affine_schedule(2.0)
    assert s2["aff_shrink_factors"] == (6, 4, 2, 1)  # antspyx default kept at 2 mm (12 mm voxels)
    assert s2["aff_smoothing_sigmas"] == (3, 2, 1, 0)
    s3 = bx.affine_schedule(3.0)
    assert s3["aff_shrink_factors"] == (4, 2, 1)     # 18 mm level dropped; coarsest 12 mm
    assert max(f * 3.0 for f in s3["aff_shrink_factors"]) <= 12.0
    assert len(s3["aff_iterations"]) == len(s3["aff_shrink_factors"]) == len(s3["aff_smoothing_sigmas"])
    assert bx.affine_schedule(1.0)["aff_shrink_factors"] == (6, 4, 2, 1)


def test_small_head_mask_matches_true_tiv_at_3mm(small_head, tmp_path):
    img, info = small_head
    mask, tr, meta = bx.template_brain_mask(img, load_template("T1", RES), load_template("mask", RES),
                                            nthreads=1, out_dir=tmp_path, return_info=True)
    vol = np.asarray(mask.dataobj).sum() * voxel_volume_ml(img)
    assert abs(vol / info["tiv_ml"] - 1) < 0.06, (vol, info["tiv_ml"], meta)
    assert meta["bet_outside_head"] <= 0.01
    assert all(__import__("pathlib").Path(f).exists() for f in tr.fwd)


def test_plausibility_flags_oversized_mask(small_head):
    img, info = small_head
    head = bx.head_mask(img)
    vml = voxel_volume_ml(img)
    assert head.sum() * vml > info["tiv_ml"]  # the head contains the brain
    # a mask grown 1.3x about the head centre (the old failure: brain scaled onto the head)
    ijk = np.argwhere(head)
    c = ijk.mean(axis=0)
    grid = np.indices(head.shape).reshape(3, -1).T
    src = np.rint(c + (grid - c) / 1.3).astype(int)
    inside = np.all((src >= 0) & (src < head.shape), axis=1)
    big = np.zeros(head.size, bool)
    big[inside] = head[tuple(src[inside].T)]
    big = big.reshape(head.shape)
    bad = bx.mask_plausibility(nib.Nifti1Image(big.astype(np.uint8), img.affine), head, vml)
    assert not bad["ok"] and bad["outside_head"] > 0.05
    # a mask of the head itself but shrunk to brain size passes
    small = np.zeros(head.size, bool)
    src = np.rint(c + (grid - c) * 1.25).astype(int)
    inside = np.all((src >= 0) & (src < head.shape), axis=1)
    small[inside] = head[tuple(src[inside].T)]
    good = bx.mask_plausibility(nib.Nifti1Image(small.reshape(head.shape).astype(np.uint8), img.affine), head, vml)
    assert good["outside_head"] == 0.0


@pytest.mark.slow
def test_guard_retries_and_keeps_a_plausible_candidate(small_head, tmp_path, monkeypatch):
    """Force the first candidate to be judged implausible: the alternatives are run and the kept
    mask still matches the true TIV."""
    img, info = small_head
    real = bx.mask_plausibility
    calls = []

    def first_fails(mask, head, vml):
        out = real(mask, head, vml)
        calls.append(out)
        return dict(out, ok=False) if len(calls) == 1 else out

    monkeypatch.setattr(bx, "mask_plausibility", first_fails)
    mask, tr, meta = bx.template_brain_mask(img, load_template("T1", RES), load_template("mask", RES),
                                            nthreads=1, out_dir=tmp_path, return_info=True)
    # the implausible first start triggers the other starts (the rotation search's first, then the
    # others only while none is plausible and template-like)
    assert meta["bet_retried"] and {"affine", "search1"} <= set(meta["bet_candidates"])
    assert meta["bet_candidate"] != "affine"
    vol = np.asarray(mask.dataobj).sum() * voxel_volume_ml(img)
    assert abs(vol / info["tiv_ml"] - 1) < 0.06
    assert tr.fwd == [str(tmp_path / "bet-affine_0GenericAffine.mat")]


def test_linear_part_drops_warps_only():
    tr = Transforms(fwd=["w/to-MNI_1Warp.nii.gz", "w/to-MNI_0GenericAffine.mat", "m/rigid.mat"],
                    inv=["m/rigid.mat", "w/to-MNI_0GenericAffine.mat", "w/to-MNI_1InverseWarp.nii.gz"],
                    inv_invert=[True, True, False])
    lin = linear_part(tr)
    assert lin.fwd == ["w/to-MNI_0GenericAffine.mat", "m/rigid.mat"]
    assert lin.inv == ["m/rigid.mat", "w/to-MNI_0GenericAffine.mat"] and lin.inv_invert == [True, True]


def test_unknown_profile_is_a_user_error():
    from types import SimpleNamespace

    from hfsmri.anat.participant import _params
    from hfsmri.errors import InputDataError

    assert set(PROFILES) == {"standard", "fast"}
    with pytest.raises(InputDataError, match="profile"):
        _params(SimpleNamespace(preprocessing={"anat": {"profile": "turbo"}}))
    assert _params(SimpleNamespace(preprocessing={"anat": {"profile": "fast"}}))["profile"] == "fast"


def test_head_mask_of_rotated_ball_is_filled():
    """Closed form: a bright shell (scalp) around a dark gap (skull) and an inner ball is filled
    into the whole ball (opening may drop a few single surface voxels of the digital sphere)."""
    n = 41
    g = np.indices((n, n, n)) - n // 2
    r = np.sqrt((g ** 2).sum(axis=0))
    data = np.where((r > 14) & (r <= 17), 800.0, np.where(r <= 12, 500.0, 0.0)).astype(np.float32)
    rot = np.eye(4)
    rot[:3, :3] = Rotation.from_euler("xyz", [10, 0, 5], degrees=True).as_matrix() * 2.0
    head = bx.head_mask(nib.Nifti1Image(data, rot))
    ball = r <= 17
    assert head[r <= 14].all()  # dark gap and interior filled
    assert (head & ~ball).sum() == 0 and (ball & ~head).sum() / ball.sum() < 0.02  # surface voxels only
