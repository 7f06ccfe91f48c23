"""Quality control of the structural stage: overlap scores, registration overlay, outlier flags."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap 2|A∩B|/(|A|+|B|) of two boolean masks (1.0 when both are empty)."""
    a = np.asarray(a) > 0
    b = np.asarray(b) > 0
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    s = int(a.sum()) + int(b.sum())
    return float(2.0 * np.logical_and(a, b).sum() / s) if s else 1.0


def registration_overlay(warped_t1: np.ndarray, template_t1: np.ndarray, template_mask: np.ndarray,
                         path: str | Path, title: str = "", template_gm: np.ndarray | None = None) -> Path:
    """PNG of the subject's T1w resampled to MNI (grey) with template edges (brain outline in red,
    GM/WM boundary in yellow) on three orthogonal slices through the template centre.

    All arrays are on the same MNI grid (RAS voxel order). Written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..derivatives import atomic_path

    w = np.asarray(warped_t1, dtype=float)
    m = np.asarray(template_mask) > 0
    idx = np.argwhere(m)
    c = ((idx.min(0) + idx.max(0)) // 2) if idx.size else np.asarray(w.shape) // 2
    vmax = np.percentile(w[m], 99) if m.any() else w.max()
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.4), facecolor="black")
    views = [(lambda a: a[c[0], :, :].T), (lambda a: a[:, c[1], :].T), (lambda a: a[:, :, c[2]].T)]
    for ax, view in zip(axes, views):
        ax.imshow(view(w), cmap="gray", origin="lower", vmin=0, vmax=vmax, interpolation="nearest")
        ax.contour(view(m.astype(float)), levels=[0.5], colors="red", linewidths=0.7)
        if template_gm is not None:
            ax.contour(view(np.asarray(template_gm, dtype=float)), levels=[0.5], colors="yellow", linewidths=0.4)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, color="white", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, facecolor="black", format="png")
    plt.close(fig)
    return path


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
