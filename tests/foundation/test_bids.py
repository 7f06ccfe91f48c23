"""BIDS discovery on tiny trees (raw + fMRIPrep-style), checked against pybids."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfsmri.bids import discover, entities
from hfsmri.validate import validate_inputs
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


def test_repetition_time_in_milliseconds_is_refused(tmp_path):
    root = make_bids(tmp_path / "b", modalities=("func",), tr=2.0)
    j = root / "sub-01" / "func" / "sub-01_task-rest_bold.json"
    j.write_text(json.dumps({"RepetitionTime": 2000}))
    problems = validate_inputs(discover(root).inputs[("01", None)])
    assert [p.field for p in problems] == ["RepetitionTime"] and p_path(problems[0]) == j.name
    assert "2000" in str(problems[0]) and "milliseconds" in str(problems[0])
    j.unlink()  # header only: pixdim[4] = 0.05 s is not a TR either
    _img(root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz", (6, 6, 6, 40), tr=0.05)
    problems = validate_inputs(discover(root).inputs[("01", None)])
    assert len(problems) == 1 and "pixdim[4]" in problems[0].field and "0.05" in str(problems[0])


def p_path(exc):
    return exc.path.name


def test_multi_echo_choice_is_recorded(tmp_path, caplog):
    root = make_bids(tmp_path / "b", modalities=("func",))
    func = root / "sub-01" / "func"
    for f in list(func.iterdir()):
        f.unlink()
    for run in (1, 2):
        for e, te in ((1, 0.0142), (2, 0.0356), (3, 0.057)):
            _img(func / f"sub-01_task-rest_run-{run}_echo-{e}_bold.nii.gz", (6, 6, 6, 40 + 10 * run), tr=2.0)
            (func / f"sub-01_task-rest_run-{run}_echo-{e}_bold.json").write_text(
                json.dumps({"RepetitionTime": 2.0, "EchoTime": te}))
    with caplog.at_level("INFO", logger="hfsmri"):
        ds = discover(root)
    si = ds.inputs[("01", None)]
    assert si.bold.name == "sub-01_task-rest_run-2_echo-2_bold.nii.gz"  # most volumes; TE 35.6 ms closest to 30
    notes = "; ".join(si.notes)
    assert "echo-1 14.2 ms, echo-2 35.6 ms, echo-3 57 ms" in notes and "closest to 30 ms" in notes
    assert "2 runs found, used sub-01_task-rest_run-2_echo-2_bold.nii.gz (most volumes)" in notes
    assert "closest to 30 ms" in caplog.text and "most volumes" in caplog.text  # printed, not only recorded
    assert "echoes not combined" in ds.table().loc[0, "notes"]


def test_slice_timing_validated_before_jobs(tmp_path):
    root = make_bids(tmp_path / "b", modalities=("func",))
    j = root / "sub-01" / "func" / "sub-01_task-rest_bold.json"
    ok = {"RepetitionTime": 2.0, "SliceTiming": [0, 1.0, 0.333, 1.333, 0.667, 1.667]}  # interleaved, 6 slices
    j.write_text(json.dumps(ok))
    assert validate_inputs(discover(root).inputs[("01", None)]) == []
    j.write_text(json.dumps({**ok, "SliceEncodingDirection": "i-"}))  # 6 slices along i too
    assert validate_inputs(discover(root).inputs[("01", None)]) == []
    for bad, needle in (({**ok, "SliceTiming": [0, 1, 2, 0.5, 1.5, 0.25]}, "[0, 2)"),
                        ({**ok, "SliceTiming": [0, 1]}, "2 entries but the BOLD has 6 slices"),
                        ({**ok, "SliceTiming": ["a"] * 6}, "list of numbers"),
                        ({**ok, "SliceEncodingDirection": "z"}, "SliceEncodingDirection")):
        j.write_text(json.dumps(bad))
        problems = validate_inputs(discover(root).inputs[("01", None)])
        assert len(problems) == 1 and needle in str(problems[0]) and j.name in str(problems[0]), bad
    j.write_text(json.dumps({**ok, "SliceTiming": [0, 1]}))
    assert validate_inputs(discover(root).inputs[("01", None)], slice_timing=False) == []  # off: not used
    j.write_text(json.dumps({"RepetitionTime": 2.0}))
    assert validate_inputs(discover(root).inputs[("01", None)], slice_timing="auto") == []
    problems = validate_inputs(discover(root).inputs[("01", None)], slice_timing=True)
    assert "no SliceTiming" in str(problems[0])


def test_real_scanner_like_inputs_pass_validation(tmp_path):
    """Real data written as scanners write it pass the header-level checks unchanged: nibabel's real T1
    crop stored sagittally (PSR), nitime's real BOLD under a 12° oblique LPS header with interleaved
    SliceTiming, dipy's small_101D (b0 written as b = 15 with a vector) under an oblique header."""
    import shutil

    import nibabel as nib
    import nitime

    from tests.realdata import dipy_dwi, nibabel_data, reheader, reorder

    root = make_bids(tmp_path / "b", subjects=("01",), groups=("HFS",), modalities=())
    anat, func, dwi = (root / "sub-01" / d for d in ("anat", "func", "dwi"))
    for d in (anat, func, dwi):
        d.mkdir(parents=True)
    nib.save(reorder(nib.load(nibabel_data("anatomical.nii")), "PSR"), anat / "sub-01_T1w.nii.gz")
    bold = reheader(reorder(nib.load(Path(nitime.__file__).parent / "data" / "fmri1.nii.gz"), "LPS"), (12, 0, -6))
    nib.save(bold, func / "sub-01_task-rest_bold.nii.gz")
    n = bold.shape[2]
    times = [float((list(range(0, n, 2)) + list(range(1, n, 2))).index(z)) * 1.35 / n for z in range(n)]
    (func / "sub-01_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 1.35, "SliceTiming": times,
                                                                 "SliceEncodingDirection": "k"}))
    f, fb, fv = dipy_dwi("small_101D")
    nib.save(reheader(nib.load(f), (0, 15, 10)), dwi / "sub-01_dwi.nii.gz")
    shutil.copy(fb, dwi / "sub-01_dwi.bval")
    shutil.copy(fv, dwi / "sub-01_dwi.bvec")
    si = discover(root).inputs[("01", None)]
    assert validate_inputs(si) == [] and si.tr == pytest.approx(1.35)
    assert validate_inputs(si, read_data=True) == []
