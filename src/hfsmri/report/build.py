"""Assemble ``OUTPUT_DIR/report.html`` (self-contained) and ``OUTPUT_DIR/report/`` (PNG + TSV).

:func:`build_report` is the entry point used by ``hfsmri report OUTPUT_DIR`` and by the group level.
"""
from __future__ import annotations

import datetime as _dt
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..analyses import ANALYSES, CLUSTER_ROI_PREFIX, ICA_ANALYSIS
from . import figures as F
from ..stats.clusters import significant_peak
from .collect import MetricResult, ReportData, collect, subject_label
from .demographics import demographics_table, sides_table
from .ground_truth import (P_COLUMNS, R_COLUMNS, SCORE_COLUMNS, effect_mask_getter, norm, pick_column, roi_column,
                           roi_mask_on, roi_row_status, score_effects, summarise)
from .methods import methods_markdown, methods_sections, versions
from .units import metric_unit, stat_label

log = logging.getLogger("hfsmri")

MAX_TABLE_ROWS = 300
#: rows of a per-ROI table shown in the HTML (smallest corrected p first; every row is in the TSV)
HTML_ROI_ROWS = 40
_ANALYSIS_ORDER = {a: i for i, a in enumerate(ANALYSES)}   # the registry's order
QC_ROBUST_Z = 3.5
QC_PRIORITY = ("fd", "motion", "tsnr", "dice", "direction", "outlier", "flag", "snr", "tiv", "volume")


# ----------------------------------------------------------------------------- tables
def fmt_value(v, col: str = "") -> str:
    """Display string of one table cell (p-values in 3 decimals or scientific, others 3-4 digits)."""
    if v is None:
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "n/a" if math.isnan(v) else str(v)
        c = str(col).lower()
        if c == "p" or c.startswith("p_") or c.startswith("min_p") or c.endswith("_p") or c == "pvalue":
            return f"{v:.1e}" if 0 < v < 0.001 else f"{v:.3f}"
        if float(v).is_integer() and abs(v) < 1e9:
            return str(int(v))
        a = abs(v)
        return f"{v:.3g}" if a < 1e-2 else f"{v:.3f}" if a < 100 else f"{v:.1f}"
    if not isinstance(v, (list, dict, tuple)) and pd.isna(v):
        return "n/a"
    return str(v)


@dataclass
class Table:
    columns: list
    rows: list                      # list of list of (text, css class)
    tsv: str | None = None          # path relative to OUTPUT_DIR
    caption: str = ""
    truncated: int = 0


def make_table(df: pd.DataFrame | None, tsv: str | None = None, caption: str = "", cell_class=None,
               max_rows: int = MAX_TABLE_ROWS) -> Table | None:
    """Table for the template; ``cell_class(row_index, column) -> css class or ""``."""
    if df is None:
        return None
    rows = []
    for i, (_, r) in enumerate(df.head(max_rows).iterrows()):
        rows.append([(fmt_value(r[c], c), cell_class(i, c) if cell_class else "") for c in df.columns])
    return Table(columns=[str(c) for c in df.columns], rows=rows, tsv=tsv, caption=caption,
                 truncated=max(0, len(df) - max_rows))


def top_rows(df: pd.DataFrame, n: int = HTML_ROI_ROWS) -> pd.DataFrame:
    """The ``n`` rows a reader needs first: smallest corrected p (:data:`P_COLUMNS` order), else
    largest |Hedges g| / |r|; tables of at most ``n`` rows keep their order. The TSV keeps all."""
    if df is None or len(df) <= n:
        return df
    pc = pick_column(df, P_COLUMNS)
    if pc is not None:
        key = pd.to_numeric(df[pc], errors="coerce").fillna(np.inf)
    else:
        ec = pick_column(df, ("hedges_g", "cohens_d", "r"))
        if ec is None:
            return df
        key = -pd.to_numeric(df[ec], errors="coerce").abs().fillna(-np.inf)
    return df.loc[key.sort_values(kind="stable").index[:n]]


def sig_rows(df: pd.DataFrame, alpha: float):
    """css-class function marking rows whose first corrected p column is < alpha."""
    pc = pick_column(df, P_COLUMNS)
    if pc is None:
        return None
    p = pd.to_numeric(df[pc], errors="coerce").to_numpy()
    return lambda i, c: "sig" if i < len(p) and p[i] < alpha else ""


# ----------------------------------------------------------------------------- writer
class _Out:
    """Writer of ``OUTPUT_DIR/report/`` (TSVs and figure PNGs); ``clean`` removes old figures."""

    def __init__(self, root: Path, clean: bool = True):
        self.root = root
        self.dir = root / "report"
        self.fig_dir = self.dir / "figures"
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        if clean:
            for old in self.fig_dir.glob("*.png"):
                old.unlink()
        self.tsvs: list[str] = []

    def tsv(self, df: pd.DataFrame, name: str) -> str:
        from ..derivatives import save_tsv_atomic

        path = self.dir / name
        save_tsv_atomic(df, path)
        rel = str(path.relative_to(self.root))
        self.tsvs.append(rel)
        return rel

    def rel(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)

    def fig(self, *parts) -> Path:
        return self.fig_dir / (F.safe_name(*parts) + ".png")


# ----------------------------------------------------------------------------- participants
def _groups(data: ReportData) -> tuple[str, dict]:
    gcol = data.study.get("group_column") or "group"
    groups = data.study.get("groups") or {"patient": "HFS", "control": "HC"}
    return gcol, groups


def role_of(data: ReportData) -> pd.Series:
    """participant label -> "patient" / "control" (others dropped)."""
    if data.participants is None:
        return pd.Series(dtype=str)
    gcol, groups = _groups(data)
    if gcol not in data.participants.columns:
        return pd.Series(dtype=str)
    inv = {str(v): k for k, v in groups.items()}
    s = data.participants[gcol].astype(str).map(inv)
    return s.dropna()


def participants_section(data: ReportData, out: _Out) -> dict:
    sec = {"available": data.participants is not None, "demographics": None, "sides": None, "excluded": None,
           "notes": [], "qc_sentence": None, "qc_inclusion": None, "qc_excluded": None}
    gcol, groups = _groups(data)
    excluded = dict(data.run_info.get("excluded") or {})
    if not excluded and data.study.get("exclude"):
        excluded = {str(s): "listed under exclude in study.yaml" for s in data.study["exclude"]}
    if excluded:
        ex = pd.DataFrame({"participant_id": [f"sub-{subject_label(k)}" for k in excluded],
                           "reason": [str(v) for v in excluded.values()]})
        sec["excluded"] = make_table(ex, out.tsv(ex, "exclusions.tsv"))
    dec = _qc_inclusion(data, out)
    if dec is not None:
        sec["qc_sentence"], sec["qc_inclusion"], sec["qc_excluded"] = dec
    if data.participants is None:
        sec["notes"].append("participants.tsv not found in the output folder: no demographics table.")
        return sec
    p = data.participants
    if gcol not in p.columns:
        sec["notes"].append(f"group column {gcol!r} not in participants.tsv: no table by group.")
        return sec
    clinical = data.study.get("clinical") or []
    side_col = data.study.get("affected_side_column")
    demo = demographics_table(p, gcol, groups, clinical=clinical, affected_side_column=side_col,
                              types=data.study.get("covariate_types") or {})
    sec["demographics"] = make_table(demo[["variable", "level", "patient", "control", "test", "statistic", "df",
                                           "p"]], out.tsv(demo, "demographics.tsv"),
                                     cell_class=lambda i, c: "sig" if c == "p" and demo["p"].iloc[i] < 0.05 else "")
    flipped = data.run_info.get("flipped")
    if flipped is None:
        flipped = [s.get("subject") for s in data.summaries if s.get("flipped")]
    flip_to = data.study.get("flip_to", data.run_info.get("flip_to"))
    sides = sides_table(p, gcol, groups, side_col if side_col in p.columns else None, flipped, flip_to)
    if len(sides):
        sec["sides"] = make_table(sides, out.tsv(sides, "affected_sides.tsv"))
    sec["flip_to"] = flip_to
    sec["n_flipped"] = int((sides["flipped"] == "yes").sum()) if len(sides) else 0
    return sec


def qc_inclusion_table(table: pd.DataFrame, groups: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From the group level's QC decisions (:data:`hfsmri.qc.decisions.DECISION_COLUMNS`, one row
    per participant x modality): (wide table, one row per participant: its group and, per modality
    (T1w, bold, dwi), ``included`` or ``excluded``; excluded rows: participant, modality, rule,
    value, threshold, reason). ``groups``: participant_id -> patient/control."""
    t = table.copy()
    t["participant_id"] = t["participant_id"].astype(str)
    wide = t.pivot_table(index="participant_id", columns="modality", values="decision", aggfunc="first")
    wide = wide.reindex(columns=[m for m in ("T1w", "bold", "dwi") if m in wide.columns]).fillna("n/a")
    wide = wide.reset_index()
    wide.columns.name = None
    if groups is not None and len(groups):
        g = {subject_label(k): v for k, v in groups.items()}
        wide.insert(1, "group", wide["participant_id"].map(lambda x: g.get(subject_label(x), "n/a")))
    ex = t[t["decision"] == "excluded"]
    cols = [c for c in ("participant_id", "session", "modality", "rule", "value", "threshold", "reason") if c in ex.columns]
    return wide, ex[cols].reset_index(drop=True)


def _qc_inclusion(data: ReportData, out: _Out):
    """(sentence, inclusion table, exclusion table) of the QC decisions the group level wrote, or None."""
    from ..qc.decisions import read_decisions

    dec = read_decisions(Path(data.output_dir) / "group", data.study.get("qc") or {})
    if dec is None or dec.table.empty:
        return None
    wide, ex = qc_inclusion_table(dec.table, role_of(data))
    mark = lambda i, c: "excl" if c in ("T1w", "bold", "dwi") and wide[c].iloc[i] == "excluded" else ""
    return (dec.sentence(),
            make_table(wide, out.tsv(wide, "qc_inclusion.tsv"), cell_class=mark, max_rows=1000),
            make_table(ex, out.tsv(ex, "qc_exclusions.tsv")) if len(ex) else None)


# ----------------------------------------------------------------------------- QC
def _flatten(prefix: str, obj, out: dict) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(obj, (bool, int, float, str, np.number)) or obj is None:
        out[prefix] = obj
    elif isinstance(obj, (list, tuple)) and 0 < len(obj) <= 4 and all(isinstance(x, (int, float, str)) for x in obj):
        out[prefix] = ", ".join(str(x) for x in obj)


def qc_table(summaries: list[dict]) -> pd.DataFrame:
    """One row per subject/session; columns ``stage.key`` for every scalar in the summaries."""
    rows = []
    for s in summaries:
        r = {"participant_id": f"sub-{subject_label(s.get('subject', ''))}", "session": s.get("session") or "",
             "flipped": bool(s.get("flipped", False))}
        _flatten("", s.get("stages") or {}, r)
        rows.append(r)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    fixed = ["participant_id", "session", "flipped"]
    rest = [c for c in df.columns if c not in fixed]

    def rank(c):
        low = c.lower()
        for i, k in enumerate(QC_PRIORITY):
            if k in low:
                return (0 if not low.endswith("error") else 2, i, c)
        return (1 if not low.endswith("error") else 2, 99, c)

    df = df[fixed + sorted(rest, key=rank)]
    if not df["session"].astype(bool).any():
        df = df.drop(columns="session")
    return df


def qc_flags(df: pd.DataFrame, z: float = QC_ROBUST_Z) -> pd.DataFrame:
    """Outlier flags: robust z = (x − median) / (1.4826·MAD) beyond ±``z`` in numeric QC columns with
    ≥ 5 values; truthy values of columns named ``*outlier*`` / ``*flag*``; stage errors."""
    rows = []
    for c in df.columns:
        if c in ("participant_id", "session", "flipped"):
            continue
        low = c.lower()
        s = df[c]
        if low.endswith("error"):
            for i in s.index[s.notna() & (s.astype(str) != "")]:
                rows.append({"participant_id": df.at[i, "participant_id"], "column": c, "value": s[i],
                             "reason": "stage error"})
            continue
        num = pd.to_numeric(s, errors="coerce") if s.dtype != bool else s.astype(float)
        if "outlier" in low or "flag" in low:
            for i in num.index[num.fillna(0) > 0]:
                rows.append({"participant_id": df.at[i, "participant_id"], "column": c, "value": s[i],
                             "reason": "flagged by the stage"})
            continue
        v = num.dropna()
        if len(v) < 5 or s.dtype == bool:
            continue
        med = v.median()
        mad = 1.4826 * (v - med).abs().median()
        if not mad > 0:
            continue
        rz = (num - med) / mad
        for i in rz.index[rz.abs() > z]:
            rows.append({"participant_id": df.at[i, "participant_id"], "column": c, "value": s[i],
                         "reason": f"robust z = {rz[i]:+.1f}"})
    return pd.DataFrame(rows, columns=["participant_id", "column", "value", "reason"])


#: the short QC table of the report: (modality, IQM column of hfsmri.qc.table.COLUMNS, header);
#: ``scrubbed`` is shown in % (x 100)
QC_SHORT = (("T1w", "t1w_dice", "T1w→MNI Dice"), ("T1w", "snr_total", "T1w SNR"), ("T1w", "cnr", "T1w CNR"),
            ("bold", "mean_fd", "mean FD (mm)"), ("bold", "scrubbed", "scrubbed (%)"), ("bold", "tsnr", "tSNR"),
            ("dwi", "b0_snr", "b0 SNR"), ("dwi", "dwi_motion", "DWI motion (mm)"),
            ("dwi", "dwi_outlier", "DWI dropout volumes (%)"))
_PERCENT = ("scrubbed", "dwi_outlier")
#: QC figure kinds (hfsmri.qc.figures.FIGURES) -> heading, in report order
QC_FIGURE_TITLES = {"t1w_mni": "T1w → MNI registration (template edges)",
                    "bold_coreg": "EPI → T1w coregistration (T1w WM boundary)",
                    "bold_carpet": "BOLD carpet plots with FD and DVARS", "bold_tsnr": "tSNR maps",
                    "dwi_coreg": "b0 → T1w coregistration (T1w WM boundary)",
                    "dwi_slices": "DWI slice dropout (z-scores)"}
#: summary keys of older outputs (no IQM tables) that are image-quality numbers
_LEGACY_QC = r"dice|mean_fd|fd_mean|tsnr|snr|cnr|scrub"
_NOT_QC = r"time|sec|seconds|cpu|path|file|dir|version|n_threads"


def qc_short_table(iqms: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, set]:
    """(short table: one row per participant x session, the :data:`QC_SHORT` columns; the flags of
    :func:`hfsmri.qc.table.flag_outliers` (image-quality numbers only); flagged (row, header) cells)."""
    from ..qc.table import flag_outliers

    flags = flag_outliers(iqms)
    keys = iqms[["participant_id", "session"]].drop_duplicates().reset_index(drop=True)
    short = keys.copy()
    cells = set()
    for modality, col, head in QC_SHORT:
        sub = iqms[iqms["modality"] == modality].drop_duplicates(["participant_id", "session"])
        vals = keys.merge(sub[["participant_id", "session", col]], how="left", on=["participant_id", "session"])[col]
        if vals.notna().any():
            short[head] = vals * (100.0 if col in _PERCENT else 1.0)
            for _, f in flags[(flags["metric"] == col) & (flags["modality"] == modality)].iterrows():
                i = keys.index[(keys["participant_id"] == f["participant_id"]) & (keys["session"] == f["session"])]
                cells.update((int(j), head) for j in i)
    if (short["session"] == "n/a").all():
        short = short.drop(columns="session")
    return short, flags, cells


def _legacy_qc(summaries: list[dict]) -> pd.DataFrame:
    """Image-quality columns of the participant summaries (outputs written before the IQM tables)."""
    import re

    df = qc_table(summaries)
    if df.empty:
        return df
    keep = [c for c in df.columns[1:] if c != "flipped" and (
        (re.search(_LEGACY_QC, c, re.I) and not re.search(_NOT_QC, c, re.I)) or c.lower().endswith("error"))]
    return df[["participant_id"] + [c for c in ("session",) if c in df.columns and c not in keep] + keep]


def qc_figures(data: ReportData, out: _Out) -> list[dict]:
    """QC figures by kind (:data:`QC_FIGURE_TITLES`, names from :data:`hfsmri.qc.figures.FIGURES`),
    each a list of ``{"src", "caption"}`` linked (not embedded: they are small palette PNGs written
    by the participant stages); other PNGs under ``figures/`` come last under "Other QC figures"."""
    from ..qc.figures import FIGURES

    ends = {k: f"desc-{desc}_{suffix}.png" for k, (suffix, desc, _t, _s) in FIGURES.items()}
    groups: dict[str, list] = {k: [] for k in QC_FIGURE_TITLES}
    groups["other"] = []
    for sub, ses, path in data.qc_figures:
        kind = next((k for k, e in ends.items() if path.name.endswith(e)), "other")
        cap = f"sub-{sub}" + (f" ses-{ses}" if ses else "") + ("" if kind != "other" else f" {path.stem}")
        groups.setdefault(kind, []).append({"src": out.rel(path), "caption": cap})
    titles = {**QC_FIGURE_TITLES, "other": "Other QC figures"}
    return [{"kind": k, "title": titles.get(k, k), "anchor": f"qc-{k.replace('_', '-')}", "images": v}
            for k, v in groups.items() if v]


def qc_section(data: ReportData, out: _Out) -> dict:
    """Short QC table (image-quality numbers with units; flags on them only) and QC figures."""
    from ..errors import HfsmriError
    from ..qc.table import collect as collect_iqms

    sec = {"table": None, "flags": None, "figures": [], "n_flags": 0, "source": "", "full": None}
    try:
        iqms = collect_iqms(data.output_dir)
    except HfsmriError as exc:
        data.problems.append(str(exc))
        iqms = pd.DataFrame()
    if not iqms.empty:
        short, flags, cells = qc_short_table(iqms)
        sec["source"] = "iqm"
        sec["full"] = out.tsv(iqms, "qc_iqms.tsv")
        sec["table"] = make_table(short, out.tsv(short, "qc.tsv"),
                                  cell_class=lambda i, c: "flag" if (i, c) in cells else "")
        sec["n_flags"] = len(flags)
        if len(flags):
            sec["flags"] = make_table(flags, out.tsv(flags, "qc_flags.tsv"))
    else:
        df = _legacy_qc(data.summaries)
        if not df.empty:
            flags = qc_flags(df)
            flagged = {(p, c) for p, c in zip(flags["participant_id"], flags["column"])}
            sec["source"] = "summary"
            sec["table"] = make_table(df, out.tsv(df, "qc.tsv"), cell_class=lambda i, c: "flag" if (
                df["participant_id"].iloc[i], c) in flagged else "")
            sec["n_flags"] = len(flags)
            if len(flags):
                sec["flags"] = make_table(flags, out.tsv(flags, "qc_flags.tsv"))
    sec["figures"] = qc_figures(data, out)
    return sec


# ----------------------------------------------------------------------------- results
def _load3d(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=np.float64).reshape(img.shape[:3]), img.affine


def _effect_sizes(values: pd.DataFrame, roles: pd.Series) -> pd.DataFrame:
    """Per column: group means, Cohen's d (pooled SD), Hedges' g with approximate 95 % CI, Welch t/p."""
    from scipy import stats

    rows = []
    for col in values.columns:
        a = pd.to_numeric(values.loc[roles[roles == "patient"].index.intersection(values.index), col],
                          errors="coerce").dropna()
        b = pd.to_numeric(values.loc[roles[roles == "control"].index.intersection(values.index), col],
                          errors="coerce").dropna()
        n1, n2 = len(a), len(b)
        r = {"roi": col, "n_patient": n1, "n_control": n2, "mean_patient": a.mean(), "mean_control": b.mean(),
             "cohens_d": np.nan, "hedges_g": np.nan, "g_ci_low": np.nan, "g_ci_high": np.nan,
             "t_welch": np.nan, "p_uncorrected": np.nan}
        if n1 >= 2 and n2 >= 2:
            sp = np.sqrt(((n1 - 1) * a.var() + (n2 - 1) * b.var()) / (n1 + n2 - 2))
            scale = max(abs(a.mean()), abs(b.mean()))
            if sp > 1e-9 * scale and sp > 0:  # a (numerically) constant column has no effect size
                d = (a.mean() - b.mean()) / sp
                j = 1 - 3 / (4 * (n1 + n2) - 9)
                g = j * d
                se = np.sqrt((n1 + n2) / (n1 * n2) + g ** 2 / (2 * (n1 + n2)))
                t = stats.ttest_ind(a, b, equal_var=False)
                r.update(cohens_d=d, hedges_g=g, g_ci_low=g - 1.96 * se, g_ci_high=g + 1.96 * se,
                         t_welch=float(t.statistic), p_uncorrected=float(t.pvalue))
        rows.append(r)
    return pd.DataFrame(rows)


def _meta_line(meta: dict) -> str:
    """Inference settings of a contrast from its sidecar (inference, permutations, subjects, flips)."""
    if not meta:
        return ""
    bits = []
    if meta.get("Inference"):
        bits.append(str(meta["Inference"]))
    if meta.get("NPermutations") is not None:
        bits.append(f"{meta['NPermutations']} permutations" + (f" ({meta['PermutationMethod']})"
                                                               if meta.get("PermutationMethod") else ""))
    if meta.get("NSubjects") is not None:
        bits.append(f"n = {meta['NSubjects']}")
    if meta.get("DegreesOfFreedom") is not None:
        bits.append(f"df = {meta['DegreesOfFreedom']}")
    if meta.get("DesignColumns"):
        bits.append("design: " + ", ".join(str(x) for x in meta["DesignColumns"]))
    if meta.get("FlippedSubjects"):
        bits.append(f"{len(meta['FlippedSubjects'])} flipped")
    return "; ".join(bits)


#: per-contrast −log10 p maps that are not a family-wise correction across contrasts; any other
#: ``CONTRAST_MAPS`` kind of a contrast (e.g. the family-wise map of ``stats`` across the contrasts
#: of a metric) is read as its family-wise p
_PER_CONTRAST_KINDS = ("voxelfwe", "clusterfwe", "uncorrected", "fdr")
FINDINGS_PER_CONTRAST = 5     # clusters of one contrast listed in the findings table (largest |t| first)


def anchor(*parts) -> str:
    """HTML id of a report section (analysis, metric, contrast)."""
    return "r-" + F.safe_name(*parts).replace("_", "-").lower()


def _family_map(c) -> tuple[str, Path] | None:
    for kind, path in sorted(c.extra.items()):
        if kind not in _PER_CONTRAST_KINDS:
            return kind, path
    return None


def _effect_size(cname: str, t: float, meta: dict, roles: pd.Series) -> tuple[float, str]:
    """Effect size of a peak t: Cohen's d = t·√(1/n₁ + 1/n₂) for a two-group contrast (group sizes
    of the contrast's subjects), partial r = t/√(t² + df) for a correlation, d_z = t/√n for a paired
    (within-group) contrast; NaN when the sizes are unknown."""
    if not np.isfinite(t):
        return np.nan, ""
    df = meta.get("DegreesOfFreedom")
    subs = [subject_label(s) for s in meta.get("Subjects") or []]
    if cname.startswith("corr"):
        return (t / math.sqrt(t * t + df), "partial r") if df else (np.nan, "")
    if "-gt-control" in cname or "-lt-control" in cname:
        r = roles.reindex(subs) if subs else roles
        n1, n2 = int((r == "patient").sum()), int((r == "control").sum())
        return (t * math.sqrt(1 / n1 + 1 / n2), "d") if n1 and n2 else (np.nan, "")
    n = len(subs) or meta.get("NSubjects")
    return (t / math.sqrt(n), "d_z") if n else (np.nan, "")


def _cluster_findings(res: MetricResult, cname: str, c, ref, sig, logp, aff, kind: str, roles, alpha: float,
                      stage: str | None) -> list[dict]:
    """One row per significant cluster of a contrast (largest |stat| first, at most
    :data:`FINDINGS_PER_CONTRAST`): peak (the largest |stat| in the cluster, as the cluster table),
    size, minimum FWE p, effect size, family-wise p if a family map exists."""
    from scipy import ndimage

    conn = int(c.meta.get("ClusterConnectivity") or 26)
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2}.get(conn, 3))
    lab, n = ndimage.label(sig, structure=structure)
    fam = _family_map(c)
    fam_logp = None
    if fam is not None:
        try:
            fam_logp, _ = _load3d(fam[1])
            fam_logp = fam_logp if fam_logp.shape == sig.shape else None
        except Exception:
            fam_logp = None
    vox = float(abs(np.linalg.det(aff[:3, :3])))
    # the 26-connected component of each cluster and its peak as ground_truth.false_clusters finds it
    lab26, _ = ndimage.label(sig, structure=np.ones((3, 3, 3), bool))
    rows = []
    for k in range(1, n + 1):
        comp = lab == k
        pk = significant_peak(ref, comp)
        comp26 = lab26 == lab26[pk]
        gt_peak = np.argwhere(comp26)[np.argmax(logp[comp26])]
        xyz = (aff @ np.r_[np.array(pk, float), 1.0])[:3]
        t = float(ref[pk])
        es, es_kind = _effect_size(cname, t, c.meta, roles) if kind == "t" else (np.nan, "")
        rows.append({"analysis": res.analysis, "metric": res.metric, "contrast": cname, "cluster": k,
                     "peak_x": xyz[0], "peak_y": xyz[1], "peak_z": xyz[2], "peak_label": "",
                     "peak_stat": t, "stat": kind, "p_fwe": float(10 ** -np.nanmax(logp[comp])),
                     "effect_size": es, "effect_size_kind": es_kind, "n_voxels": int(comp.sum()),
                     "volume_mm3": float(comp.sum() * vox),
                     "p_family": float(10 ** -np.nanmax(fam_logp[comp])) if fam_logp is not None else np.nan,
                     "family_map": fam[0] if fam is not None else "",
                     "anchor": anchor(res.analysis, res.metric, cname),
                     "_gt_peak": (aff @ np.r_[gt_peak.astype(float), 1.0])[:3]})
    rows.sort(key=lambda r: -abs(r["peak_stat"]))
    rows = rows[:FINDINGS_PER_CONTRAST]
    labels = F.peak_labels([[r["peak_x"], r["peak_y"], r["peak_z"]] for r in rows], stage) if rows else []
    for r, lab_ in zip(rows, labels):
        r["peak_label"] = lab_
    return rows


def _contrast_block(res: MetricResult, cname: str, c, alpha: float, out: _Out, underlay, roles=None,
                    stage: str | None = None) -> tuple[dict, dict, list]:
    thr = -np.log10(alpha)
    roles = roles if roles is not None else pd.Series(dtype=str)
    block = {"name": cname, "significant": False, "text": "", "figures": [], "clusters": None,
             "meta": _meta_line(c.meta), "anchor": anchor(res.analysis, res.metric, cname)}
    summ = {"analysis": res.analysis, "metric": res.metric, "contrast": cname, "n_sig_voxels": 0,
            "max_logp": np.nan, "min_p_fwe": np.nan, "peak_stat": np.nan, "peak_x": np.nan, "peak_y": np.nan,
            "peak_z": np.nan, "n_clusters": 0, "peak_label": ""}
    if c.logp is None:
        block["text"] = "No FWE map (desc-fwe_logp) for this contrast."
        if c.clusters is not None:
            block["clusters"] = make_table(c.clusters, out.rel(c.clusters_path))
        return block, summ, []
    try:
        logp, aff = _load3d(c.logp)
    except Exception as exc:
        block["text"] = f"Cannot read {out.rel(c.logp)}: {exc}"
        return block, summ, []
    stat = None
    if c.tstat is not None:
        try:
            stat, _ = _load3d(c.tstat)
            if stat.shape != logp.shape:
                stat = None
        except Exception:
            stat = None
    sig = logp > thr
    n_sig = int(sig.sum())
    maxl = float(np.nanmax(logp)) if logp.size else np.nan
    ref = stat if stat is not None else logp
    # the peak is the largest |t| (stats.clusters.significant_peak) inside the significant set, as
    # the cluster table's top row; without a t map, the largest -log10 p
    peak = significant_peak(ref, sig) if n_sig else None
    if peak is None:
        peak = np.unravel_index(int(np.argmax(np.nan_to_num(np.abs(ref), nan=-np.inf))), logp.shape)
    xyz = (aff @ np.r_[np.array(peak, float), 1.0])[:3]
    summ.update(n_sig_voxels=n_sig, max_logp=maxl, min_p_fwe=10 ** -maxl if np.isfinite(maxl) else np.nan,
                peak_stat=float(ref[peak]), peak_x=xyz[0], peak_y=xyz[1], peak_z=xyz[2])
    ncl = 0
    if c.clusters is not None and "cluster_id" in c.clusters.columns:
        ncl = int(c.clusters["cluster_id"].nunique())
    summ["n_clusters"] = ncl
    kind = "t" if stat is not None else "−log10 p"
    found: list[dict] = []
    if n_sig:
        block["significant"] = True
        found = _cluster_findings(res, cname, c, ref, sig, logp, aff, "t" if stat is not None else "logp", roles,
                                  alpha, stage)
        summ["peak_label"] = F.peak_labels(xyz, stage)[0]
        vox = float(abs(np.linalg.det(aff[:3, :3])))
        block["text"] = (f"{n_sig} voxels ({n_sig * vox:.0f} mm³) FWE p < {alpha:g}; minimum p = "
                         f"{10 ** -maxl:.2g}; peak {kind} = {ref[peak]:.2f} at MNI ({xyz[0]:.0f}, {xyz[1]:.0f}, "
                         f"{xyz[2]:.0f}) {summ['peak_label']}.")
        try:
            img, _ = F.significant_map(c.tstat if stat is not None else None, c.logp, thr)
            neg = stat is not None and float(np.asarray(img.dataobj).sum()) < 0
            stem = out.fig(res.analysis, res.metric, cname)
            block["figures"] = F.brain_figures(img, stem.with_suffix(""), f"{res.analysis}/{res.metric} {cname}",
                                               negative=neg, underlay_img=underlay,
                                               cbar_label=stat_label("t" if stat is not None else "logp"))
        except Exception as exc:  # a figure must never stop the report
            log.warning("report: figure for %s/%s %s failed: %s", res.analysis, res.metric, cname, exc)
            block["text"] += f" (figure failed: {exc})"
    else:
        block["text"] = (f"No voxel survives FWE p < {alpha:g} (null result): minimum FWE p = "
                         f"{10 ** -maxl:.2g}; largest {kind} = {ref[peak]:.2f} at MNI ({xyz[0]:.0f}, "
                         f"{xyz[1]:.0f}, {xyz[2]:.0f}).")
    if c.clusters is not None and len(c.clusters):
        block["clusters"] = make_table(c.clusters, out.rel(c.clusters_path), cell_class=sig_rows(c.clusters, alpha))
    return block, summ, found


def _correlation_plots(res: MetricResult, data: ReportData, roles: pd.Series, alpha: float, out: _Out):
    """Scatter plots (patients) of per-subject values against clinical scores for the strongest rows."""
    df, vals, parts = res.correlations, res.values, data.participants
    if df is None or vals is None or parts is None or df.empty:
        return [], None
    rc, sc = roi_column(df), pick_column(df, SCORE_COLUMNS)
    pc, rcol = pick_column(df, P_COLUMNS), pick_column(df, R_COLUMNS)
    if rc is None or sc is None:
        return [], None
    d = df.copy()
    d["_p"] = pd.to_numeric(d[pc], errors="coerce") if pc else np.nan
    d["_r"] = pd.to_numeric(d[rcol], errors="coerce").abs() if rcol else 0
    chosen = d[d["_p"] < alpha]
    note = "significant rows"
    if chosen.empty:
        chosen, note = d.sort_values("_r", ascending=False).head(3), "strongest rows (none significant)"
    figs, infos = [], []
    vcols = {norm(c): c for c in vals.columns}
    pcols = {norm(c): c for c in parts.columns}
    pats = roles[roles == "patient"].index.intersection(vals.index).intersection(parts.index)
    for _, row in chosen.head(12).iterrows():
        vc, score = vcols.get(norm(row[rc])), pcols.get(norm(row[sc]))
        if vc is None or score is None:
            continue
        x = pd.to_numeric(parts.loc[pats, score], errors="coerce")
        y = pd.to_numeric(vals.loc[pats, vc], errors="coerce")
        unit = metric_unit(res.analysis, res.metric)
        fig, info = F.scatter_plot(x, y, out.fig(res.analysis, res.metric, "corr", vc, score), str(score),
                                   f"{res.metric} {vc}" + (f" ({unit})" if unit else ""),
                                   f"{vc} vs {score} (patients, raw)")
        figs.append(fig)
        infos.append({"analysis": res.analysis, "metric": res.metric, "roi": vc, "score": score, **info})
    tab = None
    if infos:
        idf = pd.DataFrame(infos)
        tab = make_table(idf, out.tsv(idf, f"{F.safe_name(res.analysis, res.metric)}_scatter_pearson.tsv"),
                         caption=f"Raw Pearson correlations of the plotted {note} (patients; 95 % CI by Fisher z).")
    return figs, tab


#: value columns of result tables that carry the metric's unit in the report (header "col (unit)")
_UNIT_COLUMNS = ("mean_patient", "sd_patient", "mean_control", "sd_control", "mean_change", "difference",
                 "mean_difference")


def with_units(df: pd.DataFrame | None, unit: str) -> pd.DataFrame | None:
    """``df`` with the value columns (:data:`_UNIT_COLUMNS`) headed ``"<col> (<unit>)"``."""
    if df is None or not unit:
        return df
    short = unit.split(" (")[0] if unit.startswith(("FA", "z", "Fisher", "AUC", "modulated", "dual")) else unit
    return df.rename(columns={c: f"{c} ({short})" for c in df.columns if c in _UNIT_COLUMNS})


def natural_key(s: str):
    """Sort key that orders ``ic-2`` before ``ic-10`` (digit runs compared as numbers)."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def _ica_component(res: MetricResult, root: Path, out: _Out) -> tuple[str, object]:
    """(network sentence, group component figure) of an ICA metric folder ``ic-N``."""
    from ..derivatives import group_path

    try:
        k = int(str(res.metric).split("-")[-1])
    except ValueError:
        return "", None
    network = ""
    lab_path = group_path(root, res.analysis, kind="ica_labels")
    if lab_path.is_file():
        from .collect import read_tsv

        lab = read_tsv(lab_path)
        if lab is not None and {"component", "network"} <= set(lab.columns):
            row = lab[pd.to_numeric(lab["component"], errors="coerce") == k]
            if len(row):
                r0 = row.iloc[0]
                network = (f"best-matching canonical network: {r0['network']} (spatial r = {float(r0['match_r']):.2f}"
                           + (f"; runner-up {r0['second']}, r = {float(r0['second_r']):.2f}" if "second" in row
                              else "") + "; Seitzman et al. 2018 network ROIs bundled with nilearn)")
    fig = None
    maps = group_path(root, res.analysis, kind="ica_maps")
    if maps.is_file():
        img = nib.load(str(maps))
        if img.ndim == 4 and 0 < k <= img.shape[3]:
            fig = F.map_figure(img, out.fig(res.analysis, res.metric, "component"),
                               f"group ICA component {k}" + (f" ({network.split(': ')[1].split(' (')[0]})"
                                                             if network else ""),
                               cbar_label="component weight (z)", volume=k - 1)
    return network, fig


def metric_section(res: MetricResult, data: ReportData, roles: pd.Series, out: _Out, summary_rows: list) -> dict:
    alpha = data.alpha
    stage = ANALYSES[res.analysis].stage if res.analysis in ANALYSES else None
    unit = metric_unit(res.analysis, res.metric)
    sec = {"analysis": res.analysis, "metric": res.metric, "path": out.rel(res.path), "contrasts": [],
           "rois": None, "roi_figure": None, "effect_sizes": None, "correlations": None, "scatter": [],
           "scatter_table": None, "tables": [], "figures": [], "stage_pngs": [], "description": "",
           "unit": unit, "findings": [], "network": "", "anchor": anchor(res.analysis, res.metric or "all")}
    for sc in res.sidecars.values():
        desc = sc.get("Description") or sc.get("Method") or sc.get("method")
        if isinstance(desc, str) and desc not in sec["description"]:
            sec["description"] = (sec["description"] + " " + desc).strip()
    if res.analysis == ICA_ANALYSIS and res.metric:
        try:
            sec["network"], fig = _ica_component(res, data.output_dir, out)
            if fig is not None:
                sec["figures"].append(fig)
        except Exception as exc:
            log.warning("report: ICA component figure of %s failed: %s", res.metric, exc)
    underlay = None
    for m in res.maps:
        if "skeleton" in m.name.lower():
            try:
                underlay = nib.load(str(m))
            except Exception:
                pass
    order = sorted(res.contrasts, key=lambda c: (not c.startswith("patient"), c))
    for cname in order:
        block, summ, found = _contrast_block(res, cname, res.contrasts[cname], alpha, out, underlay, roles, stage)
        sec["contrasts"].append(block)
        sec["findings"].extend(found)
        if res.contrasts[cname].logp is not None:
            summary_rows.append(summ)
    if res.rois is not None:
        shown = top_rows(res.rois)
        sec["rois"] = make_table(with_units(shown, unit), out.rel(res.path / "rois.tsv"),
                                 cell_class=sig_rows(shown, alpha))
        sec["rois"].truncated = len(res.rois) - len(shown)
        for _, r in res.rois.iterrows():
            pc = pick_column(res.rois, P_COLUMNS)
            summary_rows.append({"analysis": res.analysis, "metric": res.metric,
                                 "contrast": str(r.get("contrast", r.get("direction", "patient-vs-control"))),
                                 "roi": r.get(roi_column(res.rois)),
                                 "min_p_fwe": pd.to_numeric(pd.Series([r.get(pc)]), errors="coerce")[0]
                                 if pc else np.nan})
    if res.values is not None and len(roles):
        es = _effect_sizes(res.values, roles)
        name = F.safe_name(res.analysis, res.metric)
        es_path = out.tsv(es, f"{name}_effect_sizes.tsv")
        es_shown = top_rows(es)
        sec["effect_sizes"] = make_table(with_units(es_shown, unit), es_path,
                                         caption="Patients − controls: Cohen's d (pooled SD), Hedges' g with "
                                                 "approximate 95 % CI, Welch t-test (uncorrected)"
                                                 + (f"; means in {unit}." if unit else "."))
        sec["effect_sizes"].truncated = len(es) - len(es_shown)
        ann = {r["roi"]: f"g = {r['hedges_g']:.2f}" for _, r in es.iterrows() if np.isfinite(r["hedges_g"])}
        try:
            sec["roi_figure"] = F.group_strip_plot(res.values, roles, out.fig(res.analysis, res.metric, "rois"),
                                                   f"{res.analysis}/{res.metric} by group", ann, ylabel=unit)
        except Exception as exc:
            log.warning("report: ROI plot failed for %s/%s: %s", res.analysis, res.metric, exc)
    if res.correlations is not None:
        shown = top_rows(res.correlations)
        sec["correlations"] = make_table(shown, out.rel(res.path / "correlations.tsv"),
                                         cell_class=sig_rows(shown, alpha))
        sec["correlations"].truncated = len(res.correlations) - len(shown)
        try:
            sec["scatter"], sec["scatter_table"] = _correlation_plots(res, data, roles, alpha, out)
        except Exception as exc:
            log.warning("report: scatter plots failed for %s/%s: %s", res.analysis, res.metric, exc)
    for name, df in sorted(res.tables.items()):
        sec["tables"].append(make_table(df, out.rel(res.path / name), caption=name,
                                        cell_class=sig_rows(df, alpha)))
        try:
            fig = _table_figure(df, res, name, out)
            if fig is not None:
                sec["figures"].append(fig)
        except Exception as exc:
            log.warning("report: plot of %s failed: %s", name, exc)
    for name, arr in sorted(res.arrays.items()):
        sec["figures"].append(F.matrix_plot(arr, out.fig(res.analysis, res.metric, Path(name).stem),
                                            f"{res.analysis}/{res.metric} {name}", cbar_label=unit or "value"))
    for m in res.maps[:4]:
        f = F.map_figure(m, out.fig(res.analysis, res.metric, m.name.split(".")[0]),
                         f"{res.analysis}/{res.metric} {m.name.split('.')[0]}", cbar_label=unit or "value")
        if f is not None:
            sec["figures"].append(f)
    for png in res.pngs[:12]:
        th = F.thumbnail(png, out.fig(res.analysis, res.metric, "stage", png.stem), max_px=900, caption=png.name)
        if th is not None:
            sec["stage_pngs"].append(th)
    sec["any_significant"] = any(b["significant"] for b in sec["contrasts"])
    return sec


def _table_figure(df: pd.DataFrame, res: MetricResult, name: str, out: _Out):
    """Curve plot for tables with a sparsity/threshold column; matrix plot for square label tables."""
    xcol = pick_column(df, ("sparsity", "density", "threshold", "cost"))
    if xcol is not None and len(df) > 1:
        gcol = pick_column(df, ("group", "role"))
        return F.curve_plot(df, xcol, out.fig(res.analysis, res.metric, Path(name).stem),
                            f"{res.analysis}/{res.metric} {name}", group_col=gcol)
    first = df.columns[0]
    rest = list(df.columns[1:])
    if len(df) == len(rest) > 1 and [str(x) for x in df[first]] == [str(c) for c in rest]:
        mat = df[rest].apply(pd.to_numeric, errors="coerce").to_numpy()
        return F.matrix_plot(mat, out.fig(res.analysis, res.metric, Path(name).stem),
                             f"{res.analysis}/{res.metric} {name}", labels=rest)
    return None


# ----------------------------------------------------------------------------- ground truth
def ground_truth_section(data: ReportData, out: _Out) -> dict | None:
    if data.effects is None or data.ground_truth_dir is None:
        return None
    need = {"effect_id", "analysis", "metric", "direction"}
    missing = need - set(data.effects.columns)
    if missing:
        return {"error": f"effects.tsv lacks column(s) {sorted(missing)}"}
    try:
        scores, false = score_effects(data.effects, data.results, data.ground_truth_dir, data.alpha,
                                      flip_to=data.study.get("flip_to"), sessions=data.study.get("sessions"))
    except Exception as exc:
        log.warning("report: ground-truth scoring failed: %s", exc, exc_info=True)
        return {"error": f"scoring failed: {type(exc).__name__}: {exc}"}
    summ = summarise(scores, false)
    colors = {"hit": "hit", "miss": "miss"}
    sec = {"error": None, "path": str(data.ground_truth_dir), "false_df": false, "scores_df": scores,
           "effects_df": data.effects, "flip_to": data.study.get("flip_to"),
           "summary": make_table(summ, out.tsv(summ, "ground_truth_summary.tsv")),
           "scores": make_table(scores, out.tsv(scores, "ground_truth_scores.tsv"), cell_class=lambda i, c: (
               colors.get(str(scores["status"].iloc[i]), "na") if c in ("status", "hit") else "")),
           "false": make_table(false, out.tsv(false, "false_clusters.tsv")),
           "n_hits": int(summ["n_hits"].iloc[0]), "n_evaluated": int(summ["n_evaluated"].iloc[0]),
           "n_false": len(false)}
    sec.update(power_section(data, out))
    return sec


def power_section(data: ReportData, out: _Out) -> dict:
    """Predicted power beside recovery (issue 23 item 5): for every scored planted group/clinical test,
    the ROI engine's FWE power at this study's group size (the smaller group) with the effect sizes
    that survive the pipeline (:func:`hfsmri.power.recovery.power_beside_recovery`, which writes
    ``report/power_vs_recovery.tsv``), and whether this study recovered it."""
    from ..power.recovery import power_beside_recovery

    none = {"power": None, "power_error": None}
    roles = role_of(data)
    counts = roles.value_counts()
    if not {"patient", "control"} <= set(counts.index):
        return none
    n = int(min(counts["patient"], counts["control"]))
    try:
        table = power_beside_recovery(out.root, n)
    except Exception as exc:  # power is an addition to the report: never lose the report over it
        log.warning("report: predicted power vs recovery not computed: %s", exc)
        return {**none, "power_error": f"{type(exc).__name__}: {exc}"}
    if table is None or table.empty:
        return none
    t = table[table["recovered"] != "not evaluated"]
    expected = float(pd.to_numeric(t["predicted_power_fwe"], errors="coerce").fillna(0).sum())
    mark = lambda i, c: ("hit" if table["recovered"].iloc[i] == "yes" else "miss"
                         if table["recovered"].iloc[i] == "no" else "") if c == "recovered" else ""
    rel = str((out.dir / "power_vs_recovery.tsv").relative_to(out.root))
    out.tsvs.append(rel)
    return {**none, "power": make_table(table, rel, cell_class=mark, max_rows=1000),
            "power_n": n, "power_expected": expected, "power_observed": int((t["recovered"] == "yes").sum()),
            "power_evaluated": len(t)}


# ----------------------------------------------------------------------------- findings
FINDINGS_COLUMNS = ("analysis", "metric", "contrast", "peak_mni", "peak_label", "peak_stat", "p_fwe", "effect_size",
                    "n_voxels", "volume_mm3", "p_family", "ground_truth", "finding", "note")


def _planted(row: dict, gt: dict | None) -> str:
    """"planted" / "not planted" (a false cluster of the ground-truth scoring: its 26-connected
    component touches no planted mask of its metric) / "related (<effect ids>)" (a false cluster that
    touches the mask of a planted effect of another metric on the same acquisition, e.g. ALFF at a
    seed-FC target) for a cluster on simulated data; "unknown" without ground truth."""
    if not gt or gt.get("error") or gt.get("false_df") is None:
        return "unknown"
    false = gt["false_df"]
    f = false[(false["analysis"] == row["analysis"]) & (false["metric"] == row["metric"])
              & (false["contrast"] == row["contrast"])]
    pk = np.asarray(row.get("_gt_peak", [row["peak_x"], row["peak_y"], row["peak_z"]]), float)
    for _, r in f.iterrows():
        if np.allclose([r["peak_x"], r["peak_y"], r["peak_z"]], pk, atol=1e-3):
            ov = str(r.get("overlaps", "none"))
            return "not planted" if ov in ("none", "", "nan") else f"related ({ov.replace(',', ', ')})"
    return "planted"


def _declared_rois(analysis: str) -> dict:
    """ROI name -> region spec declared by the analysis' spec (:class:`hfsmri.analyses.RoiSet`)."""
    spec = ANALYSES.get(analysis)
    return {str(n): str(v) for rs in (spec.rois if spec is not None else ()) for n, v in dict(rs.regions).items()
            if isinstance(v, str)}


def _roi_findings(sections: list, alpha: float, gt: dict | None) -> list[dict]:
    """Significant rows of ``rois.tsv`` / ``correlations.tsv`` (first corrected p column < alpha)."""
    rows = []
    grid, effect_mask, roi_masks = None, None, {}
    if gt and not gt.get("error") and gt.get("effects_df") is not None:
        grid, effect_mask = effect_mask_getter(gt["path"], gt["effects_df"], gt.get("flip_to"))

    def roi_mask(analysis, roi, spec):
        if grid is not None and (analysis, roi) not in roi_masks:
            roi_masks[(analysis, roi)] = roi_mask_on(roi, spec, grid)
        return roi_masks.get((analysis, roi))

    for sec, res in sections:
        declared = _declared_rois(res.analysis)
        for df, what in ((res.rois, "rois"), (res.correlations, "correlations")):
            if df is None or df.empty:
                continue
            pc, rc = pick_column(df, P_COLUMNS), roi_column(df)
            if pc is None or rc is None:
                continue
            p = pd.to_numeric(df[pc], errors="coerce")
            for i in df.index[p < alpha]:
                r = df.loc[i]
                stat = next((r[c] for c in ("t", "r", "stat") if c in df.columns), np.nan)
                es = next((f"{ {'hedges_g': 'g', 'cohens_d': 'd'}.get(k, k)} = {float(r[k]):.2f}" for k in ("hedges_g", "cohens_d", "r")
                           if k in df.columns and pd.notna(r[k])), "")
                contrast = str(r.get("contrast", r.get("direction", r.get("score", what))))
                score = str(r["score"]) if what == "correlations" and "score" in df.columns else None
                cluster = str(r.get("roi_set", "")) == "cluster" or str(r[rc]).startswith(CLUSTER_ROI_PREFIX)
                status = "unknown"
                if cluster:
                    status = "cluster ROI"
                elif gt and not gt.get("error") and gt.get("effects_df") is not None:
                    spec = declared.get(str(r[rc]))
                    status = roi_row_status(gt["effects_df"], res.analysis, res.metric, str(r[rc]),
                                            float(np.sign(pd.to_numeric(stat, errors="coerce"))), score=score,
                                            flip_to=gt.get("flip_to"), roi_spec=spec,
                                            roi_mask=roi_mask(res.analysis, str(r[rc]), spec), effect_mask=effect_mask)
                # a cluster ROI's group test is circular (the cluster was selected by the same group
                # contrast): in the TSV, never a headline; its clinical correlations are findings with a note
                finding = not (cluster and what == "rois")
                note = f"{what}.tsv, {pc}"
                if cluster:
                    note += ("; cluster ROI selected by the voxel-wise group test: circular, descriptive only"
                             if what == "rois" else "; ROI = a significant cluster of the group test")
                rows.append({"analysis": res.analysis, "metric": res.metric, "contrast": contrast,
                             "peak_mni": "ROI", "peak_label": str(r[rc]), "peak_stat": stat, "p_fwe": float(p[i]),
                             "effect_size": es, "n_voxels": np.nan, "volume_mm3": np.nan, "p_family": np.nan,
                             "ground_truth": status, "finding": finding, "note": note,
                             "anchor": sec["anchor"]})
    return rows


def findings_table(sections: list, alpha: float, gt: dict | None, study: dict) -> tuple[pd.DataFrame, str]:
    """Every significant cluster (and ROI row) with its peak, statistic, p, effect size, size,
    family-wise p and ground-truth status; ``finding`` marks what the first screen headlines:
    clusters of at least ``stats.min_cluster_voxels`` voxels (when the study sets it) whose
    family-wise p across the contrasts of their metric is < alpha when that map exists, else whose
    per-contrast FWE p is < alpha. Returns (table, sentence saying which scope was used)."""
    min_vox = (study.get("stats") or {}).get("min_cluster_voxels")
    rows, fam_kinds, n_maps = [], set(), 0
    for sec, res in sections:
        n_maps += sum(1 for b in sec["contrasts"] if not b["text"].startswith("No FWE map"))
        for f in sec["findings"]:
            r = dict(f)
            r["peak_mni"] = f"({r['peak_x']:.0f}, {r['peak_y']:.0f}, {r['peak_z']:.0f})"
            es = r.get("effect_size")
            r["effect_size"] = f"{r['effect_size_kind']} = {es:.2f}" if es is not None and np.isfinite(es) else ""
            r["ground_truth"] = _planted(r, gt)
            fam = r.get("family_map")
            if fam:
                fam_kinds.add(fam)
            ok_p = (r["p_family"] < alpha) if fam else (r["p_fwe"] < alpha)
            ok_n = not min_vox or r["n_voxels"] >= int(min_vox)
            r["finding"] = bool(ok_p and ok_n)
            r["note"] = "" if ok_n else f"below the cluster-extent floor ({min_vox} voxels)"
            if fam and not ok_p:
                r["note"] = (r["note"] + "; " if r["note"] else "") + "not significant family-wise"
            rows.append(r)
    rows += _roi_findings(sections, alpha, gt)
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=list(FINDINGS_COLUMNS) + ["anchor"])
    df = df[list(FINDINGS_COLUMNS) + ["anchor"]]
    if fam_kinds:
        scope = (f"Voxel-wise findings are clusters with family-wise p < {alpha:g} across the contrasts of their "
                 f"metric (map desc-{', '.join(sorted(fam_kinds))}, same permutations); the per-contrast FWE p is "
                 "beside it.")
    else:
        scope = (f"Voxel-wise findings are clusters with FWE p < {alpha:g} within their own contrast; the "
                 f"{n_maps} voxel-wise contrast maps are not corrected for each other, so some of these may be "
                 "false positives across contrasts.")
    if min_vox:
        scope += f" Clusters smaller than {min_vox} voxels are listed but not headlined."
    scope += " ROI findings use the corrected p of their table (FDR or FWE, as the column says)."
    return df, scope


# ----------------------------------------------------------------------------- main
def _env():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined)


#: fewer result sections than this are drawn in this process (a worker's start-up costs ~3 s)
PARALLEL_MIN_SECTIONS = 4


def _section_job(res: MetricResult, data: ReportData, roles: pd.Series, root: Path):
    """One result section in a worker process: (section, summary rows, TSVs written)."""
    out = _Out(root, clean=False)
    rows: list[dict] = []
    return metric_section(res, data, roles, out, rows), rows, out.tsvs


def _metric_sections(results: list, data: ReportData, roles: pd.Series, out: _Out, n_jobs: int | None):
    """:func:`metric_section` of every result, in order; figures of different results are drawn in
    ``n_jobs`` processes (default: all cores; most of the report's time is matplotlib/nilearn
    plotting). Every section writes only files named after its own analysis/metric, so the output
    does not depend on ``n_jobs``; a failing pool falls back to one process."""
    from ..parallel import default_nprocs

    n = default_nprocs() if n_jobs is None else max(1, int(n_jobs))
    n = min(n, len(results))
    if n > 1 and len(results) >= PARALLEL_MIN_SECTIONS:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        try:
            with ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn")) as ex:
                return list(ex.map(_section_job, results, [data] * len(results), [roles] * len(results),
                                   [out.root] * len(results)))
        except Exception as exc:  # e.g. a worker could not start (no /dev/shm): draw in this process
            log.warning("report: parallel figure drawing failed (%s: %s); drawing in one process",
                        type(exc).__name__, exc)
    done = []
    for res in results:
        rows: list[dict] = []
        sec = metric_section(res, data, roles, out, rows)
        done.append((sec, rows, []))
    return done


def _slice_timing_counts(summaries: list[dict]) -> dict | None:
    """What happened to slice timing per BOLD run (the func summaries' ``slice_timing`` labels,
    "corrected to …" collapsed) -> number of runs; None when no run reports it."""
    out: dict = {}
    for s in summaries:
        lab = ((s.get("stages") or {}).get("func") or {}).get("slice_timing")
        if lab is not None:
            lab = "corrected" if str(lab).startswith("corrected") else str(lab)
            out[lab] = out.get(lab, 0) + 1
    return out or None


def build_report(output_dir, ground_truth_dir=None, title: str | None = None, n_jobs: int | None = None) -> Path:
    """Build ``OUTPUT_DIR/report.html`` and ``OUTPUT_DIR/report/`` from whatever results exist.

    Parameters
    ----------
    output_dir : hfsmri output folder (BIDS-Derivatives root).
    ground_truth_dir : simulator ground-truth folder; default: found via ``logs/run_info.json``.
    title : report title (default "hfsmri report").
    n_jobs : processes drawing the figures (default: all cores); the report does not depend on it.

    Returns
    -------
    Path of ``report.html``.
    """
    from ..derivatives import write_text_atomic
    from ..errors import HfsmriError

    root = Path(output_dir)
    if not root.is_dir():
        raise HfsmriError("output folder does not exist", path=root)
    data = collect(root, ground_truth_dir)
    out = _Out(root)
    roles = role_of(data)

    participants = participants_section(data, out)
    qc = qc_section(data, out)
    summary_rows: list[dict] = []
    analyses: dict[str, list] = {}
    ordered = sorted(data.results, key=lambda r: (_ANALYSIS_ORDER.get(r.analysis, 99), r.analysis,
                                                  natural_key(r.metric)))
    pairs = []
    for res, (sec, rows, tsvs) in zip(ordered, _metric_sections(ordered, data, roles, out, n_jobs)):
        analyses.setdefault(res.analysis, []).append(sec)
        pairs.append((sec, res))
        summary_rows.extend(rows)
        out.tsvs.extend(tsvs)
    results_summary = None
    if summary_rows:
        sdf = pd.DataFrame(summary_rows)
        results_summary = make_table(sdf, out.tsv(sdf, "results_summary.tsv"),
                                     cell_class=lambda i, c: "sig" if c == "min_p_fwe" and (
                                         sdf["min_p_fwe"].iloc[i] < data.alpha) else "")
    group_errors = [(k, v["error"]) for k, v in data.group_summary.items()
                    if isinstance(v, dict) and v.get("error")]
    requested = list((data.study.get("analyses") or {}).keys())
    not_run = [a for a in requested if a not in analyses]
    gt = ground_truth_section(data, out)
    fdf, scope = findings_table(pairs, data.alpha, gt, data.study)
    if len(fdf):
        out.tsv(fdf.drop(columns="anchor"), "findings.tsv")
    headline = fdf[fdf["finding"].astype(bool)] if len(fdf) else fdf
    if gt is not None and not gt.get("error") and len(headline):
        st = headline["ground_truth"].astype(str)
        n_rel = int(st.str.startswith("related").sum())
        scope += (f" Simulated data: {int((st == 'planted').sum())} of these {len(headline)} findings are planted "
                  f"effects, {n_rel} lie on a planted effect of another metric of the same acquisition "
                  f"(\"related\": the simulator changed that signal too) and {int((st == 'not planted').sum())} "
                  "are not planted (false).")
    findings = {"scope": scope, "n_all": len(fdf), "n": len(headline), "tsv": "report/findings.tsv" if len(fdf) else None,
                "rows": [{k: (fmt_value(v, k) if k not in ("anchor",) else v) for k, v in r.items()}
                         for r in headline.to_dict("records")],
                "columns": [c for c in FINDINGS_COLUMNS if c not in ("finding", "note")
                            and not (c == "ground_truth" and gt is None)
                            and not (c == "p_family" and not headline["p_family"].notna().any())]}
    menu = [{"id": "findings", "title": "Findings"}, {"id": "methods", "title": "Methods"},
            {"id": "participants", "title": "Participants"},
            {"id": "qc", "title": "Quality control",
             "children": [{"id": g["anchor"], "title": g["title"]} for g in qc["figures"]]},
            *[{"id": anchor(a), "title": ANALYSES[a].title if a in ANALYSES else a,
               "badge": sum(1 for m in secs for b in m["contrasts"] if b["significant"]),
               "children": [{"id": b["anchor"], "title": f"{m['metric'] or a} {b['name']}"}
                            for m in secs for b in m["contrasts"] if b["significant"]]}
              for a, secs in analyses.items()],
            *([{"id": "ground-truth", "title": "Ground truth"}] if gt else []),
            {"id": "files", "title": "Files"}]
    n_pat = int((roles == "patient").sum()) if len(roles) else None
    n_con = int((roles == "control").sum()) if len(roles) else None
    excluded = data.run_info.get("excluded") or {}
    from ..qc.decisions import read_decisions

    qc_dec = read_decisions(root / "group", data.study.get("qc") or {})
    sections, refs = methods_sections(data.study, list(analyses) or requested, n_pat, n_con, excluded,
                                      data.run_info.get("flipped"), simulated=data.effects is not None,
                                      qc_sentence=qc_dec.sentence() if qc_dec is not None else None,
                                      slice_timing=_slice_timing_counts(data.summaries))
    (out.dir / "methods.md").write_text(methods_markdown(sections, refs), encoding="utf-8")

    n_sig = sum(1 for secs in analyses.values() for s in secs for b in s["contrasts"] if b["significant"])
    ctx = {
        "title": title or "hfsmri report",
        "generated": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "output_dir": str(root.resolve()),
        "versions": versions(),
        "alpha": data.alpha,
        "n_patients": n_pat, "n_controls": n_con,
        "groups": _groups(data)[1],
        "n_significant": n_sig,
        "methods": sections, "references": refs,
        "participants": participants, "qc": qc,
        "analyses": analyses, "results_summary": results_summary,
        "titles": {name: s.title for name, s in ANALYSES.items()},
        "group_errors": group_errors, "not_run": not_run,
        "ground_truth": gt,
        "findings": findings, "menu": menu, "anchor": anchor,
        "rel": out.rel,
        "problems": data.problems,
        "tsvs": sorted(set(out.tsvs)),
        "study": data.study,
    }
    html = _env().get_template("report.html.j2").render(**ctx)
    path = write_text_atomic(root / "report.html", html)
    os.chmod(path, 0o644)  # temporary files are created 0600
    log.info("report: %s (%d analyses, %d significant contrast maps)", path, len(analyses), n_sig)
    return path
