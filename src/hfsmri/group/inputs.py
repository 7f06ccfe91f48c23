"""Participant selection and reading for the group level; each fault an InputDataError naming the file.

:func:`qc_exclusions` is the subject-selection hook (the study.yaml ``qc:`` decisions of
:mod:`hfsmri.qc.decisions` for the stage's modality; the BOLD QC table with an ``excluded`` column goes
to ``group/``);
:func:`select` gives a metric's participants: in the study, not excluded, with every input the
analysis needs, the metric's own and a value of every extra covariate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..analyses import COVARIATES, QC_TABLES
from ..errors import InputDataError


@dataclass
class Selection:
    """Participants of one metric: ``included`` (study order) and ``excluded`` (label -> reason)."""

    included: list
    excluded: dict = field(default_factory=dict)


def labels(study) -> list[str]:
    return [str(s).removeprefix("sub-") for s in study.participants.index]


def _cache(gctx) -> dict:
    if getattr(gctx, "_group_cache", None) is None:
        gctx._group_cache = {}
    return gctx._group_cache


def read_table(path, what: str = "participant", **read_csv_kwargs) -> pd.DataFrame:
    """A participant TSV read through :func:`hfsmri.derivatives.read_derivative` (integrity checked
    against its sidecar); a missing, damaged or unreadable one is an :class:`InputDataError` naming it."""
    from ..derivatives import read_derivative

    return read_derivative(path, **read_csv_kwargs)


def covariate_values(gctx, name: str, ses) -> dict:
    """participant -> value of an extra covariate (:data:`hfsmri.analyses.COVARIATES`) at a session,
    for the participants whose source table exists (first row)."""
    key = ("covariate", name, ses)
    cache = _cache(gctx)
    if key not in cache:
        cov = COVARIATES[name]
        vals = {}
        for s in labels(gctx.study):
            p = cov.source.path(gctx.out, s, ses)
            if p.exists():
                t = read_table(p, cov.column)
                if len(t) and cov.column in t.columns:
                    vals[s] = float(pd.to_numeric(t[cov.column].iloc[0]))
        cache[key] = vals
    return cache[key]


def qc_exclusions(gctx, stage: str, ses) -> dict:
    """Participants left out of every analysis of ``stage``'s modality: label -> reason.

    The one owner of who is excluded is :mod:`hfsmri.qc.decisions` (study.yaml ``qc:`` rules on the
    participant QC tables; ``preprocessing.func.exclude_high_motion`` sets its ``mean_fd_max``): the
    group level decides once per run (``gctx.qc_decisions``); a bare context decides here."""
    from ..qc.decisions import STAGE_MODALITY, decide

    modality = STAGE_MODALITY.get(stage)
    if modality is None:
        return {}
    key = ("qc", modality, ses)
    cache = _cache(gctx)
    if key not in cache:
        decisions = getattr(gctx, "qc_decisions", None)
        if decisions is None:
            decisions = gctx.qc_decisions = decide(gctx.study, gctx.out)
        members = set(labels(gctx.study))
        excluded = {s: r for s, r in decisions.excluded(modality).items() if s in members}
        cache[key] = excluded
        if modality in QC_TABLES:
            _write_qc_table(gctx, modality, ses, excluded)
    return cache[key]


def _write_qc_table(gctx, modality: str, ses, excluded: dict) -> None:
    from ..derivatives import save_tsv_atomic

    rule = QC_TABLES[modality]
    src = COVARIATES[rule.value].source
    rows = [read_table(p, "QC") for s in labels(gctx.study) if (p := src.path(gctx.out, s, ses)).exists()]
    if rows:
        qc = pd.concat(rows, ignore_index=True)
        qc["excluded"] = [str(r).removeprefix("sub-") in excluded for r in qc["participant_id"].astype(str)]
        save_tsv_atomic(qc, gctx.out.group_path(kind=f"{rule.stage}_qc"))


def select(gctx, stage: str, needs, metric_inputs, covariate_names, ses, res, **entities) -> Selection:
    """Participants of a metric at session ``ses``: in the study, not excluded by a QC rule of the
    stage, having every ``needs`` and ``metric_inputs`` file and a value of every extra covariate."""
    excluded = dict(qc_exclusions(gctx, stage, ses))
    cov = {c: covariate_values(gctx, c, ses) for c in covariate_names}
    included = []
    for s in labels(gctx.study):
        if s in excluded:
            continue
        missing = [i.path(gctx.out, s, ses, res) for i in needs]
        missing += [i.path(gctx.out, s, ses, res, **entities) for i in metric_inputs]
        missing = [p for p in missing if not p.exists()]
        if missing:
            excluded[s] = f"no {missing[0].name}"
        elif any(s not in v for v in cov.values()):
            excluded[s] = "no " + ", ".join(c for c, v in cov.items() if s not in v)
        else:
            included.append(s)
    return Selection(included, excluded)


def covariates(gctx, names, subjects, ses, log=None) -> pd.DataFrame | None:
    """Extra covariates of ``subjects`` (columns ``names``); a covariate declared
    ``drop_if_constant`` that does not vary (e.g. TIV of a simulated study without deformation)
    is left out with a warning."""
    cols = {}
    for n in names:
        v = pd.Series({s: covariate_values(gctx, n, ses)[s] for s in subjects}, dtype=float)
        if COVARIATES[n].drop_if_constant and len(v) and np.isfinite(v).all() and np.ptp(v.to_numpy()) == 0:
            if log is not None:
                log.warning("%s is identical for all %d subjects: not used as a covariate", n, len(v))
            continue
        cols[n] = v
    return pd.DataFrame(cols, index=list(subjects)) if cols else None


def load_map(path, grid=None, what: str = "map") -> np.ndarray:
    """A participant map as stored (dtype kept); ``grid`` = (shape, affine) it must lie on."""
    from ..derivatives import read_derivative

    img = read_derivative(path)  # integrity checked, read completely; a damaged file is an error naming it
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if grid is not None and (data.shape[:3] != tuple(grid[0]) or not np.allclose(img.affine, grid[1], atol=1e-3)):
        raise InputDataError(f"{what} grid {data.shape[:3]} / affine differs from the analysis grid {tuple(grid[0])}",
                             path=path)
    return data


def read_row(path, index: str, value: str) -> pd.Series | None:
    """One participant's ROI values (``value`` column indexed by ``index``), None if no file."""
    if not path.exists():
        return None
    t = read_table(path, "ROI")
    for c in (index, value):
        if c not in t.columns:
            raise InputDataError(f"missing column {c!r}", path=path)
    return pd.Series(t[value].to_numpy(), index=t[index].astype(str).to_numpy())
