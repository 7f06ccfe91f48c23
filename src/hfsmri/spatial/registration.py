"""Registration to the MNI template with ANTsPy, and applying the resulting transforms.

Conventions
-----------
* ``fixed`` = MNI template, ``moving`` = the subject's native image. ``Transforms.fwd`` is the
  transform list for ``ants.apply_transforms(fixed=<MNI grid>, moving=<native image>,
  transformlist=fwd)`` (native -> MNI resampling, e.g. GM maps for VBM); ``Transforms.inv`` with
  ``whichtoinvert=Transforms.inv_invert`` maps MNI images (atlases, priors, masks) onto the native
  grid. For affine+SyN: ``fwd = [Warp.nii.gz, GenericAffine.mat]``,
  ``inv = [GenericAffine.mat, InverseWarp.nii.gz]`` with ``inv_invert = [True, False]``.
* As points, ``fwd`` maps MNI mm -> native mm: x_native = A(phi(x_mni)) (the SyN field phi lives in
  MNI space, then the affine A). The Jacobian determinant of that mapping (:func:`jacobian_determinant`)
  is the native volume per unit MNI volume, used for VBM modulation.
* Determinism: the ANTs random seed is set for the call (``seed``) and ITK threads are capped with
  ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` (read by ITK when a process first uses threads; the
  pipeline sets it before starting a job). Same input, seed and thread count -> same output.

Presets (``type_of_transform``) chosen by measurement (docs/anatomy.md):
``"Affine"``, ``"SyN"`` (antspyx defaults: affine 2100x1200x1200x0 + SyN[0.2,3,0] 40x20x0, Mattes MI),
``"SyNFast"`` (same affine, SyN 20x10x0), ``"SyNOnly"`` (deformable only, needs an initial transform).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .resample import as_nib, to_ants, to_nib

PRESETS = {
    "Affine": {"type_of_transform": "Affine"},
    "SyN": {"type_of_transform": "SyN"},
    "SyNFast": {"type_of_transform": "SyN", "reg_iterations": (20, 10, 0)},
    "SyNOnly": {"type_of_transform": "SyNOnly"},
    "Rigid": {"type_of_transform": "Rigid"},
}


@dataclass
class Transforms:
    """Transform files of one registration (see module doc for the conventions)."""

    fwd: list = field(default_factory=list)
    inv: list = field(default_factory=list)
    inv_invert: list = field(default_factory=list)
    type_of_transform: str = "SyN"

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> "Transforms":
        d = json.loads(Path(path).read_text())
        return cls(**d)

    def exist(self) -> bool:
        return all(Path(p).exists() for p in list(self.fwd) + list(self.inv))

    def files(self) -> list[str]:
        return sorted(set(map(str, list(self.fwd) + list(self.inv))))


@contextmanager
def ants_seed(seed: int | None):
    """Temporarily set antspyx's global random seed (passed as ``--random-seed`` to ANTs).

    ANTs treats ``--random-seed 0`` as "seed from the clock" (two runs differ), so seed 0 (the
    study default) is passed as 2**31 - 1.
    """
    import ants

    old = ants.config._random_seed
    ants.config._random_seed = None if seed is None else (int(seed) or 2 ** 31 - 1)
    try:
        yield
    finally:
        ants.config._random_seed = old


def set_threads(nthreads: int | None) -> None:
    """Cap ITK threads for this process (effective if set before ITK first starts threads)."""
    if nthreads:
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(max(1, int(nthreads)))


def _keep(files, out_dir: Path, prefix: str) -> list[str]:
    """Move ANTs temp transform files into ``out_dir`` with stable names."""
    kept = []
    for f in files:
        f = str(f)
        name = Path(f).name
        for tag in ("0GenericAffine.mat", "1Warp.nii.gz", "1InverseWarp.nii.gz", "0Warp.nii.gz",
                    "0InverseWarp.nii.gz", "1GenericAffine.mat"):
            if name.endswith(tag):
                name = prefix + tag
                break
        dst = out_dir / name
        if Path(f).resolve() != dst.resolve():
            shutil.copyfile(f, dst)
        kept.append(str(dst))
    return kept


def register_to_mni(moving_img, template_img, type_of_transform: str = "SyN", seed: int = 0,
                    nthreads: int | None = None, out_dir: str | Path | None = None,
                    prefix: str = "to-MNI_", initial_transform=None, fixed_mask=None,
                    moving_mask=None, return_warped: bool = False, **kwargs):
    """Register a native image (``moving_img``) to the MNI template (``template_img``).

    Parameters
    ----------
    moving_img, template_img : nibabel images, paths or ANTs images (3D).
    type_of_transform : a key of :data:`PRESETS` or any antspyx ``type_of_transform``.
    seed : ANTs random seed (metric sampling), for reproducibility.
    nthreads : ITK threads (see :func:`set_threads`).
    out_dir : folder the transform files are kept in (default: a new temporary folder).
    prefix : file-name prefix of the kept transforms.
    initial_transform : transform file(s) to start from (e.g. an affine from brain extraction).
    fixed_mask, moving_mask : optional masks restricting the metric (images or paths).
    return_warped : also return the moving image resampled on the template grid (nibabel).
    kwargs : passed to ``ants.registration`` (override preset settings).

    Returns
    -------
    Transforms, or (Transforms, warped nibabel image) when ``return_warped``.
    """
    import ants

    set_threads(nthreads)
    preset = dict(PRESETS.get(type_of_transform, {"type_of_transform": type_of_transform}))
    preset.update(kwargs)
    fixed = to_ants(template_img)
    moving = to_ants(moving_img)
    if fixed_mask is not None:
        preset["mask"] = to_ants(fixed_mask)
    if moving_mask is not None:
        preset["moving_mask"] = to_ants(moving_mask)
    if preset.get("multivariate_extras"):
        preset["multivariate_extras"] = [(str(name), to_ants(f), to_ants(m), float(w), p)
                                         for name, f, m, w, p in preset["multivariate_extras"]]
    if initial_transform is not None:
        preset["initial_transform"] = ([str(t) for t in initial_transform]
                                       if isinstance(initial_transform, (list, tuple)) else str(initial_transform))
    out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="hfsmri_reg_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hfsmri_antsreg_") as tmp:
        with ants_seed(seed):
            res = ants.registration(fixed=fixed, moving=moving, outprefix=str(Path(tmp) / "r_"), **preset)
        fwd_src = list(res["fwdtransforms"])
        inv_src = list(res["invtransforms"])
        # copy every distinct file once, then map the lists onto the kept names
        mapping = dict(zip(sorted(set(fwd_src + inv_src)),
                           _keep(sorted(set(fwd_src + inv_src)), out_dir, prefix)))
        fwd = [mapping[f] for f in fwd_src]
        inv = [mapping[f] for f in inv_src]
        warped = to_nib(res["warpedmovout"]) if return_warped else None
    inv_invert = [f.endswith(".mat") for f in inv]
    tr = Transforms(fwd=fwd, inv=inv, inv_invert=inv_invert, type_of_transform=str(type_of_transform))
    return (tr, warped) if return_warped else tr


def rigid_to_anatomy(moving, t1w, outprefix: str | Path):
    """Rigid (6-parameter, Mattes mutual information) registration of a low-resolution image
    (mean EPI, b0) to the subject's T1w; returns the forward transform files (ANTs order).

    The T1w is first resampled (linear) to the moving image's voxel size when that is coarser:
    a rigid fit of a 3 mm EPI gains nothing from a 1-2 mm fixed grid, and the metric is 2.5x
    cheaper (measured on the demo: 4.1 s instead of 10.7 s per subject; rotation within 0.3 deg,
    translation within 0.05 mm of the full-resolution fit; docs/fmri_local.md).
    ``moving`` and ``t1w`` are ANTs or nibabel images (or paths), under any header: oblique direction
    cosines, any voxel order or handedness, anisotropic voxels (the fit is in world coordinates;
    measured on a real head with both headers oblique and a known 13 deg motion: 0.07 mm maximum
    error over the brain, 0.03 deg; tests/spatial/test_rigid_realhead.py). Start: centres of mass
    (antsRegistration's default). ANTs' stage defaults for ``Rigid`` are kept.
    """
    import ants

    moving, t1w = to_ants(moving), to_ants(t1w)
    sp_m = min(moving.spacing[:3])
    if sp_m > max(t1w.spacing[:3]) * 1.2:
        t1w = ants.resample_image(t1w, (float(sp_m),) * 3, False, 0)
    reg = ants.registration(fixed=t1w, moving=moving, type_of_transform="Rigid", outprefix=str(outprefix))
    return list(reg["fwdtransforms"])


_INTERP = {"linear": "linear", "nearest": "nearestNeighbor", "nearestneighbor": "nearestNeighbor",
           "label": "genericLabel", "genericlabel": "genericLabel", "bspline": "bSpline",
           "lanczos": "lanczosWindowedSinc"}


def _interp(name: str) -> str:
    key = name.lower()
    if key not in _INTERP:
        raise ValueError(f"unknown interpolation {name!r}; choose from {sorted(_INTERP)}")
    return _INTERP[key]


def apply_to_mni(img, transforms: Transforms, template, interpolation: str = "linear",
                 default_value: float = 0.0) -> nib.Nifti1Image:
    """Resample a native-space image onto the template grid through ``transforms.fwd``."""
    import ants

    out = ants.apply_transforms(fixed=to_ants(template), moving=to_ants(img),
                                transformlist=list(transforms.fwd), interpolator=_interp(interpolation),
                                defaultvalue=default_value)
    return to_nib(out)


def apply_from_mni(img, transforms: Transforms, reference, interpolation: str = "linear",
                   default_value: float = 0.0) -> nib.Nifti1Image:
    """Resample an MNI-space image (atlas, prior, mask) onto the native ``reference`` grid."""
    import ants

    src = as_nib(img)
    if np.issubdtype(np.asarray(src.dataobj).dtype, np.integer) and interpolation == "linear":
        interpolation = "label"
    out = ants.apply_transforms(fixed=to_ants(reference), moving=to_ants(src),
                                transformlist=list(transforms.inv), whichtoinvert=list(transforms.inv_invert),
                                interpolator=_interp(interpolation), defaultvalue=default_value)
    return to_nib(out)


def jacobian_determinant(transforms: Transforms, template, native=None) -> nib.Nifti1Image:
    """Jacobian determinant (unitless, native volume per MNI volume) of the MNI -> native point
    mapping ``transforms.fwd`` (affine and deformable parts together), on the template grid.

    ``native`` (optional) is only used as the moving image when composing the transforms; the
    determinant itself does not depend on it.
    """
    import ants

    fixed = to_ants(template)
    moving = to_ants(native) if native is not None else fixed
    with tempfile.TemporaryDirectory(prefix="hfsmri_jac_") as tmp:
        comp = ants.apply_transforms(fixed=fixed, moving=moving, transformlist=list(transforms.fwd),
                                     compose=str(Path(tmp) / "comp_"))
        jac = ants.create_jacobian_determinant_image(fixed, comp, do_log=False, geom=False)
        out = to_nib(jac)
    data = np.asarray(out.dataobj, dtype=np.float32)
    return nib.Nifti1Image(np.clip(data, 0.0, None), out.affine)


def warp_points_to_native(xyz_mni, transforms: Transforms) -> np.ndarray:
    """Map MNI mm points (n, 3) to native mm through ``transforms.fwd`` (RAS coordinates)."""
    import ants
    import pandas as pd

    pts = np.atleast_2d(np.asarray(xyz_mni, dtype=float))
    lps = pts * np.array([-1.0, -1.0, 1.0])
    df = pd.DataFrame(lps, columns=["x", "y", "z"])
    out = ants.apply_transforms_to_points(3, df, list(transforms.fwd))
    return out[["x", "y", "z"]].to_numpy() * np.array([-1.0, -1.0, 1.0])
