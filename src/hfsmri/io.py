"""Reading input images and tables with clear errors (file + fault), never a deep traceback."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import InputDataError


def load_image(path: str | Path, ndim: int | tuple[int, ...] | None = None, what: str = "image",
               min_volumes: int | None = None, check_finite: bool = False):
    """Load a NIfTI image and validate its dimensionality.

    Parameters
    ----------
    path : file to read (.nii or .nii.gz)
    ndim : required number of dimensions (3 for T1w, 4 for BOLD/DWI); a trailing singleton 4th
        dimension is accepted for 3D images.
    what : what the file should be ("T1w", "BOLD", ...), used in messages.
    min_volumes : for 4D images, the minimum number of volumes.
    check_finite : raise if the data contain NaN/inf, or are all zero.

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
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        nd = len(shape)
        if nd == 4 and shape[3] == 1 and 3 in allowed:
            img = img.slicer[..., 0]
            nd = 3
        if nd not in allowed:
            raise InputDataError(f"{what} must be {' or '.join(f'{a}D' for a in allowed)}, "
                                 f"got {nd}D image of shape {tuple(shape)}", path=path)
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
