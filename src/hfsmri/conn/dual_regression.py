"""Dual regression (Beckmann et al. 2009; Nickerson et al. 2017), as FSL ``dual_regression``.

Stage 1 (spatial regression): each volume of a subject's data is regressed on the group maps
(both demeaned over voxels, FSL ``fsl_glm --demean``) -> subject time courses (T x K).
Stage 2 (temporal regression): each voxel's time course is regressed on the subject time courses
(both demeaned over time; with ``variance_normalise`` the time courses are first scaled to unit
standard deviation, FSL ``--des_norm``, so the maps reflect the amplitude as well as the shape of
each network) -> subject spatial maps (K x V), regression coefficients in the data's units per
unit (normalised) time course. All K components are fitted jointly in both stages.
"""
from __future__ import annotations

import numpy as np

from hfsmri.errors import InputDataError


def _lstsq(design: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of ``data`` (n x m) on ``design`` (n x k) -> (k x m)."""
    coef, *_ = np.linalg.lstsq(design, data, rcond=None)
    return coef


def dual_regression(data: np.ndarray, group_maps: np.ndarray, variance_normalise: bool = True):
    """Subject time courses and spatial maps from group ICA maps.

    Parameters
    ----------
    data : (T, V) subject data inside the analysis mask (time x voxels).
    group_maps : (K, V) group component maps on the same voxels.
    variance_normalise : scale the stage-1 time courses to unit SD before stage 2 (FSL des_norm).

    Returns
    -------
    timecourses : (T, K) stage-1 time courses (before normalisation)
    maps : (K, V) stage-2 subject maps
    """
    Y = np.asarray(data, dtype=np.float64)
    G = np.asarray(group_maps, dtype=np.float64)
    if Y.ndim != 2 or G.ndim != 2 or Y.shape[1] != G.shape[1]:
        raise InputDataError(f"data {Y.shape} (time x voxels) and group maps {G.shape} (components x voxels) "
                             "must share the voxel axis")
    if G.shape[0] >= G.shape[1] or G.shape[0] >= Y.shape[0]:
        raise InputDataError(f"{G.shape[0]} components need more voxels ({G.shape[1]}) and volumes ({Y.shape[0]})")
    # stage 1: per volume, voxels are the observations
    Gd = (G - G.mean(axis=1, keepdims=True)).T  # V x K
    Yd = (Y - Y.mean(axis=1, keepdims=True)).T  # V x T
    tc = _lstsq(Gd, Yd).T  # T x K
    # stage 2: per voxel, time points are the observations
    X = tc - tc.mean(axis=0, keepdims=True)
    if variance_normalise:
        sd = X.std(axis=0, ddof=1)
        X = X / np.where(sd > 0, sd, 1.0)
    Yt = Y - Y.mean(axis=0, keepdims=True)
    maps = _lstsq(X, Yt)  # K x V
    return tc, maps
