"""The simulated dataset is valid raw BIDS with complete ground truth (checked with pybids, nibabel
and the project's own discovery)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ._helpers import MAIN, effects_table, load, participants

CONTRACT_GT = ["effect_id", "analysis", "metric", "region", "hemisphere", "direction", "cohens_d",
               "clinical_score", "clinical_r", "mask"]


def test_dataset_files_and_sidecars(main_study):
    root = main_study
    desc = json.loads((root / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and desc["BIDSVersion"] and desc["Name"]
    p = participants(root)
    n = MAIN["n_patients"] + MAIN["n_controls"]
    assert len(p) == n
    for sid in p.participant_id:
        anat = root / sid / "anat" / f"{sid}_T1w.nii.gz"
        dwi = root / sid / "dwi" / f"{sid}_dwi.nii.gz"
        bold = root / sid / "func" / f"{sid}_task-rest_bold.nii.gz"
        for f in (anat, dwi, bold):
            assert f.is_file() and f.with_name(f.name.replace(".nii.gz", ".json")).is_file()
        t1, t1img = load(anat)
        assert t1.ndim == 3 and t1img.header.get_zooms()[:3] == pytest.approx((4.0, 4.0, 4.0))
        # DWI: bval/bvec agree with the 4D image; 12 unit directions at b=1000 + b0 volumes
        d, dimg = load(dwi)
        bvals = np.loadtxt(dwi.with_name(f"{sid}_dwi.bval"))
        bvecs = np.loadtxt(dwi.with_name(f"{sid}_dwi.bvec"))
        assert bvecs.shape == (3, d.shape[3]) and bvals.shape == (d.shape[3],)
        assert set(np.unique(bvals)) == {0.0, 1000.0}
        assert (bvals == 1000).sum() == MAIN["n_dirs"] and (bvals == 0).sum() == 1 + MAIN["n_dirs"] // 10
        assert np.allclose(np.linalg.norm(bvecs[:, bvals > 0], axis=0), 1.0, atol=1e-5)
        side = json.loads(dwi.with_name(f"{sid}_dwi.json").read_text())
        assert side["RepetitionTime"] > 0 and side["EchoTime"] > 0
        # BOLD: TR 2 s in header and sidecar, requested number of volumes
        b, bimg = load(bold)
        assert b.shape[3] == MAIN["n_volumes"]
        assert bimg.header.get_zooms()[3] == pytest.approx(2.0)
        meta = json.loads(bold.with_name(f"{sid}_task-rest_bold.json").read_text())
        assert meta["RepetitionTime"] == pytest.approx(2.0) and meta["TaskName"] == "rest"


def test_participants_columns_and_ranges(main_study, session_study):
    for root in (main_study, session_study):
        p = participants(root)
        assert list(p.columns) == ["participant_id", "group", "age", "sex", "affected_side", "severity",
                                   "duration_months", "hama", "hamd", "site"]
        pat = p.group == "HFS"
        assert set(p.group) <= {"HFS", "HC"} and pat.any() and (~pat).any()
        assert p.participant_id.str.fullmatch(r"sub-\d+").all() and p.participant_id.is_unique
        assert p.age.between(18, 90).all() and set(p.sex) <= {"F", "M"}
        assert set(p.affected_side[pat]) <= {"L", "R"} and p.affected_side[~pat].isna().all()  # "n/a" in the file
        assert (p.severity[~pat] == 0).all() and p.severity[pat].between(1, 4).all()
        dur = pd.to_numeric(p.duration_months[pat])
        assert (dur > 0).all() and p.duration_months[~pat].isna().all()
        assert p.hama.between(0, 56).all() and p.hamd.between(0, 52).all()
        # anxiety is higher in patients on average (the simulator plants HAMA means 14 vs 5)
        assert p.hama[pat].mean() > p.hama[~pat].mean()
        # ~60 % of patients affected on the left: round(0.6 n)
        assert (p.affected_side[pat] == "L").sum() == round(0.6 * pat.sum())


def test_pybids_indexes_it(main_study):
    bids = pytest.importorskip("bids")
    layout = bids.BIDSLayout(str(main_study), validate=True)
    n = MAIN["n_patients"] + MAIN["n_controls"]
    assert len(layout.get_subjects()) == n
    assert len(layout.get(suffix="T1w", extension=".nii.gz")) == n
    assert len(layout.get(suffix="dwi", extension=".nii.gz")) == n
    assert len(layout.get(suffix="dwi", extension=".bval")) == n
    bolds = layout.get(suffix="bold", task="rest", extension=".nii.gz")
    assert len(bolds) == n
    assert bolds[0].get_metadata()["RepetitionTime"] == pytest.approx(2.0)


def test_foundation_discovers_everything(main_study, session_study):
    from hfsmri.bids import discover
    from hfsmri.study import Study

    ds = discover(main_study)
    assert len(ds.subjects) == MAIN["n_patients"] + MAIN["n_controls"]
    for si in ds.inputs.values():
        assert si.t1w and si.dwi and si.bval and si.bvec and si.bold and si.tr == pytest.approx(2.0)
    study = Study.from_bids(main_study)
    assert len(study.participants) == MAIN["n_patients"] + MAIN["n_controls"]
    ds2 = discover(session_study)
    assert sorted(ds2.sessions) == ["post", "pre"]
    assert len(ds2.inputs) == 2 * 9 and all(si.t1w for si in ds2.inputs.values())
    Study.from_bids(session_study, {"sessions": ["pre", "post"]})


def test_ground_truth_contract(main_study):
    gt = main_study / "derivatives" / "ground_truth"
    assert json.loads((gt / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    eff = effects_table(main_study)
    assert list(eff.columns[:len(CONTRACT_GT)]) == CONTRACT_GT
    assert set(eff.direction) == {-1, 1}
    assert set(eff.analysis) >= {"vbm", "roi_volumes", "dti", "tbss", "dwi_rois", "reho", "alff", "seed_fc"}
    assert eff[eff.analysis == "seed_fc"].metric.str.fullmatch(r"seed-[A-Za-z0-9]+").all()
    # the review's signs (mission.md): thalamus GM down, CC FA down / RD up, SLF FA up, brainstem ReHo up
    row = lambda e, a, m: eff[(eff.effect_id == e) & (eff.analysis == a) & (eff.metric == m)].iloc[0]
    assert row("gm-thalamus", "vbm", "gm").direction == -1
    assert row("wm-cc-genu-body", "tbss", "fa").direction == -1
    assert row("wm-cc-genu-body", "tbss", "rd").direction == 1
    assert row("wm-slf", "tbss", "fa").direction == 1
    assert row("reho-brainstem-ipsi", "reho", "reho").direction == 1
    assert row("reho-brainstem-ipsi", "reho", "reho").clinical_score == "severity"
    # every mask exists, is non-empty and binary, on the 2 mm MNI grid
    from hfsmri.spatial.atlas import region_mask
    from hfsmri.spatial.templates import template_grid

    shape, affine = template_grid(2)
    for rel in set(eff["mask"]) | set(eff["mask_unaligned"]):
        m, img = load(gt / rel)
        assert m.shape == shape and np.allclose(img.affine, affine)
        assert set(np.unique(m)) == {0, 1}
    # masks are where the regions are: the thalamus mask is AAL's thalamus
    m, img = load(gt / row("gm-thalamus", "vbm", "gm")["mask"])
    ref = region_mask("aal:Thalamus_L+aal:Thalamus_R", img)
    assert np.array_equal(m > 0, ref)
    # ipsi/contra masks: aligned mask (affected side R) on the right; unaligned = both sides
    r = row("reho-brainstem-ipsi", "reho", "reho")
    m, img = load(gt / r["mask"])
    u, _ = load(gt / r["mask_unaligned"])
    x = (np.nonzero(m)[0] * affine[0, 0] + affine[0, 3])
    assert (x >= 0).all()
    xu = (np.nonzero(u)[0] * affine[0, 0] + affine[0, 3])
    assert (xu < 0).any() and (xu > 0).any()
    # per-subject table: one row per subject, planted effect columns, 0 for controls
    subj = pd.read_csv(gt / "subjects.tsv", sep="\t")
    p = participants(main_study)
    assert sorted(subj.participant_id) == sorted(p.participant_id)
    hc = subj.group == "HC"
    assert (subj.loc[hc, "effect-gm-thalamus"] == 0).all()
    assert np.allclose(subj.loc[~hc, "effect-gm-thalamus"], -1.8)
    conf = gt / p.participant_id[0] / "func" / f"{p.participant_id[0]}_task-rest_desc-confounds_timeseries.tsv"
    assert conf.is_file()


def test_sessions_layout(session_study):
    p = participants(session_study)
    for sid in p.participant_id:
        for ses in ("pre", "post"):
            assert (session_study / sid / f"ses-{ses}" / "anat" / f"{sid}_ses-{ses}_T1w.nii.gz").is_file()
        st = pd.read_csv(session_study / sid / f"{sid}_sessions.tsv", sep="\t")
        assert list(st.session_id) == ["ses-pre", "ses-post"]
        pre, post = st.iloc[0], st.iloc[1]
        row = p.set_index("participant_id").loc[sid]
        assert pre.severity == row.severity  # first session repeats participants.tsv
        if row.group == "HFS":  # after MVD: spasm grade and anxiety go down
            assert post.severity < pre.severity or post.severity == 0
            assert post.hama <= pre.hama
        else:
            assert post.severity == pre.severity == 0
