"""Nuisance regressors and motion QC numbers (pure numpy, no I/O except :func:`load_fmriprep_confounds`).

Conventions
-----------
* Motion parameters: array (n_volumes, 6) ordered ``trans_x, trans_y, trans_z`` (mm) then
  ``rot_x, rot_y, rot_z`` (radians) — fMRIPrep's column order and units.
* Friston-24 (Friston et al. 1996, as DPABI): the 6 parameters, their values one volume earlier
  (first volume: 0), and the squares of both (6 + 6 + 6 + 6 = 24 columns).
* Framewise displacement (Power et al. 2012): ``FD_t = sum |d trans| + r * sum |d rot|`` with
  ``r = 50 mm`` (head radius), ``FD_0 = 0``; units mm.
* DVARS (Power et al. 2012): root mean square over in-mask voxels of the volume-to-volume change,
  after scaling the data so that the in-mask grand mean is 1000 (so DVARS is comparable between
  scanners); ``DVARS_0 = 0``.
* tSNR: temporal mean / temporal standard deviation (ddof 1) per voxel; the QC value is its
  median in the mask.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hfsmri.errors import InputDataError

__all__ = ["MOTION_COLUMNS", "friston24", "framewise_displacement", "dvars", "tsnr",
           "mean_signal", "load_fmriprep_confounds"]

MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


def _motion(motion) -> np.ndarray:
    m = np.asarray(motion, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != 6:
        raise InputDataError(f"motion parameters must be (n_volumes, 6), got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise InputDataError("motion parameters contain NaN or infinite values")
    return m


def friston24(motion) -> np.ndarray:
    """Friston-24 expansion ``[R, R(t-1), R^2, R(t-1)^2]`` of (n, 6) motion parameters -> (n, 24)."""
    m = _motion(motion)
    lag = np.vstack([np.zeros((1, 6)), m[:-1]])
    return np.hstack([m, lag, m ** 2, lag ** 2])


def framewise_displacement(motion, radius_mm: float = 50.0) -> np.ndarray:
    """Power FD (mm) per volume from (n, 6) motion parameters (translations mm, rotations rad)."""
    m = _motion(motion)
    d = np.abs(np.diff(m, axis=0))
    fd = d[:, :3].sum(axis=1) + radius_mm * d[:, 3:].sum(axis=1)
    return np.concatenate([[0.0], fd])


def dvars(ts2d, grand_mean: float = 1000.0) -> np.ndarray:
    """DVARS per volume of (n_volumes, n_voxels) in-mask data, after grand-mean scaling (see module doc)."""
    y = np.asarray(ts2d, dtype=np.float64)
    mu = y.mean()
    if mu == 0 or not np.isfinite(mu):
        scale = 1.0
    else:
        scale = grand_mean / mu
    d = np.diff(y, axis=0) * scale
    return np.concatenate([[0.0], np.sqrt((d ** 2).mean(axis=1))])


def tsnr(ts2d) -> np.ndarray:
    """Temporal SNR (mean / std, ddof 1) of each column of (n_volumes, n_voxels); 0 where std is 0."""
    y = np.asarray(ts2d, dtype=np.float64)
    sd = y.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(sd > 0, y.mean(axis=0) / sd, 0.0)
    return out


def mean_signal(data4d, mask3d) -> np.ndarray:
    """Mean time series (n_volumes,) over the voxels of ``mask3d``."""
    m = np.asarray(mask3d).astype(bool)
    if not m.any():
        raise InputDataError("cannot take a mean signal over an empty mask")
    return np.asarray(data4d)[m].astype(np.float64).mean(axis=0)


def load_fmriprep_confounds(path, global_signal: bool = False) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Read an fMRIPrep ``desc-confounds_timeseries.tsv``.

    Returns ``(regressors, fd, non_steady)``: regressors = Friston-24 from the 6 motion columns +
    ``white_matter`` + ``csf`` (+ ``global_signal``); fd = ``framewise_displacement`` (NaN -> 0;
    computed from the motion columns if absent); non_steady = boolean (n,) of volumes flagged by
    ``non_steady_state_outlier*`` columns.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t", na_values=["n/a", "NaN", ""])
    except Exception as exc:
        raise InputDataError(f"cannot read confounds table ({exc})", path=path) from None
    missing = [c for c in (*MOTION_COLUMNS, "white_matter", "csf") if c not in df.columns]
    if global_signal and "global_signal" not in df.columns:
        missing.append("global_signal")
    if missing:
        raise InputDataError(f"confounds table lacks columns {missing}", path=path)
    motion = df[list(MOTION_COLUMNS)].fillna(0.0).to_numpy(float)
    cols = {f"{c}{s}": v for s, block in (("", 0), ("_lag", 1), ("_power2", 2), ("_lag_power2", 3))
            for c, v in zip(MOTION_COLUMNS, friston24(motion)[:, 6 * block:6 * block + 6].T)}
    reg = pd.DataFrame(cols)
    reg["white_matter"] = df["white_matter"].fillna(0.0).to_numpy(float)
    reg["csf"] = df["csf"].fillna(0.0).to_numpy(float)
    if global_signal:
        reg["global_signal"] = df["global_signal"].fillna(0.0).to_numpy(float)
    if "framewise_displacement" in df.columns:
        fd = df["framewise_displacement"].fillna(0.0).to_numpy(float)
    else:
        fd = framewise_displacement(motion)
    ns_cols = [c for c in df.columns if c.startswith("non_steady_state_outlier")]
    non_steady = df[ns_cols].fillna(0).to_numpy().any(axis=1) if ns_cols else np.zeros(len(df), bool)
    return reg, fd, non_steady
