"""BOLD IQMs (hfsmri.qc.functional) against closed forms, nitime / scipy references and real BOLD."""
from __future__ import annotations

import os

import numpy as np
import pytest
from scipy import signal

from hfsmri.qc import functional as Q


def _nitime_bold(name="fmri1.nii.gz"):
    """Real BOLD crop shipped with nitime (10 x 10 x 18 voxels, 40 volumes, TR 1.35 s) as (n, v)
    series of the voxels with signal."""
    import nibabel as nib
    import nitime

    img = nib.load(os.path.join(os.path.dirname(nitime.__file__), "data", name))
    d = np.asarray(img.dataobj, np.float64)
    mean = d.mean(axis=3)
    mask = mean > 0.2 * mean.max()
    return d[mask].T, mask


def test_tsnr_closed_form_after_linear_detrending():
    rng = np.random.default_rng(0)
    n, v = 80, 50
    t = np.arange(n) - (n - 1) / 2
    design = np.column_stack([np.ones(n), t])
    e = rng.standard_normal((n, v))
    e -= design @ np.linalg.lstsq(design, e, rcond=None)[0]  # orthogonal to mean and trend
    sd = rng.uniform(2, 8, v)
    e *= sd / e.std(axis=0)
    mu = rng.uniform(200, 900, v)
    ts = mu + 0.5 * t[:, None] * rng.uniform(-1, 1, v) + e  # drift must not lower the tSNR
    np.testing.assert_allclose(Q.tsnr_map(ts), mu / sd, rtol=1e-10)
    iq = Q.bold_iqms(ts, np.zeros(n), 0.5)
    assert iq["tsnr"] == pytest.approx(np.median(mu / sd), rel=1e-10)


def _dvars_nipype(ts):
    """nipype ``compute_dvars`` (as MRIQC calls it) written out, with nitime's Yule-Walker AR(1)."""
    from nitime.algorithms import AR_est_YW

    m = ts.T.astype(np.float64)
    m = m / np.median(m) * 1000
    sd = (np.percentile(m, 75, axis=1, method="lower") - np.percentile(m, 25, axis=1, method="lower")) / 1.349
    m, sd = m[sd > 1e-7], sd[sd > 1e-7]
    ar1 = np.array([AR_est_YW(row - row.mean(), 1)[0][0] for row in m])
    diff_sdhat = np.sqrt(2 * (1 - ar1)) * sd
    nstd = np.sqrt((np.diff(m, axis=1) ** 2).mean(axis=0))
    return nstd / diff_sdhat.mean(), nstd


def test_dvars_matches_nipype_formula_on_real_bold():
    ts, _ = _nitime_bold()
    ref_std, ref_nstd = _dvars_nipype(ts)
    got = Q.dvars(ts)
    np.testing.assert_allclose(got["nstd"], ref_nstd, rtol=1e-5)
    np.testing.assert_allclose(got["std"], ref_std, rtol=1e-4)
    # white noise: standardised DVARS ~ 1 (its definition)
    wn = 1000 + 10 * np.random.default_rng(1).standard_normal((200, 3000))
    assert np.mean(Q.dvars(wn)["std"]) == pytest.approx(1.0, abs=0.03)


def test_gcor_is_the_mean_pairwise_correlation():
    ts, _ = _nitime_bold()
    ts = ts[:, ::7]  # ~100 voxels keep the full correlation matrix small
    r = np.corrcoef(signal.detrend(ts, axis=0, type="linear").T)
    assert Q.gcor(ts) == pytest.approx(r.mean(), rel=1e-8)
    # a shared signal in every voxel: GCOR -> its share of the variance
    rng = np.random.default_rng(2)
    g = rng.standard_normal((300, 1))
    x = g + rng.standard_normal((300, 400))
    assert Q.gcor(x) == pytest.approx(0.5, abs=0.03)


def test_tsnr_on_real_bold_matches_scipy_detrend():
    ts, _ = _nitime_bold("fmri2.nii.gz")
    ref = ts.mean(axis=0) / signal.detrend(ts, axis=0, type="linear").std(axis=0)
    np.testing.assert_allclose(Q.tsnr_map(ts), ref, rtol=1e-8)


def test_fd_summary_closed_form():
    fd = np.array([0.0, 0.1, 0.3, 0.7, 0.2])
    s = Q.fd_summary(fd, 0.25)
    assert s["mean_fd"] == pytest.approx(1.3 / 4)  # over the 4 displacements (MRIQC fd_mean)
    assert s["scrubbed"] == pytest.approx(2 / 5) and s["max_fd"] == 0.7
    assert np.isnan(Q.fd_summary(fd, None)["scrubbed"])


def test_carpet_rows_are_grouped_by_tissue_and_standardised():
    rng = np.random.default_rng(3)
    n, v = 40, 90
    labels = rng.choice([1, 2, 3, 4], v)  # label 4 is not in the order: left out
    ts = rng.normal(500, 5, (n, v)) + np.arange(v)  # column offsets make each voxel identifiable
    mat, rows = Q.carpet_matrix(ts, labels, order=(2, 1, 3), max_rows=1000)
    keep = np.concatenate([np.flatnonzero(labels == lab) for lab in (2, 1, 3)])
    assert mat.shape == (keep.size, n)
    np.testing.assert_array_equal(rows, labels[keep])
    assert (np.diff([{2: 0, 1: 1, 3: 2}[r] for r in rows]) >= 0).all()
    ref = signal.detrend(ts[:, keep], axis=0)
    np.testing.assert_allclose(mat, (ref / ref.std(axis=0)).T, atol=1e-10)
    sub, sub_rows = Q.carpet_matrix(ts, labels, order=(2, 1, 3), max_rows=20)
    assert sub.shape[0] <= 20 and sub.shape[1] == n and set(sub_rows) <= {1, 2, 3}
