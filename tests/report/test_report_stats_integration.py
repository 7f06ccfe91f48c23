"""The report on files written by the real stats engine and group writer, planted effect."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from hfsmri.spatial.templates import template_grid
from tests.naming import gname


@pytest.mark.slow
def test_report_on_stats_engine_output(tmp_path):
    from hfsmri.derivatives import Derivatives
    from hfsmri.group import write
    from hfsmri.report import build_report
    from hfsmri.stats.design import design_from_study
    from hfsmri.stats.roi import roi_tests
    from hfsmri.stats.voxelwise import voxelwise
    from hfsmri.study import Study

    rng = np.random.default_rng(0)
    n_pat = n_con = 8
    bids, out = tmp_path / "bids", tmp_path / "out"
    bids.mkdir()
    labels = [f"{i:02d}" for i in range(1, n_pat + n_con + 1)]
    parts = pd.DataFrame({"participant_id": [f"sub-{s}" for s in labels], "group": ["HFS"] * n_pat + ["HC"] * n_con,
                          "age": rng.normal(50, 5, n_pat + n_con).round(1),
                          "severity": list(rng.integers(1, 5, n_pat)) + ["n/a"] * n_con})
    parts.to_csv(bids / "participants.tsv", sep="\t", index=False)
    cfg = {"group_column": "group", "covariates": ["age"], "clinical": ["severity"], "analyses": {"vbm": {}},
           "stats": {"n_perm": 40, "tfce": True, "alpha": 0.05, "cluster_forming_p": 0.001, "random_seed": 0}}
    study = Study.from_bids(bids, cfg)
    out.mkdir()
    study.write_resolved(out)
    parts.to_csv(out / "participants.tsv", sep="\t", index=False)
    (out / "logs").mkdir()
    (out / "logs" / "run_info.json").write_text(json.dumps({"bids_dir": str(bids), "excluded": {}, "flipped": []}))

    # a small box mask on the 2 mm grid; a planted decrease in patients at a 3x3x3 block
    shape, aff = template_grid(2)
    mask = np.zeros(shape, bool)
    mask[35:55, 50:70, 35:50] = True
    eff = np.zeros(shape, bool)
    eff[43:46, 58:61, 40:43] = True
    design = design_from_study(study, labels)
    roles = np.array([study.group_of(s) for s in design.subjects])
    Y = rng.normal(0, 1, (len(design.subjects), int(mask.sum())))
    Y[np.ix_(roles == "patient", eff[mask])] -= 4.0
    g = out / "group" / "vbm" / "gm"
    st = study.stats
    res = voxelwise(Y, mask, design, affine=aff, n_perm=st["n_perm"], cluster_forming_p=st["cluster_forming_p"])
    write.results(Derivatives(out), "vbm", "gm", res, mask, aff, {})
    table = pd.DataFrame({"Amygdala_L": Y[:, eff[mask]].mean(1), "Putamen_L": Y[:, 0]}, index=design.subjects)
    write.roi_results(Derivatives(out), "roi_volumes", "volume", roi_tests(table, study, n_perm=st["n_perm"]))

    gt = bids / "derivatives" / "ground_truth"
    (gt / "masks").mkdir(parents=True)
    nib.save(nib.Nifti1Image(eff.astype(np.uint8), aff), gt / "masks" / "eff.nii.gz")
    pd.DataFrame([{"effect_id": "gm-amygdala-l", "analysis": a, "metric": m, "region": "aal:Amygdala_L",
                   "hemisphere": "L", "direction": -1, "cohens_d": 4.0, "clinical_score": "n/a",
                   "clinical_r": 0.0, "mask": "masks/eff.nii.gz"}
                  for a, m in (("vbm", "gm"), ("roi_volumes", "volume"))]).to_csv(
        gt / "effects.tsv", sep="\t", index=False)

    html = build_report(out).read_text()
    scores = pd.read_csv(out / "report" / "ground_truth_scores.tsv", sep="\t").set_index("analysis")
    assert scores.loc["vbm", "status"] == "hit" and scores.loc["vbm", "method"] == "voxelwise"
    assert scores.loc["roi_volumes", "status"] == "hit" and scores.loc["roi_volumes", "method"] == "roi"
    # the numbers agree with the engine's own files
    logp = nib.load(g / gname("fwe", "patient-lt-control")).get_fdata()
    summ = pd.read_csv(out / "report" / "results_summary.tsv", sep="\t")
    row = summ[(summ.analysis == "vbm") & (summ.contrast == "patient-lt-control")].iloc[0]
    assert row.n_sig_voxels == int((logp > -np.log10(0.05)).sum()) > 0
    assert "Freedman-Lane" in html and "40 permutations" in html   # inference line from the sidecar
    assert yaml.safe_load((out / "study.resolved.yaml").read_text())["stats"]["n_perm"] == 40
