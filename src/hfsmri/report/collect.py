"""Gather everything the report shows from an hfsmri OUTPUT_DIR (every piece optional).

Reads, when present:

* ``study.resolved.yaml``, ``participants.tsv``, ``logs/run_info.json``, ``group/group_summary.json``;
* per-subject summaries ``sub-*/[ses-*/]sub-*_desc-hfsmri_summary.json`` and QC figures
  ``sub-*/**/figures/*.png``;
* group results ``group/<analysis>/<metric>/``: the files of every contrast the study can have
  (:func:`hfsmri.stats.design.contrast_names` of its clinical scores and sessions) and the ROI
  tables, each found by :func:`hfsmri.derivatives.group_path` (no file name is parsed), plus any
  other TSV / PNG / NIfTI a stage wrote there;
* the simulator's ground truth ``<bids_dir>/derivatives/ground_truth/effects.tsv``.

Nothing here raises on a missing or unreadable optional file: it is recorded in
:attr:`ReportData.problems` and the report says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: ContrastResult attribute of the main map kinds (:data:`hfsmri.derivatives.GROUP_FILES`)
_CONTRAST_ATTR = {"t": "tstat", "tfce": "tfce", "fwe": "logp"}
#: files of a folder that are neither shown as tables nor as maps (analysis masks)
_MASK_KINDS = ("mask", "mask_longitudinal")
#: columns that may hold participant ids in a per-subject table
SUBJECT_COLUMNS = ("participant_id", "participant", "subject", "sub", "subject_id")


@dataclass
class ContrastResult:
    """Files of one contrast in a group result folder."""

    name: str
    tstat: Path | None = None
    tfce: Path | None = None
    logp: Path | None = None
    clusters_path: Path | None = None
    clusters: pd.DataFrame | None = None
    extra: dict = field(default_factory=dict)              # desc -> other -log10 p maps (voxelfwe, fdr, ...)
    meta: dict = field(default_factory=dict)               # JSON sidecar of the FWE map


@dataclass
class MetricResult:
    """One ``group/<analysis>/<metric>/`` folder."""

    analysis: str
    metric: str
    path: Path
    contrasts: dict = field(default_factory=dict)          # name -> ContrastResult
    rois: pd.DataFrame | None = None
    correlations: pd.DataFrame | None = None
    values: pd.DataFrame | None = None                     # per-subject values (index: labels)
    values_name: str | None = None
    tables: dict = field(default_factory=dict)             # other TSVs: file name -> DataFrame
    arrays: dict = field(default_factory=dict)             # square .npy matrices: file name -> ndarray
    pngs: list = field(default_factory=list)
    maps: list = field(default_factory=list)               # other NIfTI files (skeleton, components)
    sidecars: dict = field(default_factory=dict)           # file name -> JSON dict


@dataclass
class ReportData:
    output_dir: Path
    study: dict = field(default_factory=dict)
    participants: pd.DataFrame | None = None
    run_info: dict = field(default_factory=dict)
    group_summary: dict = field(default_factory=dict)
    summaries: list = field(default_factory=list)
    qc_figures: list = field(default_factory=list)         # (subject label, session, Path)
    results: list = field(default_factory=list)            # MetricResult, sorted
    ground_truth_dir: Path | None = None
    effects: pd.DataFrame | None = None
    problems: list = field(default_factory=list)

    @property
    def alpha(self) -> float:
        try:
            return float(self.study.get("stats", {}).get("alpha", 0.05))
        except (TypeError, ValueError, AttributeError):
            return 0.05


def read_tsv(path: Path, problems: list | None = None) -> pd.DataFrame | None:
    """Read a BIDS TSV ("n/a" = missing); None (and a note in ``problems``) if unreadable."""
    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a", "N/A", "NA", ""], keep_default_na=False)
    except Exception as exc:  # empty or malformed file: report it, do not fail
        if problems is not None:
            problems.append(f"{path}: cannot read table ({type(exc).__name__}: {exc})")
        return None


def _read_json(path: Path, problems: list) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        return obj if isinstance(obj, dict) else {}
    except Exception as exc:
        problems.append(f"{path}: cannot read JSON ({type(exc).__name__}: {exc})")
        return {}


def _read_study(path: Path, problems: list) -> dict:
    import yaml

    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
        return obj if isinstance(obj, dict) else {}
    except Exception as exc:
        problems.append(f"{path}: cannot read YAML ({type(exc).__name__}: {exc})")
        return {}


def subject_label(value) -> str:
    """``"sub-01"`` / ``"01"`` / ``1`` -> ``"01"``-style label (string without the ``sub-`` prefix)."""
    s = str(value).strip()
    return s[4:] if s.startswith("sub-") else s


def _participants(path: Path, problems: list) -> pd.DataFrame | None:
    df = read_tsv(path, problems)
    if df is None:
        return None
    if "participant_id" not in df.columns:
        problems.append(f"{path}: no participant_id column; participants table ignored")
        return None
    df = df.copy()
    df["participant_id"] = df["participant_id"].astype(str)
    df.index = pd.Index([subject_label(s) for s in df["participant_id"]], name="participant")
    return df


def per_subject_values(df: pd.DataFrame, labels) -> pd.DataFrame | None:
    """If ``df`` is a per-subject table (one row per participant), return it indexed by label.

    The subject column is one of :data:`SUBJECT_COLUMNS` or the first column; it qualifies when at
    least half of its values are known participant labels (with or without ``sub-``). Only numeric
    columns are kept.
    """
    if df is None or df.empty:
        return None
    labels = {str(x) for x in labels}
    cols = [c for c in df.columns if str(c).lower() in SUBJECT_COLUMNS] or [df.columns[0]]
    col = cols[0]
    ids = [subject_label(v) for v in df[col]]
    if not labels or sum(i in labels for i in ids) < max(1, len(ids) / 2):
        return None
    out = df.drop(columns=[col]).copy()
    out.index = pd.Index(ids, name="participant")
    out = out.loc[:, [c for c in out.columns if str(c).lower() not in SUBJECT_COLUMNS]]
    num = out.apply(pd.to_numeric, errors="coerce")
    num = num.loc[:, num.notna().any()]
    num = num.loc[:, [c for c in num.columns if str(c).lower() not in ("group", "session", "age", "sex")]]
    return num if num.shape[1] else None


def _collect_metric(root: Path, analysis: str, metric: str, path: Path, labels, problems: list,
                    contrasts=()) -> MetricResult:
    """One group folder: its contrasts' files and ROI tables through ``group_path``, then every other file."""
    from ..derivatives import CONTRAST_MAPS, group_path, sidecar_path

    res = MetricResult(analysis=analysis, metric=metric, path=path)
    claimed = set()

    def find(kind, c=None):
        f = group_path(root, analysis, metric or None, c, kind)
        if f.is_file():
            claimed.update({f.name, sidecar_path(f).name})
            return f
        return None

    for c in contrasts:
        cr = ContrastResult(c)
        for kind in CONTRAST_MAPS:
            f = find(kind, c)
            if f is not None and kind in _CONTRAST_ATTR:
                setattr(cr, _CONTRAST_ATTR[kind], f)
            elif f is not None:
                cr.extra[kind] = f
        if cr.logp is not None and sidecar_path(cr.logp).is_file():
            cr.meta = _read_json(sidecar_path(cr.logp), problems)
        f = find("clusters", c)
        if f is not None:
            cr.clusters_path, cr.clusters = f, read_tsv(f, problems)
        if cr.tstat or cr.tfce or cr.logp or cr.extra or cr.clusters_path:
            res.contrasts[c] = cr
    for kind in ("rois", "correlations"):
        f = find(kind)
        if f is not None:
            setattr(res, kind, read_tsv(f, problems))
    for kind in _MASK_KINDS:
        find(kind)
    for f in sorted(path.iterdir()):
        if not f.is_file() or f.name.startswith(".") or f.name in claimed:
            continue
        name = f.name
        if name.endswith(".tsv"):
            df = read_tsv(f, problems)
            if df is None:
                continue
            vals = per_subject_values(df, labels) if res.values is None else None
            if vals is not None:
                res.values, res.values_name = vals, name
            else:
                res.tables[name] = df
        elif name.endswith(".png"):
            res.pngs.append(f)
        elif name.endswith((".nii", ".nii.gz")):
            res.maps.append(f)
        elif name.endswith(".npy"):
            try:
                arr = np.load(f, allow_pickle=False)
                if arr.ndim == 2 and arr.shape[0] == arr.shape[1] and arr.shape[0] > 1:
                    res.arrays[name] = arr
            except Exception as exc:
                problems.append(f"{f}: cannot read array ({exc})")
        elif name.endswith(".json"):
            res.sidecars[name] = _read_json(f, problems)
    return res


def find_ground_truth(output_dir: Path, run_info: dict) -> Path | None:
    """The simulator's ``derivatives/ground_truth`` folder of the input BIDS dataset, if any."""
    cands = []
    if run_info.get("bids_dir"):
        cands.append(Path(run_info["bids_dir"]) / "derivatives" / "ground_truth")
    cands += [output_dir.parent / "bids" / "derivatives" / "ground_truth", output_dir / "ground_truth"]
    for c in cands:
        if (c / "effects.tsv").is_file():
            return c
    return None


def collect(output_dir: str | Path, ground_truth_dir: str | Path | None = None) -> ReportData:
    """Read every report input found in ``output_dir`` into a :class:`ReportData`."""
    out = Path(output_dir)
    data = ReportData(output_dir=out)
    p = data.problems
    if (out / "study.resolved.yaml").is_file():
        data.study = _read_study(out / "study.resolved.yaml", p)
    if (out / "participants.tsv").is_file():
        data.participants = _participants(out / "participants.tsv", p)
    if (out / "logs" / "run_info.json").is_file():
        data.run_info = _read_json(out / "logs" / "run_info.json", p)
    from ..derivatives import group_path

    if group_path(out, kind="group_summary").is_file():
        data.group_summary = _read_json(group_path(out, kind="group_summary"), p)

    for f in sorted(out.glob("sub-*/sub-*_desc-hfsmri_summary.json")) + \
            sorted(out.glob("sub-*/ses-*/sub-*_desc-hfsmri_summary.json")):
        s = _read_json(f, p)
        if s:
            s.setdefault("subject", subject_label(f.name.split("_")[0]))
            data.summaries.append(s)
    for f in sorted(out.glob("sub-*/**/figures/*.png")):
        sub = subject_label(f.relative_to(out).parts[0])
        ses = next((x[4:] for x in f.relative_to(out).parts if x.startswith("ses-")), None)
        data.qc_figures.append((sub, ses, f))

    labels = list(data.participants.index) if data.participants is not None else \
        [subject_label(s.get("subject", "")) for s in data.summaries]
    from ..stats.design import contrast_names

    contrasts = contrast_names(data.study.get("clinical") or [], data.study.get("sessions"))
    group = group_path(out, kind="folder")
    if group.is_dir():
        for adir in sorted(d for d in group.iterdir() if d.is_dir()):
            for mdir in sorted(d for d in adir.iterdir() if d.is_dir()):
                data.results.append(_collect_metric(out, adir.name, mdir.name, mdir, labels, p, contrasts))
            if any(f.is_file() and f.suffix in (".tsv", ".png", ".npy") for f in adir.iterdir()):
                # tables written at the analysis level (e.g. group/graph/global_metrics.tsv)
                data.results.append(_collect_metric(out, adir.name, "", adir, labels, p, contrasts))

    gt = Path(ground_truth_dir) if ground_truth_dir else find_ground_truth(out, data.run_info)
    if gt is not None and (gt / "effects.tsv").is_file():
        data.ground_truth_dir = gt
        data.effects = read_tsv(gt / "effects.tsv", p)
    return data
