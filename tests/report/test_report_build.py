"""report.html: renders for any subset of results, escapes user text, shows planted results."""
from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pandas as pd
import yaml

from hfsmri.report import build_report

from .conftest import EVIL, FALSE_CENTER, HIT_CENTER, participants_df, write_fake_output
from tests.naming import gname

SECTIONS = ("summary", "methods", "participants", "qc", "results", "files")


def _ids(html: str) -> set:
    return set(re.findall(r'<(?:section|div) id="([^"]+)"', html))


def test_renders_empty_output_dir(tmp_path):
    """No study, no participants, no results: still a valid report that says so."""
    path = build_report(tmp_path)
    html = path.read_text()
    assert path == tmp_path / "report.html"
    assert set(SECTIONS) <= _ids(html)
    assert "No group results were found" in html
    assert "<img" not in html


def test_renders_study_without_analyses(tmp_path):
    parts = participants_df()
    parts.to_csv(tmp_path / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    (tmp_path / "study.resolved.yaml").write_text(yaml.safe_dump(
        {"group_column": "group", "groups": {"patient": "HFS", "control": "HC"}, "clinical": ["severity"],
         "covariate_types": {"severity": "continuous"}, "analyses": {}, "stats": {"alpha": 0.05}}))
    html = build_report(tmp_path).read_text()
    assert set(SECTIONS) <= _ids(html)
    assert "ground-truth" not in _ids(html)
    demo = pd.read_csv(tmp_path / "report" / "demographics.tsv", sep="\t")
    age = demo[demo["variable"] == "age"].iloc[0]
    pat = parts.loc[parts.group == "HFS", "age"]
    con = parts.loc[parts.group == "HC", "age"]
    # independent reference: Welch t by its closed form
    t = (pat.mean() - con.mean()) / np.sqrt(pat.var() / len(pat) + con.var() / len(con))
    assert np.isclose(age["statistic"], t)
    assert age["patient"] == f"{pat.mean():.1f} ± {pat.std():.1f}"
    sev = demo[demo["variable"] == "severity"].iloc[0]   # declared continuous: mean ± SD, patients only
    assert sev["test"] == "patients only" and "±" in sev["patient"]


def test_fake_vbm_report(fake_output):
    out = fake_output["out"]
    html = fake_output["report"].read_text()
    assert set(SECTIONS) | {"ground-truth"} <= _ids(html)
    # result figures embedded as thumbnails; QC figures linked to the participant folders' files;
    # nothing loaded from the network
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") or (out / s).is_file() for s in srcs)
    assert any(s.startswith("data:") for s in srcs) and any(s.startswith("sub-") for s in srcs)
    assert not re.search(r'(src|href)="(https?:)?//', html) and "@import" not in html and "url(" not in html
    figs = {p.name for p in (out / "report" / "figures").glob("*.png")}
    assert {"vbm_gm_patient-lt-control_glassbrain.png", "vbm_gm_patient-lt-control_slices.png",
            "vbm_gm_patient-gt-control_glassbrain.png"} <= figs
    assert not any("corr-severity" in f for f in figs)          # null maps get no figure ...
    assert html.count("null result") == 2                        # ... but are reported as null
    # numbers shown are in TSVs and equal an independent count on the maps
    summ = pd.read_csv(out / "report" / "results_summary.tsv", sep="\t")
    for c in ("patient-lt-control", "patient-gt-control", "corr-severity-pos"):
        logp = nib.load(out / "group" / "vbm" / "gm" / gname("fwe", c)).get_fdata()
        row = summ[(summ.analysis == "vbm") & (summ.contrast == c)].iloc[0]
        assert row["n_sig_voxels"] == int((logp > -np.log10(0.05)).sum())
        assert np.isclose(row["max_logp"], logp.max(), atol=1e-5)
    lt = summ[(summ.analysis == "vbm") & (summ.contrast == "patient-lt-control")].iloc[0]
    assert np.allclose([lt.peak_x, lt.peak_y, lt.peak_z], HIT_CENTER, atol=4.5)
    assert lt["peak_label"] == "Thalamus_L"
    for name in ("demographics.tsv", "qc.tsv", "qc_flags.tsv", "ground_truth_scores.tsv", "false_clusters.tsv",
                 "roi_volumes_volume_effect_sizes.tsv", "methods.md"):
        assert (out / "report" / name).is_file(), name
    assert (out / "report" / "figures" / "roi_volumes_volume_rois.png").is_file()
    assert (out / "report" / "figures" / "graph_global_metrics_by_group.png").is_file()
    # QC: the motion outlier and the stage error are flagged
    flags = pd.read_csv(out / "report" / "qc_flags.tsv", sep="\t")
    assert {("sub-04", "func.mean_fd_mm"), ("sub-06", "dwi.error")} <= set(zip(flags.participant_id, flags.column))
    # flipping and exclusions are reported
    sides = pd.read_csv(out / "report" / "affected_sides.tsv", sep="\t")
    assert set(sides.loc[sides.flipped == "yes", "participant_id"]) == {"sub-01", "sub-03", "sub-05"}
    assert "no T1w" in html


def test_user_text_is_escaped(fake_output, tmp_path):
    html = fake_output["report"].read_text()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(" in html          # the column name, cluster label, error message are shown
    # a participant id with markup (participants.tsv copied verbatim into the output) is escaped too
    info = write_fake_output(tmp_path, with_vbm=False, with_rois=False, with_gt=False, evil_id=True)
    html2 = build_report(info["out"]).read_text()
    assert "<script" not in html2.lower() and "sub-&lt;script&gt;" in html2


def test_ground_truth_scores(fake_output):
    """Constructed case: one voxel-wise hit, one miss, one false cluster; ROI hit; clinical hit; not run."""
    out = fake_output["out"]
    s = pd.read_csv(out / "report" / "ground_truth_scores.tsv", sep="\t").set_index(["effect_id", "test"])
    assert s.loc[("gm-thalamus-l", "group"), "status"] == "hit"
    assert s.loc[("gm-thalamus-l", "group"), "n_sig_voxels"] == 27     # the whole 3x3x3 planted mask
    assert s.loc[("gm-dlpfc-r", "group"), "status"] == "miss"
    assert s.loc[("gm-dlpfc-r", "group"), "n_sig_voxels"] == 0
    assert s.loc[("gm-amygdala-l", "group"), "status"] == "hit"        # rois.tsv: t < 0, p_fdr < .05
    assert s.loc[("gm-putamen-l", "clinical"), "status"] == "hit"      # correlations.tsv r > 0
    assert ("gm-putamen-l", "group") not in s.index                     # d = 0: no group test
    assert s.loc[("reho-mfg", "group"), "status"] == "not run" and pd.isna(s.loc[("reho-mfg", "group"), "hit"])
    f = pd.read_csv(out / "report" / "false_clusters.tsv", sep="\t")
    assert len(f) == 1
    assert f.loc[0, "contrast"] == "patient-gt-control"
    assert f.loc[0, "n_voxels"] == int(fake_output["false_mask"].sum())
    assert np.allclose(f.loc[0, ["peak_x", "peak_y", "peak_z"]].astype(float), FALSE_CENTER, atol=4.5)
    summ = pd.read_csv(out / "report" / "ground_truth_summary.tsv", sep="\t").iloc[0]
    assert (summ.n_hits, summ.n_misses, summ.n_false_clusters, summ.n_not_evaluated) == (3, 1, 1, 1)


def test_methods_lists_parameters_and_references(fake_output):
    md = (fake_output["out"] / "report" / "methods.md").read_text()
    assert "8 mm FWHM" in md and "100 Freedman–Lane permutations" in md
    refs = re.findall(r"^(\d+)\. ", md, flags=re.M)
    cited = {int(n) for group in re.findall(r"\[([\d, ]+)\]", md) for n in group.split(",")}
    assert cited == set(range(1, len(refs) + 1))      # every reference cited, every citation listed
    assert "Smith SM, Nichols TE" in md and "Ashburner J" in md


def test_fmt_value():
    from hfsmri.report.build import fmt_value

    assert fmt_value(float("nan")) == "n/a"
    assert fmt_value(0.00001234, "p_fdr") == "1.2e-05"
    assert fmt_value(0.0312, "p") == "0.031"
    assert fmt_value(3.0) == "3"
    assert fmt_value(EVIL) == EVIL            # raw here; the template escapes it


def test_report_does_not_depend_on_figure_processes(tmp_path, monkeypatch):
    """Sections drawn in 2 worker processes give the same report and files as in one process
    (apart from the generation timestamp)."""
    import hfsmri.report.build as B

    monkeypatch.setattr(B, "PARALLEL_MIN_SECTIONS", 2)  # the fixture has 3 result sections
    in_this_process = []
    draw = B.metric_section
    monkeypatch.setattr(B, "metric_section", lambda *a, **k: in_this_process.append(1) or draw(*a, **k))
    info = write_fake_output(tmp_path)
    out = info["out"]

    def snapshot(n_jobs):
        html = build_report(out, n_jobs=n_jobs).read_text()
        html = re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", "<time>", html)
        files = {p.relative_to(out / "report"): p.read_bytes() for p in sorted((out / "report").rglob("*"))
                 if p.is_file() and p.suffix == ".tsv"}
        figs = sorted(p.name for p in (out / "report" / "figures").glob("*.png"))
        return html, files, figs

    one = snapshot(1)
    assert len(in_this_process) == 3
    two = snapshot(2)
    assert len(in_this_process) == 3  # no fallback: the 3 sections were drawn by the 2 workers
    assert one[2] == two[2] and len(one[2]) >= 4
    assert one[1] == two[1]
    assert one[0] == two[0]


def test_report_states_predicted_power_beside_recovery(fake_output):
    """Issue 23 item 5: on simulated data the ground-truth section states, per scored planted group or
    clinical test, the predicted power at the study's size beside whether it was recovered (constructed
    case: 3 of the 4 evaluated group/clinical tests are hits; `not run` stays not evaluated)."""
    out = fake_output["out"]
    html = fake_output["report"].read_text()
    pw = pd.read_csv(out / "report" / "power_vs_recovery.tsv", sep="\t")
    s = pd.read_csv(out / "report" / "ground_truth_scores.tsv", sep="\t")
    s = s[s["test"].isin(["group", "clinical"])]
    assert len(pw) == len(s)
    want = {(e, t): ("not evaluated" if st == "not run" else "yes" if st == "hit" else "no")
            for e, t, st in zip(s["effect_id"], s["test"], s["status"])}
    assert dict(zip(zip(pw["effect_id"], pw["test"]), pw["recovered"])) == want
    assert "Predicted power beside recovery" in html
    assert f"observed {sum(v == 'yes' for v in want.values())}" in html and "report/power_vs_recovery.tsv" in html
