"""Gradient tables: layouts, validation errors, normalisation, shells, directions, rotation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hfsmri.dwi.gradients import gradient_table, read_gradients, rotate_bvecs
from hfsmri.errors import InputDataError
from tests.dwi._synth import fibonacci_dirs


def _write(tmp_path, bvals, bvecs, layout="3xN"):
    fb, fv = tmp_path / "dwi.bval", tmp_path / "dwi.bvec"
    np.savetxt(fb, np.asarray(bvals)[None, :], fmt="%.6f")
    arr = np.asarray(bvecs)
    np.savetxt(fv, arr.T if layout == "3xN" else arr, fmt="%.10f")
    return fb, fv


def test_small_64d_nan_b0_row(small_64d):
    data, fbval, fbvec = small_64d
    g = read_gradients(fbval, fbvec, n_volumes=data.shape[-1])
    assert g.n_volumes == 65 and g.n_b0 == 1
    # dipy reads the same table: b-values identical, b-vectors identical up to normalisation
    from dipy.core.gradients import gradient_table as dgt
    from dipy.io.gradients import read_bvals_bvecs

    b, v = read_bvals_bvecs(str(fbval), str(fbvec))
    dg = dgt(b, bvecs=v)
    np.testing.assert_allclose(g.bvals, dg.bvals)
    np.testing.assert_allclose(g.bvecs, dg.bvecs, atol=1e-6)
    assert np.all(g.bvecs[0] == 0)
    assert g.shells() == [(float(np.round(dg.bvals[1:].mean(), -1)), 64)]  # b ≈ 990..1010: one shell
    assert g.n_unique_directions() == 64


def test_layouts_equal(tmp_path):
    dirs = fibonacci_dirs(12)
    bvals = np.r_[0, np.full(12, 1000.0)]
    bvecs = np.vstack([[0, 0, 0], dirs])
    a = read_gradients(*_write(tmp_path, bvals, bvecs, "3xN"))
    sub = tmp_path / "b"
    sub.mkdir()
    b = read_gradients(*_write(sub, bvals, bvecs, "Nx3"))
    np.testing.assert_array_equal(a.bvals, b.bvals)
    np.testing.assert_allclose(a.bvecs, b.bvecs, atol=1e-9)
    np.testing.assert_allclose(a.bvecs[1:], dirs, atol=1e-9)


def test_nan_row_on_weighted_volume_names_file_and_rows(tmp_path):
    dirs = fibonacci_dirs(10)
    dirs[3] = np.nan
    dirs[7] = 0.0
    bvals = np.r_[0, np.full(10, 1000.0)]
    fb, fv = _write(tmp_path, bvals, np.vstack([[np.nan] * 3, dirs]))
    with pytest.raises(InputDataError) as exc:
        read_gradients(fb, fv, n_volumes=11)
    msg = str(exc.value)
    assert "dwi.bvec" in msg and "[4, 8]" in msg  # 0-based volume rows (b0 row is 0)


def test_count_mismatch_with_image(tmp_path):
    fb, fv = _write(tmp_path, np.r_[0, np.full(6, 1000.0)], np.vstack([[0, 0, 0], fibonacci_dirs(6)]))
    with pytest.raises(InputDataError, match="image has 9 volumes"):
        read_gradients(fb, fv, n_volumes=9)
    with pytest.raises(InputDataError, match="b-vectors but"):
        gradient_table(np.r_[0, np.full(6, 1000.0)], fibonacci_dirs(5))


def test_negative_bval_and_missing_file(tmp_path):
    with pytest.raises(InputDataError, match="negative"):
        fb, fv = _write(tmp_path, np.r_[0, -5, np.full(6, 1000.0)], np.vstack([[0, 0, 0]] * 2 + [fibonacci_dirs(6)]))
        read_gradients(fb, fv)
    with pytest.raises(InputDataError, match="not found"):
        read_gradients(tmp_path / "nope.bval", tmp_path / "nope.bvec")


def test_normalisation_and_b0_threshold():
    dirs = fibonacci_dirs(8) * np.linspace(0.5, 2.0, 8)[:, None]
    bvals = np.r_[5.0, 40.0, np.full(8, 800.0)]  # 5 and 40 are b0 at threshold 50
    g = gradient_table(bvals, np.vstack([[1, 0, 0], [0, 0, 0], dirs]))
    assert g.n_b0 == 2 and np.all(g.bvecs[:2] == 0)
    np.testing.assert_allclose(np.linalg.norm(g.bvecs[2:], axis=1), 1.0)
    assert g.max_norm_deviation == pytest.approx(1.0)


def test_shells_unique_directions_and_selection():
    d = fibonacci_dirs(20)
    # shell 1000: 20 dirs + 5 repeats (one antipodal) ; shell 2000: 20 dirs ; shell 3000: 10 dirs
    rep = np.vstack([d[:4], -d[4:5]])
    bvecs = np.vstack([[0, 0, 0]] * 3 + [d, rep, d, d[:10]])
    bvals = np.r_[[0, 0, 0], np.full(25, 1000.0) + np.linspace(-20, 20, 25), np.full(20, 2000.0), np.full(10, 3000.0)]
    g = gradient_table(bvals, bvecs)
    assert g.shells() == [(1000.0, 25), (2000.0, 20), (3000.0, 10)]
    assert g.n_unique_directions() == 20
    used = g.select(1500)
    assert used.tolist() == list(range(28))
    qc = g.qc()
    assert qc["n_b0"] == 3 and qc["fit_volumes"] == list(range(28)) and qc["n_unique_directions_fit"] == 20


def test_rotate_bvecs_matches_scipy(rng):
    rots = Rotation.random(6, random_state=3)
    scale = np.diag([1.1, 0.9, 1.05])
    mats = rots.as_matrix() @ scale  # affine = R·S: the rotational (polar) part is R
    v = fibonacci_dirs(6)
    out = rotate_bvecs(v, mats)
    np.testing.assert_allclose(out, rots.apply(v), atol=1e-12)
    assert np.all(rotate_bvecs(np.zeros((1, 3)), np.eye(3)[None]) == 0)
