"""Mid-space (unbiased within-subject) template: matrix kernels against closed forms, recovery of the
simulator's known session poses, symmetry under swapping the sessions, and the participant stage
on a two-session subject."""
import logging

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from hfsmri.anat import midspace as MS

RES = 3


def _rigid(angles_deg, t):
    M = np.eye(4)
    M[:3, :3] = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    M[:3, 3] = t
    return M


def test_halfway_and_symmetric_pair_closed_form():
    M = _rigid([4.0, -3.0, 6.0], [5.0, -2.0, 7.0])
    H = MS.matrix_power_real(M, 0.5)
    assert np.allclose(H @ H, M, atol=1e-10)
    # halfway rotation = half the angle about the same axis
    rv = Rotation.from_matrix(M[:3, :3]).as_rotvec()
    assert np.allclose(Rotation.from_matrix(H[:3, :3]).as_rotvec(), rv / 2, atol=1e-10)
    a, b = M, np.linalg.inv(_rigid([4.1, -2.9, 6.05], [5.1, -2.0, 6.9]))
    s_ab, s_ba = MS.symmetric_pair(a, b), MS.symmetric_pair(b, a)
    assert np.allclose(s_ab @ s_ba, np.eye(4), atol=1e-10)
    # two sessions: x_1 = A_1 m, x_0 = A_0 m with A_1 A_0^-1 = M and A_0 = M^-1/2
    A0, A1 = MS.midspace_maps([M])
    assert np.allclose(A1 @ np.linalg.inv(A0), M, atol=1e-10)
    assert np.allclose(A0, np.linalg.inv(H), atol=1e-10)
    B0, B1 = MS.midspace_maps([np.linalg.inv(M)])  # swapped order: same mid-space
    assert np.allclose(B0, A1, atol=1e-10) and np.allclose(B1, A0, atol=1e-10)


def test_ants_affine_file_roundtrip_matches_ants_points(tmp_path):
    import ants

    M = _rigid([3.0, 2.0, -5.0], [10.0, -4.0, 2.5])
    path = MS.write_ants_affine(M, tmp_path / "t.mat")
    assert np.allclose(MS.read_ants_affine(path), M, atol=1e-5)
    pts = np.array([[10.0, 20.0, 30.0], [-40.0, 5.0, 0.0]])
    df = pd.DataFrame(pts * [-1, -1, 1], columns=["x", "y", "z"])  # ANTs points are LPS
    out = ants.apply_transforms_to_points(3, df, [path])[["x", "y", "z"]].to_numpy() * [-1, -1, 1]
    assert np.allclose(out, (M @ np.c_[pts, np.ones(2)].T)[:3].T, atol=1e-3)


@pytest.fixture(scope="module")
def two_sessions(tmp_path_factory):
    from hfsmri.simulate import simulate_study

    tmp = tmp_path_factory.mktemp("midspace")
    root = simulate_study(tmp / "bids", 1, 0, seed=1, sessions=["pre", "post"], modalities=("anat",),
                          deform=True, resolution=RES, n_jobs=1)
    gt = pd.read_csv(root / "derivatives" / "ground_truth" / "subjects.tsv", sep="\t").set_index("session")
    imgs = {s: nib.load(str(root / "sub-01" / f"ses-{s}" / "anat" / f"sub-01_ses-{s}_T1w.nii.gz"))
            for s in ("pre", "post")}
    imgs = {s: nib.Nifti1Image(np.asarray(i.dataobj, np.float32), i.affine) for s, i in imgs.items()}
    return {"root": root, "gt": gt, "imgs": imgs, "tmp": tmp}


def _true_pose(row):
    """Simulator pose: native y = s R x + t of the MNI point x (shared s and nonlinear shape)."""
    R = Rotation.from_euler("xyz", [row.t1w_rot_x_deg, row.t1w_rot_y_deg, row.t1w_rot_z_deg], degrees=True)
    return R.as_matrix(), np.array([row.t1w_trans_x_mm, row.t1w_trans_y_mm, row.t1w_trans_z_mm])


def test_midspace_recovers_poses_and_is_symmetric(two_sessions):
    imgs, gt = two_sessions["imgs"], two_sessions["gt"]
    ms = MS.build_midspace([imgs["pre"], imgs["post"]], nthreads=2)
    sw = MS.build_midspace([imgs["post"], imgs["pre"]], nthreads=2)
    (Ra, ta), (Rb, tb) = _true_pose(gt.loc["pre"]), _true_pose(gt.loc["post"])
    truth = np.eye(4)
    truth[:3, :3] = Rb @ Ra.T
    truth[:3, 3] = tb - Rb @ Ra.T @ ta
    pts = np.c_[np.random.default_rng(0).uniform(-60, 60, (500, 3)), np.ones(500)].T
    err = np.linalg.norm((ms.pair_maps[0] @ pts - truth @ pts)[:3], axis=0)
    assert err.mean() < 0.5  # mm, 3 mm voxels
    # swapping pre/post: same mid-space (maps swap places), same grid, same template
    for a, b in ((ms.to_session[0], sw.to_session[1]), (ms.to_session[1], sw.to_session[0])):
        assert np.linalg.norm((a @ pts - b @ pts)[:3], axis=0).max() < 0.3
    assert sw.template.shape == ms.template.shape
    assert np.allclose(sw.template.affine, ms.template.affine, atol=0.3)
    x, y = ms.template.get_fdata(), sw.template.get_fdata()
    assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.999
    # halfway: each session is moved by half of the total displacement
    d0 = np.linalg.norm((ms.to_session[0] @ pts - pts)[:3], axis=0)
    d1 = np.linalg.norm((ms.to_session[1] @ pts - pts)[:3], axis=0)
    dt = np.linalg.norm((truth @ pts - pts)[:3], axis=0)
    assert np.allclose(d0.mean(), d1.mean(), rtol=0.1) and d0.mean() < 0.75 * dt.mean()


@pytest.mark.slow
def test_participant_stage_uses_midspace(two_sessions):
    from hfsmri.anat import participant as P
    from hfsmri.bids import discover
    from hfsmri.derivatives import Derivatives
    from hfsmri.pipeline import ParticipantContext

    ds = discover(two_sessions["root"])
    out, work = two_sessions["tmp"] / "out", two_sessions["tmp"] / "work"
    res = {}
    for ses in ("post", "pre"):
        si = ds.inputs[("01", ses)]
        ctx = ParticipantContext(subject="01", session=ses, inputs=si, out=Derivatives(out), work_dir=work / si.key,
                                 analyses={}, omp_nthreads=2, log=logging.getLogger("test-mid"),
                                 preprocessing={"anat": {"template_resolution": RES, "registration": "SyNFast"}})
        res[ses] = (ctx, P.run(ctx))
    a, b = res["pre"][0].anat, res["post"][0].anat
    assert a.midspace == b.midspace and (out / "sub-01" / "anat" / "sub-01_desc-midspace_T1w.nii.gz").exists()
    # shared mid-space -> MNI part, session-specific rigid at the end
    assert a.to_mni_transforms[:-1] == b.to_mni_transforms[:-1]
    assert a.to_mni_transforms[-1] != b.to_mni_transforms[-1]
    # same head: TIV of the two sessions agree closely, and match the truth
    tiv = [res[s][1]["tiv_ml"] for s in ("pre", "post")]
    assert abs(tiv[0] / tiv[1] - 1) < 0.02
    assert abs(np.mean(tiv) / two_sessions["gt"]["tiv_ml"].mean() - 1) < 0.08
