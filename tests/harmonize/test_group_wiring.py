"""Harmonisation wired into the group analyses: study key ``harmonize``, designs, ComBat inside
the voxel-wise and ROI inference (injected harmoniser), and a simulated multi-site study."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.naming import gname
from hfsmri.errors import StudyError
from hfsmri.harmonize import ComBat, harmonize_for_design, harmonize_for_study
from hfsmri.stats.design import clinical_designs, design_from_study
from hfsmri.derivatives import Derivatives
from hfsmri.group import write
from hfsmri.stats.roi import roi_tests
from hfsmri.stats.voxelwise import voxelwise
from hfsmri.study import Study


def voxelwise_group(Y, mask, design, folder, stats):
    """Inference with the group runner's harmoniser, written to ``folder/group/a/m``."""
    res = voxelwise(Y, mask, design, affine=np.diag([3.0, 3.0, 3.0, 1.0]), n_perm=stats["n_perm"],
                    tfce=stats["tfce"], random_state=stats["random_seed"], harmonise=harmonize_for_design)
    write.results(Derivatives(folder), "a", "m", res, mask, np.diag([3.0, 3.0, 3.0, 1.0]), {})
    return folder / "group" / "a" / "m"


def roi_group(table, study, folder, stats):
    res = roi_tests(table, study, n_perm=stats["n_perm"], harmonise=harmonize_for_design)
    write.roi_results(Derivatives(folder), "a", "m", res)
    return res.rois, res.correlations


def _write(tmp_path, n=24, seed=0, n_sites=3):
    rng = np.random.default_rng(seed)
    site = np.array([f"s{k % n_sites + 1}" for k in range(n)])
    group = np.where(np.arange(n) % 2 == 0, "HFS", "HC")
    df = pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(n)], "group": group,
                       "age": rng.integers(25, 70, n), "sex": rng.choice(["F", "M"], n), "site": site,
                       "severity": np.where(group == "HFS", rng.integers(1, 5, n), 0)})
    df.loc[df.group == "HC", "severity"] = np.nan
    df.to_csv(tmp_path / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    return df


def _study(tmp_path, **cfg):
    base = {"group_column": "group", "covariates": ["age", "sex"], "clinical": ["severity"]}
    base.update(cfg)
    return Study.from_bids(tmp_path, base)


def test_study_harmonize_key(tmp_path):
    _write(tmp_path)
    assert _study(tmp_path, site_column="site").harmonize == "combat"          # default with >= 2 sites
    assert _study(tmp_path).harmonize == "none"                                # no site column
    st = _study(tmp_path, site_column="site", harmonize="covariate")
    assert st.harmonize == "covariate" and st.resolved()["harmonize"] == "covariate"
    assert _study(tmp_path, site_column="site", harmonize="none").harmonize == "none"
    with pytest.raises(StudyError, match="harmonize"):
        _study(tmp_path, site_column="site", harmonize="combatt")
    with pytest.raises(StudyError, match="site_column"):
        _study(tmp_path, harmonize="combat")


def test_study_harmonize_single_site_defaults_to_none(tmp_path):
    _write(tmp_path, n_sites=1)
    assert _study(tmp_path, site_column="site").harmonize == "none"
    with pytest.raises(StudyError, match="at least 2 sites"):
        _study(tmp_path, site_column="site", harmonize="covariate")


def test_design_site_handling(tmp_path):
    df = _write(tmp_path)
    labels = [p.removeprefix("sub-") for p in df.participant_id]
    d_combat = design_from_study(_study(tmp_path, site_column="site"), labels)
    assert not any(c.startswith("site") for c in d_combat.columns)
    assert d_combat.info["harmonize"]["method"] == "combat"
    assert d_combat.info["harmonize"]["sites"] == list(df.site)
    d_cov = design_from_study(_study(tmp_path, site_column="site", harmonize="covariate"), labels)
    assert [c for c in d_cov.columns if c.startswith("site")] == ["site[s2]", "site[s3]"]
    assert d_cov.info["harmonize"] == {"method": "covariate", "site_column": "site"}
    d_none = design_from_study(_study(tmp_path, site_column="site", harmonize="none"), labels)
    assert d_none.columns == d_combat.columns and "harmonize" not in d_none.info
    clin = clinical_designs(_study(tmp_path, site_column="site"), labels)["severity"]
    assert clin.info["harmonize"]["sites"] == list(df.set_index("participant_id").loc[
        ["sub-" + s for s in clin.subjects], "site"])


def test_harmonize_for_design_equals_study_level_combat(tmp_path):
    """Protecting the design's column space = protecting group + age + sex explicitly."""
    df = _write(tmp_path)
    study = _study(tmp_path, site_column="site")
    labels = list(study.labels)
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(len(labels), 40)) + df.site.map({"s1": 0.0, "s2": 1.5, "s3": -1.0}).to_numpy()[:, None]
    design = design_from_study(study, labels)
    out, rec = harmonize_for_design(Y, design)
    ref, _ = harmonize_for_study(Y, study, labels)
    np.testing.assert_allclose(out, ref, atol=1e-8)
    assert rec["applied"] and rec["subjects_per_site"] == {"s1": 8, "s2": 8, "s3": 8}
    # clinical design: the score is protected too (explicit ComBat with severity + age + sex)
    clin = clinical_designs(study, labels)["severity"]
    rows = [labels.index(s) for s in clin.subjects]
    out_c, rec_c = harmonize_for_design(Y[rows], clin)
    p = study.participants.loc[clin.subjects]
    covars = pd.DataFrame({"severity": p.severity.to_numpy(float), "age": p.age.to_numpy(float),
                           "sex": p.sex.to_numpy()})
    ref_c = ComBat(categorical=["sex"]).fit_transform(Y[rows], p.site.to_numpy(), covars)
    np.testing.assert_allclose(out_c, ref_c, atol=1e-8)
    assert rec_c["applied"]


def test_harmonize_for_design_skips_when_not_estimable(tmp_path):
    _write(tmp_path)
    study = _study(tmp_path, site_column="site")
    labels = list(study.labels)
    d = design_from_study(study, labels[:7])            # sites s1 x3, s2 x2, s3 x2 -> fine
    Y = np.random.default_rng(0).normal(size=(7, 5))
    assert harmonize_for_design(Y, d)[1]["applied"]
    d = design_from_study(study, labels[:5])            # s3 has 1 subject -> skipped, data unchanged
    out, rec = harmonize_for_design(Y[:5], d)
    assert out is Y[:5] or np.array_equal(out, Y[:5])
    assert not rec["applied"] and "fewer than 2" in rec["reason"]


def _grid():
    shape = (6, 6, 5)
    mask = np.zeros(shape, bool)
    mask[1:5, 1:5, 1:4] = True
    return mask, np.diag([3.0, 3.0, 3.0, 1.0])


def test_voxelwise_group_applies_combat(tmp_path):
    """ComBat inside voxelwise_group = voxelwise_group without harmonisation on ComBat'ed data."""
    df = _write(tmp_path)
    labels = [p.removeprefix("sub-") for p in df.participant_id]
    mask, affine = _grid()
    rng = np.random.default_rng(5)
    Y = rng.normal(size=(len(labels), int(mask.sum())))
    Y += df.site.map({"s1": 0.0, "s2": 2.0, "s3": -1.0}).to_numpy()[:, None]
    Y[:, :10] -= 1.0 * (df.group == "HFS").to_numpy()[:, None]
    stats = {"n_perm": 19, "tfce": False, "random_seed": 0}
    st = _study(tmp_path, site_column="site")
    d = design_from_study(st, labels)
    combat = voxelwise_group(Y, mask, d, tmp_path / "combat", stats)
    H, _ = harmonize_for_study(Y, st, labels)
    d_none = design_from_study(_study(tmp_path, site_column="site", harmonize="none"), labels)
    ref = voxelwise_group(H, mask, d_none, tmp_path / "ref", stats)
    name = gname("t", "patient-gt-control")
    t1 = nib.load(combat / name).get_fdata()
    t2 = nib.load(ref / name).get_fdata()
    np.testing.assert_allclose(t1, t2, atol=1e-5)
    meta = json.loads((combat / gname("t", "patient-gt-control", sidecar=True)).read_text())
    assert meta["Harmonization"]["applied"] is True and meta["Harmonization"]["site_column"] == "site"
    eff = meta["Harmonization"]["mean_additive_effect"]
    assert eff["s2"] - eff["s1"] == pytest.approx(2.0, abs=0.3)
    assert eff["s3"] - eff["s1"] == pytest.approx(-1.0, abs=0.3)
    assert "Harmonization" not in json.loads((ref / gname("t", "patient-gt-control", sidecar=True)).read_text())


def test_roi_group_applies_combat(tmp_path):
    df = _write(tmp_path)
    labels = [p.removeprefix("sub-") for p in df.participant_id]
    rng = np.random.default_rng(8)
    tab = pd.DataFrame(rng.normal(size=(len(labels), 6)), index=labels, columns=[f"r{k}" for k in range(6)])
    tab = tab.add(df.site.map({"s1": 0.0, "s2": 1.0, "s3": -2.0}).to_numpy(), axis=0)
    st = _study(tmp_path, site_column="site")
    rois, corr = roi_group(tab, st, tmp_path / "combat", {"n_perm": 0})
    H, _ = harmonize_for_study(tab, st, labels)
    st_none = _study(tmp_path, site_column="site", harmonize="none")
    rois_ref, _ = roi_group(H, st_none, tmp_path / "ref", {"n_perm": 0})
    np.testing.assert_allclose(rois.t.to_numpy(), rois_ref.t.to_numpy(), atol=1e-8)
    meta = json.loads((tmp_path / "combat" / "group" / "a" / "m" / "rois.json").read_text())
    assert meta["Harmonization"]["group"]["applied"] is True
    assert meta["Harmonization"]["corr-severity"]["applied"] is True
    assert len(corr) == 6


REGIONS = {"thal": "aal:Thalamus_L+aal:Thalamus_R", "put": "aal:Putamen_L+aal:Putamen_R",   # planted GM loss
           "prec": "aal:Precuneus_L", "calc": "aal:Calcarine_L", "sfg": "aal:Frontal_Sup_2_L",
           "mtg": "aal:Temporal_Mid_L", "mog": "aal:Occipital_Mid_L", "postc": "aal:Postcentral_L"}
EFFECTS = {"effects": [
    {"id": "gm-thalamus", "metric": "gm", "direction": -1, "cohens_d": 1.8, "region": REGIONS["thal"]},
    {"id": "gm-putamen", "metric": "gm", "direction": -1, "cohens_d": 1.8, "region": REGIONS["put"]}]}


@pytest.mark.slow
def test_simulated_multisite_through_group_analysis(tmp_path):
    """Planted scanner differences (simulator ``site_effects``) are removed by the group analysis
    with ``harmonize: combat`` while the planted GM loss is kept.

    Reference: the same simulated subjects without site effects (same seed). Sites are made
    partly confounded with group (excluding 2 site-2 patients and 2 site-1 controls), so the
    uncorrected site offset biases every ROI's group difference.
    """
    from hfsmri.simulate import simulate_study
    from hfsmri.spatial.atlas import region_mask

    kw = dict(n_patients=6, n_controls=6, seed=1, modalities=("anat",), deform=False, n_sites=2, n_jobs=1,
              resolution=3, effects=EFFECTS)
    root = simulate_study(tmp_path / "sites", site_effects=True, **kw)
    root0 = simulate_study(tmp_path / "free", site_effects=False, **kw)

    def table(r):
        parts = pd.read_csv(r / "participants.tsv", sep="\t")
        rows, masks = {}, None
        for pid in parts.participant_id:
            img = nib.load(r / pid / "anat" / f"{pid}_T1w.nii.gz")
            if masks is None:
                masks = {k: region_mask(v, img) for k, v in REGIONS.items()}
            d = np.asarray(img.dataobj, dtype=float)
            rows[pid] = {k: d[m].mean() for k, m in masks.items()}
        return pd.DataFrame(rows).T, parts

    tab, parts = table(root)
    tab0, _ = table(root0)
    site1_p = parts[(parts.site == "site1") & (parts.group == "HC")].participant_id.tolist()[:2]
    site2_p = parts[(parts.site == "site2") & (parts.group == "HFS")].participant_id.tolist()[:2]
    cfg = {"group_column": "group", "covariates": ["age"], "site_column": "site", "exclude": site1_p + site2_p}
    est = {}
    for mode, t in (("free", tab0), ("none", tab), ("combat", tab)):
        st = Study.from_bids(root, {**cfg, "harmonize": mode if mode != "free" else "none"})
        rois, _ = roi_group(t.loc[["sub-" + s for s in st.labels]], st, tmp_path / mode, {"n_perm": 0})
        est[mode] = rois.set_index("roi")
    bias_none = (est["none"].estimate - est["free"].estimate)
    bias_combat = (est["combat"].estimate - est["free"].estimate)
    # the planted site offset biases every ROI the same way without harmonisation ...
    assert (np.sign(bias_none) == np.sign(bias_none.mean())).all()
    # ... and ComBat removes most of that systematic bias
    assert abs(bias_combat.mean()) < 0.25 * abs(bias_none.mean())
    assert np.abs(bias_combat).mean() < 0.7 * np.abs(bias_none).mean()
    # planted GM loss kept in thalamus and putamen, as in the site-free data (T1w intensity goes
    # *up* there: the simulator turns GM lost in the deep nuclei into WM-like tissue)
    for roi in ("thal", "put"):
        assert est["combat"].loc[roi, "t"] > 1.5 and est["free"].loc[roi, "t"] > 1.5
        assert est["combat"].loc[roi, "estimate"] == pytest.approx(est["free"].loc[roi, "estimate"], rel=0.5)
    meta = json.loads((tmp_path / "combat" / "group" / "a" / "m" / "rois.json").read_text())
    assert meta["Harmonization"]["group"]["applied"] is True
