"""The default heuristic on vendor series names, and user heuristics (format, validation)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from hfsmri.dicom.heuristic import DEFAULT_HEURISTIC, HeuristicError, load_heuristic
from hfsmri.errors import HfsmriError


class FakeSeries:
    """Header fields of a series as the rules see them (``names`` computed as scan.py does)."""

    def __init__(self, description, protocol=None, sequence=None, image_type=("ORIGINAL", "PRIMARY", "M", "ND"),
                 acq="3D", n_volumes=1, b_max=None, modality="MR", **extra):
        self.f = {"SeriesDescription": description, "ProtocolName": protocol or description,
                  "SequenceName": sequence, "ImageType": list(image_type), "MRAcquisitionType": acq,
                  "n_volumes": n_volumes, "b_max": b_max, "Modality": modality, **extra}
        self.f["names"] = " | ".join(str(self.f[k]) for k in ("SeriesDescription", "ProtocolName", "SequenceName")
                                     if self.f[k])

    def field(self, name):
        return self.f.get(name)


T1 = dict(acq="3D", n_volumes=1)
DWI = dict(acq="2D", n_volumes=33, image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND", "MOSAIC"))
BOLD = dict(acq="2D", n_volumes=240)

# (series, expected: "anat/T1w" | "dwi/dwi" | "func/task-rest_bold" | "skip:<rule>")
CASES = [
    # T1w: Siemens, GE, Philips names
    (FakeSeries("t1_mprage_sag_p2_iso", sequence="*tfl3d1_16ns", **T1), "anat/T1w"),
    (FakeSeries("MPRAGE", **T1), "anat/T1w"),
    (FakeSeries("MP-RAGE_1mm", **T1), "anat/T1w"),
    (FakeSeries("T1_MPR_sag", **T1), "anat/T1w"),
    (FakeSeries("Sag 3D BRAVO", **T1), "anat/T1w"),
    (FakeSeries("3D FSPGR", **T1), "anat/T1w"),
    (FakeSeries("SAG SPGR 1mm", **T1), "anat/T1w"),
    (FakeSeries("T1W_3D_TFE", protocol="sT1W_3D_TFE_32ch", **T1), "anat/T1w"),
    (FakeSeries("3D T1 TFE", **T1), "anat/T1w"),
    (FakeSeries("MPRAGE_S2", protocol="MPRAGE_S2 SENSE", sequence="T1TFE", **T1), "anat/T1w"),
    (FakeSeries("T1_SE_TRA", acq="2D"), "skip:t1w_not_3d"),
    (FakeSeries("t1_mprage_sag_post_gd", **T1), "skip:t1w_contrast"),
    (FakeSeries("T1 3D +C", **T1), "skip:t1w_contrast"),
    (FakeSeries("mp2rage_UNI_Images", image_type=("DERIVED", "PRIMARY", "M", "UNI")), "skip:derived"),
    (FakeSeries("mp2rage_INV1", **T1), "skip:mp2rage"),
    # DWI
    (FakeSeries("ep2d_diff_mddw_30_p2", sequence="ep_b0", **DWI), "dwi/dwi"),
    (FakeSeries("DTI_64dir", **DWI), "dwi/dwi"),
    (FakeSeries("Ax DTI 30 directions", **DWI), "dwi/dwi"),
    (FakeSeries("DWI_SENSE", **DWI), "dwi/dwi"),
    (FakeSeries("CBU_DTI_64D_1A", sequence="ep_b1000#1", **DWI), "dwi/dwi"),
    (FakeSeries("series_7", sequence="ep_b1000#3", **DWI), "dwi/dwi"),
    (FakeSeries("unnamed", acq="2D", n_volumes=31, b_max=1000.0), "dwi/dwi"),
    (FakeSeries("ep2d_diff_mddw_30_p2_ADC", image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC"), **{"acq": "2D"}),
     "skip:derived"),
    (FakeSeries("ep2d_diff_mddw_30_p2_FA", image_type=("DERIVED", "PRIMARY", "DIFFUSION", "FA")), "skip:derived"),
    (FakeSeries("ep2d_diff_mddw_30_p2_TRACEW", image_type=("DERIVED", "PRIMARY", "DIFFUSION", "TRACEW")),
     "skip:derived"),
    (FakeSeries("dDWI_ADC", acq="2D"), "skip:derived_map"),
    (FakeSeries("DWI trace", acq="2D", n_volumes=1), "skip:derived_map"),
    (FakeSeries("DTI_b1000", acq="2D", n_volumes=1), "skip:dwi_single_volume"),
    # BOLD
    (FakeSeries("ep2d_bold_rest", sequence="epfid2d1_64", **BOLD), "func/task-rest_bold"),
    (FakeSeries("ep2d_bold", **BOLD), "func/task-rest_bold"),
    (FakeSeries("rsfMRI", **BOLD), "func/task-rest_bold"),
    (FakeSeries("Resting State fMRI", **BOLD), "func/task-rest_bold"),
    (FakeSeries("BOLD_resting", **BOLD), "func/task-rest_bold"),
    (FakeSeries("FE_EPI_32chSHC", **BOLD), "func/task-rest_bold"),
    (FakeSeries("RESTING_STATE_Yerkes", **BOLD), "func/task-rest_bold"),
    (FakeSeries("fMRI_rest_SBRef", acq="2D", n_volumes=1), "skip:sbref"),
    (FakeSeries("ep2d_bold_fingertapping", **BOLD), "skip:task_fmri"),
    (FakeSeries("fMRI motor task", **BOLD), "skip:task_fmri"),
    (FakeSeries("ep2d_bold_rest", acq="2D", n_volumes=3), "skip:bold_short"),
    (FakeSeries("MoCoSeries", protocol="ep2d_bold_moco", image_type=("ORIGINAL", "PRIMARY", "M", "MOCO"), **BOLD),
     "skip:motion_corrected"),
    # never imported
    (FakeSeries("AAHScout", sequence="*fl2d1", acq="2D"), "skip:localizer"),
    (FakeSeries("AAHead_Scout_64ch-head-coil_MPR_sag", image_type=("DERIVED", "PRIMARY", "MPR")), "skip:localizer"),
    (FakeSeries("localizer", acq="2D"), "skip:localizer"),
    (FakeSeries("3Plane Loc SSFSE", acq="2D"), "skip:localizer"),
    (FakeSeries("Survey_32ch_HeadCoil", acq="2D"), "skip:localizer"),
    (FakeSeries("ASSET calibration", acq="3D"), "skip:calibration"),
    (FakeSeries("t1_mprage_sag_p2_iso_MPR_tra", image_type=("DERIVED", "PRIMARY", "MPR", "NORM")), "skip:reformat"),
    (FakeSeries("t1_mprage_sag_p2_iso", image_type=("ORIGINAL", "PRIMARY", "P", "ND"), **T1), "skip:phase"),
    (FakeSeries("gre_field_mapping", acq="2D"), "skip:field_map"),
    (FakeSeries("ep2d_pcasl", sequence="epfid2d1_64", **BOLD), "skip:perfusion"),
    (FakeSeries("t2_tse_tra", acq="2D"), "skip:None"),
    (FakeSeries("Screen Save", modality="OT"), "skip:not_mr"),
]


def _outcome(decision) -> str:
    if not decision.kept:
        return f"skip:{decision.rule}"
    ents = "_".join(f"{k}-{v}" for k, v in decision.entities)
    return f"{decision.datatype}/{ents + '_' if ents else ''}{decision.suffix}"


@pytest.mark.parametrize("series,expected", CASES, ids=[c[0].f["SeriesDescription"] for c in CASES])
def test_default_heuristic_on_vendor_names(series, expected):
    assert _outcome(load_heuristic().classify(series)) == expected


def test_unmatched_series_says_why():
    d = load_heuristic().classify(FakeSeries("t2_tse_tra", acq="2D"))
    assert not d.kept and "no rule matched" in d.skip


def test_conventions_doc_lists_every_default_rule():
    """docs/conventions.md is the user's view of the default heuristic: it must name every rule."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "conventions.md").read_text()
    for rule in load_heuristic().rules:
        assert f"`{rule.name}`" in doc, rule.name


# ---------------------------------------------------------------- user heuristics
def _write(tmp_path, text) -> Path:
    p = tmp_path / "heuristic.yaml"
    p.write_text(text)
    return p


def test_user_rules_come_before_the_default(tmp_path):
    h = load_heuristic(_write(tmp_path, """
rules:
  - name: site_t1
    match: {SeriesDescription: '^T1_ISO_SAG$', n_volumes: {max: 1}}
    datatype: anat
    suffix: T1w
    entities: {acq: iso}
  - name: keep_sbref
    match: {names: sbref}
    datatype: func
    suffix: sbref
    entities: {task: rest}
"""))
    assert _outcome(h.classify(FakeSeries("T1_ISO_SAG", acq="2D"))) == "anat/acq-iso_T1w"
    assert _outcome(h.classify(FakeSeries("fMRI_rest_SBRef", acq="2D"))) == "func/task-rest_sbref"
    # the default rules still apply after the user's
    assert _outcome(h.classify(FakeSeries("DTI_64dir", **DWI))) == "dwi/dwi"
    assert "default" in h.source


def test_extends_none_uses_only_the_user_rules(tmp_path):
    h = load_heuristic(_write(tmp_path, """
extends: none
rules:
  - name: only_dti
    match: {SeriesDescription: dti}
    datatype: dwi
    suffix: dwi
"""))
    assert [r.name for r in h.rules] == ["only_dti"]
    assert _outcome(h.classify(FakeSeries("t1_mprage", **T1))) == "skip:None"


def test_condition_forms(tmp_path):
    h = load_heuristic(_write(tmp_path, """
extends: none
rules:
  - name: r1
    match:
      ImageType: [ORIGINAL]
      RepetitionTime: {min: 1000, max: 3000}
      EchoTime: {exists: true}
      any:
        - {SeriesDescription: '^bold'}
        - {ProtocolName: {regex: 'rest$'}}
    unless: {SeriesDescription: 'sbref'}
    datatype: func
    suffix: bold
    entities: {task: rest}
"""))
    ok = FakeSeries("x", protocol="my_rest", RepetitionTime=2000.0, EchoTime=30.0)
    assert h.classify(ok).kept
    assert not h.classify(FakeSeries("x", protocol="my_rest", RepetitionTime=500.0, EchoTime=30.0)).kept
    assert not h.classify(FakeSeries("x", protocol="my_rest", RepetitionTime=2000.0)).kept      # no EchoTime
    assert not h.classify(FakeSeries("x", protocol="other", RepetitionTime=2000.0, EchoTime=30.0)).kept
    assert not h.classify(FakeSeries("bold_sbref", RepetitionTime=2000.0, EchoTime=30.0)).kept  # unless


BAD = [
    ("rules: []", "rules", "non-empty list"),
    ("[1, 2]", None, "YAML mapping"),
    ("rules:\n  - {name: a, match: {SeriesDescription: x}, datatype: anat, suffix: T1w}\nextend: none",
     "extend", "unknown key"),
    ("rules:\n  - {match: {SeriesDescription: x}, skip: why}", "name", "needs a name"),
    ("rules:\n  - {name: a, match: {SeriesDescriptio: x}, skip: why}", "SeriesDescriptio", "did you mean 'SeriesDescription'"),
    ("rules:\n  - {name: a, match: {SeriesDescription: '(unclosed'}, skip: why}", "SeriesDescription",
     "invalid regular expression"),
    ("rules:\n  - {name: a, match: {n_volumes: {min: x}}, skip: why}", "n_volumes", "min must be a number"),
    ("rules:\n  - {name: a, match: {n_volumes: {least: 3}}, skip: why}", "n_volumes", "unknown condition key"),
    ("rules:\n  - {name: a, match: {SeriesDescription: x}, datatype: anatomy, suffix: T1w}", "datatype",
     "datatype must be one of"),
    ("rules:\n  - {name: a, match: {SeriesDescription: x}, datatype: anat, suffix: T1-w}", "suffix", "letters and digits"),
    ("rules:\n  - {name: a, match: {SeriesDescription: x}, datatype: func, suffix: bold}", "entities",
     "needs a task entity"),
    ("rules:\n  - {name: a, match: {SeriesDescription: x}, datatype: anat, suffix: T1w, entities: {run: 2}}",
     "entities.run", "numbered automatically"),
    ("rules:\n  - {name: a, match: {SeriesDescription: x}, datatype: anat, suffix: T1w, skip: why}", "skip",
     "not both"),
    ("rules:\n  - {name: a, match: {SeriesDescription: x}, skip: why}\n  - {name: a, match: {}, skip: why}", "name",
     "duplicate rule name"),
    ("rules:\n  - {name: localizer, match: {SeriesDescription: x}, skip: why}", "rules", "default rule names"),
    ("rules:\n  - {name: a, match: {SeriesDescription: x}, skip: why, datatyp: anat}", None, "did you mean 'datatype'"),
    ("rules:\n  - name: a\n    match: {SeriesDescription: x\n", None, "invalid YAML at line"),
]


@pytest.mark.parametrize("text,field,message", BAD, ids=[b[2] for b in BAD])
def test_invalid_heuristics_give_one_clear_error(tmp_path, text, field, message):
    p = _write(tmp_path, text)
    with pytest.raises(HeuristicError) as info:
        load_heuristic(p)
    err = str(info.value)
    assert str(p) in err and message in err
    if field:
        assert field in err


def test_missing_heuristic_file(tmp_path):
    with pytest.raises(HfsmriError, match="does not exist"):
        load_heuristic(tmp_path / "nope.yaml")


def test_default_heuristic_file_is_valid_and_self_contained():
    text = DEFAULT_HEURISTIC.read_text()
    assert re.search(r"^extends: none", text, re.M)
    h = load_heuristic(DEFAULT_HEURISTIC)
    assert [r.name for r in h.rules] == [r.name for r in load_heuristic().rules]


def test_the_documented_example_heuristic_is_valid(tmp_path):
    """The example of docs/import.md loads and does what its comments say."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "import.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "extends: default" in b)
    h = load_heuristic(_write(tmp_path, block))
    assert [r.name for r in h.rules[:4]] == ["site_t1", "keep_sbref", "our_dti", "swi"]
    assert _outcome(h.classify(FakeSeries("T1_3D_SAG_ISO", acq="2D"))) == "anat/acq-iso_T1w"
    assert _outcome(h.classify(FakeSeries("T1_3D_SAG_ISO post", acq="2D"))) == "skip:t1w_contrast"  # unless, then default
    assert _outcome(h.classify(FakeSeries("x", protocol="DTI_AP", acq="2D", n_volumes=31, b_max=1000.0))) == "dwi/dwi"
    assert _outcome(h.classify(FakeSeries("SWI_Images", acq="3D"))) == "skip:swi"
