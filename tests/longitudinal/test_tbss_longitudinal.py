"""TBSS pre/post designs: follow-up scans projected onto the baseline skeleton (dwi group stage).

Tensor maps are written directly on the 6 mm MNI grid as the dwi participant stage would: three
flat Gaussian "tracts" (along x, y and x, thin along z). Half of the subjects are misregistered by one voxel along z
at follow-up, and MD/AD/RD vary along z, so the follow-up values are right only when each session
is projected by its own FA search and MD/AD/RD are read at that session's FA indices. Planted:
patients' FA of tract A rises after surgery, their MD around tract C falls; controls do not
change.
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import stats as sps

from hfsmri.analyses import ANALYSES, DEFAULTS
from hfsmri.dwi import group
from hfsmri.group import run_stage
from hfsmri.dwi.participant import METRICS, map_path, mask_path
from hfsmri.dwi.tbss import apply_indices, project, project_metrics, tbss
from hfsmri.spatial.templates import template_grid

from ._sessions import make_study, make_gctx
from tests.naming import gname

RES = 6
SIDES = ["R", "L", "R", "R", "L", "R"]  # DWI maps are side-aligned at the participant level: unused here
N_CON = 6
FA_GAIN = 0.15      # patients' FA gain on tract A (x) at follow-up
MD_LOSS = 0.15e-3   # patients' MD loss around tract C (z) at follow-up
SHIFTED = ("02", "03", "05", "08", "10", "11")  # follow-up misregistered by +1 voxel along z


def _phantom(shape, rng, amp, gain_a=0.0, md_loss=0.0):
    """FA, MD, AD, RD of one scan (3D arrays), brain = a box inside the grid; ``amp``: the subject's
    peak FA of the three tracts."""
    i, j, k = np.indices(shape).astype(float)
    # flat tracts (wide in-plane, thin along z), so that every perpendicular search runs along z
    ta = np.exp(-(j - 12) ** 2 / 18.0 - (k - 11) ** 2 / 2.0)   # tract A along x
    tb = np.exp(-(i - 20) ** 2 / 18.0 - (k - 17) ** 2 / 2.0)   # tract B along y
    tc = np.exp(-(j - 24) ** 2 / 18.0 - (k - 23) ** 2 / 2.0)   # tract C along x
    fa = 0.05 + (amp[0] + gain_a) * ta + amp[1] * tb + amp[2] * tc + rng.normal(0, 0.005, shape)
    md = 0.7e-3 + 0.02e-3 * k + rng.normal(0, 0.01e-3, shape) - md_loss * (tc > 0.1)
    box = np.zeros(shape, bool)
    box[4:29, 5:34, 5:28] = True
    fa = np.where(box, np.clip(fa, 0.01, 1.0), 0.0)
    md = np.where(box, md, 0.0)
    return {"fa": fa, "md": md, "ad": 1.4 * md, "rd": 0.8 * md}, box


@pytest.fixture(scope="module")
def tbss_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tbss_long")
    study = make_study(root, SIDES, N_CON)
    analyses = {"tbss": {"fa_threshold": 0.2, "tfce_setting": "skeleton"}}
    gctx = make_gctx(root, study, analyses, n_perm=100)
    shape, aff = template_grid(RES)
    rng = np.random.default_rng(7)
    maps = {}
    for s in study.labels:
        pat = study.group_of(s) == "patient"
        amp = 0.6 + rng.normal(0, 0.03, 3)
        for ses in ("pre", "post"):
            m, box = _phantom(shape, rng, amp, gain_a=FA_GAIN if pat and ses == "post" else 0.0,
                              md_loss=MD_LOSS if pat and ses == "post" else 0.0)
            if ses == "post" and s in SHIFTED:
                m = {k: np.roll(v, 1, axis=2) for k, v in m.items()}
                box = np.roll(box, 1, axis=2)
            maps[(s, ses)] = m
            for metric in METRICS:
                gctx.out.save_nifti(nib.Nifti1Image(m[metric].astype(np.float32), aff),
                                    map_path(gctx.out, s, ses, metric, RES))
            gctx.out.save_nifti(nib.Nifti1Image(box.astype(np.uint8), aff), mask_path(gctx.out, s, ses, RES))
    mp = pytest.MonkeyPatch()
    mp.setitem(DEFAULTS["dti"], "resolution", RES)  # TBSS runs on the dti resolution
    try:
        summary = run_stage(gctx, "dwi")
    finally:
        mp.undo()
    # independent reference: the skeleton of the baseline scans, each session projected directly
    fa0 = np.stack([maps[(s, "pre")]["fa"] for s in study.labels])
    ref = tbss(fa0, threshold=0.2, voxel_size=(RES,) * 3)
    return root, gctx, study, maps, ref.skeleton, summary


def _ref_values(sk, m):
    vals, idx = project(sk, m["fa"])
    return {"fa": vals, **{k: apply_indices(m[k], idx) for k in ("md", "ad", "rd")}}, idx


def _tract(sk, j0, k0):
    pts = np.argwhere(sk.skeleton)
    return (np.abs(pts[:, 1] - j0) <= 5) & (np.abs(pts[:, 2] - k0) <= 1)


def _tract_a(sk):
    return _tract(sk, 12, 11)


def _t_on_skeleton(d, contrast, sk):
    return nib.load(d / gname("t", contrast)).get_fdata().ravel()[sk.indices]


def _logp_on_skeleton(d, contrast, sk):
    return nib.load(d / gname("fwe", contrast)).get_fdata().ravel()[sk.indices]


def test_session_projections_equal_direct_tbss_projection(tbss_run):
    root, gctx, study, maps, sk, _ = tbss_run
    g = root / "out" / "group" / "tbss"
    stage_skel = nib.load(g / gname("skeleton")).get_fdata() > 0
    np.testing.assert_array_equal(stage_skel, sk.skeleton)  # cross-sectional skeleton unchanged
    assert sk.n_voxels > 50
    vals = group.tbss_session_values(gctx, sk, study.labels, ("pre", "post"), RES, ANALYSES["tbss"])
    for s in study.labels:
        for ses in ("pre", "post"):
            ref, _ = _ref_values(sk, maps[(s, ses)])
            for metric in METRICS:
                np.testing.assert_allclose(vals[(s, ses)][metric], ref[metric], rtol=1e-6, atol=1e-9)
    # the misregistered follow-ups: their own FA indices differ from the baseline ones, and MD read at
    # the baseline indices would be different values (so the check above is discriminating)
    s = SHIFTED[0]
    _, i_pre = _ref_values(sk, maps[(s, "pre")])
    _, i_post = _ref_values(sk, maps[(s, "post")])
    tract_a = _tract_a(sk)
    assert tract_a.sum() > 15 and np.mean(i_pre[tract_a] != i_post[tract_a]) > 0.9
    wrong = apply_indices(maps[(s, "post")]["md"], i_pre)
    assert np.abs(wrong - vals[(s, "post")]["md"]).max() > 1e-5
    # project_metrics == project + apply_indices
    pm, idx = project_metrics(sk, maps[(s, "post")]["fa"], {"md": maps[(s, "post")]["md"]})
    np.testing.assert_array_equal(idx, i_post)


def test_paired_and_interaction_t_match_scipy_on_the_skeletonised_change(tbss_run):
    root, gctx, study, maps, sk, summary = tbss_run
    assert summary["tbss"]["fa"]["longitudinal"]["n_subjects"] == 12
    pats, cons = study.subjects_in("patient"), study.subjects_in("control")

    ref = {(s, ses): _ref_values(sk, maps[(s, ses)])[0] for s in study.labels for ses in ("pre", "post")}
    for metric in ("fa", "md"):
        d = root / "out" / "group" / "tbss" / metric
        # skeleton = mask, less the voxels a (shifted) follow-up scan does not cover (projected value 0)
        covered = np.all([ref[k][metric] != 0 for k in ref], axis=0)
        assert covered.mean() > 0.95
        mask = nib.load(d / gname("mask_longitudinal")).get_fdata() > 0
        np.testing.assert_array_equal(mask.ravel()[sk.indices], covered)
        assert not np.any(mask & ~sk.skeleton)
        dp = np.stack([ref[(s, "post")][metric] - ref[(s, "pre")][metric] for s in pats])[:, covered]
        dc = np.stack([ref[(s, "post")][metric] - ref[(s, "pre")][metric] for s in cons])[:, covered]
        np.testing.assert_allclose(_t_on_skeleton(d, "patient-post-gt-pre", sk)[covered],
                                   sps.ttest_1samp(dp, 0.0).statistic, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(_t_on_skeleton(d, "control-post-gt-pre", sk)[covered],
                                   sps.ttest_1samp(dc, 0.0).statistic, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(_t_on_skeleton(d, "change-patient-gt-control", sk)[covered],
                                   sps.ttest_ind(dp, dc).statistic, rtol=1e-3, atol=1e-3)
        meta = json.loads((d / gname("t", "patient-post-gt-pre", sidecar=True)).read_text())
        assert meta["Sessions"] == ["pre", "post"] and meta["DesignInfo"]["kind"] == "paired"
        assert meta["SkeletonSession"] == "pre" and meta["TFCE"]["setting"] == "skeleton"
        assert (d / gname("summary_longitudinal")).exists()
        # the cross-sectional (baseline) contrasts are still there
        assert (d / gname("t", "patient-gt-control")).exists()


def test_planted_changes_found_with_their_sign_and_none_in_controls(tbss_run):
    root, gctx, study, maps, sk, _ = tbss_run
    tract_a = _tract_a(sk)
    tract_c = _tract(sk, 24, 23)
    assert tract_a.sum() > 50 and tract_c.sum() > 50
    sig = -np.log10(0.05)
    fa = root / "out" / "group" / "tbss" / "fa"
    md = root / "out" / "group" / "tbss" / "md"
    up = _logp_on_skeleton(fa, "patient-post-gt-pre", sk)
    assert np.mean(up[tract_a] > sig) > 0.8 and not np.any(up[~tract_a] > sig)
    assert not np.any(_logp_on_skeleton(fa, "patient-post-lt-pre", sk) > sig)
    assert np.mean(_logp_on_skeleton(fa, "change-patient-gt-control", sk)[tract_a] > sig) > 0.8
    down = _logp_on_skeleton(md, "patient-post-lt-pre", sk)
    assert np.mean(down[tract_c] > sig) > 0.8 and not np.any(down[~tract_c] > sig)
    assert not np.any(_logp_on_skeleton(md, "patient-post-gt-pre", sk) > sig)
    # controls do not change: FWE control lets a null contrast reach p < 0.05 somewhere 5 % of the time,
    # so the check is "no more than a few stray voxels" (a projection error would light up whole tracts)
    for d in (fa, md):
        for c in ("control-post-gt-pre", "control-post-lt-pre"):
            assert np.mean(_logp_on_skeleton(d, c, sk) > sig) < 0.02, (d.name, c)


def test_followup_map_on_another_grid_is_named_and_baseline_kept(tmp_path):
    study = make_study(tmp_path, SIDES[:4], 4)
    gctx = make_gctx(tmp_path, study, {"tbss": {"fa_threshold": 0.2}}, n_perm=10, tfce=False)
    shape, aff = template_grid(RES)
    rng = np.random.default_rng(0)
    for s in study.labels:
        for ses in ("pre", "post"):
            m, box = _phantom(shape, rng, np.full(3, 0.6))
            for metric in METRICS:
                gctx.out.save_nifti(nib.Nifti1Image(m[metric].astype(np.float32), aff),
                                    map_path(gctx.out, s, ses, metric, RES))
            gctx.out.save_nifti(nib.Nifti1Image(box.astype(np.uint8), aff), mask_path(gctx.out, s, ses, RES))
    bad = map_path(gctx.out, "03", "post", "md", RES)
    gctx.out.save_nifti(nib.Nifti1Image(np.ones((5, 5, 5), np.float32), aff), bad)
    mp = pytest.MonkeyPatch()
    mp.setitem(DEFAULTS["dti"], "resolution", RES)
    try:
        summary = run_stage(gctx, "dwi")
    finally:
        mp.undo()
    err = summary["tbss"]["md"]["longitudinal"]["error"]
    assert bad.name in err and "grid" in err
    d = tmp_path / "out" / "group" / "tbss" / "fa"
    assert (d / gname("t", "patient-gt-control")).exists()
    assert not (d / gname("mask_longitudinal")).exists()
