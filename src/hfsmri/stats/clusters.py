"""Cluster tables of thresholded (corrected) maps, with peaks, sub-peaks and atlas labels.

A cluster is a connected component (6- or 26-connectivity, the same as the inference) of the
voxels declared significant (e.g. FWE p < alpha in the tested tail). Per cluster: size in voxels
and mm³, the peak (maximum statistic) and centre of mass in world (MNI) mm, the peak statistic,
the smallest corrected p in the cluster, AAL and Harvard–Oxford labels at the peak and the share
of the cluster's voxels per label (top 3). Local maxima (26-neighbourhood) at least
``min_distance_mm`` (8 mm) apart add rows with the same ``cluster_id`` (``is_subpeak=True``), up to
``n_peaks`` (3) rows per cluster including the main peak, as SPM's results table does.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from ..errors import HfsmriError

COLUMNS = ["cluster_id", "n_voxels", "volume_mm3", "peak_x", "peak_y", "peak_z", "peak_stat", "p_fwe",
           "aal_label", "ho_label", "is_subpeak", "com_x", "com_y", "com_z", "aal_shares", "ho_shares"]
ATLASES = {"aal": "aal", "ho": "harvard_oxford"}


def _structure(connectivity: int) -> np.ndarray:
    rank = {6: 1, 18: 2, 26: 3}.get(int(connectivity))
    if rank is None:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity!r}")
    return ndimage.generate_binary_structure(3, rank)


def _atlas_funcs():
    try:
        from ..spatial.atlas import label_at, label_shares
    except Exception as exc:  # pragma: no cover - the atlas module is part of the package
        raise HfsmriError(f"atlas labels unavailable (hfsmri.spatial.atlas could not be imported: {exc}); "
                          "pass atlases=None to build the table without labels") from exc
    return label_at, label_shares


def _fmt_shares(shares) -> str:
    return "; ".join(f"{name or 'unlabelled'}:{share:.2f}" for name, share in shares)


def local_maxima(stat3d: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Voxel indices (m, 3) of local maxima of ``stat3d`` inside ``region`` (26-neighbourhood,
    neighbours outside the region ignored), sorted by decreasing statistic."""
    s = np.where(region, stat3d, -np.inf)
    mx = ndimage.maximum_filter(s, size=3, mode="constant", cval=-np.inf)
    idx = np.argwhere(region & (s >= mx))
    order = np.argsort(-s[tuple(idx.T)], kind="stable")
    return idx[order]


def significant_peak(stat3d: np.ndarray, significant3d: np.ndarray) -> tuple[int, int, int] | None:
    """Voxel index of the headline peak of a result: the largest ``|stat|`` (t, z or TFCE) inside
    the significant set, the first such voxel in C order on exact ties. This is the one rule for
    "the peak" (the cluster table's top row and the report's sentence both use it); the corrected p
    is not used, because many voxels share the smallest permutation p. ``None`` if nothing is
    significant."""
    sig = np.asarray(significant3d, bool)
    if not sig.any():
        return None
    a = np.where(sig, np.abs(np.nan_to_num(np.asarray(stat3d, float), nan=0.0)), -np.inf)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(a)), a.shape))


def cluster_table(stat3d, significant3d, p3d, affine, connectivity: int = 6, n_peaks: int = 3,
                  min_distance_mm: float = 8.0, atlases=("aal", "ho")) -> pd.DataFrame:
    """Table of clusters of ``significant3d`` (see module doc).

    Parameters
    ----------
    stat3d : statistic map (peaks are maxima of this map; pass ``-t`` for a negative tail)
    significant3d : bool map of the significant voxels
    p3d : corrected p map (the cluster's ``p_fwe`` is its minimum; a sub-peak's is its voxel's)
    affine : voxel -> world (MNI mm) affine
    connectivity : 6, 18 or 26
    n_peaks : maximum rows per cluster (main peak + sub-peaks)
    min_distance_mm : minimum distance between reported peaks of a cluster
    atlases : ("aal", "ho") to add labels, or None (label columns left empty)

    Returns
    -------
    DataFrame with :data:`COLUMNS`; clusters numbered 1.. by decreasing size (ties: peak
    statistic); one row per peak.
    """
    stat3d = np.asarray(stat3d, dtype=float)
    sig = np.asarray(significant3d, dtype=bool)
    p3d = np.asarray(p3d, dtype=float)
    affine = np.asarray(affine, dtype=float)
    vox_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    labels, n = ndimage.label(sig, structure=_structure(connectivity))
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype=object if c.endswith(("label", "shares")) else float)
                             for c in COLUMNS})
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    peaks_val = ndimage.maximum(stat3d, labels, index=np.arange(1, n + 1))
    order = sorted(range(n), key=lambda i: (-sizes[i], -peaks_val[i]))
    label_at = label_shares = None
    if atlases:
        label_at, label_shares = _atlas_funcs()
    world = lambda ijk: np.asarray(ijk, float) @ affine[:3, :3].T + affine[:3, 3]  # noqa: E731
    rows = []
    for cid, i in enumerate(order, start=1):
        region = labels == (i + 1)
        cand = local_maxima(stat3d, region)
        chosen = []
        for ijk in cand:
            xyz = world(ijk)
            if all(np.linalg.norm(xyz - world(c)) >= min_distance_mm for c in chosen):
                chosen.append(ijk)
            if len(chosen) >= n_peaks:
                break
        if not chosen:  # flat plateau: fall back to the first maximum
            chosen = [np.argwhere(region & (stat3d == stat3d[region].max()))[0]]
        com = world(np.argwhere(region).mean(axis=0))
        pmin = float(np.nanmin(p3d[region]))
        shares = {}
        if atlases:
            for key in atlases:
                shares[key] = _fmt_shares(label_shares(ATLASES.get(key, key), region, affine, top=3))
        xyz_all = np.array([world(c) for c in chosen])
        labs = {key: (label_at(ATLASES.get(key, key), xyz_all) if atlases else [""] * len(chosen))
                for key in ("aal", "ho")} if atlases else {"aal": [""] * len(chosen), "ho": [""] * len(chosen)}
        for j, (ijk, xyz) in enumerate(zip(chosen, xyz_all)):
            rows.append({
                "cluster_id": cid, "n_voxels": int(sizes[i]), "volume_mm3": float(sizes[i] * vox_mm3),
                "peak_x": float(xyz[0]), "peak_y": float(xyz[1]), "peak_z": float(xyz[2]),
                "peak_stat": float(stat3d[tuple(ijk)]),
                "p_fwe": pmin if j == 0 else float(p3d[tuple(ijk)]),
                "aal_label": labs["aal"][j], "ho_label": labs["ho"][j], "is_subpeak": j > 0,
                "com_x": float(com[0]), "com_y": float(com[1]), "com_z": float(com[2]),
                "aal_shares": shares.get("aal", ""), "ho_shares": shares.get("ho", ""),
            })
    return pd.DataFrame(rows, columns=COLUMNS)
