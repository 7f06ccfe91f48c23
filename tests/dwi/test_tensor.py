"""Tensor fit: closed-form recovery, agreement with dipy (small_64D and simulated), conventions."""
from __future__ import annotations

import numpy as np
import pytest

import dipy.reconst.dti as dti
from dipy.core.gradients import gradient_table as dipy_gtab
from dipy.io.gradients import read_bvals_bvecs

from hfsmri.dwi.gradients import gradient_table, read_gradients
from hfsmri.dwi.tensor import TensorModel, tensor_mode
from tests.dwi._synth import fibonacci_dirs, random_tensors, signals

ENGINES = ("numba", "numpy")


def _scheme(n_dirs=30, b=1000.0, n_b0=2):
    bvals = np.r_[np.zeros(n_b0), np.full(n_dirs, b)]
    bvecs = np.vstack([np.zeros((n_b0, 3)), fibonacci_dirs(n_dirs)])
    return bvals, bvecs


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("method", ["ols", "wls", "iwls"])
def test_noiseless_recovery(method, engine, rng):
    ev, rot, tens = random_tensors(500, rng)
    bvals, bvecs = _scheme()
    data = signals(tens, bvals, bvecs, s0=rng.uniform(500, 2000, 500)[:, None])
    fit = TensorModel(bvals, bvecs, fit=method, engine=engine).fit(data.reshape(5, 10, 10, -1))
    np.testing.assert_allclose(fit.evals.reshape(-1, 3), ev, atol=1e-8 * 1e-3, rtol=1e-8)
    np.testing.assert_allclose(fit.quadratic_form.reshape(-1, 3, 3), tens, atol=1e-12)
    v1_dot = np.abs(np.einsum("ni,ni->n", fit.v1.reshape(-1, 3), rot[:, :, 0]))
    np.testing.assert_allclose(v1_dot, 1.0, atol=1e-8)
    l1, l2, l3 = ev.T
    fa_ref = np.sqrt(0.5 * ((l1 - l2) ** 2 + (l2 - l3) ** 2 + (l3 - l1) ** 2) / (l1 ** 2 + l2 ** 2 + l3 ** 2))
    np.testing.assert_allclose(fit.fa.ravel(), fa_ref, atol=1e-8)
    np.testing.assert_allclose(fit.md.ravel(), ev.mean(1), rtol=1e-8)
    np.testing.assert_allclose(fit.ad.ravel(), l1, rtol=1e-8)
    np.testing.assert_allclose(fit.rd.ravel(), (l2 + l3) / 2, rtol=1e-8)
    np.testing.assert_allclose(fit.predict().reshape(500, -1), data, rtol=1e-8)


@pytest.mark.parametrize("method", ["ols", "wls"])
def test_matches_dipy_small_64d(method, small_64d):
    data, fbval, fbvec = small_64d
    g = read_gradients(fbval, fbvec, n_volumes=data.shape[-1])
    b, v = read_bvals_bvecs(str(fbval), str(fbvec))
    ref = dti.TensorModel(dipy_gtab(b, bvecs=v), fit_method=method.upper()).fit(data)
    for engine in ENGINES:
        ours = TensorModel(g, fit=method, engine=engine).fit(data)
        np.testing.assert_allclose(ours.fa, ref.fa, atol=1e-6, rtol=0)
        np.testing.assert_allclose(ours.evals, ref.evals, atol=1e-12, rtol=1e-8)
        np.testing.assert_allclose(ours.md, ref.md, rtol=1e-8, atol=1e-15)
        np.testing.assert_allclose(ours.ad, ref.ad, rtol=1e-8, atol=1e-15)
        np.testing.assert_allclose(ours.rd, ref.rd, rtol=1e-8, atol=1e-15)
        np.testing.assert_allclose(ours.color_fa, ref.color_fa, atol=1e-6)
        aniso = ref.fa > 0.05  # eigenvectors / mode are defined only for anisotropic tensors
        dots = np.abs(np.einsum("...i,...i", ours.v1, ref.evecs[..., :, 0]))
        np.testing.assert_allclose(dots[aniso], 1.0, atol=1e-6)
        np.testing.assert_allclose(ours.mode[aniso], ref.mode[aniso], atol=1e-6)


def test_matches_dipy_on_noisy_simulation_with_mask(rng):
    ev, rot, tens = random_tensors(1000, rng)
    bvals, bvecs = _scheme(n_dirs=25, n_b0=1)
    clean = signals(tens, bvals, bvecs)
    noisy = np.abs(clean + rng.normal(0, 40, clean.shape) + 1j * rng.normal(0, 40, clean.shape))
    noisy[::97, 3] = 0.0  # zero signals hit min_signal clipping
    data = noisy.reshape(10, 10, 10, -1)
    mask = rng.random((10, 10, 10)) > 0.3
    gt = dipy_gtab(bvals, bvecs=bvecs)
    for method in ("ols", "wls"):
        ref = dti.TensorModel(gt, fit_method=method.upper()).fit(data, mask=mask)
        ours = TensorModel(bvals, bvecs, fit=method).fit(data, mask)
        np.testing.assert_allclose(ours.fa, ref.fa, atol=1e-6, rtol=0)
        np.testing.assert_allclose(ours.rd, ref.rd, rtol=1e-7, atol=1e-14)
        assert np.all(ours.fa[~mask] == 0) and np.all(ours.md[~mask] == 0)


def test_iwls_equals_iterated_dipy_wls(rng):
    ev, rot, tens = random_tensors(300, rng)
    bvals, bvecs = _scheme(n_dirs=30)
    clean = signals(tens, bvals, bvecs)
    data = np.abs(clean + rng.normal(0, 30, clean.shape) + 1j * rng.normal(0, 30, clean.shape))
    gt = dipy_gtab(bvals, bvecs=bvecs)
    x = dti.design_matrix(gt)
    d, _ = dti.wls_fit_tensor(x, data, return_lower_triangular=True)  # iteration 1 (weights from OLS)
    for _ in range(3):  # iterations 2..4: weights = squared predicted signal of the previous fit
        d, _ = dti.wls_fit_tensor(x, data, weights=np.exp(d @ x.T) ** 2, return_lower_triangular=True)
    ref_evals, _ = dti.decompose_tensor(dti.from_lower_triangular(d[:, :6]), min_diffusivity=1e-6 / -x.min())
    for engine in ENGINES:
        ours = TensorModel(bvals, bvecs, fit="iwls", n_iter=4, engine=engine).fit(data)
        np.testing.assert_allclose(ours.evals, ref_evals, rtol=1e-7, atol=1e-13)
        np.testing.assert_allclose(ours.fa, dti.fractional_anisotropy(ref_evals), atol=1e-6)


def test_negative_eigenvalues_clipped_like_dipy():
    bvals, bvecs = _scheme(n_dirs=20, n_b0=1)
    tens = np.diag([1.5e-3, 0.4e-3, -0.2e-3])[None]  # non-physical: one negative eigenvalue
    data = signals(tens, bvals, bvecs)
    ours = TensorModel(bvals, bvecs, fit="ols").fit(data)
    gt = dipy_gtab(bvals, bvecs=bvecs)
    ref = dti.TensorModel(gt, fit_method="OLS").fit(data)
    np.testing.assert_allclose(ours.evals, ref.evals, rtol=1e-9)
    assert ours.evals[0, 2] == pytest.approx(1e-6 / -dti.design_matrix(gt).min(), rel=1e-12)
    np.testing.assert_allclose(ours.fa, ref.fa, atol=1e-9)


def test_max_bval_selects_volumes(rng):
    ev, rot, tens = random_tensors(50, rng)
    bvals, bvecs = _scheme(n_dirs=30)
    b2, v2 = np.full(30, 3000.0), fibonacci_dirs(30)
    all_b, all_v = np.r_[bvals, b2], np.vstack([bvecs, v2])
    data = signals(tens, all_b, all_v)
    data[:, 32:] *= np.exp(0.5)  # non-Gaussian high-b signal: must not enter the fit
    model = TensorModel(all_b, all_v, fit="wls")
    assert model.volumes.tolist() == list(range(32))
    np.testing.assert_allclose(model.fit(data).evals, ev, rtol=1e-8)
    full = TensorModel(all_b, all_v, fit="wls", max_bval=None).fit(data)
    assert np.abs(full.evals - ev).max() > 1e-6


def test_mode_closed_form():
    assert tensor_mode(np.array([2.0, 1.0, 1.0])) == pytest.approx(1.0)  # linear (prolate)
    assert tensor_mode(np.array([2.0, 2.0, 1.0])) == pytest.approx(-1.0)  # planar (oblate)
    assert tensor_mode(np.array([1.0, 1.0, 1.0])) == 0.0
    q = np.diag([3.0, 2.0, 0.5])
    assert tensor_mode(np.array([3.0, 2.0, 0.5])) == pytest.approx(dti.mode(q))


def test_bad_inputs():
    bvals, bvecs = _scheme(n_dirs=5)
    with pytest.raises(ValueError, match="at least 6"):
        TensorModel(bvals, bvecs)
    bvals, bvecs = _scheme(n_dirs=10)
    with pytest.raises(ValueError, match="fit must be"):
        TensorModel(bvals, bvecs, fit="nlls")
    m = TensorModel(gradient_table(bvals, bvecs))
    with pytest.raises(ValueError, match="volumes"):
        m.fit(np.ones((2, 3)))
