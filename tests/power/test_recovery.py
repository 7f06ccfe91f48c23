"""Predicted power beside recovered yes/no (issue 23 item 5; the demo's summary)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hfsmri.power import power_tests, ttest_power
from hfsmri.power.recovery import POWER_VS_RECOVERY_COLUMNS, power_beside_recovery, summary_lines


def test_power_beside_recovery(tmp_path):
    deriv = tmp_path / "derivatives"
    (deriv / "report").mkdir(parents=True)
    scores = pd.DataFrame([
        {"effect_id": "gm-thalamus", "analysis": "vbm", "metric": "gm", "test": "group",
         "contrast": "patientLTcontrol", "hit": 1},
        {"effect_id": "gm-putamen", "analysis": "vbm", "metric": "gm", "test": "group",
         "contrast": "patientLTcontrol", "hit": 0},
        {"effect_id": "gm-ipl-r", "analysis": "vbm", "metric": "gm", "test": "clinical",
         "contrast": "corrDurationmonthsNeg", "hit": np.nan},
        {"effect_id": "gm-thalamus", "analysis": "vbm", "metric": "gm", "test": "recovery",
         "contrast": "x", "hit": 1}])
    scores.to_csv(deriv / "report" / "ground_truth_scores.tsv", sep="\t", index=False)
    assert power_beside_recovery(tmp_path / "nothing", 10) is None
    t = power_beside_recovery(deriv, 10, n_sim=300, seed=1, effect_sizes="planted")
    assert list(t.columns) == POWER_VS_RECOVERY_COLUMNS
    assert list(t["test"]) == ["group", "group", "clinical"]          # recovery tests are not power tests
    assert list(t["recovered"]) == ["yes", "no", "not evaluated"]
    assert (deriv / "report" / "power_vs_recovery.tsv").is_file()
    # Holm FWE power of one planted ROI lies between Bonferroni and uncorrected power
    spec = power_tests("default")
    m = int((spec["family"] == "vbm/gm").sum()) + 10               # the family's ROIs + 10 null ROIs
    row = t.iloc[0]
    assert row["effect_size"] == 1.8 and row["effect_size_source"] == "planted"
    se = np.sqrt(0.25 / 300)
    assert ttest_power(1.8, 10, 10, 0.05 / m) - 3 * se <= row["predicted_power_fwe"] <= ttest_power(1.8, 10, 10) + 3 * se
    lines = summary_lines(t, 10)
    assert "n = 10 per group" in lines[0] and any("recovered 1 of 2" in ln for ln in lines)
