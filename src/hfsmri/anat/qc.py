"""Quality control of the structural stage: overlap scores, registration overlay, outlier flags.

The T1w -> MNI overlay is drawn by :func:`hfsmri.qc.figures.registration_overlay` (re-exported
here); the image-quality metrics and the study-wide QC table live in :mod:`hfsmri.qc`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..qc.figures import registration_overlay  # noqa: F401  (one owner of the QC figures)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap 2|A∩B|/(|A|+|B|) of two boolean masks (1.0 when both are empty)."""
    a = np.asarray(a) > 0
    b = np.asarray(b) > 0
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    s = int(a.sum()) + int(b.sum())
    return float(2.0 * np.logical_and(a, b).sum() / s) if s else 1.0


def flag_outliers(table: pd.DataFrame, columns=None, z: float = 3.5, low_only=()) -> pd.DataFrame:
    """Robust outlier flags: |x - median| / (1.4826 MAD) > ``z`` per column.

    Returns a copy of ``table`` with a boolean ``qc_outlier`` column and a ``qc_reason`` string
    naming the offending columns (columns listed in ``low_only``, e.g. Dice, are flagged only
    when low).
    """
    cols = list(columns) if columns is not None else [c for c in table.columns
                                                      if pd.api.types.is_numeric_dtype(table[c])]
    out = table.copy()
    reasons = pd.Series([""] * len(out), index=out.index, dtype=object)
    for col in cols:
        x = pd.to_numeric(out[col], errors="coerce")
        med = np.nanmedian(x) if x.notna().any() else np.nan
        mad = 1.4826 * np.nanmedian(np.abs(x - med)) if x.notna().any() else np.nan
        if not np.isfinite(mad) or mad == 0:
            continue
        rz = (x - med) / mad
        bad = rz < -z if col in low_only else rz.abs() > z
        for i in out.index[bad.fillna(False).to_numpy()]:
            reasons[i] = (reasons[i] + ";" if reasons[i] else "") + f"{col} (robust z {rz[i]:.1f})"
    out["qc_outlier"] = reasons != ""
    out["qc_reason"] = reasons
    return out
