"""Real data no one here made, for the tests: where each file is, and scanner-like transforms.

Sources (see ``tests/fetch_realdata.py``; ``make test`` fetches what is not installed):

* Colin27 (Holmes et al. 1998; MRIcron's ``ch2``): one real head, 1 mm, with skull, face and neck
  (``colin27_head``), its distributed brain-extracted version (``colin27_brain``), the higher-SNR
  ``ch2better``; JHU white-matter labels, AAL and Harvard-Oxford cortical labels on that grid.
* dipy's bundled DWI (real, cropped): ``small_64D``, ``small_101D``, ``small_25``, ``S0_10slices``.
* nibabel's test data: ``anatomical.nii`` (real T1 crop), ``functional.nii`` / ``example4d.nii.gz``
  (real BOLD crops), Siemens DWI mosaic DICOM files.
* nitime: real ROI resting-state time series (``fmri_timeseries.csv``), real BOLD crops.
* brainspace (extracted from its wheel): real HCP-derived connectivity matrices (Schaefer 100).

A file that is missing fails the test with the command that fetches it (a skip would hide a
missing install step in CI).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("HFSMRI_REALDATA", ROOT / ".cache" / "realdata"))


def _need(path: Path) -> Path:
    if not path.exists():
        import pytest

        pytest.fail(f"real test data missing: {path} (run `python tests/fetch_realdata.py`, as `make test` does)")
    return path


# ---------------------------------------------------------------- Colin27 (mricron-data)
def mricron(name: str) -> Path:
    """A file of Debian's mricron-data templates folder (cached copy)."""
    return _need(CACHE / "mricron" / name)


def colin27_head() -> Path:
    """Colin27 T1w with skull, face and neck (1 mm, 181 x 217 x 181, MNI-aligned)."""
    return mricron("ch2.nii.gz")


def colin27_brain() -> Path:
    """The distributed brain-extracted Colin27 (same grid as :func:`colin27_head`)."""
    return mricron("ch2bet.nii.gz")


# ---------------------------------------------------------------- dipy
def dipy_dwi(name: str) -> tuple[Path, Path, Path]:
    """(nifti, bval, bvec) of a DWI file that dipy ships (``small_64D``, ``small_101D``, ``small_25``)."""
    from dipy.data import get_fnames

    f, bval, bvec = get_fnames(name=name)
    return Path(f), Path(bval), Path(bvec)


# ---------------------------------------------------------------- nibabel
def nibabel_data(name: str) -> Path:
    """A file of nibabel's test data (``anatomical.nii``, ``functional.nii``, ``example4d.nii.gz``)."""
    import nibabel.tests

    return _need(Path(nibabel.tests.__file__).parent / "data" / name)


def nibabel_dicom(name: str) -> Path:
    """A DICOM file of nibabel's nicom test data (``siemens_dwi_1000.dcm.gz``, ``0.dcm``, ...)."""
    import nibabel.nicom.tests

    return _need(Path(nibabel.nicom.tests.__file__).parent / "data" / name)


# ---------------------------------------------------------------- brainspace
def hcp_connectome(name: str = "HCP_144125_maximum_schaefer_100.csv") -> np.ndarray:
    """A real HCP-derived functional connectivity matrix (Schaefer 100 parcels) from brainspace."""
    return np.loadtxt(_need(CACHE / "brainspace" / name), delimiter=",")


# ---------------------------------------------------------------- scanner-like header transforms
def rotation(degrees_xyz) -> np.ndarray:
    """3x3 rotation matrix Rz @ Ry @ Rx for rotations (degrees) about x, y, z."""
    ax, ay, az = np.deg2rad(np.asarray(degrees_xyz, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def reheader(img, degrees_xyz=(0, 0, 0), shift_mm=(0, 0, 0)):
    """The same voxels under a rotated/shifted header (what a tilted acquisition writes).

    World coordinates of every voxel are moved by the rigid transform; the data are untouched, so a
    correct pipeline gives the same result in voxel space (and the rigidly moved one in world space).
    """
    import nibabel as nib

    rigid = np.eye(4)
    rigid[:3, :3] = rotation(degrees_xyz)
    rigid[:3, 3] = shift_mm
    out = nib.Nifti1Image(np.asanyarray(img.dataobj), rigid @ img.affine, img.header)
    out.set_qform(rigid @ img.affine, code=1)
    out.set_sform(rigid @ img.affine, code=1)
    return out


def reorder(img, order: str):
    """The same head stored in another voxel order / handedness: ``order`` is an orientation code
    such as ``"LPS"``, ``"PSR"`` (sagittal slices) or ``"LSA"`` (coronal), as nibabel spells it."""
    import nibabel as nib
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    cur = io_orientation(img.affine)
    tr = ornt_transform(cur, axcodes2ornt(tuple(order)))
    return img.as_reoriented(tr) if hasattr(img, "as_reoriented") else nib.funcs.as_closest_canonical(img)


def with_neck(img, below_mm: float = 110.0, seed: int = 0):
    """A RAS-stored head (Colin27) extended below its field of view by an emulated neck (the bottom
    slices' tissue, tapering to 70 % over 60 mm) and shoulders (full-width soft tissue), as a
    full-FOV scan with a neck coil records it (Colin27's field of view ends just below the
    cerebellum). The original voxels are untouched; the grid grows by ``below_mm`` downwards."""
    import nibabel as nib
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    d = np.asarray(img.dataobj, np.float32)
    vz = abs(float(img.affine[2, 2]))
    n = int(round(below_mm / vz))
    nx, ny, nz = d.shape
    ext = np.zeros((nx, ny, nz + n), np.float32)
    ext[:, :, n:] = d
    bottom = d[:, :, :3].mean(axis=2)
    soft = float(np.median(d[d > np.percentile(d[d > 0], 50)]))
    c = np.array(bottom.shape) / 2.0
    for k in range(n):
        depth = (n - k) * vz
        if depth <= 60:
            s = 1.0 - 0.3 * depth / 60
            ext[:, :, k] = ndi.affine_transform(bottom, np.diag([1 / s, 1 / s]), offset=c * (1 - 1 / s), order=1)
        else:
            ext[:, int(ny * 0.25):int(ny * 0.75), k] = soft
    ext[:, :, :n] += rng.normal(0, 3, size=(nx, ny, n)).astype(np.float32) * (ext[:, :, :n] > 0)
    aff = img.affine.copy()
    aff[:3, 3] = img.affine[:3, 3] - img.affine[:3, 2] * n
    return nib.Nifti1Image(np.clip(ext, 0, None), aff)

