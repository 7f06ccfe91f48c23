"""Generate the bad-input corpus: one small BIDS dataset (or study.yaml) per fault.

Run as a script to write every case into a folder for manual inspection::

    python tests/bad_inputs/make_corpus.py /tmp/corpus

Each case is ``(builder, extra_argv, expected)``: ``builder(root, tmp)`` damages a fresh tiny
dataset at ``root`` (and may write a study.yaml in ``tmp``; it returns the extra argv), and
``expected`` is a list of substrings the one-line error must contain (the file or field at fault
and the fault).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

try:
    from ..conftest import _img, make_bids
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.conftest import _img, make_bids


def _tsv_edit(root: Path, old: str, new: str):
    p = root / "participants.tsv"
    p.write_text(p.read_text().replace(old, new))


def _study(tmp: Path, text: str) -> list:
    y = tmp / "study.yaml"
    y.write_text(text)
    return ["--study", str(y)]


def t1w(root, sub="02"):
    return root / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"


def bold(root, sub="02"):
    return root / f"sub-{sub}" / "func" / f"sub-{sub}_task-rest_bold.nii.gz"


def dwi(root, sub="02"):
    return root / f"sub-{sub}" / "dwi" / f"sub-{sub}_dwi.nii.gz"


def case_t1w_not_nifti(root, tmp):
    t1w(root).write_bytes(b"this is not an image")
    return []


def case_t1w_truncated(root, tmp):
    _img(t1w(root), (40, 40, 40))
    raw = t1w(root).read_bytes()
    t1w(root).write_bytes(raw[: len(raw) // 2])
    return []


def case_t1w_4d(root, tmp):
    _img(t1w(root), (8, 8, 8, 3))
    return []


def case_t1w_all_zero(root, tmp):
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), t1w(root))
    return []


def case_bold_3d(root, tmp):
    _img(bold(root), (6, 6, 6))
    return []


def case_bold_10_volumes(root, tmp):
    _img(bold(root), (6, 6, 6, 10), tr=2.0)
    return []


def case_bold_nan(root, tmp):
    img = nib.load(bold(root))
    data = img.get_fdata().astype(np.float32)
    data[2, 2, 2, 5] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine, img.header), bold(root))
    return []


def case_bold_missing_tr(root, tmp):
    _img(bold(root), (6, 6, 6, 40), tr=0.0)
    bold(root).with_name("sub-02_task-rest_bold.json").write_text(json.dumps({"TaskName": "rest"}))
    return []


def case_bold_tr_mismatch(root, tmp):
    bold(root).with_name("sub-02_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2.5}))
    return []


def case_bold_sidecar_not_json(root, tmp):
    bold(root).with_name("sub-02_task-rest_bold.json").write_text("{RepetitionTime: 2")
    return []


def case_bvec_bval_count_mismatch(root, tmp):
    dwi(root).with_name("sub-02_dwi.bval").write_text("0 1000 1000 1000 1000 1000\n")
    return []


def case_bvec_nan_dw_volume(root, tmp):
    p = dwi(root).with_name("sub-02_dwi.bvec")
    rows = [r.split() for r in p.read_text().splitlines()]
    rows[0][3] = "nan"
    p.write_text("\n".join(" ".join(r) for r in rows) + "\n")
    return []


def case_bval_missing(root, tmp):
    dwi(root).with_name("sub-02_dwi.bval").unlink()
    return []


def case_dwi_3d(root, tmp):
    _img(dwi(root), (6, 6, 6))
    return []


def case_no_group_column(root, tmp):
    _tsv_edit(root, "\tgroup\t", "\tcohort\t")
    return _study(tmp, "group_column: group\n")


def case_unknown_group_value(root, tmp):
    _tsv_edit(root, "sub-04\tHC", "sub-04\tPD")
    return _study(tmp, "group_column: group\n")


def case_duplicated_participant(root, tmp):
    p = root / "participants.tsv"
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines + [lines[1]]) + "\n")
    return []


def case_covariate_text(root, tmp):
    _tsv_edit(root, "sub-02\tHFS\t43", "sub-02\tHFS\tforty")
    return _study(tmp, "group_column: group\ncovariates: [age]\ncovariate_types: {age: continuous}\n")


def case_covariate_missing(root, tmp):
    _tsv_edit(root, "sub-02\tHFS\t43", "sub-02\tHFS\tn/a")
    return _study(tmp, "group_column: group\ncovariates: [age]\n")


def case_constant_covariate(root, tmp):
    return _study(tmp, "group_column: group\ncovariates: [site]\n")


def case_subject_missing_on_disk(root, tmp):
    return ["--participant-label", "07"]


def case_session_missing(root, tmp):
    for s in ("01", "02", "03", "04"):
        (root / f"sub-{s}" / "ses-pre").mkdir()
    return _study(tmp, "group_column: group\nsessions: [pre, post]\n")


def case_affected_side_invalid(root, tmp):
    _tsv_edit(root, "\tL\t", "\tleft\t")
    return []


def case_participant_id_path(root, tmp):
    _tsv_edit(root, "sub-04\t", "sub-../../x\t")
    return []


def case_study_value_path(root, tmp):
    return _study(tmp, "group_column: group\nsessions: ['../../etc']\n")


def case_study_yaml_invalid(root, tmp):
    return _study(tmp, "group_column: group\ncovariates: [age\n")


def case_study_yaml_unknown_key(root, tmp):
    return _study(tmp, "group_column: group\nanalysis: {vbm: {}}\n")


def case_participants_missing(root, tmp):
    (root / "participants.tsv").unlink()
    return []


def case_no_subjects(root, tmp):
    import shutil

    for p in root.glob("sub-*"):
        shutil.rmtree(p)
    return []


def case_too_few_controls(root, tmp):  # group level only: the participant level runs on any number
    p = root / "participants.tsv"
    p.write_text("\n".join(ln.replace("\tHC\t", "\tHFS\t").replace("\tn/a\t", "\tR\t") if ln.startswith("sub-03")
                           else ln for ln in p.read_text().splitlines()) + "\n")
    return _study(tmp, "group_column: group\n")


def _reheader(path, affine):
    """Write ``affine`` into the sform rows (sform_code 1, qform_code 0) as a broken converter
    would; set directly in the header, since nibabel refuses to build such affines itself."""
    img = nib.load(path)
    hdr = img.header.copy()
    hdr["qform_code"] = 0
    hdr["sform_code"] = 1
    for k, row in zip(("srow_x", "srow_y", "srow_z"), np.asarray(affine, float)[:3]):
        hdr[k] = row
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), None, hdr), path)


def case_t1w_sheared_affine(root, tmp):
    _reheader(t1w(root), affine=np.array([[3.0, 0.9, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1]]))
    return []


def case_t1w_zero_determinant(root, tmp):
    _reheader(t1w(root), affine=np.array([[3.0, 0, 0, 0], [0, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]))
    return []


def case_t1w_nonfinite_affine(root, tmp):
    _reheader(t1w(root), affine=np.array([[3.0, 0, 0, np.nan], [0, 3, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1]]))
    return []


def case_t1w_single_slice(root, tmp):
    _img(t1w(root), (40, 40, 1))
    return []


def case_bold_header_fewer_volumes(root, tmp):
    """60 volumes stored, the header declares 40 (the dim field edited by a broken converter)."""
    import gzip

    _img(bold(root), (6, 6, 6, 60), tr=2.0)
    raw = bytearray(gzip.decompress(bold(root).read_bytes()))
    hdr = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw[:348])))
    hdr.set_data_shape((6, 6, 6, 40))
    raw[:348] = hdr.binaryblock
    bold(root).write_bytes(gzip.compress(bytes(raw)))
    return []


def case_bold_tr_in_ms(root, tmp):
    bold(root).with_name("sub-02_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2000}))
    return []


def case_bold_slice_timing_ms(root, tmp):
    times = [i * 2000.0 / 6 for i in range(6)]
    bold(root).with_name("sub-02_task-rest_bold.json").write_text(
        json.dumps({"RepetitionTime": 2.0, "SliceTiming": times}))
    return []


def case_bold_slice_timing_length(root, tmp):
    bold(root).with_name("sub-02_task-rest_bold.json").write_text(
        json.dumps({"RepetitionTime": 2.0, "SliceTiming": [0.0, 0.5, 1.0, 1.5]}))
    return []


def case_multi_echo_without_echo_time(root, tmp):
    func = bold(root).parent
    for e in (1, 2):
        _img(func / f"sub-02_task-rest_echo-{e}_bold.nii.gz", (6, 6, 6, 40), tr=2.0)
        (func / f"sub-02_task-rest_echo-{e}_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    bold(root).unlink()
    bold(root).with_name("sub-02_task-rest_bold.json").unlink()
    return []


def case_bval_in_s_per_m2(root, tmp):
    dwi(root).with_name("sub-02_dwi.bval").write_text("0 1e9 1e9 1e9 1e9 1e9 1e9\n")
    return []


def case_dwi_no_weighted_volume(root, tmp):
    dwi(root).with_name("sub-02_dwi.bval").write_text("0 0 5 5 10 10 0\n")
    return []


#: name -> (builder, expected substrings in the error, level of detection)
CASES = {
    "t1w_not_nifti": (case_t1w_not_nifti, ["sub-02_T1w.nii.gz", "cannot read T1w as NIfTI"], "plan"),
    "t1w_truncated": (case_t1w_truncated, ["sub-02_T1w.nii.gz", "T1w"], "job"),
    "t1w_4d": (case_t1w_4d, ["sub-02_T1w.nii.gz", "T1w must be 3D"], "plan"),
    "t1w_all_zero": (case_t1w_all_zero, ["sub-02_T1w.nii.gz", "all zeros"], "job"),
    "bold_3d": (case_bold_3d, ["sub-02_task-rest_bold.nii.gz", "BOLD must be 4D"], "plan"),
    "bold_10_volumes": (case_bold_10_volumes, ["sub-02_task-rest_bold.nii.gz", "has 10 volumes"], "plan"),
    "bold_nan": (case_bold_nan, ["sub-02_task-rest_bold.nii.gz", "NaN"], "job"),
    "bold_missing_tr": (case_bold_missing_tr, ["sub-02_task-rest_bold.nii.gz", "RepetitionTime"], "plan"),
    "bold_tr_mismatch": (case_bold_tr_mismatch, ["sub-02_task-rest_bold.nii.gz", "disagrees"], "plan"),
    "bold_sidecar_not_json": (case_bold_sidecar_not_json, ["sub-02_task-rest_bold.json", "cannot parse"], "plan"),
    "bvec_bval_count_mismatch": (case_bvec_bval_count_mismatch, ["sub-02_dwi", "7"], "plan"),
    "bvec_nan_dw_volume": (case_bvec_nan_dw_volume, ["sub-02_dwi.bvec", "NaN"], "plan"),
    "bval_missing": (case_bval_missing, ["sub-02_dwi", ".bval"], "plan"),
    "dwi_3d": (case_dwi_3d, ["sub-02_dwi.nii.gz", "DWI must be 4D"], "plan"),
    "no_group_column": (case_no_group_column, ["group_column", "'group' is not in participants.tsv"], "plan"),
    "unknown_group_value": (case_unknown_group_value, ["participants.tsv", "sub-04=PD"], "plan"),
    "duplicated_participant": (case_duplicated_participant, ["participants.tsv", "duplicated participant_id"], "plan"),
    "covariate_text": (case_covariate_text, ["participants.tsv", "sub-02='forty'"], "plan"),
    "covariate_missing": (case_covariate_missing, ["participants.tsv", "missing values for: sub-02"], "group"),
    "constant_covariate": (case_constant_covariate, ["site", "constant"], "group"),
    "subject_missing_on_disk": (case_subject_missing_on_disk, ["sub-07", "not found"], "plan"),
    "session_missing": (case_session_missing, ["sessions", "sub-01/ses-post"], "plan"),
    "affected_side_invalid": (case_affected_side_invalid, ["affected_side", "L, R or B"], "plan"),
    "participant_id_path": (case_participant_id_path, ["participant_id", "sub-../../x"], "plan"),
    "study_value_path": (case_study_value_path, ["sessions", "letters/digits"], "plan"),
    "study_yaml_invalid": (case_study_yaml_invalid, ["study.yaml", "invalid YAML"], "plan"),
    "study_yaml_unknown_key": (case_study_yaml_unknown_key, ["study.yaml", "unknown key 'analysis'"], "plan"),
    "participants_missing": (case_participants_missing, ["participants.tsv", "not found"], "plan"),
    "no_subjects": (case_no_subjects, ["no sub-* folders"], "plan"),
    "too_few_controls": (case_too_few_controls, ["participants.tsv", "at least 2", "group level"], "group"),
    "t1w_sheared_affine": (case_t1w_sheared_affine, ["sub-02_T1w.nii.gz", "sheared"], "plan"),
    "t1w_zero_determinant": (case_t1w_zero_determinant, ["sub-02_T1w.nii.gz", "zero determinant"], "plan"),
    "t1w_nonfinite_affine": (case_t1w_nonfinite_affine, ["sub-02_T1w.nii.gz", "NaN or infinite"], "plan"),
    "t1w_single_slice": (case_t1w_single_slice, ["sub-02_T1w.nii.gz", "single-slice"], "plan"),
    "bold_header_fewer_volumes": (case_bold_header_fewer_volumes,
                                  ["sub-02_task-rest_bold.nii.gz", "60 volumes stored, 40 declared"], "plan"),
    "bold_tr_in_ms": (case_bold_tr_in_ms, ["sub-02_task-rest_bold.json", "RepetitionTime", "2000"], "plan"),
    "bold_slice_timing_ms": (case_bold_slice_timing_ms, ["sub-02_task-rest_bold.json", "SliceTiming", "[0, 2)"],
                             "plan"),
    "bold_slice_timing_length": (case_bold_slice_timing_length,
                                 ["sub-02_task-rest_bold.json", "SliceTiming", "4 entries", "6 slices"], "plan"),
    "multi_echo_without_echo_time": (case_multi_echo_without_echo_time,
                                     ["sub-02_task-rest_echo-1_bold.nii.gz", "EchoTime"], "plan"),
    "bval_in_s_per_m2": (case_bval_in_s_per_m2, ["sub-02_dwi.bval", ">= 10000"], "plan"),
    "dwi_no_weighted_volume": (case_dwi_no_weighted_volume, ["sub-02_dwi.bval", "no diffusion-weighted volume"],
                               "plan"),
}


def build(name: str, root: Path, tmp: Path) -> list:
    """Write case ``name`` at ``root`` (a fresh tiny BIDS dataset); returns extra CLI arguments."""
    make_bids(root)
    builder = CASES[name][0]
    return builder(root, tmp)


if __name__ == "__main__":  # pragma: no cover
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bad_inputs_corpus")
    for name in CASES:
        (out / name).mkdir(parents=True, exist_ok=True)
        extra = build(name, out / name / "bids", out / name)
        (out / name / "argv.json").write_text(json.dumps(extra))
    print(f"{len(CASES)} cases in {out}")
