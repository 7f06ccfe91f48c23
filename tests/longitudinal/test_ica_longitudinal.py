"""Group ICA pre/post designs: follow-up dual regression against the baseline components.

Cleaned BOLD is written directly on the 6 mm MNI grid for both sessions, as the func stage would:
three bilateral networks (precentral "motor", precuneus, calcarine) with their own time courses
plus white noise. Planted: after surgery, patients' motor network amplitude doubles in the
affected (right, after alignment) precentral gyrus; the data of left-affected patients are mirrored
natively, so the change lines up only if the follow-up BOLD is mirrored like the baseline.
Reference: an independent dual regression (least squares with intercept columns, which equals
FSL's demeaning by Frisch–Waugh–Lovell) of the data on disk against the saved group components,
then scipy's paired / two-sample t on the change of the stage-2 maps.
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import stats as sps

from hfsmri.conn import group
from hfsmri.group import run_stage
from hfsmri.conn.participant import input_paths
from hfsmri.spatial.atlas import region_mask
from hfsmri.spatial.templates import load_template

from ._sessions import make_gctx, make_study
from tests.naming import gname

RES = 6
T = 60
SIDES = ["R", "L", "R", "R", "L", "R"]
N_CON = 6
NETWORKS = {"motor": "aal:Precentral_L+aal:Precentral_R", "precuneus": "aal:Precuneus_L+aal:Precuneus_R",
            "visual": "aal:Calcarine_L+aal:Calcarine_R"}
SIG = -np.log10(0.05)


def _regions():
    img = load_template("mask", RES)
    mask = np.asarray(img.dataobj) > 0
    nets = {k: region_mask(v, img) & mask for k, v in NETWORKS.items()}
    return img, mask, nets, region_mask("aal:Precentral_R", img) & mask, region_mask("aal:Precentral_L", img) & mask


@pytest.fixture(scope="module")
def ica_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ica_long")
    study = make_study(root, SIDES, N_CON, preprocessing={"func": {"resolution": RES}})
    analyses = {"ica": {"n_components": 3, "variance_normalise": True, "n_init": 2}}
    gctx = make_gctx(root, study, analyses, n_perm=64)
    img, mask, nets, pre_r, _ = _regions()
    rng = np.random.default_rng(5)
    for s in study.labels:
        planted = study.group_of(s) == "patient"
        for ses in ("pre", "post"):
            data = rng.standard_normal(mask.shape + (T,)).astype(np.float32) * mask[..., None]
            tcs = {k: sps.zscore(rng.standard_normal(T), ddof=1).astype(np.float32) for k in nets}  # unit SD
            for k, reg in nets.items():
                data[reg] += 1.5 * tcs[k]
            if planted and ses == "post":  # motor amplitude 1.5 -> 3.0 in the (aligned) right precentral gyrus
                data[pre_r] += 1.5 * tcs["motor"]
            if study.flipped(s):
                data = np.flip(data, axis=0)  # native orientation of a left-affected patient
            bold, bmask = input_paths(gctx.out, s, ses, RES)
            gctx.out.save_nifti(nib.Nifti1Image(np.round(data * 100).astype(np.int16), img.affine), bold)
            gctx.out.save_nifti(nib.Nifti1Image(mask.astype(np.uint8), img.affine), bmask)
    summary = run_stage(gctx, "conn")
    return root, gctx, study, summary


def _components(root):
    comp = nib.load(root / "out" / "group" / "ica" / gname("ica_maps"))
    return np.asarray(comp.dataobj, dtype=np.float64)


def _motor_component(root, nets, mask) -> int:
    """1-based index of the component that is the planted motor network (spatial correlation)."""
    comp = _components(root)
    r = [np.corrcoef(comp[..., j][mask], nets["motor"][mask].astype(float))[0, 1] for j in range(comp.shape[3])]
    assert max(r) > 0.6
    return int(np.argmax(r)) + 1


def _stage2_reference(path, flipped, used, G):
    """Independent dual regression (intercept columns instead of demeaning, unit-SD time courses)."""
    data = np.asarray(nib.load(path).dataobj, dtype=np.float64)
    if flipped:
        data = np.flip(data, axis=0)  # the 6 mm MNI grid is symmetric about x = 0
    Y = data[used].T                                         # T x V
    A = np.column_stack([np.ones(G.shape[1]), G.T])          # V x (1+K): spatial regression per volume
    tc = np.linalg.lstsq(A, Y.T, rcond=None)[0][1:].T        # T x K
    tc = (tc - tc.mean(axis=0)) / tc.std(axis=0, ddof=1)
    B = np.column_stack([np.ones(Y.shape[0]), tc])           # T x (1+K): temporal regression per voxel
    return np.linalg.lstsq(B, Y, rcond=None)[0][1:]          # K x V


def test_stage2_change_t_matches_independent_dual_regression(ica_run):
    root, gctx, study, summary = ica_run
    _, mask, nets, _, _ = _regions()
    k = _motor_component(root, nets, mask)
    comp = _components(root)
    assert np.all(np.any(comp[mask] != 0, axis=1))  # every subject's mask is the symmetric template mask
    G = comp[mask].T
    ref = {(s, ses): _stage2_reference(input_paths(gctx.out, s, ses, RES)[0], study.flipped(s), mask, G)
           for s in study.labels for ses in ("pre", "post")}
    d = root / "out" / "group" / "ica" / f"ic-{k}"
    cm = np.zeros(mask.shape, bool)
    cm[mask] = G[k - 1] > 2.3
    lmask = nib.load(d / gname("mask_longitudinal")).get_fdata() > 0
    np.testing.assert_array_equal(lmask, cm)  # component mask (every stage-2 value is non-zero)
    sel = cm[mask]

    def change(subs):
        return np.stack([ref[(s, "post")][k - 1][sel] - ref[(s, "pre")][k - 1][sel] for s in subs])

    dp, dc = change(study.subjects_in("patient")), change(study.subjects_in("control"))
    for contrast, t_ref in (("patient-post-gt-pre", sps.ttest_1samp(dp, 0.0).statistic),
                            ("control-post-gt-pre", sps.ttest_1samp(dc, 0.0).statistic),
                            ("change-patient-gt-control", sps.ttest_ind(dp, dc).statistic)):
        t = nib.load(d / gname("t", contrast)).get_fdata()[cm]
        np.testing.assert_allclose(t, t_ref, rtol=1e-3, atol=1e-3, err_msg=contrast)
    meta = json.loads((d / gname("t", "patient-post-gt-pre", sidecar=True)).read_text())
    assert meta["Sessions"] == ["pre", "post"] and meta["Component"] == k
    assert sorted(meta["Flipped"]) == sorted(s for s in study.labels if study.flipped(s))
    assert summary["ica"][f"ic-{k}"]["longitudinal"]["n_subjects"] == 12
    assert (d / gname("t", "patient-gt-control")).exists()  # cross-sectional kept


def test_planted_affected_side_change_found_and_nothing_in_controls(ica_run):
    root, gctx, study, _ = ica_run
    _, mask, nets, pre_r, pre_l = _regions()
    k = _motor_component(root, nets, mask)
    ic = root / "out" / "group" / "ica"

    def logp(kk, contrast):
        return nib.load(ic / f"ic-{kk}" / gname("fwe", contrast)).get_fdata()

    lmask = nib.load(ic / f"ic-{k}" / gname("mask_longitudinal")).get_fdata() > 0
    up = logp(k, "patient-post-gt-pre")
    assert np.mean(up[lmask & pre_r] > SIG) > 0.8        # the affected-side gain
    assert not np.any(up[lmask & pre_l] > SIG)           # not on the other side
    t = nib.load(ic / f"ic-{k}" / gname("t", "patient-post-gt-pre")).get_fdata()
    assert t[lmask & pre_r].mean() > 5 and abs(t[lmask & pre_l].mean()) < 2
    assert np.mean(logp(k, "change-patient-gt-control")[lmask & pre_r] > SIG) > 0.5
    # no change: FWE control lets a null contrast reach p < 0.05 somewhere 5 % of the time, so the
    # check is "no more than a few stray voxels" (an alignment or projection error would light up
    # whole regions)
    null = [(k, "patient-post-lt-pre")] + [(kk, c) for kk in sorted(int(p.name.split("-")[1]) for p in ic.glob("ic-*"))
                                           for c in ("control-post-gt-pre", "control-post-lt-pre")]
    null += [(kk, "patient-post-gt-pre") for kk, _ in null if kk != k]
    for kk, c in null:
        lm = nib.load(ic / f"ic-{kk}" / gname("mask_longitudinal")).get_fdata() > 0
        assert np.mean(logp(kk, c)[lm] > SIG) < 0.02, (kk, c)


def test_followup_bold_on_another_grid_is_named(tmp_path):
    from hfsmri.errors import InputDataError

    study = make_study(tmp_path, SIDES[:2], 2, preprocessing={"func": {"resolution": RES}})
    gctx = make_gctx(tmp_path, study, {"ica": {}})
    img, mask, _, _, _ = _regions()
    good, _ = input_paths(gctx.out, "01", "post", RES)
    gctx.out.save_nifti(nib.Nifti1Image(np.ones(mask.shape + (20,), np.int16), img.affine), good)
    bad, _ = input_paths(gctx.out, "02", "post", RES)
    gctx.out.save_nifti(nib.Nifti1Image(np.ones((8, 8, 8, 20), np.int16), img.affine), bad)
    maps = np.random.default_rng(0).standard_normal((2, int(mask.sum())))
    with pytest.raises(InputDataError, match="grid") as exc:
        group.dual_regression_session(gctx, ["01", "02", "03"], "post", RES, mask, img.affine, maps, True)
    assert bad.name in str(exc.value)
