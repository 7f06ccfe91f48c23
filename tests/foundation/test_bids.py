"""BIDS discovery on tiny trees (raw + fMRIPrep-style), checked against pybids."""
from __future__ import annotations

import json

import pytest

from hfsmri.bids import discover, entities, validate_inputs
from hfsmri.errors import BidsError

from ..conftest import _img, make_bids


def test_raw_discovery_matches_pybids(tiny_bids):
    ds = discover(tiny_bids)
    assert ds.subjects == ["01", "02", "03", "04"]
    si = ds.inputs[("01", None)]
    assert si.t1w.name == "sub-01_T1w.nii.gz" and si.bval.exists() and si.tr == 2.0
    from bids import BIDSLayout

    layout = BIDSLayout(str(tiny_bids), validate=False)
    assert sorted(layout.get_subjects()) == ds.subjects
    for sub in ds.subjects:
        t1 = layout.get(subject=sub, suffix="T1w", extension=".nii.gz", return_type="filename")
        assert [str(ds.inputs[(sub, None)].t1w)] == t1
        bold = layout.get(subject=sub, suffix="bold", task="rest", extension=".nii.gz", return_type="filename")
        assert [str(ds.inputs[(sub, None)].bold)] == bold


def test_sessions_and_selection(tmp_path):
    root = make_bids(tmp_path / "b", sessions=["pre", "post"], modalities=("anat",))
    ds = discover(root, participant_labels=["sub-02"], session_labels=["post"])
    assert list(ds.inputs) == [("02", "post")]
    with pytest.raises(BidsError, match="ses-mid"):
        discover(root, session_labels=["mid"])


def test_multiple_runs_rule(tmp_path):
    root = make_bids(tmp_path / "b", modalities=("func",))
    func = root / "sub-01" / "func"
    _img(func / "sub-01_task-rest_run-2_bold.nii.gz", (6, 6, 6, 50), tr=2.0)
    (func / "sub-01_task-rest_run-2_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    si = discover(root).inputs[("01", None)]
    assert si.bold.name == "sub-01_task-rest_run-2_bold.nii.gz"
    assert any("most volumes" in n for n in si.notes)


def test_tr_from_header_and_mismatch(tmp_path):
    root = make_bids(tmp_path / "b", modalities=("func",), tr=2.0)
    j = root / "sub-01" / "func" / "sub-01_task-rest_bold.json"
    j.unlink()
    assert discover(root).inputs[("01", None)].tr == pytest.approx(2.0)
    j.write_text(json.dumps({"RepetitionTime": 3.0}))
    si = discover(root).inputs[("01", None)]  # a subject's fault does not stop discovery ...
    problems = validate_inputs(si)  # ... it is reported with the subject's header checks
    assert len(problems) == 1 and isinstance(problems[0], BidsError) and "disagrees" in str(problems[0])


def test_inherited_sidecar(tmp_path):
    root = make_bids(tmp_path / "b", modalities=("func",), tr=2.0)
    for j in root.glob("sub-*/func/*.json"):
        j.unlink()
    (root / "task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    si = discover(root).inputs[("02", None)]
    assert si.bold_json.name == "task-rest_bold.json" and si.tr == 2.0


def test_missing_bval(tiny_bids):
    (tiny_bids / "sub-03" / "dwi" / "sub-03_dwi.bval").unlink()
    with pytest.raises(BidsError, match=r"sub-03_dwi.*\.bval"):
        discover(tiny_bids)


def test_not_bids(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(BidsError, match="dataset_description.json"):
        discover(tmp_path / "x")


def test_fmriprep_and_qsiprep_inputs(tiny_bids):
    fp = tiny_bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    pre = "sub-01_task-rest"
    _img(fp / f"{pre}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz", (6, 6, 6, 40), tr=2.0)
    _img(fp / f"{pre}_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz", (6, 6, 6))
    (fp / f"{pre}_desc-confounds_timeseries.tsv").write_text("trans_x\n0\n")
    qp = tiny_bids / "derivatives" / "qsiprep" / "sub-02" / "dwi"
    _img(qp / "sub-02_space-ACPC_desc-preproc_dwi.nii.gz", (6, 6, 6, 7))
    (qp / "sub-02_space-ACPC_desc-preproc_dwi.bval").write_text("0 1000\n")
    (qp / "sub-02_space-ACPC_desc-preproc_dwi.bvec").write_text("0 1\n0 0\n0 0\n")
    ds = discover(tiny_bids)
    a, b = ds.inputs[("01", None)], ds.inputs[("02", None)]
    assert a.fmriprep_bold is not None and a.fmriprep_confounds.name.endswith("confounds_timeseries.tsv")
    assert a.fmriprep_mask is not None
    assert b.qsiprep_dwi is not None and b.qsiprep_bvec.exists()
    assert "derivatives" not in ds.subjects


def test_available_analyses(tmp_path):
    root = make_bids(tmp_path / "b", modalities=("anat", "func"))
    si = discover(root).inputs[("01", None)]
    assert si.available_analyses(["vbm", "tbss", "reho", "seed_fc"]) == ["vbm", "reho", "seed_fc"]
    table = discover(root).table()
    assert list(table["dwi"]) == [False] * 4


def test_entities():
    assert entities("sub-01_ses-pre_task-rest_run-2_bold.nii.gz") == {
        "sub": "01", "ses": "pre", "task": "rest", "run": "2"}
