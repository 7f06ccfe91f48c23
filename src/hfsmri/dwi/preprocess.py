"""Preprocessing of raw DWI: denoising, head-motion / eddy-current correction, brain mask, and
registration of scalar maps to MNI.

* :func:`denoise` — dipy MP-PCA (Veraart et al. 2016, ``dipy.denoise.localpca.mppca``) or
  Patch2Self (Fadnavis et al. 2020, ``dipy.denoise.patch2self.patch2self``); off by default.
* :func:`motion_correct` — every volume is registered to the mean b0 by an ANTs **affine**
  (12 parameters, Mattes mutual information, 3 levels) and resampled once (linear); the b-vectors
  are rotated by the rotational (polar) part of each volume's affine (Leemans & Jones 2009).
  Limits compared with FSL ``eddy``: no eddy-current *model* (the affine absorbs the first-order
  shear/scale/translation distortions of each volume but not their slice-wise or higher-order
  parts), no susceptibility (topup) correction, no outlier-slice replacement, no slice-to-volume
  motion, and diffusion-weighted volumes with low signal are registered directly to the b0 by
  mutual information rather than to a model prediction. For data with strong eddy currents or
  motion, run QSIPrep (its outputs are used as they are) or FSL eddy beforehand.
* :func:`brain_mask` — dipy ``median_otsu`` on the mean b0.
* :func:`to_mni` — transforms from the mean b0 to MNI: b0 → T1w rigid and the anatomical
  stage's T1w → MNI transforms when they exist, else b0 → MNI template directly (ANTs affine on
  the brain-masked T1 template, Mattes MI); :func:`apply_to_mni` resamples scalar maps.

Coordinate conventions: images are nibabel RAS+ affines; ANTs works in LPS, so the conversion is
``D = diag(-1, -1, 1)`` on points and direction cosines. b-vectors are in the FSL/BIDS voxel
frame (x flipped when the affine has a positive determinant).
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from hfsmri.dwi.gradients import GradientTable, fsl_frame, rotate_bvecs
from hfsmri.errors import InputDataError

_LPS = np.diag([-1.0, -1.0, 1.0])


def denoise(data: np.ndarray, method: str | None, *, bvals=None, mask=None, patch_radius: int = 2,
            random_state: int = 0) -> np.ndarray:
    """Denoise a 4D DWI array. ``method`` in {None, "mppca", "patch2self"}; returns float32."""
    if method in (None, "", "none", False):
        return np.asarray(data, dtype=np.float32)
    key = str(method).lower()
    arr = np.asarray(data, dtype=np.float32)
    if key == "mppca":
        from dipy.denoise.localpca import mppca

        return np.asarray(mppca(arr, mask=mask, patch_radius=patch_radius), dtype=np.float32)
    if key == "patch2self":
        from dipy.denoise.patch2self import patch2self

        if bvals is None:
            raise ValueError("patch2self needs the b-values")
        np.random.seed(random_state)  # patch2self's OLS is deterministic; kept for future solvers
        return np.asarray(patch2self(arr, np.asarray(bvals), model="ols", shift_intensity=True,
                                     clip_negative_vals=False, b0_threshold=50, verbose=False),
                          dtype=np.float32)
    raise ValueError(f"unknown denoising method {method!r}; use null, 'mppca' or 'patch2self'")


def mean_b0(data: np.ndarray, gtab: GradientTable) -> np.ndarray:
    if gtab.n_b0 == 0:
        raise InputDataError("the DWI has no b0 volume (b <= %g)" % gtab.b0_threshold, path=gtab.source or None)
    return np.asarray(data[..., gtab.b0s_mask], dtype=np.float32).mean(axis=-1)


def brain_mask(data: np.ndarray, gtab: GradientTable, median_radius: int = 2, numpass: int = 1) -> np.ndarray:
    """Brain mask by dipy ``median_otsu`` on the mean b0 (3D bool)."""
    from dipy.segment.mask import median_otsu

    b0 = mean_b0(data, gtab)
    _, mask = median_otsu(b0, median_radius=median_radius, numpass=numpass)
    return np.asarray(mask, dtype=bool)


# ----------------------------------------------------------------------------- ANTs helpers
def to_ants(vol: np.ndarray, affine: np.ndarray):
    """3D numpy array on a nibabel (RAS) affine → ANTsImage with the same physical placement."""
    import ants

    from hfsmri.spatial.resample import ants_geometry

    # one owner of the nibabel -> ITK geometry (NIfTI-stable origin/spacing, orthonormal direction)
    origin, spacing, direction = ants_geometry(affine)
    return ants.from_numpy(np.ascontiguousarray(vol, dtype=np.float32), origin=tuple(origin),
                           spacing=tuple(spacing), direction=direction)


def _affine_matrix(transform_file) -> np.ndarray:
    import ants

    p = np.asarray(ants.read_transform(str(transform_file)).parameters, dtype=float)
    return p[:9].reshape(3, 3)


def bvec_rotation(ants_matrix: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """3×3 rotation to apply to a volume's FSL-convention b-vector after it was resampled onto the
    reference with the ANTs affine whose linear part (LPS, fixed → moving points) is ``ants_matrix``.

    The moving volume sees a fibre direction v of the reference as A⁻¹v, so its gradient g acts as
    R g in the reference frame with R = polar(A)⁻¹ = polar(A)ᵀ; expressed in the voxel frame
    (direction cosines Dir, LPS) and with FSL's x flip when det(affine) > 0.
    """
    m = fsl_frame(affine)  # FSL b-vector coordinates -> world RAS (hfsmri.dwi.gradients owns it)
    u, _, vt = np.linalg.svd(np.asarray(ants_matrix, float))
    r_ras = _LPS @ (u @ vt).T @ _LPS
    return m.T @ r_ras @ m


def motion_correct(data: np.ndarray, affine: np.ndarray, gtab: GradientTable, *, mask=None,
                   iterations=(100, 50, 25), log=None) -> dict:
    """Affine registration of every volume to the mean b0, with b-vector rotation.

    Returns dict: ``data`` (float32 4D, resampled), ``gtab`` (rotated b-vectors),
    ``matrices`` (n, 3, 3) ANTs linear parts (LPS, fixed→moving), ``rotation_deg`` (n,) angle of
    each volume's rotation, ``translation_mm`` (n,) norm of its translation.
    """
    import ants

    ref = to_ants(mean_b0(data, gtab), affine)
    kwargs = {}
    if mask is not None:
        kwargs["mask"] = to_ants(np.asarray(mask, np.float32), affine)
    n = data.shape[-1]
    out = np.empty(data.shape, dtype=np.float32)
    mats = np.zeros((n, 3, 3))
    trans = np.zeros(n)
    for k in range(n):
        mov = to_ants(np.asarray(data[..., k], np.float32), affine)
        reg = ants.registration(fixed=ref, moving=mov, type_of_transform="Affine", aff_metric="mattes",
                                aff_iterations=tuple(iterations), aff_shrink_factors=(4, 2, 1)[:len(iterations)],
                                aff_smoothing_sigmas=(2, 1, 0)[:len(iterations)], **kwargs)
        out[..., k] = reg["warpedmovout"].numpy()
        mats[k] = _affine_matrix(reg["fwdtransforms"][0])
        p = np.asarray(ants.read_transform(reg["fwdtransforms"][0]).parameters, dtype=float)
        trans[k] = float(np.linalg.norm(p[9:12]))
        for f in reg["fwdtransforms"] + reg["invtransforms"]:
            Path(f).unlink(missing_ok=True)
        if log and (k + 1) % 10 == 0:
            log.info("motion/eddy correction: %d/%d volumes", k + 1, n)
    rots = np.stack([bvec_rotation(m, affine) for m in mats])
    new_bvecs = rotate_bvecs(gtab.bvecs, rots)
    new = GradientTable(gtab.bvals.copy(), new_bvecs, gtab.b0_threshold, gtab.max_norm_deviation, gtab.source)
    angles = np.degrees(np.arccos(np.clip((np.trace(rots, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return {"data": out, "gtab": new, "matrices": mats, "rotation_deg": angles, "translation_mm": trans}


# ----------------------------------------------------------------------------- to MNI
def _template_ants(kind: str, resolution: float):
    from hfsmri.spatial.templates import load_template

    t = load_template(kind, resolution)
    return to_ants(np.asarray(t.get_fdata(), np.float32), t.affine)


def to_mni(b0: np.ndarray, affine: np.ndarray, work_dir, *, t1w=None, t1w_to_mni=None, b0_mask=None) -> dict:
    """Transforms (ants order, list of files) taking the b0 space to MNI.

    With ``t1w`` (path or nibabel image) and ``t1w_to_mni`` (ants transform list, fixed = MNI):
    b0 → T1w rigid (Mattes MI) composed with them (``how = "anat"``). Otherwise b0 → MNI template
    affine (``how = "direct"``).
    """
    import ants

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    moving = to_ants(np.asarray(b0, np.float32) * (1 if b0_mask is None else np.asarray(b0_mask)), affine)
    if t1w is not None and t1w_to_mni:
        t1 = nib.load(str(t1w)) if isinstance(t1w, (str, Path)) else t1w
        fixed = to_ants(np.asarray(t1.get_fdata(), np.float32), t1.affine)
        from hfsmri.spatial.registration import rigid_to_anatomy

        return {"transforms": list(t1w_to_mni) + rigid_to_anatomy(moving, fixed, work_dir / "b0tot1_"),
                "how": "anat"}
    tmpl = _template_ants("T1", 2) * _template_ants("mask", 2)
    reg = ants.registration(fixed=tmpl, moving=moving, type_of_transform="Affine",
                            outprefix=str(work_dir / "b0tomni_"))
    return {"transforms": list(reg["fwdtransforms"]), "how": "direct"}


def apply_to_mni(maps: dict[str, np.ndarray], affine: np.ndarray, transforms: list, resolution: float,
                 interpolation: str = "linear") -> dict[str, np.ndarray]:
    """Resample native scalar maps onto the MNI grid of ``resolution`` mm (see templates)."""
    import ants

    from hfsmri.spatial.templates import template_grid

    shape, mni_aff = template_grid(resolution)
    fixed = to_ants(np.zeros(shape, np.float32), mni_aff)
    out = {}
    for name, vol in maps.items():
        w = ants.apply_transforms(fixed=fixed, moving=to_ants(np.asarray(vol, np.float32), affine),
                                  transformlist=list(transforms), interpolator=interpolation)
        out[name] = w.numpy().astype(np.float32)
    return out
