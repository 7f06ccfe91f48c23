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


def test_vectors_as_written_rescaled_and_b0_threshold():
    dirs = fibonacci_dirs(8) * np.linspace(0.5, 2.0, 8)[:, None]
    dirs[3] = fibonacci_dirs(8)[3] * (1 + 4e-3)  # written with few decimals: used as written (dipy, FSL)
    bvals = np.r_[5.0, 40.0, np.full(8, 800.0)]  # 5 and 40 are b0 at threshold 50
    g = gradient_table(bvals, np.vstack([[1, 0, 0], [0, 0, 0], dirs]))
    assert g.n_b0 == 2
    np.testing.assert_array_equal(g.bvecs[0], [1, 0, 0])  # b0 written with a direction keeps it
    assert g.b0_with_direction.tolist() == [True] + [False] * 9
    np.testing.assert_array_equal(g.bvecs[5], dirs[3])
    norms = np.linalg.norm(dirs, axis=1)
    far = np.abs(norms - 1) > 0.01
    # far from unit: unit direction with b scaled by |g|^2 (same design row b g g^T, FSL / MRtrix)
    np.testing.assert_allclose(np.linalg.norm(g.bvecs[2:][far], axis=1), 1.0)
    np.testing.assert_allclose(g.bvals[2:], np.where(far, 800.0 * norms ** 2, 800.0))
    from hfsmri.dwi.tensor import design_matrix

    np.testing.assert_allclose(design_matrix(g.bvals, g.bvecs)[2:], design_matrix(bvals[2:], dirs), atol=1e-9)
    assert g.max_norm_deviation == pytest.approx(1.0)


def test_b0_vectors_follow_dipy_rule():
    """NaN / zero / non-unit b0 vectors become zero (b = 0 design row), unit ones are kept, as dipy."""
    from dipy.core.gradients import gradient_table as dgt

    dirs = fibonacci_dirs(10)
    b0vecs = np.array([[np.nan] * 3, [0, 0, 0], [0.6, 0.8, 0.0], [0.3, 0.0, 0.0]])
    bvals = np.r_[0.0, 10.0, 15.0, 10.0, np.full(10, 1000.0)]
    bvecs = np.vstack([b0vecs, dirs])
    g = gradient_table(bvals, bvecs)
    d = dgt(bvals, bvecs=bvecs)
    from hfsmri.dwi.tensor import design_matrix
    import dipy.reconst.dti as dti

    np.testing.assert_allclose(design_matrix(g.bvals, g.bvecs)[:, :6], dti.design_matrix(d)[:, :6], atol=1e-12)
    assert g.b0_with_direction.tolist()[:4] == [False, False, True, False]


def test_bval_unit_error_and_no_weighted_volume(tmp_path):
    dirs = fibonacci_dirs(6)
    with pytest.raises(InputDataError, match=r"dwi.bval.*>= 10000.*\[1, 2, 3, 4, 5, 6\]"):
        read_gradients(*_write(tmp_path, np.r_[0, np.full(6, 1e9)], np.vstack([[0, 0, 0], dirs])))
    with pytest.raises(InputDataError, match=r"dwi.bval.*no diffusion-weighted volume"):
        read_gradients(*_write(tmp_path, np.r_[0, 0, 5, 10], np.vstack([[0, 0, 0]] * 2 + [dirs[:2]])))


def test_lowest_shell_when_no_shell_below_bmax():
    d = fibonacci_dirs(12)
    bvals = np.r_[0, np.full(12, 2000.0), np.full(12, 3000.0)]
    g = gradient_table(bvals, np.vstack([[0, 0, 0], d, d]))
    used, rule = g.tensor_volumes(1500)
    assert used.tolist() == list(range(13)) and "lowest shell" in rule
    s = g.fit_summary(1500)
    assert s["lowest_shell_fallback"] and s["excluded_volumes"] == list(range(13, 25))
    assert g.fit_summary(None)["n_volumes"] == 25 and not g.fit_summary(None)["lowest_shell_fallback"]


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
