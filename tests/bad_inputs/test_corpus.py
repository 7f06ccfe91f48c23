"""Every bad input gives one clear error (file + fault), exit 1, and no partial derivative."""
from __future__ import annotations

import json

import pytest

from hfsmri.cli import main

from .make_corpus import CASES, build

#: analyses are skipped so that only input handling is exercised (no stage needs to succeed)
ALL = ["vbm", "thickness", "roi_volumes", "dti", "tbss", "dwi_rois", "reho", "alff", "dc", "vmhc",
       "seed_fc", "ica", "graph"]


def test_corpus_is_large_enough():
    assert len(CASES) >= 25


def _outputs(out):
    return [p for p in out.rglob("*") if p.is_file() and p.suffix in (".gz", ".nii", ".tsv")
            and "logs" not in p.parts and p.name != "participants.tsv"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_clear_error(name, tmp_path, capsys):
    root, out = tmp_path / "bids", tmp_path / "out"
    extra = build(name, root, tmp_path)
    level = "group" if CASES[name][2] == "group" else "participant"  # group: checked at the group level only
    if CASES[name][2] == "job":  # detected when the subject's job reads its data: run that subject only
        extra = [*extra, "--participant-label", "02"]
    code = main([str(root), str(out), level, "--nprocs", "1", *extra])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    line = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert line, err
    for needle in CASES[name][1]:
        assert needle in err, (needle, err)
    assert _outputs(out) == []  # no partial derivative


@pytest.mark.parametrize("name", ["t1w_4d", "bold_10_volumes", "bvec_nan_dw_volume", "bold_tr_in_ms",
                                  "bold_header_fewer_volumes"])
def test_skip_mode_records_reason(name, tmp_path, capsys):
    root, out = tmp_path / "bids", tmp_path / "out"
    extra = build(name, root, tmp_path)
    code = main([str(root), str(out), "participant", "--on-bad-input", "skip", "--skip", *ALL, *extra])
    assert code == 0, capsys.readouterr().err
    info = json.loads((out / "logs" / "run_info_participant.json").read_text())
    assert list(info["skipped_subjects"]) == ["sub-02"]
    assert CASES[name][1][1] in info["skipped_subjects"]["sub-02"]


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n][2] == "group"))
def test_group_level_faults_do_not_stop_the_participant_level(name, tmp_path, capsys):
    """Group sizes, constant covariates: the participant level runs (issue 19, item 7)."""
    root, out = tmp_path / "bids", tmp_path / "out"
    extra = build(name, root, tmp_path)
    code = main([str(root), str(out), "participant", "--nprocs", "1", "--skip", *ALL, *extra])
    assert code == 0, capsys.readouterr().err
