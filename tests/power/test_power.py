"""Power by simulation: agreement with analytic power, false-positive control, report files,
effects parsing, scoring of image-pipeline outputs against ground truth."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.naming import gname
from hfsmri.errors import HfsmriError
from hfsmri.power import (correlation_power, power_tests, roi_power, run_power, score_group_outputs,
                          ttest_power)


def _one_effect(d=0.6, r=0.4):
    return power_tests({"effects": [{"id": "roi1", "cohens_d": d, "direction": -1,
                                     "clinical": {"score": "severity", "r": r}}]})


def test_analytic_formulas_against_statsmodels_and_scipy():
    from scipy import stats
    from statsmodels.stats.power import NormalIndPower, TTestIndPower

    for d, n in ((0.5, 20), (0.8, 12), (1.2, 30)):
        ref = TTestIndPower().power(effect_size=d, nobs1=n, alpha=0.05, ratio=1.0, alternative="two-sided")
        assert ttest_power(d, n, n, 0.05, directional=False) == pytest.approx(ref, abs=1e-8)
        ref1 = TTestIndPower().power(effect_size=d, nobs1=n, alpha=0.05, ratio=1.0, alternative="larger")
        assert ttest_power(d, n, n, 0.05, two_sided=False) == pytest.approx(ref1, abs=1e-8)
    # Fisher-z correlation power against the normal power of the z-transformed effect
    r, n = 0.4, 30
    z_eff = np.arctanh(r) * np.sqrt(n - 3)
    assert correlation_power(r, n) == pytest.approx(stats.norm.sf(stats.norm.ppf(0.975) - z_eff), abs=1e-12)
    ref = NormalIndPower().power(effect_size=np.arctanh(r) * np.sqrt(n - 3), nobs1=1, alpha=0.05, ratio=0,
                                 alternative="larger")
    assert correlation_power(r, n, two_sided=False) == pytest.approx(ref, abs=1e-8)


def test_simulated_power_matches_noncentral_t_parametric():
    """Two-group t-test on one ROI: simulated power within 5 points of the noncentral t."""
    tests = _one_effect()
    power, fp = roi_power(tests, [12, 25], n_sim=2000, seed=3, test="parametric", n_null=4)
    for _, row in power.iterrows():
        se = row["mc_se"]
        assert abs(row["power_uncorrected"] - row["analytic_uncorrected"]) < 0.05, row.to_dict()
        assert se < 0.012
    g = power[power["contrast"] == "patient-vs-control"].set_index("n_per_group")
    assert g.loc[12, "analytic_uncorrected"] == pytest.approx(ttest_power(0.6, 12, 12), abs=1e-12)
    # nulls: uncorrected false-positive rate per test = alpha, FWE keeps the family-wise rate <= alpha
    for _, row in fp[fp["analysis"] != "all"].iterrows():
        assert abs(row["fpr_uncorrected"] - 0.05) < 0.01
        assert row["fwer_fwe"] < 0.05 + 3 * np.sqrt(0.05 * 0.95 / 2000)


def test_simulated_power_matches_analytic_permutation():
    tests = _one_effect(d=0.8, r=0.5)
    power, fp = roi_power(tests, [15], n_sim=800, seed=4, test="permutation", n_perm=199, n_null=4)
    for _, row in power.iterrows():
        assert abs(row["power_uncorrected"] - row["analytic_uncorrected"]) < 0.05, row.to_dict()
    group = fp[(fp["analysis"] != "all") & (fp["contrast"] == "patient-vs-control")].iloc[0]
    assert abs(group["fpr_uncorrected"] - 0.05) < 0.02
    assert group["fwer_fwe"] < 0.05 + 3 * np.sqrt(0.05 * 0.95 / 800)


def test_reliability_attenuates_effect():
    tests = power_tests({"effects": [{"id": "a", "cohens_d": 1.0}]})
    full, _ = roi_power(tests, [15], n_sim=1500, seed=5, test="parametric", n_null=0)
    half, _ = roi_power(tests, [15], n_sim=1500, seed=5, test="parametric", n_null=0, reliability=0.5)
    assert half["analytic_uncorrected"].iloc[0] == pytest.approx(ttest_power(np.sqrt(0.5), 15, 15))
    assert abs(half["power_uncorrected"].iloc[0] - half["analytic_uncorrected"].iloc[0]) < 0.05
    assert half["power_uncorrected"].iloc[0] < full["power_uncorrected"].iloc[0] - 0.2


def test_default_effects_follow_the_simulator():
    from hfsmri.simulate import load_effects
    from hfsmri.simulate.effects import ground_truth_rows

    tests = power_tests("default")
    eff = load_effects("default")
    assert tests["primary"].sum() == len(eff.effects)
    assert set(tests["effect_id"]) == {e.id for e in eff.effects}
    gt = pd.DataFrame(ground_truth_rows(eff, {}))
    merged = tests.merge(gt, on=["effect_id", "analysis", "metric"], suffixes=("", "_gt"))
    assert len(merged) == len(tests) == len(gt)
    np.testing.assert_allclose(merged["cohens_d"], merged["cohens_d_gt"])
    prim = tests[tests["primary"]].set_index("effect_id")
    for e in eff.effects:
        assert prim.loc[e.id, "cohens_d"] == pytest.approx(e.cohens_d)


def test_run_power_writes_report_and_is_deterministic(tmp_path):
    spec = tmp_path / "effects.yaml"
    spec.write_text(yaml.safe_dump({"effects": [
        {"id": "thal", "cohens_d": 0.9, "direction": -1, "analyses": ["vbm/gm", "roi_volumes/volume"]},
        {"id": "amy", "cohens_d": 0.5, "analyses": ["vbm/gm"], "clinical": {"score": "hama", "r": 0.5}}]}))
    a = run_power(tmp_path / "a", effects=str(spec), ns=[8, 16], n_sim=40, seed=1)
    b = run_power(tmp_path / "b", effects=str(spec), ns=[16, 8], n_sim=40, seed=1)
    assert a.name == "power.html"
    pa, pb = pd.read_csv(a.parent / "power.tsv", sep="\t"), pd.read_csv(b.parent / "power.tsv", sep="\t")
    pd.testing.assert_frame_equal(pa, pb)
    assert {"n_per_group", "effect_id", "analysis", "metric", "contrast", "power_uncorrected", "power_fdr",
            "power_fwe", "analytic_uncorrected"} <= set(pa.columns)
    assert set(pa["contrast"]) == {"patient-vs-control", "corr-hama"}
    assert len(pa) == 2 * 4                       # 2 sizes x (3 group rows + 1 correlation row)
    fp = pd.read_csv(a.parent / "false_positives.tsv", sep="\t")
    assert set(fp["analysis"]) == {"vbm", "roi_volumes", "all"}
    text = a.read_text()
    assert "data:image/png;base64," in text and "<script" not in text and "src='http" not in text
    assert (a.parent / "power_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((a.parent / "power_settings.json").read_text())["n_sim"] == 40


def test_effects_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"effects": [{"id": "x"}]}))
    with pytest.raises(HfsmriError, match=r"effects\[0\]"):
        power_tests(str(bad))
    with pytest.raises(HfsmriError, match="not found"):
        power_tests(str(tmp_path / "missing.yaml"))
    with pytest.raises(HfsmriError, match="group sizes"):
        run_power(tmp_path / "o", effects=str(bad), ns=[2])
    with pytest.raises(HfsmriError, match="engine"):
        run_power(tmp_path / "o", engine="voxels")


def test_score_group_outputs_against_ground_truth(tmp_path):
    """Synthetic pipeline outputs: a significant blob inside the planted mask is a detection, one
    far from every planted mask is a false positive; maps of unplanted contrasts count only FPs."""
    shape, aff = (20, 20, 20), np.diag([2.0, 2.0, 2.0, 1.0])
    gt = tmp_path / "gt"
    (gt / "masks").mkdir(parents=True)
    mask = np.zeros(shape, np.uint8)
    mask[4:8, 4:8, 4:8] = 1
    nib.save(nib.Nifti1Image(mask, aff), gt / "masks" / "e1_mask.nii.gz")
    pd.DataFrame([{"effect_id": "e1", "analysis": "vbm", "metric": "gm", "direction": -1, "cohens_d": 1.0,
                   "clinical_score": "severity", "clinical_r": 0.6, "mask": "masks/e1_mask.nii.gz",
                   "mask_unaligned": "masks/e1_mask.nii.gz"},
                  {"effect_id": "e2", "analysis": "reho", "metric": "reho", "direction": 1, "cohens_d": 1.0,
                   "clinical_score": "n/a", "clinical_r": 0.0, "mask": "masks/e1_mask.nii.gz",
                   "mask_unaligned": "masks/e1_mask.nii.gz"}]).to_csv(gt / "effects.tsv", sep="\t", index=False)
    deriv = tmp_path / "deriv"

    def write(analysis, metric, contrast, blobs, fdr_blobs=None):
        folder = deriv / "group" / analysis / metric
        folder.mkdir(parents=True, exist_ok=True)
        for desc, bl in (("fwe", blobs), ("fdr", fdr_blobs if fdr_blobs is not None else blobs),
                         ("uncorrected", fdr_blobs if fdr_blobs is not None else blobs)):
            a = np.zeros(shape, np.float32)
            for sl in bl:
                a[sl] = 3.0                         # -log10 p = 3 -> p = 0.001
            nib.save(nib.Nifti1Image(a, aff), folder / gname(desc, contrast))

    inside = (slice(5, 6), slice(5, 6), slice(5, 6))
    far = (slice(15, 17), slice(15, 17), slice(15, 17))
    edge = (slice(9, 10), slice(5, 6), slice(5, 6))     # 2 voxels from the mask: within the margin
    write("vbm", "gm", "patient-lt-control", [inside, edge])          # detected, no FP
    write("vbm", "gm", "patient-gt-control", [far])                   # wrong direction: FP only
    write("vbm", "gm", "corr-severity-pos", [], fdr_blobs=[inside])   # FDR-only detection
    # reho map missing: e2 not scored
    det, fp = score_group_outputs(deriv, gt, alpha=0.05)
    d = det.set_index(["effect_id", "contrast"])
    assert d.loc[("e1", "patient-lt-control"), "detected_fwe"]
    assert not d.loc[("e1", "corr-severity-pos"), "detected_fwe"]
    assert d.loc[("e1", "corr-severity-pos"), "detected_fdr"]
    assert not d.loc[("e2", "patient-gt-control"), "scored"]
    f = fp.set_index("contrast")
    assert not f.loc["patient-lt-control", "fp_fwe"]
    assert f.loc["patient-gt-control", "fp_fwe"]
    assert not f.loc["corr-severity-pos", "fp_fwe"]


def test_cli_power(tmp_path, capsys):
    from hfsmri.cli import main

    spec = tmp_path / "e.yaml"
    spec.write_text(yaml.safe_dump([{"id": "a", "cohens_d": 1.0}]))
    code = main(["power", "--effects", str(spec), "--n", "6,9", "--n-sim", "20", "--output", str(tmp_path / "o")])
    assert code == 0
    assert str(tmp_path / "o" / "power.html") in capsys.readouterr().out
    p = pd.read_csv(tmp_path / "o" / "power.tsv", sep="\t")
    assert list(p["n_per_group"]) == [6, 9]
    assert np.all(np.diff(p["analytic_uncorrected"]) > 0)
    # a bad group size is a usage error (exit 2), as every other bad option value
    assert main(["power", "--effects", str(spec), "--n", "1", "--output", str(tmp_path / "o")]) == 2
