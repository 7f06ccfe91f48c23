"""Methods boilerplate of a longitudinal study: the pre/post paragraph follows study.yaml."""
from __future__ import annotations

import re

from hfsmri.report.methods import methods_markdown, methods_sections


def _text(study, analyses):
    sections, refs = methods_sections(study, analyses, n_patients=6, n_controls=2)
    return {s["title"]: s["text"] for s in sections}, refs, methods_markdown(sections, refs)


def test_longitudinal_paragraph_names_sessions_designs_and_stage_choices():
    study = {"sessions": ["pre", "mid", "post"], "clinical": ["severity"],
             "preprocessing": {"anat": {"longitudinal": "midspace"}}}
    sec, refs, md = _text(study, ["vbm", "tbss", "ica", "graph"])
    txt = sec["Longitudinal designs"]
    assert "Δ = post − pre" in txt and "sign flipping" in txt and "group × time" in txt
    assert "severity" in txt and "mid-space" in txt
    assert "projected onto it" in txt and "dual regression" in txt and "network-based" in txt
    assert any(r.startswith("Reuter M, Fischl B") for r in refs)
    # every citation listed and every reference cited (numbering stays consistent)
    listed = re.findall(r"^(\d+)\. ", md, flags=re.M)
    cited = {int(n) for g in re.findall(r"\[([\d, ]+)\]", md) for n in g.split(",")}
    assert cited == set(range(1, len(listed) + 1))


def test_independent_sessions_and_cross_sectional_studies():
    sec, refs, _ = _text({"sessions": ["pre", "post"], "preprocessing": {"anat": {"longitudinal": "independent"}}},
                         ["vbm"])
    txt = sec["Longitudinal designs"]
    assert "processed independently" in txt and "mid-space" not in txt and "clinical score" not in txt
    assert not any(r.startswith("Reuter") for r in refs)
    sec, _, _ = _text({"sessions": ["pre"]}, ["vbm"])
    assert "Longitudinal designs" not in sec
    sec, _, _ = _text({}, ["alff"])
    assert "Longitudinal designs" not in sec
