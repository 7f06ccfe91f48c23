"""Display units of the report (one owner): what a metric's values and statistic maps are in.

:func:`metric_unit` answers for a group result folder ``group/<analysis>/<metric>/`` (the metric
names of :data:`hfsmri.analyses.ANALYSES`; derived metrics such as ``ic-3`` or ``seed-…`` by their
analysis). The units follow what the participant stages write: ROI volumes in ml (``volume_ml``),
thickness in mm (``thickness_mm``), MD/AD/RD in mm²/s (b-values in s/mm²), FA unitless, ALFF in the
BOLD signal's arbitrary units, fALFF a ratio, ReHo / degree centrality standardised (z), VMHC and
seed FC Fisher z, ICA dual-regression stage-2 amplitudes in arbitrary units, graph AUCs unitless.
"""
from __future__ import annotations

#: (analysis, metric) -> unit; ``None`` metric: every metric of the analysis
UNITS = {
    ("vbm", "gm"): "modulated GM (ml/ml, unitless)",
    ("thickness", None): "mm",
    ("roi_volumes", None): "ml",
    ("reho", None): "z (standardised KCC)",
    ("alff", "alff"): "z (standardised ALFF)",
    ("alff", "falff"): "z (standardised fALFF)",
    ("dc", None): "z (standardised degree)",
    ("vmhc", None): "Fisher z",
    ("seed_fc", None): "Fisher z",
    ("ica", None): "dual-regression amplitude (a.u.)",
    ("graph", None): "AUC (unitless)",
}
#: diffusion metrics (dti, tbss, dwi_rois) by metric
DIFFUSION = {"fa": "FA (unitless, 0–1)", "md": "mm²/s", "ad": "mm²/s", "rd": "mm²/s"}


def metric_unit(analysis: str, metric: str | None) -> str:
    """Unit of the values of ``group/<analysis>/<metric>/`` ("" when unknown)."""
    m = str(metric or "").lower()
    if m in DIFFUSION and analysis in ("dti", "tbss", "dwi_rois"):
        return DIFFUSION[m]
    return UNITS.get((analysis, m)) or UNITS.get((analysis, None)) or ""


def stat_label(kind: str) -> str:
    """Colour-bar label of a statistic map (``t`` or ``logp``)."""
    return {"t": "t statistic (|t|, significant voxels)", "logp": "−log10 p (FWE)"}.get(kind, kind)
