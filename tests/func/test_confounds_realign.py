"""Nuisance regressors, motion QC numbers and rigid realignment against closed forms / planted truth."""
import numpy as np
import pandas as pd
import pytest

from hfsmri.errors import InputDataError
from hfsmri.func import confounds as cf
from hfsmri.func.realign import realign, resample_volume, rigid_matrix, rigid_params
from hfsmri.spatial.templates import load_template


def test_friston24_and_fd_closed_form():
    m = np.array([[0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 2, 0, 0, 0, 0.01]], float)
    f = cf.friston24(m)
    assert f.shape == (3, 24)
    np.testing.assert_array_equal(f[:, :6], m)
    np.testing.assert_array_equal(f[1:, 6:12], m[:-1])
    np.testing.assert_array_equal(f[0, 6:12], 0)
    np.testing.assert_array_equal(f[:, 12:18], m ** 2)
    np.testing.assert_array_equal(f[:, 18:], f[:, 6:12] ** 2)
    np.testing.assert_allclose(cf.framewise_displacement(m), [0, 1, 2 + 50 * 0.01])
    with pytest.raises(InputDataError):
        cf.friston24(np.zeros((3, 5)))


def test_dvars_tsnr_closed_form():
    y = np.array([[10.0, 10.0], [12.0, 8.0], [12.0, 8.0]])
    # grand mean 10 -> scale 100; diffs (2, -2) -> RMS 2 * 100
    np.testing.assert_allclose(cf.dvars(y), [0, 200, 0])
    ts = np.random.default_rng(0).normal(100, 5, (50, 3))
    np.testing.assert_allclose(cf.tsnr(ts), ts.mean(0) / ts.std(0, ddof=1))


def test_fmriprep_confounds_loader(tmp_path):
    n = 6
    df = pd.DataFrame(np.arange(n * 6, dtype=float).reshape(n, 6) / 100, columns=list(cf.MOTION_COLUMNS))
    df["white_matter"] = 1.0
    df["csf"] = 2.0
    df["framewise_displacement"] = [np.nan, 1, 2, 3, 4, 5]
    df["non_steady_state_outlier00"] = [1, 0, 0, 0, 0, 0]
    p = tmp_path / "c.tsv"
    df.to_csv(p, sep="\t", index=False, na_rep="n/a")
    reg, fd, ns = cf.load_fmriprep_confounds(p)
    assert reg.shape == (n, 26)
    np.testing.assert_allclose(reg.iloc[:, :24].to_numpy(), cf.friston24(df[list(cf.MOTION_COLUMNS)].to_numpy()))
    np.testing.assert_allclose(fd, [0, 1, 2, 3, 4, 5])
    assert ns.tolist() == [True] + [False] * 5
    with pytest.raises(InputDataError, match="global_signal"):
        cf.load_fmriprep_confounds(p, global_signal=True)


def test_rigid_matrix_roundtrip():
    p = np.array([1.0, -2.0, 0.5, 0.05, -0.03, 0.02])
    c = np.array([3.0, -10.0, 7.0])
    np.testing.assert_allclose(rigid_params(rigid_matrix(p, c), c), p, atol=1e-12)


def test_realign_recovers_planted_motion():
    t1 = load_template("T1", 6)
    f = np.asarray(t1.dataobj, dtype=float)
    a = t1.affine
    rng = np.random.default_rng(0)
    n = 8
    truth = np.zeros((n, 6))
    truth[1:] = np.cumsum(rng.normal(0, [0.4, 0.4, 0.4, 0.005, 0.005, 0.005], (n - 1, 6)), axis=0)
    centre = a[:3, :3] @ ((np.array(f.shape) - 1) / 2.0) + a[:3, 3]
    vols = [resample_volume(f, a, np.linalg.inv(rigid_matrix(truth[k], centre)), order=3)
            * (1 + 0.01 * rng.standard_normal(f.shape)) for k in range(n)]
    res = realign(np.stack(vols, -1), a)
    err = np.abs(res["params"] - truth)
    assert err[:, :3].max() < 0.15  # mm (6 mm voxels)
    assert err[:, 3:].max() < 0.006  # rad (0.3 mm at 50 mm radius, with 6 mm voxels)
