"""Scanning DICOM folders: series geometry counts on real files, and one clear error for every kind
of bad folder (empty, not DICOM, unreadable, mixed subjects, missing slices, truncated files)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

from hfsmri.cli import main
from hfsmri.dicom import DicomFolderError, import_dicom, scan_folder
from hfsmri.errors import HfsmriError

from . import synth
from .conftest import copy_real


def import_fails(dicom, tmp_path, match, **kw) -> str:
    """Import must fail with one HfsmriError matching ``match`` and leave no BIDS_DIR behind."""
    bids = tmp_path / "bids_out"
    with pytest.raises(HfsmriError, match=match) as info:
        import_dicom(dicom, bids, "01", printer=None, **kw)
    assert not bids.exists(), "a failed first import must not leave a BIDS_DIR"
    return str(info.value)


# ---------------------------------------------------------------- what a scan sees
def test_scan_counts_on_real_and_written_series(siemens_dwi, philips_t1, tmp_path):
    dwi = scan_folder(siemens_dwi).series
    assert len(dwi) == 1 and dwi[0].mosaic and (dwi[0].n_slices, dwi[0].n_volumes) == (48, 2)
    assert dwi[0].b_max == 1000 and dwi[0].dims == "128x128x48x2"
    t1 = scan_folder(philips_t1).series[0]
    assert t1.multiframe and (t1.n_slices, t1.n_volumes) == (176, 1)
    assert t1.field("RepetitionTime") == pytest.approx(7.5693, abs=1e-3)        # from the shared groups
    assert t1.field("SequenceName") == "T1TFE" and t1.field("MRAcquisitionType") == "3D"
    synth.write_bold(tmp_path / "b")
    bold = scan_folder(tmp_path / "b").series[0]
    assert (bold.n_slices, bold.n_volumes, bold.n_files) == (8, 12, 96)
    assert bold.field("names") == "ep2d_bold_rest | ep2d_bold_rest | epfid2d1_64"


def test_non_dicom_and_duplicate_files_are_ignored(tmp_path):
    spec = synth.write_t1w(tmp_path / "d" / "t1")
    (tmp_path / "d" / "notes.txt").write_text("scanned 2024\n")
    (tmp_path / "d" / ".DS_Store").write_bytes(b"\x00\x01")
    shutil.copy(spec.files[3], tmp_path / "d" / "copy_of_slice4.dcm")   # the same SOP instance twice
    res = scan_folder(tmp_path / "d")
    assert [p.name for p in res.ignored] == ["notes.txt"]
    assert res.series[0].n_files == 12 and res.series[0].duplicates == 1
    from hfsmri.dicom.scan import check_complete

    check_complete(res.series[0])   # the duplicate is not a missing or extra slice


# ---------------------------------------------------------------- bad folders
def test_missing_folder_and_file_instead_of_folder(tmp_path):
    import_fails(tmp_path / "nope", tmp_path, "nope: DICOM folder does not exist")
    f = tmp_path / "a.dcm"
    f.write_text("x")
    import_fails(f, tmp_path, "not a folder")


def test_empty_folder(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    import_fails(tmp_path / "empty", tmp_path, r"empty: DICOM folder is empty")


def test_folder_without_dicom_files(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    (d / "report.pdf").write_bytes(b"%PDF-1.4")
    import_fails(d, tmp_path, r"photos: no DICOM images found among 2 file\(s\) \(a.jpg, report.pdf\)")


def test_unreadable_dicom_files_are_named(tmp_path):
    d = tmp_path / "d"
    spec = synth.write_t1w(d)
    bad = d / "IM_broken.dcm"
    bad.write_bytes(bytes(128) + b"DICM" + b"garbage")
    msg = import_fails(d, tmp_path, "cannot read the DICOM header")
    assert msg.startswith(str(bad))
    bad.unlink()
    spec.files[7].write_bytes(spec.files[7].read_bytes()[:700])   # cut inside the header
    msg = import_fails(d, tmp_path, r"DICOM image header is incomplete \(no Rows/Columns\): truncated")
    assert msg.startswith(str(spec.files[7]))


def test_mixed_patients_real_files(tmp_path):
    """nibabel's 0.dcm is the same Siemens DTI acquisition exported with PatientID '1234'."""
    d = tmp_path / "mixed"
    copy_real("siemens_dwi_0.dcm.gz", d)
    copy_real("siemens_dwi_1000.dcm.gz", d)
    copy_real("0.dcm", d / "other")
    msg = import_fails(d, tmp_path, r"files of 2 different patients")
    assert "PatientID '' in 2 file(s)" in msg and "PatientID '1234' in 1 file(s), e.g. other/0.dcm" in msg
    assert "one folder per subject and session" in msg


def test_mixed_studies(tmp_path):
    d = tmp_path / "two_visits"
    synth.write_t1w(d / "a", study_uid="1.2.826.0.1.3680043.8.498.11")
    synth.write_bold(d / "b", study_uid="1.2.826.0.1.3680043.8.498.22")
    import_fails(d, tmp_path, r"two_visits: files of 2 different studies \(scanner visits\): StudyInstanceUID")


def test_missing_slice_instance_gap(tmp_path):
    d = tmp_path / "gap"
    synth.write_t1w(d, skip_instances=(5, 6))
    import_fails(d, tmp_path, r"gap: series 3 \(t1_mprage_sag_p2_iso\): missing slices: InstanceNumber runs "
                              r"1..12 but 2 are absent \(5, 6\)")


def test_missing_slice_in_one_volume(tmp_path):
    d = tmp_path / "bold"
    spec = synth.write_bold(d)
    spec.files[-1].unlink()          # last slice of the last volume: no InstanceNumber gap
    import_fails(d, tmp_path, r"series 5 \(ep2d_bold_rest\): missing slices: 1 of 8 slice positions have fewer "
                              r"images than the others \(11 instead of 12\)")


def test_fewer_slices_than_images_in_acquisition(tmp_path):
    d = tmp_path / "short"
    synth.write_t1w(d, shape=(16, 20, 10), images_in_acquisition=12)   # the last two slices never arrived
    import_fails(d, tmp_path, r"missing slices: 10 file\(s\) but ImagesInAcquisition is 12")


def test_truncated_file(tmp_path):
    d = tmp_path / "cut"
    spec = synth.write_t1w(d)
    data = spec.files[4].read_bytes()
    spec.files[4].write_bytes(data[:-100])
    import_fails(d, tmp_path, r"series 3 \(t1_mprage_sag_p2_iso\): 1 of 12 file\(s\) have unusable pixel data "
                              rf"\({spec.files[4].name}: pixel data cut short")


def test_images_of_different_sizes_in_one_series(tmp_path):
    d = tmp_path / "sizes"
    spec = synth.write_t1w(d)
    ds = pydicom.dcmread(spec.files[2])
    ds.Rows, ds.Columns = 8, 8
    ds.PixelData = bytes(8 * 8 * 2)
    ds.save_as(spec.files[2])
    import_fails(d, tmp_path, r"images of different sizes in one series \(20x16 in 11 file\(s\), 8x8 in 1 file")


def test_header_only_real_file_kept_by_a_rule(tmp_path):
    """nibabel's csa_slice_norm.dcm is a real Siemens resting-state mosaic header without pixel data."""
    d = tmp_path / "hdr"
    copy_real("csa_slice_norm.dcm", d)
    # the default heuristic skips it (one volume of a BOLD series) and says there is nothing to import
    import_fails(d, tmp_path, r"no series to import: the heuristic skipped every series")
    rules = tmp_path / "keep.yaml"
    rules.write_text("rules:\n  - name: keep_rest\n    match: {SeriesDescription: RESTING}\n"
                     "    datatype: func\n    suffix: bold\n    entities: {task: rest}\n")
    import_fails(d, tmp_path, r"series 8 \(RESTING_STATE_Yerkes\): 1 of 1 file\(s\) have unusable pixel data "
                              r"\(csa_slice_norm.dcm: no pixel data", heuristic=rules)


def test_several_bad_series_are_reported_together(tmp_path, capsys):
    d = tmp_path / "two_bad"
    synth.write_t1w(d / "t1", skip_instances=(3,))
    spec = synth.write_bold(d / "bold")
    spec.files[-1].unlink()
    code = main(["import", str(d), str(tmp_path / "bids"), "--subject", "01"])
    err = capsys.readouterr().err
    assert code == 1 and sum(ln.startswith("hfsmri: error:") for ln in err.splitlines()) == 1
    assert "Traceback" not in err
    assert "2 series cannot be imported" in err and "InstanceNumber" in err and "slice positions" in err
    # --dry-run shows the table with the faults instead of failing
    code = main(["import", str(d), str(tmp_path / "bids"), "--subject", "01", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and out.count("NOT IMPORTABLE") == 2 and not (tmp_path / "bids").exists()
