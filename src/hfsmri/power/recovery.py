"""Predicted power beside what a study actually recovered (issue 23 item 5, used by ``hfsmri demo``).

For each planted test the report scored (``report/ground_truth_scores.tsv``: group and clinical
tests, ``hit`` 1/0), the ROI engine's power at the study's group size with the effect sizes that
survive the pipeline (:func:`hfsmri.power._effect_sizes`, ``effect_sizes="observed"``), FWE
corrected as the headline of ``hfsmri power``. Written to ``report/power_vs_recovery.tsv``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["power_beside_recovery", "POWER_VS_RECOVERY_COLUMNS"]

POWER_VS_RECOVERY_COLUMNS = ["effect_id", "analysis", "metric", "test", "contrast", "effect_size_type",
                             "planted_effect_size", "effect_size", "effect_size_source", "predicted_power_fwe",
                             "recovered"]


def power_beside_recovery(deriv_dir, n_per_group: int, n_sim: int = 200, seed: int = 0,
                          effect_sizes: str = "observed") -> pd.DataFrame | None:
    """Table of predicted FWE power (n per group) and recovered yes/no per scored planted test;
    None when the report has no ground-truth scores (not a simulated study)."""
    from ..derivatives import save_tsv_atomic
    from . import _effect_sizes, power_tests, roi_power

    deriv = Path(deriv_dir)
    scores_path = deriv / "report" / "ground_truth_scores.tsv"
    if not scores_path.is_file():
        return None
    scores = pd.read_csv(scores_path, sep="\t")
    scores = scores[scores["test"].isin(["group", "clinical"])]
    if scores.empty:
        return None
    planted = power_tests("default")
    tests, source = _effect_sizes(planted, "default", effect_sizes)
    power, _ = roi_power(tests, [int(n_per_group)], n_sim=int(n_sim), seed=int(seed))
    key = list(zip(planted["effect_id"], planted["analysis"], planted["metric"]))
    src = dict(zip(key, source))
    pl_d, pl_r = dict(zip(key, planted["cohens_d"])), dict(zip(key, planted["clinical_r"]))
    pw = {(r.effect_id, r.analysis, r.metric, "group" if r.contrast == "patient-vs-control" else "clinical"): r
          for r in power.itertuples()}
    rows = []
    for s in scores.itertuples():
        k = (s.effect_id, s.analysis, s.metric)
        p = pw.get((*k, s.test))
        hit = s.hit if np.isfinite(pd.to_numeric(s.hit, errors="coerce")) else np.nan
        rows.append({"effect_id": s.effect_id, "analysis": s.analysis, "metric": s.metric, "test": s.test,
                     "contrast": s.contrast,
                     "effect_size_type": "cohens_d" if s.test == "group" else "pearson_r",
                     "planted_effect_size": pl_d.get(k) if s.test == "group" else pl_r.get(k),
                     "effect_size": None if p is None else p.effect_size,
                     "effect_size_source": src.get(k, "planted"),
                     "predicted_power_fwe": np.nan if p is None else float(p.power_fwe),
                     "recovered": "not evaluated" if not np.isfinite(hit) else ("yes" if int(hit) else "no")})
    out = pd.DataFrame(rows, columns=POWER_VS_RECOVERY_COLUMNS)
    save_tsv_atomic(out, deriv / "report" / "power_vs_recovery.tsv")
    return out


def summary_lines(table: pd.DataFrame | None, n_per_group: int) -> list[str]:
    """Screen lines: per analysis/metric, mean predicted power vs share recovered."""
    if table is None or table.empty:
        return []
    t = table[table["recovered"] != "not evaluated"].copy()
    if t.empty:
        return []
    t["hit"] = (t["recovered"] == "yes").astype(float)
    lines = [f"  predicted power (FWE, n = {n_per_group} per group, effect sizes after the pipeline) vs recovered "
             "(report/power_vs_recovery.tsv):"]
    for (an, met, test), g in t.groupby(["analysis", "metric", "test"], sort=True):
        lines.append(f"    {an}/{met} {test}: predicted {g['predicted_power_fwe'].mean():.0%}, "
                     f"recovered {int(g['hit'].sum())} of {len(g)}")
    lines.append(f"    all: expected {t['predicted_power_fwe'].sum():.1f} of {len(t)} recovered, "
                 f"observed {int(t['hit'].sum())}")
    return lines
