"""QC rules that decide (hfsmri.qc.decisions): study.yaml qc: validation, the decisions table, and the
group level re-run with another rule changing the included set and qc_decisions.tsv (no participant
level: fabricated participant derivatives, ROI volumes only, seconds)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.naming import gname
from hfsmri.derivatives import Derivatives
from hfsmri.errors import HfsmriError
from hfsmri.pipeline import RunOptions, run_group_level
from hfsmri.qc.decisions import decide
from hfsmri.qc.record import iqm_path
from hfsmri.study import Study

N = 12  # 6 patients, 6 controls
DICE = {f"{i:02d}": round(0.97 - 0.01 * i, 2) for i in range(1, N + 1)}  # sub-01 0.96 ... sub-12 0.85
FD = {f"{i:02d}": round(0.05 * i, 2) for i in range(1, N + 1)}           # sub-01 0.05 ... sub-12 0.60 mm


def _bids(tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    rng = np.random.default_rng(0)
    pd.DataFrame({"participant_id": [f"sub-{s}" for s in DICE],
                  "group": ["HFS" if i % 2 else "HC" for i in range(N)],
                  "age": rng.integers(40, 70, N)}).to_csv(bids / "participants.tsv", sep="\t", index=False)
    return bids


def _fabricate(out: Derivatives):
    """Per subject: tissue table (TIV), ROI volumes, T1w and BOLD IQM rows."""
    rng = np.random.default_rng(1)
    regions = ["Thalamus_L", "Thalamus_R", "Putamen_L", "Putamen_R", "Amygdala_L"]
    for s in DICE:
        out.save_tsv(pd.DataFrame({"tiv_ml": [1450 + 10 * rng.standard_normal()]}),
                     out.path(s, None, "anat", "stats", space=None, entities={"desc": "tissue"}, ext=".tsv"))
        out.save_tsv(pd.DataFrame({"region": regions, "volume_ml": 8 + rng.standard_normal(len(regions))}),
                     out.path(s, None, "anat", "stats", space=None, entities={"desc": "roivolumes"}, ext=".tsv"))
        out.save_tsv(pd.DataFrame({"participant_id": [f"sub-{s}"], "session": ["n/a"], "modality": ["T1w"],
                                   "t1w_dice": [DICE[s]]}), iqm_path(out, s, None, "T1w"))
        out.save_tsv(pd.DataFrame({"participant_id": [f"sub-{s}"], "session": ["n/a"], "modality": ["bold"],
                                   "mean_fd": [FD[s]], "scrubbed": [np.nan], "tsnr": [60.0]}),
                     iqm_path(out, s, None, "bold"))


def _study_yaml(tmp_path, qc: dict):
    p = tmp_path / "study.yaml"
    p.write_text(yaml.safe_dump({"group_column": "group", "groups": {"patient": "HFS", "control": "HC"},
                                 "covariates": ["age"], "analyses": {"roi_volumes": {}},
                                 "stats": {"n_perm": 50, "random_seed": 0}, "qc": qc}))
    return p


def test_changing_the_qc_rule_changes_the_group_set_without_the_participant_level(tmp_path):
    bids = _bids(tmp_path)
    out = Derivatives(tmp_path / "out")
    _fabricate(out)
    roi_n = {}
    for run, qc in enumerate([{}, {"t1w_dice_min": 0.90, "mean_fd_max": 0.2,
                                   "exclude": [{"subject": "sub-02", "reason": "artefact on review"}]}]):
        study = Study.from_bids(bids, _study_yaml(tmp_path, qc))
        run_group_level(study, out, RunOptions(nprocs=1))
        dec = pd.read_csv(out.root / "group" / gname("qc_decisions"), sep="\t", keep_default_na=False)
        assert len(dec) == N * 3 and set(dec["modality"]) == {"T1w", "bold", "dwi"}
        summary = pd.read_json(out.root / "group" / "roi_volumes" / "volume" / "summary.json", typ="series")
        roi_n[run] = int(summary["n_subjects"])
        t1 = dec[dec["modality"] == "T1w"].set_index("participant_id")
        if run == 0:
            assert (dec["decision"] == "included").all()
            continue
        # expected from the planted values: Dice < 0.90 for sub-08..12 (sub-07 = 0.90 passes), plus sub-02 by hand
        want_t1 = {f"sub-{s}" for s, d in DICE.items() if d < 0.90} | {"sub-02"}
        assert set(t1.index[t1["decision"] == "excluded"]) == want_t1
        assert t1.loc["sub-09", "rule"] == "t1w_dice_min" and float(t1.loc["sub-09", "value"]) == pytest.approx(0.88)
        assert t1.loc["sub-02", "rule"] == "exclude" and "artefact on review" in t1.loc["sub-02", "reason"]
        bold = dec[dec["modality"] == "bold"].set_index("participant_id")
        want_bold = want_t1 | {f"sub-{s}" for s, v in FD.items() if v > 0.2}
        assert set(bold.index[bold["decision"] == "excluded"]) == want_bold
        assert "mean_fd_max" in bold.loc["sub-05", "rule"] and "t1w_dice_min" not in bold.loc["sub-05", "rule"]
    assert roi_n[0] == N and roi_n[1] == N - 6  # the ROI analysis used exactly the included T1w set


def test_qc_section_is_validated_where_the_study_is_built(tmp_path):
    bids = _bids(tmp_path)
    for qc, field in [({"mean_fd_max": -1}, "qc.mean_fd_max"), ({"scrubbed_max": 1.5}, "qc.scrubbed_max"),
                      ({"tsnr_min": "high"}, "qc.tsnr_min"), ({"fd_max": 0.2}, "qc.fd_max"),
                      ({"exclude": ["sub-99"]}, "qc.exclude"),
                      ({"exclude": [{"subject": "sub-01", "modality": "pet"}]}, "qc.exclude")]:
        with pytest.raises(HfsmriError) as e:
            Study.from_bids(bids, _study_yaml(tmp_path, qc))
        assert e.value.field == field and "study.yaml" in str(e.value)


def test_exclude_high_motion_sets_the_fd_rule_and_missing_values_do_not_exclude(tmp_path):
    bids = _bids(tmp_path)
    p = _study_yaml(tmp_path, {"tsnr_min": 50})
    cfg = yaml.safe_load(p.read_text())
    cfg["preprocessing"] = {"func": {"exclude_high_motion": True, "max_mean_fd": 0.3}}
    p.write_text(yaml.safe_dump(cfg))
    study = Study.from_bids(bids, p)
    assert study.qc["mean_fd_max"] == 0.3
    iqms = pd.DataFrame({"participant_id": ["sub-01", "sub-07", "sub-08"], "session": "n/a", "modality": "bold",
                         "mean_fd": [0.1, 0.35, np.nan], "tsnr": [40.0, 80.0, 80.0]})
    dec = decide(study, tmp_path, iqms=iqms)
    assert dec.excluded("bold") == {"01": "tsnr 40 < 50 (ratio)", "07": "mean_fd 0.35 > 0.3 (mm)"}
    assert "08" in dec.included("bold") and "not available" in \
        dec.table.set_index(["participant_id", "modality"]).loc[("sub-08", "bold"), "reason"]
    assert "no QC table row" in dec.table.set_index(["participant_id", "modality"]).loc[("sub-03", "bold"), "reason"]
    assert dec.counts()["bold"] == {"included": N - 2, "excluded": 2}
    assert "mean_fd_max = 0.3" in dec.sentence() and "bold: 10 included, 2 excluded" in dec.sentence()


def test_methods_text_states_the_rules_and_counts(tmp_path):
    from hfsmri.qc.decisions import read_decisions
    from hfsmri.report.methods import methods_sections

    bids = _bids(tmp_path)
    study = Study.from_bids(bids, _study_yaml(tmp_path, {"mean_fd_max": 0.2}))
    iqms = pd.DataFrame({"participant_id": [f"sub-{s}" for s in FD], "session": "n/a", "modality": "bold",
                         "mean_fd": list(FD.values())})
    decide(study, tmp_path, iqms=iqms).write(tmp_path)
    dec = read_decisions(tmp_path, study.resolved()["qc"])
    sections, _ = methods_sections(study.resolved(), ["reho"], 6, 6, qc_sentence=dec.sentence())
    text = " ".join(s["text"] for s in sections)
    assert "QC rules applied at the group level: mean_fd_max = 0.2" in text
    assert "bold: 4 included, 8 excluded" in text
    assert "runs with mean FD > 0.2 mm were excluded" in text


def test_report_participants_section_shows_who_each_modality_analyses(tmp_path):
    """The report's participants section lists the QC decisions (issue 24 item 3): one row per
    participant with its group and included/excluded per modality, the excluded rows with their rule,
    and the sentence with the counts; the same sets the group level wrote."""
    from hfsmri.report.build import build_report

    bids = _bids(tmp_path)
    out = Derivatives(tmp_path / "out")
    _fabricate(out)
    study = Study.from_bids(bids, _study_yaml(tmp_path, {"mean_fd_max": 0.2,
                                                         "exclude": [{"subject": "sub-02", "reason": "artefact"}]}))
    run_group_level(study, out, RunOptions(nprocs=1))
    (out.root / "participants.tsv").write_text((bids / "participants.tsv").read_text())  # as the participant level copies it
    html = build_report(out.root).read_text()
    inc = pd.read_csv(out.root / "report" / "qc_inclusion.tsv", sep="\t", keep_default_na=False).set_index("participant_id")
    assert len(inc) == N and list(inc.columns) == ["group", "T1w", "bold", "dwi"]
    parts = pd.read_csv(bids / "participants.tsv", sep="\t").set_index("participant_id")
    assert (inc["group"] == parts.loc[inc.index, "group"].map({"HFS": "patient", "HC": "control"})).all()
    want_bold = {f"sub-{s}" for s, v in FD.items() if v > 0.2} | {"sub-02"}
    assert set(inc.index[inc["bold"] == "excluded"]) == want_bold
    assert set(inc.index[inc["T1w"] == "excluded"]) == {"sub-02"}
    ex = pd.read_csv(out.root / "report" / "qc_exclusions.tsv", sep="\t", keep_default_na=False)
    assert set(ex.loc[ex["modality"] == "bold", "participant_id"]) == want_bold
    assert "Who each modality analyses" in html and f"bold: {N - len(want_bold)} included, {len(want_bold)} excluded" in html


def test_group_progress_counts_contrast_maps_and_ends_exact(tmp_path):
    """The group bar's units (issue 24 item 2: analyses x contrasts): metrics x contrasts of each
    analysis (two-sided group comparison = 2 contrast maps; DTI has FA/MD/AD/RD), and whatever the
    stages did (reused, failed, more derived metrics than expected) the bar ends at its total."""
    from hfsmri.analyses import ANALYSES
    from hfsmri.group.runner import expected_maps
    from hfsmri.pipeline import _ticking

    study = Study.from_bids(_bids(tmp_path), _study_yaml(tmp_path, {}))
    units = expected_maps(study, ["roi_volumes", "dti", "reho"])
    assert units == {"roi_volumes": 2 * len(ANALYSES["roi_volumes"].metrics), "dti": 2 * 4,
                     "reho": 2 * len(ANALYSES["reho"].metrics)}

    class Bar:
        n, total = 0, sum(units.values())

        def update(self, k):
            self.n += k

    bar = Bar()
    for stage in _ticking(["anat", "dwi", "func"], bar, units):
        if stage == "dwi":
            bar.update(3)            # a failed stage: fewer maps than expected
        if stage == "func":
            bar.update(units["reho"] + 4)  # more than expected (derived metrics)
    assert bar.n == bar.total == sum(units.values()) + 4
