"""``hfsmri import``: real DICOM files and pydicom-written series -> BIDS, checked against the
DICOM headers (independent of dcm2niix), and the dataset-level behaviour (participants.tsv,
re-import, sessions, atomicity, hfsmri's own BIDS reader)."""
from __future__ import annotations

import hashlib
import shutil
import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest

from hfsmri.cli import main
from hfsmri.dicom import import_dicom
from hfsmri.errors import HfsmriError

from . import synth


def run_import(dicom, bids, subject="01", **kw):
    out = []
    res = import_dicom(dicom, bids, subject, printer=out.append, **kw)
    return res, "\n".join(out)


def tree(root: Path) -> dict:
    """{relative path: sha256} of every file under root (the import record included; dcm2niix's
    log, which holds timings and temporary paths, only by name)."""
    return {str(p.relative_to(root)): "log" if p.name.endswith("_dcm2niix.log") else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "import.lock"}


# ---------------------------------------------------------------- real data
def _csa(ds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader

        return csareader.get_csa_header(ds, "image")


def test_real_siemens_dti_mosaics_bval_bvec_match_the_csa_header(siemens_dwi, tmp_path):
    bids = tmp_path / "bids"
    res, text = run_import(siemens_dwi, bids)
    assert "dwi/sub-01_dwi.nii.gz [dwi]" in text
    stem = bids / "sub-01" / "dwi" / "sub-01_dwi"
    img = nib.load(f"{stem}.nii.gz")
    assert img.shape == (128, 128, 48, 2)
    bvals = np.loadtxt(f"{stem}.bval")
    bvecs = np.loadtxt(f"{stem}.bvec")
    # independent reference: b-value and gradient direction (patient LPS) from each file's CSA header,
    # expressed in the image's voxel axes with FSL's convention (x flipped when the affine's
    # determinant is positive), which dcm2niix and BIDS use
    files = sorted(siemens_dwi.glob("*.dcm"), key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))
    from nibabel.nicom import csareader

    expected_b, expected_g = [], []
    for f in files:
        csa = _csa(pydicom.dcmread(f))
        expected_b.append(csareader.get_b_value(csa))
        g = csareader.get_g_vector(csa)
        expected_g.append(np.zeros(3) if g is None else np.asarray(g, float))
    np.testing.assert_allclose(bvals, expected_b)
    rot = img.affine[:3, :3] / np.linalg.norm(img.affine[:3, :3], axis=0)
    for vol, g_lps in enumerate(expected_g):
        g_vox = rot.T @ (np.diag([-1.0, -1.0, 1.0]) @ g_lps)
        if np.linalg.det(img.affine[:3, :3]) > 0:
            g_vox[0] = -g_vox[0]
        np.testing.assert_allclose(bvecs[:, vol], g_vox, atol=2e-4)
    assert np.isclose(np.linalg.norm(bvecs[:, 1]), 1.0, atol=1e-3)
    # sidecar: the timing and distortion fields BIDS apps need, in seconds
    meta = json.loads(Path(f"{stem}.json").read_text())
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert meta["RepetitionTime"] == pytest.approx(float(ds.RepetitionTime) / 1000)
    assert meta["EchoTime"] == pytest.approx(float(ds.EchoTime) / 1000)
    assert meta["PhaseEncodingDirection"] in ("j", "j-") and meta["TotalReadoutTime"] > 0
    # slice times: the CSA MosaicRefAcqTimes (ms); dcm2niix takes them from the second volume when
    # the first one's range differs (its "Issue870" check), as it does for these files
    acq = [np.asarray(_csa(pydicom.dcmread(f))["tags"]["MosaicRefAcqTimes"]["items"], float) / 1000 for f in files]
    assert not np.allclose(acq[0] - acq[0].min(), acq[1] - acq[1].min(), atol=1e-3)
    np.testing.assert_allclose(meta["SliceTiming"], acq[1] - acq[1].min(), atol=1e-6)
    assert "PatientName" not in meta and "PatientID" not in meta
    assert res.participants == "added"


def _dicom_corners_ras(ds) -> np.ndarray:
    """World RAS mm of the 8 corner pixels of an enhanced multi-frame volume, from its frames'
    ImagePositionPatient, ImageOrientationPatient and PixelSpacing."""
    def group(name):  # shared functional group, else the first frame's (Philips keeps them per frame)
        shared = ds.SharedFunctionalGroupsSequence[0]
        return (shared if name in shared else ds.PerFrameFunctionalGroupsSequence[0])[name][0]

    iop = np.asarray(group("PlaneOrientationSequence").ImageOrientationPatient, float)
    dr, dc = (float(x) for x in group("PixelMeasuresSequence").PixelSpacing)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    ipps = np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in ds.PerFrameFunctionalGroupsSequence], float)
    along = ipps @ normal
    corners = []
    for ipp in (ipps[np.argmin(along)], ipps[np.argmax(along)]):
        for r in (0, ds.Rows - 1):
            for c in (0, ds.Columns - 1):
                corners.append(ipp + c * dc * row + r * dr * col)
    return np.asarray(corners) * np.array([-1.0, -1.0, 1.0])


def test_real_philips_enhanced_mprage_becomes_t1w(philips_t1, tmp_path):
    bids = tmp_path / "bids"
    _, text = run_import(philips_t1, bids, participant_info=["group=HC"])
    assert "anat/sub-01_T1w.nii.gz [t1w]" in text
    t1 = bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    img = nib.load(t1)
    ds = pydicom.dcmread(next(philips_t1.glob("*.dcm")))
    assert sorted(img.shape) == sorted((ds.Rows, ds.Columns, int(ds.NumberOfFrames)))
    ijk = np.array([[i, j, k] for i in (0, img.shape[0] - 1) for j in (0, img.shape[1] - 1) for k in (0, img.shape[2] - 1)])
    nifti = nib.affines.apply_affine(img.affine, ijk)
    dicom = _dicom_corners_ras(ds)
    # the same 8 corners in world space (each NIfTI corner has a DICOM corner within 0.01 mm)
    dist = np.linalg.norm(nifti[:, None, :] - dicom[None, :, :], axis=2)
    assert dist.min(axis=1).max() < 0.01
    meta = json.loads(t1.with_name("sub-01_T1w.json").read_text())
    tr_ms = float(ds.SharedFunctionalGroupsSequence[0].MRTimingAndRelatedParametersSequence[0].RepetitionTime)
    assert meta["RepetitionTime"] == pytest.approx(tr_ms / 1000)
    assert meta["Manufacturer"] == "Philips" and meta["MRAcquisitionType"] == "3D"


# ---------------------------------------------------------------- pydicom-written series
def _check_geometry(img, spec: synth.SeriesSpec) -> float:
    """Largest distance (mm) between where the NIfTI puts each voxel and where the DICOM pixel
    it holds (decoded from its value) lies by the DICOM geometry that was written."""
    data = np.asarray(img.dataobj)
    if data.ndim == 3:
        data = data[..., None]
    ijk = np.indices(data.shape[:3]).reshape(3, -1).T
    world_nifti = nib.affines.apply_affine(img.affine, ijk)
    worst = 0.0
    for t in range(data.shape[3]):
        vol, k, r, c = spec.decode(data[..., t].reshape(-1))
        assert (vol == t).all(), "volumes out of order"
        world = np.empty_like(world_nifti)
        for kk in np.unique(k):
            m = k == kk
            world[m] = spec.dicom_world_ras(t, kk, r[m], c[m])
        worst = max(worst, float(np.abs(world_nifti - world).max()))
    return worst


def test_synthetic_session_t1w_and_bold(session_dicom, tmp_path):
    root, specs = session_dicom
    bids = tmp_path / "bids"
    res, text = run_import(root, bids, session="pre", participant_info=["group=HFS", "age=54", "affected_side=L"])
    ses = bids / "sub-01" / "ses-pre"
    t1 = nib.load(ses / "anat" / "sub-01_ses-pre_T1w.nii.gz")
    assert sorted(t1.shape) == sorted((16, 20, 12))
    assert _check_geometry(t1, specs["t1w"]) < 1e-3          # oblique sagittal, anisotropic voxels
    bold_path = ses / "func" / "sub-01_ses-pre_task-rest_bold.nii.gz"
    bold = nib.load(bold_path)
    assert bold.shape == (12, 10, 8, 12)
    assert _check_geometry(bold, specs["bold"]) < 1e-3
    meta = json.loads(bold_path.with_name("sub-01_ses-pre_task-rest_bold.json").read_text())
    assert meta["RepetitionTime"] == pytest.approx(2.0) and meta["TaskName"] == "rest"
    assert meta["EchoTime"] == pytest.approx(0.030)
    np.testing.assert_allclose(meta["SliceTiming"], np.array(synth.BOLD_SLICE_TIMES_MS) / 1000, atol=1e-4)
    assert bold.header.get_zooms()[3] == pytest.approx(2.0)
    # what happened to every series is printed, in acquisition order, with the rule
    lines = {ln.split()[1]: ln for ln in text.splitlines() if ln.strip()[:1].isdigit()}
    assert "skipped: localizer" in lines["1"]
    assert "anat/sub-01_ses-pre_T1w.nii.gz [t1w]" in lines["3"]
    assert "skipped: reformatted or projection image" in lines["4"]
    assert "skipped: phase image" in lines["6"]
    assert "skipped: single-band reference" in lines["7"]
    assert "func/sub-01_ses-pre_task-rest_bold.nii.gz [bold]" in lines["8"]
    assert "non-DICOM file(s) ignored, e.g. README.txt" in text
    # machine-readable record, dataset description, participants
    rec = pd.read_csv(res.record, sep="\t", dtype=str)
    assert res.record == bids / ".hfsmri" / "import" / "sub-01_ses-pre_series.tsv"
    assert list(rec["decision"]) == ["skipped", "kept", "skipped", "skipped", "skipped", "kept"]
    assert list(rec["rule"]) == ["localizer", "t1w", "reformat", "phase", "sbref", "bold"]
    assert rec.loc[5, "outputs"] == "sub-01/ses-pre/func/sub-01_ses-pre_task-rest_bold.nii.gz"
    assert rec.loc[5, "repetition_time_ms"] == "2000" and rec.loc[5, "n_volumes"] == "12"
    assert "PatientID" not in "".join(rec.columns) and "HFS001" not in rec.to_csv()
    assert (bids / ".hfsmri" / "import" / "sub-01_ses-pre_heuristic.yaml").read_text().count("- name:") >= 20
    desc = json.loads((bids / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and desc["BIDSVersion"]
    parts = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str)
    assert parts.to_dict("records") == [{"participant_id": "sub-01", "group": "HFS", "age": "54", "affected_side": "L"}]
    assert not (bids / ".hfsmri" / "tmp").exists()


def test_several_runs_are_numbered_in_acquisition_order(tmp_path):
    root = tmp_path / "dicom"
    # the run acquired first has the higher series number (re-numbered at the console)
    synth.write_bold(root / "a", series_number=9, n_volumes=12, start_s=10 * 3600)
    synth.write_bold(root / "b", series_number=4, n_volumes=11, start_s=11 * 3600)
    synth.write_t1w(root / "c")
    bids = tmp_path / "bids"
    run_import(root, bids)
    func = bids / "sub-01" / "func"
    assert nib.load(func / "sub-01_task-rest_run-1_bold.nii.gz").shape[3] == 12
    assert nib.load(func / "sub-01_task-rest_run-2_bold.nii.gz").shape[3] == 11
    assert (bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz").exists()   # a single T1w gets no run


def test_reimport_is_refused_and_overwrite_replaces_identically(siemens_dwi, tmp_path):
    bids = tmp_path / "bids"
    run_import(siemens_dwi, bids, participant_info=["group=HFS"])
    first = tree(bids)
    with pytest.raises(HfsmriError, match=r"sub-01 already exists.*--overwrite"):
        run_import(siemens_dwi, bids, participant_info=["group=HFS"])
    assert tree(bids) == first                          # nothing duplicated or touched
    run_import(siemens_dwi, bids, participant_info=["group=HFS"], overwrite=True)
    assert tree(bids) == first                          # byte-identical (deterministic gzip, same record)
    assert pd.read_csv(bids / "participants.tsv", sep="\t")["participant_id"].tolist() == ["sub-01"]


def test_participants_tsv_rows_and_columns(siemens_dwi, tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "participants.tsv").write_text("participant_id\tsex\nsub-07\tF\n")
    run_import(siemens_dwi, bids, "02", participant_info=["group=HFS", "age=61"])
    parts = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert parts.to_dict("records") == [
        {"participant_id": "sub-07", "sex": "F", "group": "n/a", "age": "n/a"},
        {"participant_id": "sub-02", "sex": "n/a", "group": "HFS", "age": "61"}]


def test_participant_info_conflict_is_refused(siemens_dwi, tmp_path):
    bids = tmp_path / "bids"
    run_import(siemens_dwi, bids, "02", session="pre", participant_info=["group=HFS", "age=61"])
    with pytest.raises(HfsmriError, match=r"sub-02 already has age='61' \(given '62'\).*--overwrite"):
        run_import(siemens_dwi, bids, "02", session="post", participant_info=["age=62"])
    assert not (bids / "sub-02" / "ses-post").exists()
    res, _ = run_import(siemens_dwi, bids, "02", session="post", participant_info=["age=61", "sex=M"])
    assert res.participants == "updated"
    parts = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str)
    assert parts.to_dict("records") == [{"participant_id": "sub-02", "group": "HFS", "age": "61", "sex": "M"}]
    assert sorted(p.name for p in (bids / "sub-02").iterdir()) == ["ses-post", "ses-pre"]


def test_sessions_and_no_sessions_do_not_mix(siemens_dwi, tmp_path):
    bids = tmp_path / "bids"
    run_import(siemens_dwi, bids, "01")
    with pytest.raises(HfsmriError, match="already has data without sessions"):
        run_import(siemens_dwi, bids, "01", session="post")
    run_import(siemens_dwi, bids, "02", session="pre")
    with pytest.raises(HfsmriError, match="has session folders .*give --session"):
        run_import(siemens_dwi, bids, "02")


def test_a_failure_leaves_bids_dir_as_it_was(session_dicom, siemens_dwi, tmp_path, monkeypatch):
    root, _ = session_dicom
    bids = tmp_path / "bids"
    run_import(siemens_dwi, bids, "01", participant_info=["group=HC"])
    before = tree(bids)
    from hfsmri.dicom import importer

    real = importer.run_dcm2niix
    calls = []

    def crash_on_second(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise HfsmriError("simulated crash during the second conversion")
        return real(src, dst)

    monkeypatch.setattr(importer, "run_dcm2niix", crash_on_second)
    with pytest.raises(HfsmriError, match="simulated crash"):
        run_import(root, bids, "02", participant_info=["group=HFS"])
    assert tree(bids) == before
    assert sorted(p.name for p in (bids / ".hfsmri").iterdir()) == ["import", "import.lock"]
    # into a BIDS_DIR that did not exist: nothing is left behind
    calls.clear()
    with pytest.raises(HfsmriError, match="simulated crash"):
        run_import(root, tmp_path / "new_bids", "02")
    assert not (tmp_path / "new_bids").exists()


def test_imported_dataset_is_read_by_hfsmri(session_dicom, siemens_dwi, tmp_path):
    """The end of the road: hfsmri's own BIDS discovery and study model accept the import."""
    from hfsmri.bids import discover
    from hfsmri.validate import validate_inputs
    from hfsmri.study import Study

    root, _ = session_dicom
    bids = tmp_path / "bids"
    run_import(root, bids, "01", participant_info=["group=HFS", "age=54", "sex=F", "affected_side=L"])
    run_import(siemens_dwi, bids, "02", participant_info=["group=HFS", "age=60", "sex=M", "affected_side=R"])
    run_import(root, bids, "03", participant_info=["group=HC", "age=50", "sex=F"])
    run_import(siemens_dwi, bids, "04", participant_info=["group=HC", "age=58", "sex=M"])
    ds = discover(bids)
    assert ds.subjects == ["01", "02", "03", "04"]
    s1 = ds.inputs[("01", None)]
    assert s1.t1w.name == "sub-01_T1w.nii.gz" and s1.bold.name == "sub-01_task-rest_bold.nii.gz"
    assert s1.tr == pytest.approx(2.0)
    s2 = ds.inputs[("02", None)]
    assert s2.dwi.name == "sub-02_dwi.nii.gz" and s2.bval.exists() and s2.bvec.exists()
    # the participant level's own input checks (images load, DWI gradients match the volumes; header
    # level for the nibabel DWI, whose pixel data nibabel ships zeroed); the tiny written BOLD
    # (12 volumes) is only short of the 35 volumes a real analysis needs
    assert validate_inputs(s2) == []
    problems = [str(p) for p in validate_inputs(s1, read_data=True)]
    assert len(problems) == 1 and "BOLD has 12 volumes" in problems[0]
    study = Study.from_bids(bids, {"group_column": "group", "groups": {"patient": "HFS", "control": "HC"},
                                   "covariates": ["age", "sex"], "flip_to": "R"})
    assert study.subjects_in("patient") == ["01", "02"] and study.subjects_in("control") == ["03", "04"]
    assert study.flipped("01") and not study.flipped("02")


# ---------------------------------------------------------------- command line
def test_cli_import_dry_run_and_errors(siemens_dwi, tmp_path, capsys):
    bids = tmp_path / "bids"
    code = main(["import", str(siemens_dwi), str(bids), "--subject", "sub-01", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and "-> dwi/dwi [dwi]" in out and "dry run: nothing written" in out
    assert not bids.exists()
    code = main(["import", str(siemens_dwi), str(bids), "--subject", "01", "--participant-info", "group=HFS"])
    assert code == 0 and "dwi/sub-01_dwi.nii.gz" in capsys.readouterr().out
    code = main(["import", str(siemens_dwi), str(bids), "--subject", "01"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("hfsmri: error: ") and "--overwrite" in err and "Traceback" not in err
    code = main(["import", str(tmp_path / "nowhere"), str(bids), "--subject", "05"])
    err = capsys.readouterr().err
    assert code == 1 and "nowhere: DICOM folder does not exist" in err
    assert main(["import", str(siemens_dwi), str(bids)]) == 2              # --subject is required
    assert "--subject" in capsys.readouterr().err
    code = main(["import", str(siemens_dwi), str(bids), "--subject", "0-1"])
    assert code == 1 and "letters and digits" in capsys.readouterr().err
    code = main(["import", str(siemens_dwi), str(bids), "--subject", "06", "--participant-info", "group"])
    assert code == 1 and "key=value" in capsys.readouterr().err
    assert main(["import", "--help"]) == 0
    help_text = capsys.readouterr().out
    for opt in ("--subject", "--session", "--heuristic", "--participant-info", "--overwrite", "--dry-run"):
        assert opt in help_text


def test_dcm2niix_binary_is_found_and_an_override_is_checked(monkeypatch):
    from hfsmri.dicom import convert

    convert.dcm2niix_binary.cache_clear()
    path = convert.dcm2niix_binary()
    assert path.is_file() and convert.dcm2niix_version().startswith("v1.")
    monkeypatch.setenv("HFSMRI_DCM2NIIX", "/nonexistent/dcm2niix")
    convert.dcm2niix_binary.cache_clear()
    try:
        with pytest.raises(HfsmriError, match="HFSMRI_DCM2NIIX=/nonexistent/dcm2niix is not an executable"):
            convert.dcm2niix_binary()
    finally:
        convert.dcm2niix_binary.cache_clear()


# ---------------------------------------------------------------- pydicom's real files (pixels, transfer syntaxes)
MR_SMALL_VARIANTS = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                     "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]


def test_real_mr_slice_pixels_and_geometry_in_every_transfer_syntax(tmp_path):
    """pydicom's MR_small (a real 64x64 MR slice) stored uncompressed (explicit, implicit, big
    endian) and compressed (RLE, JPEG-LS, JPEG 2000 lossless): each import holds exactly the pixels
    pydicom decodes, at the world positions the DICOM geometry gives."""
    from .conftest import pydicom_test_file

    rules = tmp_path / "keep.yaml"   # the default skips it (ImageType DERIVED): a rule keeps it
    rules.write_text("extends: none\nrules:\n  - {name: keep, match: {Modality: [MR]}, datatype: anat, suffix: T1w}\n")
    for name in MR_SMALL_VARIANTS:
        src = pydicom_test_file(name)
        d = tmp_path / name.replace(".dcm", "")
        d.mkdir()
        (d / name).write_bytes(src.read_bytes())
        bids = tmp_path / f"bids_{d.name}"
        run_import(d, bids, heuristic=rules)
        img = nib.load(bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
        data = np.asarray(img.dataobj).reshape(img.shape[:2])
        ds = pydicom.dcmread(src, stop_before_pixels=True)
        # reference pixels: pydicom's decoding of the uncompressed file (the variants are lossless
        # encodings of the same image; pydicom has no JPEG-LS/J2K decoder installed here)
        plain = pydicom.dcmread(pydicom_test_file("MR_small.dcm"))
        ref = plain.pixel_array.astype(float) * float(getattr(plain, "RescaleSlope", 1) or 1) \
            + float(getattr(plain, "RescaleIntercept", 0) or 0)
        # where each NIfTI voxel is, in DICOM pixel indices (row, column), by the DICOM geometry
        iop = np.asarray(ds.ImageOrientationPatient, float)
        dr, dc = (float(x) for x in ds.PixelSpacing)
        ij = np.indices(data.shape).reshape(2, -1).T
        lps = nib.affines.apply_affine(img.affine, np.c_[ij, np.zeros(len(ij))]) * np.array([-1.0, -1.0, 1.0])
        off = lps - np.asarray(ds.ImagePositionPatient, float)
        col, row = off @ iop[:3] / dc, off @ iop[3:] / dr
        assert np.abs(col - np.rint(col)).max() < 1e-3 and np.abs(row - np.rint(row)).max() < 1e-3, name
        assert np.abs(off @ np.cross(iop[:3], iop[3:])).max() < 1e-3, name           # in the slice plane
        r, c = np.rint(row).astype(int), np.rint(col).astype(int)
        np.testing.assert_array_equal(data.reshape(-1), ref[r, c], err_msg=name)


def test_real_truncated_file_is_refused(tmp_path):
    from .conftest import pydicom_test_file

    d = tmp_path / "cut"
    d.mkdir()
    (d / "MR_truncated.dcm").write_bytes(pydicom_test_file("MR_truncated.dcm").read_bytes())
    rules = tmp_path / "keep.yaml"
    rules.write_text("extends: none\nrules:\n  - {name: keep, match: {Modality: [MR]}, datatype: anat, suffix: T1w}\n")
    with pytest.raises(HfsmriError, match=r"cut: series 1 \(no description\): 1 of 1 file\(s\) have unusable pixel "
                                          r"data \(MR_truncated.dcm: pixel data cut short \(file truncated: 8130 of 8192"):
        run_import(d, tmp_path / "bids", heuristic=rules)
    assert not (tmp_path / "bids").exists()


def _copy_dicomdir_files(dest: Path, relpaths) -> Path:
    from .conftest import pydicom_test_file

    for rel in relpaths:
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(pydicom_test_file(f"dicomdirtests/{rel}").read_bytes())
    return dest


def test_real_philips_visit_with_only_localizers_and_an_mip(tmp_path, capsys):
    """A real Philips visit from pydicom's DICOMDIR test set (16x16 crops of real images): two
    localizers and a projected angiogram, plus the DICOMDIR: nothing to import, each series says why."""
    d = _copy_dicomdir_files(tmp_path / "visit", ["DICOMDIR", "98892003/MR1/5641", "98892003/MR2/6273",
                                                  "98892003/MR2/6605", "98892003/MR2/6935"]
                             + [f"98892003/MR700/{n}" for n in (4467, 4528, 4558, 4588, 4618, 4648, 4678)])
    code = main(["import", str(d), str(tmp_path / "bids"), "--subject", "01"])
    cap = capsys.readouterr()
    assert code == 1 and "no series to import" in cap.err and not (tmp_path / "bids").exists()
    assert "FAST LOCALIZER" in cap.out and "T/S/C RF FAST PILOT" in cap.out
    assert cap.out.count("skipped: localizer") == 2
    assert "ANGIO Projected from" in cap.out and "skipped: reformatted or projection image (MPR / MIP) [reformat]" in cap.out
    assert "3 series in" in cap.out      # the DICOMDIR is not a series


def test_real_exports_of_several_patients_or_visits(tmp_path):
    from .conftest import pydicom_test_file

    root = pydicom_test_file("dicomdirtests")
    two = tmp_path / "two_patients"
    for sub in ("98892001", "77654033"):
        shutil.copytree(root / sub, two / sub)
    shutil.copy(root / "DICOMDIR", two / "DICOMDIR")
    with pytest.raises(HfsmriError, match=r"two_patients: files of 2 different patients: PatientID '77654033' in "
                                          r"7 file\(s\), e.g. 77654033/CR1/6154; PatientID '98890234' in 7 file"):
        run_import(two, tmp_path / "bids")
    visits = tmp_path / "three_visits"
    shutil.copytree(root / "98892003", visits)
    with pytest.raises(HfsmriError, match=r"three_visits: files of 3 different studies \(scanner visits\)"):
        run_import(visits, tmp_path / "bids")
    assert not (tmp_path / "bids").exists()


def test_dwi_without_gradients_is_skipped_after_conversion(tmp_path):
    """A series the heuristic calls DWI but whose headers carry no b-values (here a written 2D
    series named DTI): dcm2niix writes no .bval/.bvec, so it is skipped, and with nothing else to
    import the command says so and writes nothing."""
    d = tmp_path / "dti"
    synth.write_bold(d, description="DTI_30dir", sequence="ep2d_diff", n_volumes=3)
    with pytest.raises(HfsmriError, match="no series to import after conversion"):
        run_import(d, tmp_path / "bids")
    assert not (tmp_path / "bids").exists()
    synth.write_t1w(d / "t1")
    res, text = run_import(d, tmp_path / "bids")
    assert "skipped: dcm2niix found no diffusion gradients (.bval/.bvec) in the headers [dwi]" in text
    assert [o.decision.rule for o in res.kept] == ["t1w"]
    assert not (tmp_path / "bids" / "sub-01" / "dwi").exists()
