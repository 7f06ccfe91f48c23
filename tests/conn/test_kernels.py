"""Connectivity kernels vs references: numpy/scipy closed forms, nilearn, lstsq, planted truth."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from hfsmri.conn.connectome import (correlation_matrix, fisher_z_matrix, roi_timeseries, sphere_rois,
                                    tangent_matrices, upper_triangle, _from_labels)
from hfsmri.conn.dual_regression import dual_regression
from hfsmri.conn.ica import label_components, orient_and_standardise
from hfsmri.conn.seedfc import R_MAX, correlate, fisher_z, seed_fc_maps, seed_timeseries
from hfsmri.conn.seeds import aligned_name, builtin_seeds, resolve_seeds
from hfsmri.errors import InputDataError, StudyError


# ---------------------------------------------------------------- Fisher z, seed FC
def test_fisher_z_closed_form_and_clip():
    r = np.array([-0.9, -0.2, 0.0, 0.5, 0.99])
    np.testing.assert_allclose(fisher_z(r), 0.5 * np.log((1 + r) / (1 - r)), rtol=1e-12)
    assert np.isfinite(fisher_z(1.0)) and fisher_z(1.0) == pytest.approx(np.arctanh(R_MAX))


def _pair_data(rho, t=400, seed=0):
    """4x4x4 grid: seed voxels (first x-slab) carry s + small noise, voxel (3,3,3) carries a
    signal with population correlation ~rho with s; others independent noise."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal(t)
    data = rng.standard_normal((4, 4, 4, t))
    data[0] = s + 0.05 * rng.standard_normal((4, 4, t))
    data[3, 3, 3] = rho * s + np.sqrt(1 - rho ** 2) * rng.standard_normal(t)
    seed = np.zeros((4, 4, 4), bool)
    seed[0] = True
    return data, seed


def test_seed_fc_matches_corrcoef_and_planted_correlation():
    data, seed = _pair_data(0.6)
    mask = np.ones((4, 4, 4), bool)
    mask[2, 0, 0] = False
    z = seed_fc_maps(data, mask, {"s": seed})["s"]
    ts = data[seed].mean(axis=0)
    r_ref = np.corrcoef(ts, data[3, 3, 3])[0, 1]
    assert z[3, 3, 3] == pytest.approx(np.arctanh(r_ref), rel=1e-6)
    assert abs(np.tanh(z[3, 3, 3]) - 0.6) < 0.1  # sampling error at T=400 ~ 0.03
    assert z[2, 0, 0] == 0.0  # outside mask
    np.testing.assert_allclose(seed_timeseries(data, seed, mask), ts)
    noise = z[1:3][mask[1:3]]
    assert np.abs(np.tanh(noise)).max() < 0.25


def test_correlate_constant_series_gives_zero():
    x = np.random.default_rng(1).standard_normal((50, 3))
    y = np.column_stack([x[:, 0], np.ones(50)])
    r = correlate(x, y)
    assert r[0, 0] == pytest.approx(1.0) and np.all(r[:, 1] == 0)


def test_seed_fc_bad_shapes():
    with pytest.raises(InputDataError):
        seed_fc_maps(np.zeros((4, 4, 4)), np.ones((4, 4, 4), bool), {})


# ---------------------------------------------------------------- seeds
def test_seed_names_and_alignment():
    known = builtin_seeds()
    assert {"amygdalaL", "thalamusR", "dcL", "visR", "accumbensL"} <= set(known)
    assert known["dcL"].spec["sphere"] == [-13.0, 15.0, 9.0] and known["dcL"].spec["radius"] == 3.5
    assert known["amygdalaR"].spec == "ho:Right_Amygdala"
    assert aligned_name(known["amygdalaR"], "R") == "amygdalaIpsi"
    assert aligned_name(known["amygdalaL"], "R") == "amygdalaContra"
    assert aligned_name(known["thalamusL"], "L") == "thalamusIpsi"
    assert aligned_name(known["thalamusL"], None) == "thalamusL"
    user = resolve_seeds(["putamenL"], {"pcc": {"center": [0, -52, 26], "radius": 6}, "sma": "aal:Supp_Motor_Area_L"})
    assert [s.name for s in user] == ["putamenL", "pcc", "sma"] and user[1].hemisphere is None
    with pytest.raises(StudyError, match="unknown seed"):
        resolve_seeds(["hippocampusX"])
    with pytest.raises(StudyError, match="center"):
        resolve_seeds([], {"bad": {"radius": 3}})


# ---------------------------------------------------------------- connectomes
def test_roi_timeseries_labels_and_spheres():
    rng = np.random.default_rng(2)
    data = rng.standard_normal((5, 5, 5, 30))
    mask = np.ones((5, 5, 5), bool)
    mask[0, 0, 0] = False
    lab = np.zeros((5, 5, 5), int)
    lab[:2] = 1
    lab[3:] = 2
    rois = _from_labels("t", lab, {1: "a", 2: "b", 3: "empty"}, mask, np.eye(4))
    ts = roi_timeseries(data, mask, rois)
    np.testing.assert_allclose(ts[:, 0], data[(lab == 1) & mask].mean(axis=0))
    np.testing.assert_allclose(ts[:, 1], data[lab == 2].mean(axis=0))
    assert np.all(np.isnan(ts[:, 2]))
    sph = sphere_rois("s", [[2, 2, 2]], 1.0, mask, np.eye(4))
    assert sph.members[0].size == 7  # centre + 6 face neighbours at 1 mm
    m = correlation_matrix(ts)
    assert np.isnan(m[2, 0]) and m[0, 0] == 0
    assert m[0, 1] == pytest.approx(np.corrcoef(ts[:, 0], ts[:, 1])[0, 1])


def test_pearson_partial_tangent_match_nilearn():
    from nilearn.connectome import ConnectivityMeasure

    rng = np.random.default_rng(3)
    ts = rng.standard_normal((120, 8)) @ rng.standard_normal((8, 8)) * rng.uniform(0.5, 3, 8)
    zs = (ts - ts.mean(0)) / ts.std(0, ddof=1)
    ref_p = ConnectivityMeasure(kind="partial correlation").fit_transform([zs])[0]
    ours = correlation_matrix(ts, "partial")
    off = ~np.eye(8, dtype=bool)
    np.testing.assert_allclose(ours[off], ref_p[off], atol=1e-10)
    np.testing.assert_allclose(correlation_matrix(ts, "pearson")[off], np.corrcoef(ts.T)[off], atol=1e-12)
    group = [ts, rng.standard_normal((120, 8)) + ts * 0.5, rng.standard_normal((120, 8))]
    tang = tangent_matrices(group)
    ref_t = ConnectivityMeasure(kind="tangent").fit_transform(
        [(g - g.mean(0)) / g.std(0, ddof=1) for g in group])
    np.testing.assert_allclose(tang[1][off], ref_t[1][off], atol=1e-10)
    z = fisher_z_matrix(correlation_matrix(ts))
    np.testing.assert_allclose(z[off], np.arctanh(np.corrcoef(ts.T)[off]), atol=1e-10)
    assert upper_triangle([z]).shape == (1, 28)


# ---------------------------------------------------------------- dual regression
def test_dual_regression_matches_lstsq_with_intercept_reference():
    rng = np.random.default_rng(4)
    K, V, T = 4, 300, 80
    G = rng.standard_normal((K, V)) + 0.3
    A = rng.standard_normal((T, K)) * [1, 2, 0.5, 1.5]
    Y = A @ G + 0.3 * rng.standard_normal((T, V)) + 5.0
    for vn in (False, True):
        tc, maps = dual_regression(Y, G, variance_normalise=vn)
        # reference: intercept columns instead of demeaning (Frisch–Waugh–Lovell), via lstsq
        d1 = np.column_stack([np.ones(V), G.T])
        ref_tc = np.linalg.lstsq(d1, Y.T, rcond=None)[0][1:].T
        np.testing.assert_allclose(tc, ref_tc, rtol=1e-8, atol=1e-10)
        x = ref_tc / (ref_tc.std(axis=0, ddof=1) if vn else 1.0)
        d2 = np.column_stack([np.ones(T), x])
        ref_maps = np.linalg.lstsq(d2, Y, rcond=None)[0][1:]
        np.testing.assert_allclose(maps, ref_maps, rtol=1e-8, atol=1e-10)
    # planted truth: subject maps recover the group maps' shapes
    for k in range(K):
        assert np.corrcoef(maps[k], G[k])[0, 1] > 0.95


# ---------------------------------------------------------------- ICA labelling
def test_label_components_by_reference_networks():
    rng = np.random.default_rng(5)
    V = 500
    ref = {"default-mode": np.zeros(V, bool), "visual": np.zeros(V, bool), "sensorimotor": np.zeros(V, bool)}
    ref["default-mode"][:60] = True
    ref["visual"][100:180] = True
    ref["sensorimotor"][300:350] = True
    maps = np.vstack([ref["visual"] * 3.0, ref["default-mode"] * -4.0, ref["sensorimotor"] * 2.0]) + 0.5 * rng.standard_normal((3, V))
    maps = orient_and_standardise(maps)
    lab = label_components(maps, ref)
    assert list(lab.network) == ["visual", "default-mode", "sensorimotor"]
    assert (lab.match_r > 0.7).all() and (lab.second_r < 0.2).all()
    assert maps[1, :60].mean() > 0  # sign flipped so the big tail is positive


# ---------------------------------------------------------------- atlases and node mirroring
def test_load_rois_atlases_on_template_grid():
    from hfsmri.conn.connectome import load_rois
    from hfsmri.spatial.templates import load_template

    img = load_template("mask", 6)
    mask = np.asarray(img.dataobj) > 0
    ho = load_rois("harvard_oxford", img, mask)
    assert ho.n == 110 and not any("Ventric" in n or "Stem" in n for n in ho.names)
    pw = load_rois("power264", img, mask)
    assert pw.n == 264 and pw.coords.shape == (264, 3)
    # a sphere's members are exactly the in-mask voxels within 5 mm of its centre
    xyz = np.argwhere(mask) @ img.affine[:3, :3].T + img.affine[:3, 3]
    d = np.linalg.norm(xyz - pw.coords[10], axis=1)
    np.testing.assert_array_equal(np.sort(pw.members[10]), np.flatnonzero(d <= 5.0 + 1e-6))
    aal = load_rois("aal", img, mask)
    assert aal.n == 120 and "Amygdala_R" in aal.names
    with pytest.raises(StudyError, match="unknown atlas"):
        load_rois("nosuchatlas", img, mask)


def test_mirror_permutation_swaps_partners():
    from hfsmri.conn.group import mirror_permutation

    names = ["Amygdala_L", "Amygdala_R", "Vermis_3", "Left_Thalamus", "Right_Thalamus", "p1", "p2", "p3"]
    coords = np.array([[-22, -4, -18], [22, -4, -18], [0, -40, -15], [-10, -18, 8], [10, -18, 8],
                       [-30, 10, 5], [31, 10, 5], [0, -50, 20]], float)
    perm = mirror_permutation(names, coords)
    assert list(perm) == [1, 0, 2, 4, 3, 6, 5, 7]
    m = np.arange(64.0).reshape(8, 8)
    m = m + m.T
    aligned = m[np.ix_(perm, perm)]
    assert aligned[0, 3] == m[1, 4]  # (Amygdala_L, Left_Thalamus) <- (Amygdala_R, Right_Thalamus)


def test_group_ica_recovers_planted_spatial_sources():
    from hfsmri.conn.ica import group_ica

    rng = np.random.default_rng(6)
    shape, T, K = (10, 10, 10), 80, 3
    sources = np.zeros((K,) + shape)
    sources[0, 1:4, 1:4, 1:9] = 1.0
    sources[1, 6:9, 2:8, 5:8] = 1.0
    sources[2, 2:8, 6:9, 1:4] = 1.0
    mask_img = nib.Nifti1Image(np.ones(shape, np.uint8), np.eye(4) * [3, 3, 3, 1])
    imgs = []
    for _ in range(4):
        tc = rng.standard_normal((T, K)) * [3, 2.5, 2]
        data = np.tensordot(tc, sources, axes=(1, 0)) + 0.5 * rng.standard_normal((T,) + shape)
        imgs.append(nib.Nifti1Image(np.moveaxis(data, 0, -1).astype(np.float32), mask_img.affine))
    maps, mask = group_ica(imgs, mask_img, n_components=K, random_state=0)
    truth = sources.reshape(K, -1)[:, mask.ravel()]
    r = np.corrcoef(np.vstack([maps, truth]))[:K, K:]
    assert np.all(np.abs(r).max(axis=0) > 0.9)  # every planted source has a matching component
    assert np.all(r[np.abs(r).argmax(axis=0), range(K)] > 0)  # sign-oriented: positive tail = source


def test_network_reference_places_default_mode_at_pcc():
    from hfsmri.conn.ica import network_reference
    from hfsmri.spatial.templates import load_template

    img = load_template("mask", 6)
    mask = np.asarray(img.dataobj) > 0
    ref = network_reference(mask, img.affine)
    assert {"default-mode", "sensorimotor", "visual", "salience", "executive"} <= set(ref)
    xyz = np.argwhere(mask) @ img.affine[:3, :3].T + img.affine[:3, 3]
    # voxels nearest to a Seitzman default-mode ROI (medial PFC) and a visual ROI (occipital pole)
    mpfc = np.linalg.norm(xyz - [-2, 38, 36], axis=1).argmin()
    v1 = np.linalg.norm(xyz - [8, -91, -7], axis=1).argmin()
    assert ref["default-mode"][mpfc] and ref["visual"][v1] and not ref["visual"][mpfc]
    assert not ref["default-mode"][v1]
