"""Demographic and clinical table by group (patients vs controls).

Conventions
-----------
* Continuous variables: ``mean ± SD`` (SD with ddof=1) and ``n`` per group; group test is Welch's
  two-sample t-test (``scipy.stats.ttest_ind(equal_var=False)``), reported as ``t(df)``.
* Categorical variables (declared so in ``covariate_types``, non-numeric, or numeric 0/1 codes): counts per level and group; group test is Pearson's chi-squared test of independence
  without continuity correction (``scipy.stats.chi2_contingency(correction=False)``), or Fisher's
  exact test for a 2x2 table with any expected count < 5.
* Clinical scores (``clinical`` in study.yaml) and the affected side are described in patients only;
  no group test.
* A test is not run (``n/a``) when either group has fewer than 2 non-missing values.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

_SKIP = {"participant_id"}


def _is_categorical(s: pd.Series, declared: str | None = None) -> bool:
    """Categorical if declared so (study.yaml covariate_types), non-numeric, or a 0/1 code."""
    if declared in ("categorical", "continuous"):
        return declared == "categorical"
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().sum() < s.notna().sum():
        return True
    return set(num.dropna().unique()) <= {0, 1}


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _continuous_row(name, a: pd.Series, b: pd.Series, patients_only: bool) -> dict:
    a = pd.to_numeric(a, errors="coerce").dropna()
    b = pd.to_numeric(b, errors="coerce").dropna()
    row = {"variable": name, "level": "",
           "patient": f"{_fmt(a.mean())} ± {_fmt(a.std(ddof=1))}" if len(a) else "n/a",
           "control": f"{_fmt(b.mean())} ± {_fmt(b.std(ddof=1))}" if len(b) else "n/a",
           "n_patient": len(a), "n_control": len(b),
           "patient_mean": a.mean() if len(a) else np.nan, "patient_sd": a.std(ddof=1) if len(a) > 1 else np.nan,
           "control_mean": b.mean() if len(b) else np.nan, "control_sd": b.std(ddof=1) if len(b) > 1 else np.nan,
           "test": "", "statistic": np.nan, "df": np.nan, "p": np.nan}
    if patients_only:
        row["control"] = "—"
        row["test"] = "patients only"
    elif len(a) >= 2 and len(b) >= 2 and (a.var() > 0 or b.var() > 0):
        res = stats.ttest_ind(a, b, equal_var=False)
        row.update(test="Welch t", statistic=float(res.statistic), df=float(res.df), p=float(res.pvalue))
    return row


def _categorical_rows(name, a: pd.Series, b: pd.Series, patients_only: bool) -> list[dict]:
    a, b = a.dropna().astype(str), b.dropna().astype(str)
    levels = sorted(set(a) | set(b))
    ca, cb = a.value_counts(), b.value_counts()
    test, stat, df, p = "", np.nan, np.nan, np.nan
    if patients_only:
        test = "patients only"
    elif len(levels) >= 2 and len(a) >= 2 and len(b) >= 2:
        table = np.array([[ca.get(lv, 0), cb.get(lv, 0)] for lv in levels], dtype=float)
        table = table[table.sum(axis=1) > 0]
        expected = stats.contingency.expected_freq(table)
        if table.shape == (2, 2) and (expected < 5).any():
            res = stats.fisher_exact(table)
            test, stat, p = "Fisher exact (odds ratio)", float(res.statistic), float(res.pvalue)
        else:
            chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
            test, stat, df, p = "χ²", float(chi2), float(dof), float(p)
    rows = []
    for i, lv in enumerate(levels):
        na, nb = int(ca.get(lv, 0)), int(cb.get(lv, 0))
        rows.append({"variable": name if i == 0 else "", "level": lv,
                     "patient": f"{na} ({100 * na / max(len(a), 1):.0f}%)",
                     "control": "—" if patients_only else f"{nb} ({100 * nb / max(len(b), 1):.0f}%)",
                     "n_patient": na, "n_control": nb,
                     "patient_mean": np.nan, "patient_sd": np.nan, "control_mean": np.nan, "control_sd": np.nan,
                     "test": test if i == 0 else "", "statistic": stat if i == 0 else np.nan,
                     "df": df if i == 0 else np.nan, "p": p if i == 0 else np.nan})
    return rows


def demographics_table(participants: pd.DataFrame, group_column: str = "group",
                       groups: dict | None = None, clinical=(), affected_side_column: str | None = None,
                       columns=None, types: dict | None = None) -> pd.DataFrame:
    """Describe participants by group.

    Parameters
    ----------
    participants : one row per included participant (participants.tsv columns).
    group_column, groups : grouping column and ``{"patient": value, "control": value}``.
    clinical : clinical score columns (patients only, no test).
    affected_side_column : affected side column (patients only, no test).
    columns : variables to describe; default every column except ids, the group column, and
        text columns with more than 10 distinct values.
    types : ``{column: "continuous" | "categorical"}`` overriding the inferred type.

    Returns
    -------
    DataFrame with columns ``variable, level, patient, control, n_patient, n_control, patient_mean,
    patient_sd, control_mean, control_sd, test, statistic, df, p`` (first row: group sizes).
    """
    groups = groups or {"patient": "HFS", "control": "HC"}
    if group_column not in participants.columns:
        raise KeyError(f"group column {group_column!r} not in participants")
    g = participants[group_column].astype(str)
    pat = participants[g == str(groups["patient"])]
    con = participants[g == str(groups["control"])]
    clinical = [c for c in clinical if c in participants.columns]
    if columns is None:
        columns = []
        for c in participants.columns:
            if c in _SKIP or c == group_column:
                continue
            s = participants[c].dropna()
            if s.empty or (_is_categorical(s) and s.astype(str).nunique() > 10):
                continue
            columns.append(c)
    rows = [{"variable": "N", "level": "", "patient": str(len(pat)), "control": str(len(con)),
             "n_patient": len(pat), "n_control": len(con), "patient_mean": np.nan, "patient_sd": np.nan,
             "control_mean": np.nan, "control_sd": np.nan, "test": "", "statistic": np.nan, "df": np.nan,
             "p": np.nan}]
    ordered = [c for c in columns if c not in clinical] + list(clinical)
    seen = set()
    for c in ordered:
        if c in seen or c not in participants.columns:
            continue
        seen.add(c)
        only_pat = c in clinical or c == affected_side_column
        s = participants[c]
        if _is_categorical(s.dropna(), (types or {}).get(c)):
            rows += _categorical_rows(c, pat[c], con[c], only_pat)
        else:
            rows.append(_continuous_row(c, pat[c], con[c], only_pat))
    return pd.DataFrame(rows)


def sides_table(participants: pd.DataFrame, group_column: str, groups: dict,
                affected_side_column: str | None, flipped, flip_to: str | None) -> pd.DataFrame:
    """Per patient: affected side and whether the images were mirrored (``flipped`` = labels)."""
    flipped = {str(f)[4:] if str(f).startswith("sub-") else str(f) for f in (flipped or [])}
    g = participants[group_column].astype(str) if group_column in participants.columns else None
    rows = []
    for label, row in participants.iterrows():
        if g is not None and g.loc[label] != str(groups.get("patient")):
            continue
        side = row.get(affected_side_column) if affected_side_column else None
        rows.append({"participant_id": f"sub-{label}",
                     "affected_side": "n/a" if side is None or (isinstance(side, float) and np.isnan(side))
                     else str(side),
                     "flipped": "yes" if str(label) in flipped else "no",
                     "aligned_to": flip_to or "n/a"})
    return pd.DataFrame(rows, columns=["participant_id", "affected_side", "flipped", "aligned_to"])
