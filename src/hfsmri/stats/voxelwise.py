"""Voxel-wise group inference, no I/O: data, mask and design in, one :class:`GroupResult` per contrast out.

:func:`voxelwise` runs the permutation GLM (:func:`hfsmri.stats.glm.permuted_glm`; Freedman–Lane or
sign flipping, TFCE, max-statistic FWE) for every contrast of a design. A contrast and its negation
(``patient-gt-control`` / ``patient-lt-control``) share one permutation run: the second is the
negative tail of the first (identical to running it alone with the same permutations). Each result
holds, over the in-mask voxels (C order of the mask): the t map, the TFCE map of the contrast's
positive tail, the −log10 p maps (``fwe`` = primary inference: TFCE when ``tfce`` else voxel max-t;
``voxelfwe``, ``uncorrected``, ``fdr`` and, when cluster inference ran, ``clusterfwe``), the cluster
table of ``FWE p < alpha`` (:func:`hfsmri.stats.clusters.cluster_table`) and a JSON-able description
(design, permutations, settings) for the sidecars. Writing is the caller's
(:mod:`hfsmri.group.write`). Each result also keeps its primary statistic, the null of its maximum
and the key of its permutation set, from which :mod:`hfsmri.stats.family` computes family-wise p
across contrasts and metrics.

Minimum-information rules: clusters smaller than ``min_cluster_voxels`` stay in the cluster table
with ``below_min_voxels`` = True (they are not findings); ``variance_smoothing_mm`` (FWHM, mm)
smooths the residual variance of t as FSL randomise ``-v`` (for small df).

The permutation executor and the harmoniser are injected: ``permute`` (default the local
:func:`~hfsmri.stats.glm.permuted_glm`; the group runner passes the Dask one with ``--scheduler``)
and ``harmonise`` (e.g. :func:`hfsmri.harmonize.harmonize_for_design`: ComBat on the data of a
design whose ``info["harmonize"]`` asks for it; a design that asks for ComBat without a harmoniser
is an error).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DesignError, InputDataError
from .clusters import cluster_table
from .glm import permuted_glm
from .tfce import SETTINGS
from .tfce import tfce as tfce_map

#: FWHM of a Gaussian in units of its standard deviation (2·sqrt(2·ln 2))
FWHM_PER_SD = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: −log10 p maps of a result besides the primary ``fwe`` one
EXTRA_LOGP = ("voxelfwe", "uncorrected", "fdr", "clusterfwe", "fwecontrasts", "fwemetrics")


@dataclass
class GroupResult:
    """Inference of one contrast (values over the in-mask voxels, in the mask's C order)."""

    contrast: str
    t: np.ndarray
    tfce: np.ndarray
    logp: dict                      # "fwe" (primary), "voxelfwe", "uncorrected", "fdr"[, "clusterfwe"]
    clusters: pd.DataFrame
    meta: dict = field(default_factory=dict)
    stat: np.ndarray | None = None       # primary statistic (TFCE when used, else t) of the FWE inference
    null_max: np.ndarray | None = None   # its maximum per permutation (identity first)
    perm_key: str | None = None          # permutation set (hfsmri.stats.family combines equal keys)
    sig: np.ndarray | None = None        # in-mask voxels of the cluster table (FWE p < alpha, t > 0)


def _logp(p: np.ndarray) -> np.ndarray:
    return -np.log10(np.clip(p, 1e-300, 1.0))


def pair_contrasts(design, wanted=None):
    """``[(vector, [(name, sign), ...])]``: each contrast grouped with its negation."""
    runs = []
    for name, vec in design.contrasts.items():
        if wanted is not None and name not in wanted:
            continue
        vec = np.asarray(vec, dtype=float)
        for run in runs:
            if np.allclose(run[0], vec):
                run[1].append((name, 1.0))
                break
            if np.allclose(run[0], -vec):
                run[1].append((name, -1.0))
                break
        else:
            runs.append((vec, [(name, 1.0)]))
    return runs


def harmonised(Y, design, harmonise):
    """``(Y, record)``: ``Y`` through ``harmonise`` (the record goes to the sidecars)."""
    if harmonise is not None:
        return harmonise(Y, design)
    if ((getattr(design, "info", None) or {}).get("harmonize") or {}).get("method") == "combat":
        raise DesignError("the design asks for ComBat harmonisation but no harmoniser was given", field="harmonize")
    return Y, None


def voxelwise(Y, mask, design, *, affine, n_perm: int = 5000, tfce: bool = True, alpha: float = 0.05,
              cluster_forming_p: float | None = 0.001, random_state: int = 0, tfce_setting: str = "3d",
              contrasts=None, permute=None, harmonise=None, min_cluster_voxels: int = 1,
              variance_smoothing_mm: float = 0.0) -> list[GroupResult]:
    """Permutation GLM of ``Y`` (n_subjects, n_in_mask) in ``design.subjects`` order.

    ``mask``: 3D bool array (the voxels of ``Y``, for TFCE and clusters); ``affine``: its grid (MNI
    mm of cluster peaks); ``contrasts``: subset of ``design.contrasts`` (default all);
    ``min_cluster_voxels``: clusters smaller than this are flagged ``below_min_voxels`` in the table;
    ``variance_smoothing_mm``: FWHM (mm) of the variance smoothing of t (0: none). Returns the
    results in the order the contrasts are run (each contrast followed by its negation).
    """
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or Y.shape != (len(design.subjects), int(mask.sum())):
        raise InputDataError(f"data must be ({len(design.subjects)} subjects, {int(mask.sum())} in-mask voxels), "
                             f"got shape {Y.shape}")
    bad = ~np.all(np.isfinite(Y), axis=1)
    if bad.any():
        raise InputDataError(f"non-finite values in the maps of subject(s) "
                             f"{['sub-' + str(s) for s, b in zip(design.subjects, bad) if b]}")
    Y, harmonization = harmonised(Y, design, harmonise)
    permute = permute or permuted_glm
    setting = SETTINGS[tfce_setting]
    out = []
    extra = {}
    if variance_smoothing_mm and float(variance_smoothing_mm) > 0:
        vox = np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))
        extra["variance_smoothing"] = tuple(float(variance_smoothing_mm) / FWHM_PER_SD / vox)
    for vec, members in pair_contrasts(design, None if contrasts is None else set(contrasts)):
        res = permute(Y, design, vec, n_perm=int(n_perm), tfce=bool(tfce), mask=mask, random_state=int(random_state),
                      tfce_setting=tfce_setting, cluster_forming_p=cluster_forming_p, **extra)
        for name, sign in members:
            tail = res.pos if sign > 0 else res.neg
            t_c = sign * res.t
            p_main = tail.p_fwe_tfce if tfce else tail.p_fwe_t
            t3 = np.zeros(mask.shape)
            t3[mask] = t_c
            if tfce:
                tf = tail.tfce
            else:  # observed map only (no TFCE null when the study does not use TFCE)
                tf = tfce_map(t3, mask, h=setting["h"], e=setting["e"], connectivity=setting["connectivity"])[mask]
            logp = {"fwe": _logp(p_main), "voxelfwe": _logp(tail.p_fwe_t), "uncorrected": _logp(tail.p_unc),
                    "fdr": _logp(tail.p_fdr)}
            if tail.p_fwe_extent is not None:
                logp["clusterfwe"] = _logp(tail.p_fwe_extent)
            p3 = np.ones(mask.shape)
            p3[mask] = p_main
            sig = mask & (p3 < alpha) & (t3 > 0)
            table = cluster_table(t3, sig, p3, affine, connectivity=setting["connectivity"])
            table["below_min_voxels"] = table["n_voxels"] < int(min_cluster_voxels) if len(table) else \
                pd.Series(dtype=bool)
            meta = {
                "Contrast": name, "ContrastVector": [float(x) for x in design.contrasts[name]],
                "DesignColumns": list(design.columns), "Subjects": list(design.subjects),
                "NSubjects": len(design.subjects), "FlippedSubjects": list(design.flipped),
                "DroppedSubjects": dict(design.dropped), "DesignInfo": dict(design.info),
                "Inference": "TFCE max-statistic FWE" if tfce else "voxel max-t FWE",
                "PermutationMethod": "Freedman-Lane" if res.scheme == "permute" else "sign flipping (Freedman-Lane)",
                "NPermutations": int(n_perm), "NNull": res.n_null, "Exact": res.exact,
                "RandomSeed": int(random_state), "DegreesOfFreedom": int(res.df),
                "TFCE": {"H": setting["h"], "E": setting["e"], "connectivity": setting["connectivity"],
                         "dh": tail.tfce_dh, "dh_mode": "fixed from the unpermuted map (randomise)",
                         "setting": tfce_setting},
                "Alpha": alpha, "ClusterFormingP": cluster_forming_p,
                "ClusterFormingT": res.cluster_threshold, "ClusterConnectivity": setting["connectivity"],
                "MinClusterVoxels": int(min_cluster_voxels),
                "VarianceSmoothingFWHMmm": float(variance_smoothing_mm or 0.0),
            }
            if harmonization is not None:
                meta["Harmonization"] = harmonization
            out.append(GroupResult(name, t_c, tf, logp, table, meta, stat=tail.tfce if tfce else t_c,
                                   null_max=tail.null_max_tfce if tfce else tail.null_max_t,
                                   perm_key=res.settings.get("perm_key"), sig=sig[mask]))
    return out
