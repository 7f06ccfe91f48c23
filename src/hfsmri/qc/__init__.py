"""Participant-level quality control: image-quality metrics (IQMs), QC figures, the QC table.

Modules (docs/qc.md has the definitions, units and measured values):

* :mod:`~hfsmri.qc.structural`, :mod:`~hfsmri.qc.functional`, :mod:`~hfsmri.qc.diffusion`: the
  metrics as MRIQC defines them (pure numpy, no I/O): T1w SNR / CNR / CJV / EFC / FBER / INU;
  BOLD tSNR, standardised DVARS, mean FD, scrubbed fraction, GCOR and the carpet matrix; DWI b0 SNR,
  slice-dropout outliers and motion.
* :mod:`~hfsmri.qc.figures`: figure names (one namer, through ``Derivatives``) and drawing (small
  palette PNGs in ``sub-X/[ses-Y/]figures/``).
* :mod:`~hfsmri.qc.record`: the hooks the participant stages call at their end with the arrays
  they hold; they write ``..._desc-iqm_stats.tsv`` per modality and the figures.
* :mod:`~hfsmri.qc.table`: :func:`collect` (one row per participant x session x modality, fixed
  columns with units) and :func:`flag_outliers` (direction-aware robust z with absolute bounds).
"""
from __future__ import annotations

from .table import COLUMNS, collect, flag_outliers

__all__ = ["COLUMNS", "collect", "flag_outliers"]
