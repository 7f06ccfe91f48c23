"""QC rules that decide who is analysed: study.yaml ``qc:`` applied at the group level.

The rules (the one owner of their names, units and defaults, :data:`RULES`) are thresholds on the
participant QC table (:func:`hfsmri.qc.table.collect`, the ``desc-iqm_stats.tsv`` files the
participant level wrote), so re-thresholding needs only the group level again:

==================  ========  ========  =================================================
key                 modality  unit      a subject is excluded from that modality when
==================  ========  ========  =================================================
``mean_fd_max``     bold      mm        mean framewise displacement (Power) > value
``scrubbed_max``    bold      0-1       fraction of scrubbed volumes > value
``tsnr_min``        bold      ratio     median temporal SNR < value
``t1w_dice_min``    T1w       0-1       Dice of the warped brain mask with the template's < value
``dwi_outlier_max`` dwi       0-1       fraction of DW volumes with a dropout slice > value
==================  ========  ========  =================================================

Every rule is off (``null``) by default. ``mean_fd_max`` defaults to
``preprocessing.func.max_mean_fd`` when ``preprocessing.func.exclude_high_motion`` is true (the
older switch; the rule here is what applies it). A T1w exclusion also excludes the subject's BOLD
and DWI (both are brought to MNI through the T1w registration). With several sessions, a subject
is excluded from a modality when any session fails. A missing value (no QC table row, metric not
computed) does not exclude: the row says so.

``exclude:`` lists manual exclusions with reasons, as ``sub-07`` (every modality), ``{sub-07:
"reason"}`` or ``{subject: sub-07, reason: "...", modality: bold}``. (The top-level study.yaml
``exclude:`` still removes a participant from the whole study before anything runs.)

:func:`decide` returns :class:`QcDecisions`; the group level calls it once, writes
``group/desc-decisions_qc.tsv`` (one row per participant x modality: decision, the rules that fired,
values and thresholds) and gives each group stage the study restricted to the included set of its
modality (:meth:`QcDecisions.restrict`).
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .table import MODALITIES

__all__ = ["RULES", "QC_DEFAULTS", "STAGE_MODALITY", "resolve_qc", "decide", "read_decisions", "QcDecisions",
           "DECISIONS_FILE"]


@dataclass(frozen=True)
class Rule:
    """One QC rule: the QC-table column it reads, its modality, the failing side and the valid range."""

    column: str
    modality: str
    fails: str          # "above" | "below"
    unit: str
    low: float = 0.0
    high: float = math.inf


RULES: dict[str, Rule] = {
    "mean_fd_max": Rule("mean_fd", "bold", "above", "mm", 0.0, math.inf),
    "scrubbed_max": Rule("scrubbed", "bold", "above", "fraction 0-1", 0.0, 1.0),
    "tsnr_min": Rule("tsnr", "bold", "below", "ratio", 0.0, math.inf),
    "t1w_dice_min": Rule("t1w_dice", "T1w", "below", "Dice 0-1", 0.0, 1.0),
    "dwi_outlier_max": Rule("dwi_outlier", "dwi", "above", "fraction 0-1", 0.0, 1.0),
}
QC_DEFAULTS: dict = {**{k: None for k in RULES}, "exclude": []}
#: the modality a group stage analyses
STAGE_MODALITY = {"anat": "T1w", "dwi": "dwi", "func": "bold", "conn": "bold"}
from ..derivatives import GROUP_FILES  # noqa: E402  (the one namer of group files)

DECISIONS_FILE = GROUP_FILES["qc_decisions"]
DECISION_COLUMNS = ("participant_id", "modality", "decision", "rule", "value", "threshold", "session", "reason")


def _label(s) -> str:
    return re.sub(r"^sub-", "", str(s).strip())


def resolve_qc(given, preprocessing: dict, participants, err) -> dict:
    """The validated ``qc:`` section with defaults (module doc). ``err(msg, field)`` builds the
    study's error (naming study.yaml and the key); ``participants``: labels allowed in ``exclude``."""
    given = {} if given is None else given
    if not isinstance(given, dict):
        raise err("must be a mapping of QC rules, e.g. {mean_fd_max: 0.2, exclude: [sub-07]}", "qc")
    qc = copy.deepcopy(QC_DEFAULTS)
    for k, v in given.items():
        if k not in QC_DEFAULTS:
            raise err(f"unknown key {k!r}; allowed keys: {', '.join(QC_DEFAULTS)}", f"qc.{k}")
        if k == "exclude":
            continue
        if v is None:
            continue
        rule = RULES[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise err(f"must be a number ({rule.unit}) or null, got {v!r}", f"qc.{k}")
        if not rule.low <= float(v) <= rule.high:
            rng = f"{rule.low:g}..{rule.high:g}" if math.isfinite(rule.high) else f">= {rule.low:g}"
            raise err(f"must be in {rng} ({rule.unit}), got {v!r}", f"qc.{k}")
        qc[k] = float(v)
    fp = (preprocessing or {}).get("func", {})
    if qc["mean_fd_max"] is None and fp.get("exclude_high_motion"):
        qc["mean_fd_max"] = float(fp["max_mean_fd"])
    known = {str(p) for p in participants}
    items = given.get("exclude") or []
    if isinstance(items, (str, dict)):
        items = [items]
    if not isinstance(items, list):
        raise err("must be a list of participants (sub-07) or {subject, reason, modality} entries", "qc.exclude")
    out = []
    for it in items:
        if isinstance(it, dict) and "subject" in it:
            extra = set(it) - {"subject", "reason", "modality"}
            if extra:
                raise err(f"unknown key {sorted(extra)[0]!r} in an entry; allowed: subject, reason, modality",
                          "qc.exclude")
            ent = {"subject": _label(it["subject"]), "reason": str(it.get("reason") or "manual exclusion"),
                   "modality": str(it.get("modality") or "all")}
        elif isinstance(it, dict) and len(it) == 1:
            (s, r), = it.items()
            ent = {"subject": _label(s), "reason": str(r or "manual exclusion"), "modality": "all"}
        elif isinstance(it, (str, int)):
            ent = {"subject": _label(it), "reason": "manual exclusion", "modality": "all"}
        else:
            raise err(f"cannot read the entry {it!r}: give sub-07, {{sub-07: reason}} or "
                      "{subject: sub-07, reason: ..., modality: bold}", "qc.exclude")
        if ent["modality"] not in (*MODALITIES, "all"):
            raise err(f"modality of {ent['subject']!r} must be one of {', '.join(MODALITIES)} or all, got "
                      f"{ent['modality']!r}", "qc.exclude")
        if ent["subject"] not in known:
            raise err(f"participant 'sub-{ent['subject']}' is not in participants.tsv (or excluded at the top level)",
                      "qc.exclude")
        out.append(ent)
    qc["exclude"] = out
    return qc


@dataclass
class QcDecisions:
    """The decisions: ``table`` (one row per participant x modality, :data:`DECISION_COLUMNS`)."""

    table: pd.DataFrame
    rules: dict = field(default_factory=dict)

    def included(self, modality: str) -> list[str]:
        """Labels (without ``sub-``) included in ``modality`` (``T1w``, ``bold`` or ``dwi``)."""
        t = self.table[(self.table["modality"] == modality) & (self.table["decision"] == "included")]
        return [_label(s) for s in t["participant_id"]]

    def excluded(self, modality: str) -> dict[str, str]:
        """Label -> reason of the participants excluded from ``modality``."""
        t = self.table[(self.table["modality"] == modality) & (self.table["decision"] == "excluded")]
        return {_label(s): r for s, r in zip(t["participant_id"], t["reason"])}

    def counts(self) -> dict:
        """``{modality: {"included": n, "excluded": n}}``."""
        return {m: {"included": len(self.included(m)), "excluded": len(self.excluded(m))} for m in MODALITIES}

    def restrict(self, study, modality: str):
        """A copy of ``study`` whose participants are the included set of ``modality`` (the
        others move to ``excluded`` with their reason, and to ``qc_excluded``)."""
        ex = {s: r for s, r in self.excluded(modality).items() if s in study.participants.index}
        new = copy.copy(study)
        new.participants = study.participants.drop(index=list(ex))
        new.excluded = {**study.excluded, **{s: f"QC ({modality}): {r}" for s, r in ex.items()}}
        new.qc_excluded = ex
        return new

    def write(self, group_dir) -> Path:
        from ..derivatives import save_tsv_atomic

        return save_tsv_atomic(self.table, Path(group_dir) / DECISIONS_FILE)

    def sentence(self) -> str:
        """One sentence for the methods text and the report: the rules and the counts."""
        on = [f"{k} = {v:g}" for k, v in self.rules.items() if k in RULES and v is not None]
        manual = len({e["subject"] for e in self.rules.get("exclude", [])})
        rules = ("QC rules applied at the group level: " + ", ".join(on)) if on else "No QC threshold rule was set"
        if manual:
            rules += f"; {manual} participant(s) excluded by hand"
        parts = [f"{m}: {c['included']} included, {c['excluded']} excluded"
                 for m, c in self.counts().items() if c["included"] + c["excluded"]]
        return rules + (" (" + "; ".join(parts) + ")" if parts else "") + "."


def read_decisions(group_dir, rules: dict | None = None) -> "QcDecisions | None":
    """The decisions the group level wrote (``group/desc-decisions_qc.tsv``), or None when absent."""
    p = Path(group_dir) / DECISIONS_FILE
    if not p.is_file():
        return None
    t = pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)
    return QcDecisions(table=t, rules=dict(rules or {}))


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4g}"


def _with_stage_fd(study, output_dir, t: pd.DataFrame) -> pd.DataFrame:
    """Derivatives written before the IQM tables existed: a BOLD row with the functional stage's
    mean FD (its ``desc-qc_stats.tsv``: mean over the n volumes, first FD 0) where no IQM row is."""
    from ..derivatives import Derivatives
    from ..func.participant import qc_path

    have = set(t.loc[t["modality"] == "bold", "_lab"])
    out = output_dir
    if not isinstance(out, Derivatives):
        out = Derivatives.__new__(Derivatives)  # path naming only: nothing is written
        out.root = Path(output_dir)
    extra = []
    for lab in map(str, study.participants.index):
        if lab in have:
            continue
        for ses in (study.sessions or [None]):
            p = qc_path(out, lab, ses)
            if p.exists():
                row = pd.read_csv(p, sep="\t")
                if "mean_fd" in row.columns and len(row):
                    extra.append({"participant_id": f"sub-{lab}", "session": ses or "n/a", "modality": "bold",
                                  "mean_fd": float(row["mean_fd"].iloc[0]), "_lab": lab})
    return pd.concat([t, pd.DataFrame(extra)], ignore_index=True) if extra else t


def decide(study, output_dir, iqms: pd.DataFrame | None = None) -> QcDecisions:
    """Apply ``study.qc`` to the participant QC tables under ``output_dir`` (a folder or its
    :class:`~hfsmri.derivatives.Derivatives`; module doc).

    ``iqms``: the QC table (default :func:`hfsmri.qc.table.collect` of ``output_dir``). Sessions
    other than ``study.sessions`` are ignored. Returns :class:`QcDecisions`; nothing is written.
    """
    from .table import collect

    qc = getattr(study, "qc", None) or copy.deepcopy(QC_DEFAULTS)
    root = getattr(output_dir, "root", output_dir)  # a Derivatives or its folder
    t = collect(root) if iqms is None else iqms
    if study.sessions:
        t = t[t["session"].isin([str(s) for s in study.sessions])]
    t = t.assign(_lab=[_label(s) for s in t["participant_id"]])
    t = _with_stage_fd(study, output_dir, t)
    manual: dict[tuple, str] = {}
    for e in qc.get("exclude", []):
        for m in (MODALITIES if e["modality"] == "all" else (e["modality"],)):
            manual[(e["subject"], m)] = e["reason"]
    rows = []
    for lab in study.participants.index:
        lab = str(lab)
        fired: dict[str, list] = {}
        notes: dict[str, str] = {}
        for m in MODALITIES:
            fired[m] = []
            mine = t[(t["_lab"] == lab) & (t["modality"] == m)]
            for key, rule in RULES.items():
                thr = qc.get(key)
                if rule.modality != m or thr is None:
                    continue
                if mine.empty:
                    notes[m] = "no QC table row: rules not applied"
                    continue
                for ses, v in zip(mine["session"], mine[rule.column].astype(float)):
                    if not np.isfinite(v):
                        notes[m] = f"{rule.column} not available: {key} not applied"
                    elif (v > thr) if rule.fails == "above" else (v < thr):
                        op = ">" if rule.fails == "above" else "<"
                        fired[m].append((key, v, thr, ses, f"{rule.column} {_fmt(v)} {op} {thr:g} ({rule.unit})"))
            if (lab, m) in manual:
                fired[m].append(("exclude", None, None, "n/a", f"manual: {manual[(lab, m)]}"))
        for m in ("bold", "dwi"):  # both reach MNI through the T1w registration
            if fired["T1w"]:
                fired[m].extend((f"T1w:{k}", v, thr, ses, f"T1w excluded ({why})")
                                for k, v, thr, ses, why in fired["T1w"])
        for m in MODALITIES:
            f = fired[m]
            rows.append({"participant_id": f"sub-{lab}", "modality": m,
                         "decision": "excluded" if f else "included",
                         "rule": "; ".join(x[0] for x in f) or "n/a",
                         "value": "; ".join(_fmt(x[1]) for x in f) or "n/a",
                         "threshold": "; ".join(_fmt(x[2]) for x in f) or "n/a",
                         "session": "; ".join(sorted({str(x[3]) for x in f})) or "n/a",
                         "reason": "; ".join(x[4] for x in f) or notes.get(m, "passes every rule")})
    table = pd.DataFrame(rows, columns=list(DECISION_COLUMNS))
    return QcDecisions(table=table, rules=qc)
