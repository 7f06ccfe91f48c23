"""The group level: one runner for every analysis, driven by :mod:`hfsmri.analyses`.

:func:`run_stage` (what :func:`hfsmri.pipeline.run_group_level` calls per participant stage),
:func:`run_analysis` and :func:`run_metric` in :mod:`hfsmri.group.runner`; participant selection
and reading in :mod:`hfsmri.group.inputs`; writing in :mod:`hfsmri.group.write`. See
docs/architecture.md.
"""
from .runner import MetricData, run_analysis, run_metric, run_stage

__all__ = ["MetricData", "run_analysis", "run_metric", "run_stage"]
