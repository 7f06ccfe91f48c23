"""Display units of the report: what a metric's values and statistic maps are in.

:func:`metric_unit` answers for a group result folder ``group/<analysis>/<metric>/`` (the metric
names of :data:`hfsmri.analyses.ANALYSES`; derived metrics such as ``ic-3`` or ``seed-…`` by their
analysis). The units follow what the participant stages write: ROI volumes in ml (``volume_ml``),
thickness in mm (``thickness_mm``), MD/AD/RD in mm²/s (b-values in s/mm²), FA unitless, ALFF in the
BOLD signal's arbitrary units, fALFF a ratio, ReHo / degree centrality standardised (z), VMHC and
seed FC Fisher z, ICA dual-regression stage-2 amplitudes in arbitrary units, graph AUCs unitless.
"""
from __future__ import annotations

from ..analyses import METRIC_UNITS


def metric_unit(analysis: str, metric: str | None) -> str:
    """Unit of the values of ``group/<analysis>/<metric>/`` ("" when unknown), from
    :data:`hfsmri.analyses.METRIC_UNITS` (the one owner)."""
    m = str(metric or "").lower()
    return METRIC_UNITS.get((analysis, m)) or METRIC_UNITS.get((analysis, None)) or ""


def stat_label(kind: str) -> str:
    """Colour-bar label of a statistic map (``t`` or ``logp``)."""
    return {"t": "t statistic (|t|, significant voxels)", "logp": "−log10 p (FWE)"}.get(kind, kind)
