"""DWI: a dipy tensor fit of the simulated data recovers the fibre direction field and the planted
FA/RD/MD changes; gradient tables; site diffusivity."""
from __future__ import annotations

import numpy as np
import pytest

from hfsmri.simulate.dwi import gradient_table

from ._helpers import effects_table, fit_tensor, mask_on, participants


@pytest.fixture(scope="module")
def main_fits(main_study):
    p = participants(main_study)
    return {sid: fit_tensor(main_study / sid / "dwi" / f"{sid}_dwi.nii.gz") for sid in p.participant_id}


def test_principal_directions_follow_tracts(main_study, main_fits):
    from hfsmri.spatial.atlas import region_mask

    fit, img = next(iter(main_fits.values()))
    ev = np.abs(fit.evecs[..., :, 0])  # voxel axes of the stored (LAS) image: x = L-R, y = A-P, z = S-I
    checks = {"juelich:WM_Callosal_body": 0,
              "juelich:WM_Corticospinal_tract_L+juelich:WM_Corticospinal_tract_R": 2,
              "juelich:WM_Inferior_occipito-frontal_fascicle_L+juelich:WM_Inferior_occipito-frontal_fascicle_R": 1}
    for spec, axis in checks.items():
        m = region_mask(spec, img) & (fit.fa > 0.3)
        assert m.sum() > 15, spec
        assert np.median(ev[m][:, axis]) > 0.95, spec
    # corpus callosum FA is that of a coherent tract, grey matter is nearly isotropic
    cc = region_mask("juelich:WM_Callosal_body", img)
    assert 0.5 < np.median(fit.fa[cc]) < 0.9
    gm = region_mask("aal:Precuneus_L+aal:Precuneus_R", img) & ~region_mask("juelich:/WM_.*/", img)
    assert np.median(fit.fa[gm]) < 0.3
    # mean diffusivity in the corpus callosum: (1.7 + 2 x 0.35) / 3 = 0.8e-3 mm^2/s planted
    assert np.median(fit.md[cc & (fit.fa > 0.5)]) == pytest.approx(0.8e-3, rel=0.15)


def test_planted_dti_effects_have_their_signs(main_study, main_fits):
    """For every planted DTI effect (CC genu/body, ILF/IFOF, PLIC, PTR: FA down, RD/MD up; SLF: FA
    up, RD down) the patient - control difference of the region mean has the planted sign."""
    eff = effects_table(main_study)
    p = participants(main_study)
    pat = (p.group == "HFS").to_numpy()
    rows = eff[eff.analysis == "dti"]
    assert {"fa", "rd", "md"} <= set(rows.metric)
    gt = main_study / "derivatives" / "ground_truth"
    _, img = next(iter(main_fits.values()))
    for _, r in rows.iterrows():
        m = mask_on(gt / r["mask"], img)
        vals = np.array([getattr(main_fits[sid][0], r.metric)[m].mean() for sid in p.participant_id])
        diff = vals[pat].mean() - vals[~pat].mean()
        assert np.sign(diff) == r.direction, (r.effect_id, r.metric, diff)
    # size: CC FA drop comparable to the planted per-voxel d (region means vary less -> larger d)
    r = rows[(rows.effect_id == "wm-cc-genu-body") & (rows.metric == "fa")].iloc[0]
    m = mask_on(gt / r["mask"], img)
    fa = np.array([main_fits[sid][0].fa[m].mean() for sid in p.participant_id])
    sd = np.sqrt((fa[pat].var(ddof=1) + fa[~pat].var(ddof=1)) / 2)
    assert (fa[pat].mean() - fa[~pat].mean()) / sd < -r.cohens_d


@pytest.mark.parametrize("n_dirs", [25, 30, 64])
def test_gradient_tables_even_on_sphere(n_dirs):
    from dipy.core.sphere import HemiSphere

    bvals, bvecs = gradient_table(n_dirs)
    dw = bvecs[bvals > 0]
    assert len(dw) == n_dirs and (bvals == 0).sum() == 1 + n_dirs // 10 and bvals[0] == 0
    assert np.allclose(np.linalg.norm(dw, axis=1), 1)
    # evenly spread: closest antipodally-symmetric pair angle is not far below that of dipy's
    # electrostatic optimum (reference: minimum angle of a random set is much smaller)
    cosang = np.abs(dw @ dw.T)
    np.fill_diagonal(cosang, 0)
    min_angle = np.degrees(np.arccos(cosang.max()))
    rng = np.random.default_rng(0)
    rand = rng.standard_normal((n_dirs, 3))
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    c2 = np.abs(rand @ rand.T)
    np.fill_diagonal(c2, 0)
    assert min_angle > 2 * np.degrees(np.arccos(c2.max()))
    # the tensor design matrix is well conditioned (all 6 tensor elements estimable)
    design = np.stack([dw[:, 0] ** 2, dw[:, 1] ** 2, dw[:, 2] ** 2, 2 * dw[:, 0] * dw[:, 1],
                       2 * dw[:, 0] * dw[:, 2], 2 * dw[:, 1] * dw[:, 2]], axis=1)
    assert np.linalg.cond(design) < 3
    assert HemiSphere(xyz=dw).vertices.shape == (n_dirs, 3)


def test_site_effects_change_diffusivity_and_snr(site_study):
    """Site 2: diffusivities x1.05 and SNR 20 instead of 25 -> higher WM MD (dipy fit)."""
    from hfsmri.spatial.atlas import region_mask

    p = participants(site_study)
    md = {}
    for sid, site in zip(p.participant_id, p.site):
        fit, img = fit_tensor(site_study / sid / "dwi" / f"{sid}_dwi.nii.gz")
        cc = region_mask("juelich:WM_Callosal_body", img) & (fit.fa > 0.5)
        md.setdefault(site, []).append(np.median(fit.md[cc]))
    ratio = np.mean(md["site2"]) / np.mean(md["site1"])
    assert ratio == pytest.approx(1.05, abs=0.025)
