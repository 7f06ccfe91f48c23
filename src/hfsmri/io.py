"""Reading input images and tables with clear errors (file + fault), never a deep traceback.

Header-level checks of every input image (:func:`load_image`, run for every subject before any
job starts; see ``docs/conventions.md``):

* the header's dimensions agree with the size of the data in the file (NIfTI-1 and NIfTI-2,
  ``.nii`` and ``.nii.gz``): a file holding more data than the header declares (e.g. 60 volumes
  stored, 40 declared) or less (truncated) is refused;
* geometry (:func:`check_geometry`): the affine nibabel uses (the sform when ``sform_code > 0``,
  else the qform, as fMRIPrep's validation keeps it) must be finite, with non-zero determinant and
  no shear — voxel axes orthogonal within ``SHEAR_TOL`` (|cos| of the angle between two axes;
  real scanner headers written in float32 measure ≤ 4e-7, so any rotation passes); every spatial
  dimension must have at least 2 voxels (a single-slice image cannot be registered).
* qform and sform that disagree are not an error: the sform is used (nibabel, fMRIPrep) and the
  disagreement is reported in the returned notes (:func:`geometry_notes`).
"""
from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np

from .errors import InputDataError

#: largest |cos(angle)| between two voxel axes of an accepted affine (0.06° away from 90°)
SHEAR_TOL = 1e-3
#: qform and sform "disagree" when they place a corner voxel this many voxel sizes apart
QFORM_SFORM_TOL_VOXELS = 0.1
_CHUNK = 1 << 24


def _gzip_size(path: Path) -> int:
    """Uncompressed size of a .gz file by decompressing it in chunks (all members). Raises
    ``EOFError``/``OSError``/``zlib.error`` for truncated or corrupt files."""
    n = 0
    with gzip.open(path, "rb") as f:
        while True:
            block = f.read(_CHUNK)
            if not block:
                return n
            n += len(block)


def check_data_size(img, path: str | Path, what: str = "image") -> None:
    """Refuse a NIfTI whose header dimensions disagree with the size of the data in the file.

    Expected bytes = ``vox_offset + prod(all header dimensions) × bytes per voxel``. ``.nii``: the
    file size; ``.nii.gz``: the gzip trailer (ISIZE) when it matches, else the decompressed size.
    Fewer bytes: truncated. More bytes (at least one more slice): the header declares fewer
    voxels/volumes than the file stores, and what the data size would correspond to is named.
    """
    path = Path(path)
    name = path.name.lower()
    hdr = img.header
    if not (name.endswith(".nii") or name.endswith(".nii.gz")) or not hasattr(hdr, "get_data_offset"):
        return
    shape = tuple(int(d) for d in hdr.get_data_shape())
    itemsize = hdr.get_data_dtype().itemsize
    offset = int(getattr(img.dataobj, "offset", hdr.get_data_offset()))  # where nibabel reads (vox_offset may be 0)
    need = offset + int(np.prod(shape, dtype=np.int64)) * itemsize
    try:
        if name.endswith(".gz"):
            with open(path, "rb") as f:
                f.seek(-4, 2)
                isize = int.from_bytes(f.read(4), "little")
            have = need if isize == need % (1 << 32) else _gzip_size(path)
        else:
            have = path.stat().st_size
    except (OSError, EOFError, zlib.error) as exc:
        raise InputDataError(f"cannot read {what} data ({type(exc).__name__}: {exc}); the file may be truncated",
                             path=path) from None
    if have == need:
        return
    if have < need:
        raise InputDataError(f"{what} is truncated: the header declares shape {shape} ({need - offset} bytes of "
                             f"data) but the file holds {max(have - offset, 0)}", path=path)
    slice_bytes = int(np.prod(shape[:2], dtype=np.int64)) * itemsize
    extra = have - need
    if extra < slice_bytes:
        return  # padding shorter than one slice carries no image data
    msg = (f"the header dimensions {shape} disagree with the data size: the file holds {extra} bytes more "
           f"image data than declared")
    vol_bytes = int(np.prod(shape[:3], dtype=np.int64)) * itemsize
    if len(shape) >= 4 and vol_bytes and (have - offset) % vol_bytes == 0:
        msg += f" ({(have - offset) // vol_bytes} volumes stored, {shape[3]} declared)"
    raise InputDataError(msg + "; fix the header (dim field) or re-convert the scan", path=path)


def check_geometry(img, path: str | Path, what: str = "image") -> None:
    """Refuse affines that no registration can use: non-finite, zero determinant, sheared; and
    images with fewer than 2 voxels along a spatial axis. Rotations (oblique headers) pass."""
    aff = np.asarray(img.affine, dtype=float)
    shape = tuple(int(d) for d in img.shape[:3])
    if len(img.shape) < 3 or min(shape) < 2:
        raise InputDataError(f"{what} is a single-slice (or 2-D) image, shape {tuple(img.shape)}: "
                             "at least 2 voxels along each spatial axis are needed", path=path)
    if not np.all(np.isfinite(aff)):
        raise InputDataError(f"{what} header affine (sform/qform) contains NaN or infinite values", path=path)
    lin = aff[:3, :3]
    norms = np.linalg.norm(lin, axis=0)
    det = np.linalg.det(lin)
    if np.any(norms == 0) or abs(det) <= 1e-12 * float(np.prod(norms)):
        raise InputDataError(f"{what} header affine has zero determinant (voxel sizes "
                             f"{np.round(norms, 4).tolist()} mm): the voxel-to-world mapping is degenerate",
                             path=path)
    d = lin / norms
    cos = np.abs(d.T @ d - np.eye(3)).max()
    if cos > SHEAR_TOL:
        ang = float(np.degrees(np.arcsin(min(cos, 1.0))))
        raise InputDataError(f"{what} header affine is sheared: two voxel axes are {90 - ang:.2f}° apart instead "
                             f"of 90° (|cos| {cos:.2g} > {SHEAR_TOL:g}); hfsmri accepts rotations (oblique "
                             "headers) but not shears — reslice the image first", path=path)


def _qform_of(sform: np.ndarray, header, qform: np.ndarray) -> bool:
    """True when ``qform`` is what NIfTI stores for ``sform``: the quaternion keeps b, c, d in
    float32 and recomputes a = sqrt(1 - b² - c² - d²), which loses precision near 180° rotations
    (e.g. a LAS/LPS storage of a tilted acquisition, as dcm2niix writes), so a header written from
    one affine can differ by a few tenths of a mm at the far corner without any disagreement."""
    try:
        h = header.copy()
        h.set_qform(sform, code=1)
        return bool(np.allclose(h.get_qform(), qform, atol=1e-5, rtol=0))
    except Exception:  # an sform nibabel cannot turn into a quaternion (shear): a real disagreement
        return False


def geometry_notes(img, path: str | Path, what: str = "image") -> list[str]:
    """Non-fatal header remarks: qform/sform disagreement (the sform is used), no orientation."""
    hdr = img.header
    try:
        qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    except (KeyError, TypeError, ValueError):
        return []
    name = Path(path).name
    if qcode == 0 and scode == 0:
        return [f"{name}: neither qform nor sform is set; nibabel's default orientation (voxel sizes only) is used"]
    if qcode > 0 and scode > 0:
        q, s = img.get_qform(), img.get_sform()
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(s))):
            return []
        n = np.array(img.shape[:3]) - 1
        corners = np.array([[i, j, k, 1] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])], float).T
        dist = float(np.linalg.norm((q - s) @ corners, axis=0).max())
        vox = float(np.linalg.norm(s[:3, :3], axis=0).min())
        if dist > QFORM_SFORM_TOL_VOXELS * vox and not _qform_of(s, img.header, q):
            return [f"{name}: qform and sform disagree (up to {dist:.2f} mm); the sform is used, as nibabel "
                    "and fMRIPrep do"]
    return []


def load_image(path: str | Path, ndim: int | tuple[int, ...] | None = None, what: str = "image",
               min_volumes: int | None = None, check_finite: bool = False, check_header: bool = True):
    """Load a NIfTI image and validate its dimensionality.

    Parameters
    ----------
    path : file to read (.nii or .nii.gz)
    ndim : required number of dimensions (3 for T1w, 4 for BOLD/DWI); a trailing singleton 4th
        dimension is accepted for 3D images.
    what : what the file should be ("T1w", "BOLD", ...), used in messages.
    min_volumes : for 4D images, the minimum number of volumes.
    check_finite : raise if the data contain NaN/inf, or are all zero.
    check_header : header dimensions vs data size (:func:`check_data_size`) and geometry
        (:func:`check_geometry`); on by default, for inputs. Maps hfsmri wrote itself may skip it.

    Raises
    ------
    InputDataError naming the file and the fault.
    """
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{what} file does not exist", path=path)
    try:
        img = nib.load(str(path))
        shape = img.shape
    except Exception as exc:  # nibabel raises many types for non-NIfTI / truncated files
        raise InputDataError(f"cannot read {what} as NIfTI ({type(exc).__name__}: {exc})", path=path) from None
    if check_header:
        check_data_size(img, path, what)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        nd = len(shape)
        if nd == 4 and shape[3] == 1 and 3 in allowed:
            img = img.slicer[..., 0]
            nd = 3
        if nd not in allowed:
            raise InputDataError(f"{what} must be {' or '.join(f'{a}D' for a in allowed)}, "
                                 f"got {nd}D image of shape {tuple(shape)}", path=path)
    if check_header:
        check_geometry(img, path, what)
    if min_volumes is not None and len(img.shape) == 4 and img.shape[3] < min_volumes:
        raise InputDataError(f"{what} has {img.shape[3]} volumes; at least {min_volumes} are needed",
                             path=path)
    if check_finite:
        try:
            data = np.asanyarray(img.dataobj)
        except Exception as exc:
            raise InputDataError(f"cannot read {what} data ({type(exc).__name__}: {exc}); "
                                 "the file may be truncated", path=path) from None
        if not np.all(np.isfinite(data)):
            raise InputDataError(f"{what} contains NaN or infinite values", path=path)
        if not np.any(data):
            raise InputDataError(f"{what} is all zeros", path=path)
    return img


def read_json(path: str | Path, what: str = "JSON sidecar") -> dict:
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputDataError(f"{what} does not exist", path=path) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputDataError(f"cannot parse {what}: {exc}", path=path) from None
    if not isinstance(obj, dict):
        raise InputDataError(f"{what} must contain a JSON object", path=path)
    return obj
