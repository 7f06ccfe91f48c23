"""Group ICA (nilearn CanICA) and labelling of components by known resting-state networks.

* :func:`group_ica`: CanICA (Varoquaux et al. 2010: subject PCA -> group CCA -> FastICA) on all
  subjects' cleaned BOLD in the common mask, ``n_components`` (default 20), seeded, *unthresholded*
  maps (``threshold=None``) so that dual regression uses whole maps as FSL MELODIC's do. Each
  component is z-scored over the mask and its sign set so that its largest-magnitude tail is
  positive.
* :func:`network_reference` / :func:`label_components`: reference networks are the Seitzman et
  al. 2020 300 ROIs bundled with nilearn (network label per ROI); a network's reference map is the
  union of its ROIs' spheres (radius ``sphere_mm``, default 8 mm). A component is labelled with the
  network whose reference map has the largest spatial Pearson correlation with the component
  map (the ``match_r`` column); ``unassigned`` ROIs are ignored. Seitzman names are mapped to the
  usual names (DefaultMode -> default-mode, SomatomotorDorsal/Lateral -> sensorimotor, Visual ->
  visual, Salience -> salience, FrontoParietal -> executive, ...).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hfsmri.errors import InputDataError

NETWORK_NAMES = {
    "DefaultMode": "default-mode", "SomatomotorDorsal": "sensorimotor", "SomatomotorLateral": "sensorimotor",
    "Visual": "visual", "FrontoParietal": "executive", "CinguloOpercular": "cingulo-opercular",
    "Salience": "salience", "DorsalAttention": "dorsal-attention", "VentralAttention": "ventral-attention",
    "Auditory": "auditory", "Reward": "reward", "ParietoMedial": "parieto-medial",
    "MedialTemporalLobe": "medial-temporal",
}


def orient_and_standardise(maps: np.ndarray) -> np.ndarray:
    """z-score each component map (rows) over voxels and flip its sign so that the largest
    absolute value is positive."""
    m = np.asarray(maps, dtype=np.float64)
    m = (m - m.mean(axis=1, keepdims=True)) / np.where(m.std(axis=1, keepdims=True) > 0, m.std(axis=1, keepdims=True), 1.0)
    idx = np.abs(m).argmax(axis=1)
    sign = np.sign(m[np.arange(m.shape[0]), idx])
    return m * np.where(sign == 0, 1.0, sign)[:, None]


def group_ica(imgs, mask_img, n_components: int = 20, random_state=0, smoothing_fwhm=None, n_init: int = 10):
    """Group ICA of a list of 4D images (or paths) within ``mask_img``.

    Returns ``(maps, mask)``: (K, V) z-scored, sign-oriented component maps over the in-mask voxels
    and the boolean 3D mask (mask_img's grid) they live on.
    """
    from nilearn.decomposition import CanICA

    if len(imgs) < 2:
        raise InputDataError("group ICA needs at least 2 subjects")
    ica = CanICA(mask=mask_img, n_components=int(n_components), random_state=random_state,
                 smoothing_fwhm=smoothing_fwhm, threshold=None, standardize="zscore_sample",
                 n_init=n_init, memory_level=0, n_jobs=1, verbose=0)
    ica.fit(imgs)
    comp_img = ica.components_img_
    mask = np.asarray(ica.masker_.mask_img_.dataobj).astype(bool)
    maps = np.asarray(comp_img.dataobj)[mask].T  # K x V
    return orient_and_standardise(maps), mask


def network_reference(mask: np.ndarray, affine: np.ndarray, sphere_mm: float = 8.0) -> dict[str, np.ndarray]:
    """Reference maps (network name -> boolean vector over in-mask voxels) from the Seitzman
    coordinates' network labels (merged by :data:`NETWORK_NAMES`)."""
    from nilearn import datasets

    s = datasets.fetch_coords_seitzman_2018()
    xyz = np.argwhere(mask) @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
    centres = np.column_stack([s.rois["x"], s.rois["y"], s.rois["z"]]).astype(float)
    out: dict[str, np.ndarray] = {}
    for c, net in zip(centres, s.networks):
        name = NETWORK_NAMES.get(str(net))
        if name is None:
            continue
        hit = ((xyz - c) ** 2).sum(axis=1) <= sphere_mm ** 2
        out[name] = out.get(name, np.zeros(xyz.shape[0], bool)) | hit
    return {k: v for k, v in out.items() if v.any()}


def label_components(maps: np.ndarray, reference: dict[str, np.ndarray]) -> pd.DataFrame:
    """Best-matching reference network per component (spatial Pearson r with the indicator map).

    Returns a DataFrame indexed by ``component`` (1..K) with columns ``network``, ``match_r``
    and ``second``/``second_r`` (runner-up)."""
    m = np.asarray(maps, dtype=float)
    names = list(reference)
    if not names:
        raise InputDataError("no reference network overlaps the analysis mask")
    R = np.column_stack([reference[n].astype(float) for n in names])  # V x N
    mc = m - m.mean(axis=1, keepdims=True)
    Rc = R - R.mean(axis=0, keepdims=True)
    num = mc @ Rc
    den = np.sqrt((mc * mc).sum(axis=1))[:, None] * np.sqrt((Rc * Rc).sum(axis=0))[None, :]
    r = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    order = np.argsort(-r, axis=1)
    rows = []
    for k in range(m.shape[0]):
        a = order[k, 0]
        b = order[k, 1] if len(names) > 1 else a
        rows.append({"component": k + 1, "network": names[a], "match_r": float(r[k, a]),
                     "second": names[b], "second_r": float(r[k, b])})
    return pd.DataFrame(rows).set_index("component")


def component_mask(zmap: np.ndarray, z_threshold: float = 2.3) -> np.ndarray:
    """Voxels of a component (positive tail, z > ``z_threshold``) for the group comparison."""
    return np.asarray(zmap) > z_threshold
