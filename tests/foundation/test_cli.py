"""Command line: help, version, and one clear error (exit 1) per user fault."""
from __future__ import annotations

import subprocess
import sys


from hfsmri.cli import main


def run(argv, capsys):
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_help_lists_every_subcommand(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for word in ("participant", "group", "simulate", "demo", "report", "--participant-label",
                 "--session-label", "--study", "--work-dir", "--nprocs", "--omp-nthreads", "--mem-mb",
                 "--scheduler", "--random-seed", "--stop-on-first-crash", "--skip", "--version"):
        assert word in out, word


def test_version(capsys):
    from hfsmri import __version__

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and __version__ in out


def test_console_script_help():
    res = subprocess.run([sys.executable, "-m", "hfsmri.cli", "simulate", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--n-dirs" in res.stdout


def test_missing_bids_dir(tmp_path, capsys):
    code, _, err = run([str(tmp_path / "data"), str(tmp_path / "data" / "out"), "participant"], capsys)
    assert code == 1
    assert "data" in err and "does not exist" in err
    assert "Traceback" not in err


def test_output_inside_bids_refused(tiny_bids, capsys):
    code, _, err = run([str(tiny_bids), str(tiny_bids / "derivatives" / "hfsmri"), "participant"], capsys)
    assert code == 1 and "inside BIDS_DIR" in err


def test_unknown_participant_label(tiny_bids, tmp_path, capsys):
    code, _, err = run([str(tiny_bids), str(tmp_path / "out"), "participant", "--participant-label", "99",
                        "--skip", *["vbm"]], capsys)
    assert code == 1 and "sub-99" in err and "not found" in err


def test_unreadable_study_yaml(tiny_bids, tmp_path, capsys):
    bad = tmp_path / "study.yaml"
    bad.write_text("group_column: group\ngroups: {patient: HFS, control: [\n")
    code, _, err = run([str(tiny_bids), str(tmp_path / "out"), "group", "--study", str(bad)], capsys)
    assert code == 1 and "study.yaml" in err and "invalid YAML" in err


def test_missing_study_file(tiny_bids, tmp_path, capsys):
    code, _, err = run([str(tiny_bids), str(tmp_path / "out"), "group", "--study", str(tmp_path / "nope.yaml")],
                       capsys)
    assert code == 1 and "nope.yaml" in err and "does not exist" in err


def test_group_without_study(tiny_bids, tmp_path, capsys):
    code, _, err = run([str(tiny_bids), str(tmp_path / "out"), "group"], capsys)
    assert code == 1 and "--study" in err


def test_usage_error_exit_2(capsys):
    code, _, err = run(["a", "b", "sideways"], capsys)
    assert code == 2 and "invalid choice" in err


def test_unknown_skip_is_usage_error(tiny_bids, tmp_path, capsys):
    code, _, _ = run([str(tiny_bids), str(tmp_path / "out"), "participant", "--skip", "nonsense"], capsys)
    assert code == 2


def test_debug_shows_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "hfsmri.cli", str(tmp_path / "x"), str(tmp_path / "y"),
                          "participant", "--debug"], capture_output=True, text=True)
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_participant_not_in_tsv(tiny_bids, tmp_path, capsys):
    # a subject folder on disk that participants.tsv does not list
    import shutil

    shutil.copytree(tiny_bids / "sub-01", tiny_bids / "sub-09")
    for p in (tiny_bids / "sub-09").rglob("sub-01*"):
        p.rename(p.with_name(p.name.replace("sub-01", "sub-09")))
    code, _, err = run([str(tiny_bids), str(tmp_path / "out"), "participant", "--participant-label", "09"], capsys)
    assert code == 1 and "sub-09" in err and "participants.tsv" in err


def test_resolved_study_written(tiny_bids, tmp_path, capsys, monkeypatch):
    """A participant run with nothing runnable still validates and writes study.resolved.yaml."""
    import yaml

    study = tmp_path / "study.yaml"
    study.write_text("group_column: group\ncovariates: [age]\nanalyses: {vbm: {fwhm: 6}}\n")
    # only func data present -> vbm has no input: nothing to run, but the plan is made
    import shutil

    for p in tiny_bids.glob("sub-*/anat"):
        shutil.rmtree(p)
    code, _, err = run([str(tiny_bids), str(tmp_path / "out"), "participant", "--study", str(study)], capsys)
    assert code == 0, err
    res = yaml.safe_load((tmp_path / "out" / "study.resolved.yaml").read_text())
    assert res["analyses"]["vbm"]["fwhm"] == 6 and res["analyses"]["vbm"]["resolution"] == 2
    assert res["stats"]["n_perm"] == 5000
    assert (tmp_path / "out" / "dataset_description.json").exists()


def test_one_subject_runs_the_participant_level(tmp_path, capsys):
    """A study's first scan: one subject, no controls yet (issue 19, item 7). The participant level
    plans and runs (analyses skipped here: only the study/input handling is under test); the group
    level says what it needs."""
    from tests.conftest import make_bids

    root = make_bids(tmp_path / "bids", subjects=("01",), groups=("HFS",))
    study = tmp_path / "study.yaml"
    study.write_text("group_column: group\ncovariates: [age, sex]\nflip_to: R\n")
    skip = ["--skip", "vbm", "thickness", "roi_volumes", "dti", "tbss", "dwi_rois", "reho", "alff", "dc", "vmhc",
            "seed_fc", "ica", "graph"]
    code, _, err = run([str(root), str(tmp_path / "out"), "participant", "--study", str(study), *skip], capsys)
    assert code == 0, err
    code, _, err = run([str(root), str(tmp_path / "out"), "group", "--study", str(study)], capsys)
    assert code == 1 and "participants.tsv" in err and "has 0 participant(s)" in err and "group level" in err
