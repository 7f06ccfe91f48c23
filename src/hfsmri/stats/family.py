"""Family-wise inference across contrasts and metrics, from the same permutations (PALM ``-corrcon``
/ ``-corrmod``; Winkler et al. 2016, Alberton et al. 2020), no I/O.

A *family* is a list of :class:`~hfsmri.stats.voxelwise.GroupResult` (the contrasts of one metric,
or the contrasts of every metric of an analysis). Each result carries its primary statistic per
voxel (``stat``: TFCE when the study uses TFCE, else t) and the null distribution of its maximum
(``null_max``, one value per permutation, the identity first) together with a key of the
permutation set it came from (``perm_key``).

* Results computed with the **same permutations** (same design matrix, seed and number of
  permutations: the two tails of a contrast, the contrasts of one design, and the same design
  applied to several metrics) form one group; its null of the family maximum is, per permutation,
  the maximum over the group's results (``W_b = max_j M_jb``), exactly as PALM. A voxel's family p
  within the group is ``#{b: W_b >= s}/N``.
* Groups with different permutations (e.g. the patient-vs-control design and a correlation design
  within patients, which have different subjects) are combined on the p scale under independence
  (Šidák): ``p = 1 - prod_g (1 - F_g(q))``, ``q`` the voxel's within-group family p and ``F_g`` the
  discrete distribution of group g's smallest family p (``F_g(q) = #{b: u_gb <= q}/N_g``). For
  positively dependent statistics this is conservative.

Both one-sided tails of a contrast (``patient-gt-control`` and ``patient-lt-control``) are members
of the family, so the pair is corrected as one two-sided test (Chen et al., Hum Brain Mapp 2019:
two one-sided tests at alpha each have a 2·alpha family-wise error).
"""
from __future__ import annotations

import numpy as np

_TOL = 1e-9


def _p_ge(obs: np.ndarray, null: np.ndarray) -> np.ndarray:
    """``#{null >= obs}/len(null)`` (relative tolerance as :func:`hfsmri.stats.glm._p_from_null`)."""
    srt = np.sort(np.asarray(null, dtype=float))
    obs = np.asarray(obs, dtype=float)
    idx = np.searchsorted(srt, obs - _TOL * np.maximum(1.0, np.abs(obs)), side="left")
    return (srt.size - idx) / srt.size


def _p_le(q: np.ndarray, null: np.ndarray) -> np.ndarray:
    """``#{null <= q}/len(null)``."""
    srt = np.sort(np.asarray(null, dtype=float))
    q = np.asarray(q, dtype=float)
    return np.searchsorted(srt, q + _TOL * np.maximum(1e-12, q), side="right") / srt.size


def family_p(results) -> list[np.ndarray]:
    """Family-wise FWE p over ``results`` (each with ``stat``, ``null_max``, ``perm_key``): one array
    per result, over its voxels, in the order given (see the module doc). A result without a null
    (``null_max`` None) gets p = 1 and does not count in the family."""
    results = list(results)
    groups: dict = {}
    for i, r in enumerate(results):
        if getattr(r, "null_max", None) is not None:
            groups.setdefault(r.perm_key, []).append(i)
    within, min_u = {}, {}
    for key, members in groups.items():
        W = np.max(np.stack([np.asarray(results[i].null_max, float) for i in members]), axis=0)
        for i in members:
            within[i] = _p_ge(results[i].stat, W)
        min_u[key] = _p_ge(W, W)          # each permutation's smallest family p within the group
    out = []
    for i, r in enumerate(results):
        if i not in within:
            out.append(np.ones(np.shape(r.stat)))
            continue
        q = within[i]
        if len(groups) == 1:
            out.append(q)
            continue
        keep = np.ones_like(q)
        for key, u in min_u.items():
            keep *= 1.0 - (q if key == r.perm_key else _p_le(q, u))
        out.append(np.clip(1.0 - keep, q, 1.0))
    return out


def cluster_family_p(table, p_family: np.ndarray, sig: np.ndarray, mask: np.ndarray, affine, connectivity: int):
    """``table`` (:func:`hfsmri.stats.clusters.cluster_table`) with ``p_fwe_family``: the smallest
    family p over the cluster holding each row's peak. ``sig``: the in-mask significant set the
    table was built from; ``p_family``: in-mask family p (both in the mask's C order)."""
    import pandas as pd
    from scipy import ndimage

    table = table.copy()
    if not len(table):
        table["p_fwe_family"] = pd.Series(dtype=float)
        return table
    p3, s3 = np.ones(mask.shape), np.zeros(mask.shape, bool)
    p3[mask], s3[mask] = p_family, sig
    ijk = np.rint(np.c_[table[["peak_x", "peak_y", "peak_z"]].to_numpy(float), np.ones(len(table))]
                  @ np.linalg.inv(np.asarray(affine, float)).T)[:, :3].astype(int)
    lab, _ = ndimage.label(s3, ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[int(connectivity)]))
    table["p_fwe_family"] = [float(p3[lab == lab[tuple(v)]].min()) if lab[tuple(v)] else float(p3[tuple(v)])
                             for v in ijk]
    return table
