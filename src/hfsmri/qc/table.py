"""The participant QC table: its columns (one owner), the reader and the outlier flags.

:func:`collect` reads every participant IQM table (``sub-X/[ses-Y/]<datatype>/...desc-iqm_stats.tsv``,
written by :mod:`hfsmri.qc.record`) into one DataFrame: one row per participant x session x
modality (``T1w``, ``bold``, ``dwi``), the columns :data:`ID_COLUMNS` then :data:`COLUMNS` in that
order (a metric of another modality is NaN), ``session`` = "n/a" for cross-sectional data. No
timings, no paths. The group level, the report and the QC rules of study.yaml use this table.

:func:`flag_outliers` flags image-quality numbers only, direction-aware (low SNR / tSNR / CNR /
Dice are bad; high FD / CJV / EFC / outlier fractions are bad), within each modality:

* robust z = (x - median) / (1.4826 MAD) beyond ``z`` (3.5, Iglewicz & Hoaglin) on the bad side,
  with >= ``min_n`` (5) values, *and* a deviation from the median of at least ``rel`` x |median|
  (so a near-constant column, e.g. Dice 0.975-0.985, flags nothing); and never when the value is on
  the good side of the metric's absolute ``ok`` bound (e.g. mean FD <= 0.2 mm, Dice >= 0.90);
* always when the value is beyond the metric's ``fail`` bound (e.g. mean FD > 0.5 mm, Power
  et al. 2012's gross-motion level; Dice < 0.80), whatever the group looks like.
Metrics with ``bad = None`` (e.g. the per-tissue SNRs, GM Dice) are in the table but never flagged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["Metric", "COLUMNS", "ID_COLUMNS", "MODALITIES", "modality_columns", "column_sidecar", "collect",
           "flag_outliers", "IQM_GLOB"]


@dataclass(frozen=True)
class Metric:
    """One QC column: its modality, unit, meaning, and how it is flagged (module doc)."""

    modality: str
    unit: str
    description: str
    bad: str | None = None      # "low" | "high" | None (never flagged)
    ok: float | None = None     # never flagged on the good side of this value
    fail: float | None = None   # always flagged beyond this value
    rel: float = 0.0            # minimum |x - median| / |median| for a robust-z flag


ID_COLUMNS = ("participant_id", "session", "modality")
MODALITIES = ("T1w", "bold", "dwi")

#: the fixed column set, in table order (definitions: hfsmri.qc.structural / functional / diffusion)
COLUMNS: dict[str, Metric] = {
    # T1w (MRIQC IQMs on the N4-corrected whole-head T1w in native space)
    "snr_csf": Metric("T1w", "ratio", "SNR of CSF: median / (SD sqrt(n/(n-1))), probability-weighted"),
    "snr_gm": Metric("T1w", "ratio", "SNR of GM (as snr_csf)"),
    "snr_wm": Metric("T1w", "ratio", "SNR of WM (as snr_csf)"),
    "snr_total": Metric("T1w", "ratio", "mean of the CSF, GM and WM SNRs (MRIQC snr_total)", "low", rel=0.10),
    "cnr": Metric("T1w", "ratio", "|median WM - median GM| / sqrt(SD_air^2 + SD_GM^2 + SD_WM^2) (MRIQC cnr)",
                  "low", rel=0.10),
    "cjv": Metric("T1w", "ratio", "(MAD_WM + MAD_GM) / |median WM - median GM| (MRIQC cjv)", "high", rel=0.10),
    "efc": Metric("T1w", "ratio 0-1", "entropy focus criterion / its maximum (MRIQC efc)", "high", rel=0.05),
    "fber": Metric("T1w", "ratio", "median energy in the head / median energy in the air (MRIQC fber; -1: no "
                                   "signal outside the head)", "low", rel=0.20),
    "inu_range": Metric("T1w", "ratio", "P95 - P5 of the N4 bias field (median 1) in the brain (MRIQC inu_range)",
                        "high", rel=0.20),
    "t1w_dice": Metric("T1w", "Dice 0-1", "Dice of the T1w brain mask warped to MNI with the template brain mask "
                                          "(structural stage)", "low", ok=0.90, fail=0.80),
    "gm_dice": Metric("T1w", "Dice 0-1", "Dice of the GM (p >= 0.5) warped to MNI with the template GM "
                                         "(structural stage)"),
    # BOLD
    "tsnr": Metric("bold", "ratio", "median over the brain mask of mean / SD of the linearly detrended series",
                   "low", rel=0.10),
    "dvars_std": Metric("bold", "ratio", "mean standardised DVARS (Nichols 2013; ~1 for clean data)", "high",
                        rel=0.10),
    "gcor": Metric("bold", "correlation", "global correlation of the detrended series, no global-signal "
                                          "regression (Saad et al. 2013)", "high", rel=0.50),
    "mean_fd": Metric("bold", "mm", "mean Power framewise displacement over the n - 1 frame-to-frame changes",
                      "high", ok=0.20, fail=0.50),
    "scrubbed": Metric("bold", "fraction 0-1", "fraction of volumes with FD above the scrubbing threshold "
                                               "(preprocessing.func.fd_scrub_threshold)", "high", ok=0.10, fail=0.50),
    # DWI
    "b0_snr": Metric("dwi", "ratio", "mean b0 signal in the brain / noise SD of one b0 (b0 repeats, else the "
                                     "background)", "low", rel=0.10),
    "dwi_outlier": Metric("dwi", "fraction 0-1", "fraction of diffusion-weighted volumes with a signal-dropout "
                                                 "slice", "high", ok=0.05, fail=0.20),
    "dwi_outlier_slices": Metric("dwi", "fraction 0-1", "fraction of checked (volume, slice) pairs that are "
                                                        "dropout outliers"),
    "dwi_motion": Metric("dwi", "mm", "mean displacement of the volumes from the mean b0 at 50 mm radius "
                                      "(motion correction; n/a when it did not run)", "high", ok=1.0, fail=3.0),
}

IQM_GLOB = ("sub-*/*/sub-*_desc-iqm_stats.tsv", "sub-*/ses-*/*/sub-*_desc-iqm_stats.tsv")


def modality_columns(modality: str) -> list[str]:
    """The metric columns of ``modality`` (``T1w``, ``bold`` or ``dwi``), in table order."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose from {MODALITIES}")
    return [c for c, m in COLUMNS.items() if m.modality == modality]


def column_sidecar(columns) -> dict:
    """BIDS TSV sidecar entries ``{column: {"Description", "Units"}}`` for ``columns``."""
    side = {"participant_id": {"Description": "participant label"},
            "session": {"Description": "session label (n/a: cross-sectional)"},
            "modality": {"Description": "T1w, bold or dwi"}}
    for c in columns:
        if c in COLUMNS:
            side[c] = {"Description": COLUMNS[c].description, "Units": COLUMNS[c].unit}
    return side


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in ID_COLUMNS else float)
                         for c in (*ID_COLUMNS, *COLUMNS)})


def collect(output_dir) -> pd.DataFrame:
    """One row per participant x session x modality with the fixed columns (module doc), sorted by
    participant, session and modality (T1w, bold, dwi). An empty table when none was written.

    Raises :class:`hfsmri.errors.HfsmriError` naming a file that cannot be read or lacks the id
    columns.
    """
    from ..errors import HfsmriError

    root = Path(output_dir)
    files = sorted({p for g in IQM_GLOB for p in root.glob(g)})
    rows = []
    for f in files:
        try:
            df = pd.read_csv(f, sep="\t", na_values=["n/a"], keep_default_na=False)
        except Exception as exc:  # pandas raises many types for broken files
            raise HfsmriError(f"cannot read the QC table ({type(exc).__name__}: {exc})", path=f) from None
        missing = [c for c in ("participant_id", "modality") if c not in df.columns]
        if missing or df.empty:
            raise HfsmriError(f"not a QC table: {'no rows' if df.empty else f'no column {missing}'}", path=f)
        rows.append(df)
    if not rows:
        return _empty()
    t = pd.concat(rows, ignore_index=True)
    if "session" not in t.columns:
        t["session"] = "n/a"
    t["session"] = t["session"].astype(object).where(t["session"].notna(), "n/a").astype(str)
    for c in COLUMNS:
        t[c] = pd.to_numeric(t[c], errors="coerce") if c in t.columns else np.nan
    t = t[list(ID_COLUMNS) + list(COLUMNS)]
    order = {m: i for i, m in enumerate(MODALITIES)}
    t = t.assign(_m=t["modality"].map(order).fillna(len(order)))
    t = t.sort_values(["participant_id", "session", "_m"], kind="stable").drop(columns="_m")
    return t.reset_index(drop=True)


def flag_outliers(table: pd.DataFrame, z: float = 3.5, min_n: int = 5) -> pd.DataFrame:
    """Flagged cells of a :func:`collect` table (module doc), one row each: ``participant_id``,
    ``session``, ``modality``, ``metric``, ``value``, ``median`` (of that metric in that modality),
    ``robust_z``, ``reason``. Empty (same columns) when nothing is flagged."""
    cols = ["participant_id", "session", "modality", "metric", "value", "median", "robust_z", "reason"]
    out = []
    if table is None or table.empty:
        return pd.DataFrame(columns=cols)
    for name, spec in COLUMNS.items():
        if spec.bad is None or name not in table.columns:
            continue
        sub = table[table["modality"] == spec.modality]
        x = pd.to_numeric(sub[name], errors="coerce")
        fin = x[np.isfinite(x)]
        med = float(fin.median()) if len(fin) else float("nan")
        mad = float(1.4826 * (fin - med).abs().median()) if len(fin) else float("nan")
        sign = -1.0 if spec.bad == "low" else 1.0
        for i, v in x.items():
            if not np.isfinite(v):
                continue
            rz = (v - med) / mad if mad > 0 else (0.0 if v == med else np.inf * np.sign(v - med))
            reason = ""
            if spec.fail is not None and sign * (v - spec.fail) > 0:
                reason = f"{'below' if spec.bad == 'low' else 'above'} the limit {spec.fail:g} {spec.unit}"
            elif (len(fin) >= min_n and sign * rz > z and abs(v - med) >= spec.rel * abs(med)
                  and not (spec.ok is not None and sign * (v - spec.ok) <= 0)):
                reason = f"robust z {rz:+.1f} from the median {med:.4g}"
            if reason:
                r = table.loc[i]
                out.append([r["participant_id"], r["session"], spec.modality, name, float(v), med,
                            float(rz) if np.isfinite(rz) else float("nan"), reason])
    return pd.DataFrame(out, columns=cols)
