"""Synthetic anatomical images with known ground truth, for tests and benchmarks.

* :func:`whole_head_phantom` — a whole-head T1w-like image built from the MNI template's tissue
  probabilities plus a synthetic head (CSF rim, dark skull, bright scalp, neck), with a smooth
  random deformation, a rigid pose change, a multiplicative bias field and noise. Returns the
  image and its native-space ground truth (GM/WM/CSF probabilities, brain mask, deformation).
* :func:`shell_phantom` — concentric spherical shells (WM core, GM shell of known thickness,
  CSF outside) for cortical-thickness validation.
* :func:`smooth_deformation` — a smooth random displacement field (mm) of a given peak size.

Intensities are in arbitrary units on the template's 0..1 scale: CSF 0.25, GM 0.62, WM 0.85,
skull 0.08, scalp 0.75, neck muscle 0.45.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

INTENSITY = {"csf": 0.25, "gm": 0.62, "wm": 0.85, "skull": 0.08, "scalp": 0.75, "muscle": 0.45}


def smooth_deformation(shape, voxel_mm: float, max_mm: float, smooth_mm: float = 20.0,
                       random_state=0) -> np.ndarray:
    """Random smooth displacement field, shape ``shape + (3,)`` in mm, with peak |u| = ``max_mm``.

    Gaussian-filtered white noise (sigma ``smooth_mm``), scaled so that the largest displacement
    magnitude equals ``max_mm``. Small ``max_mm`` relative to ``smooth_mm`` keeps it invertible.
    """
    rng = np.random.default_rng(random_state)
    sigma = smooth_mm / voxel_mm
    field = np.stack([ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="nearest")
                      for _ in range(3)], axis=-1)
    peak = np.sqrt((field ** 2).sum(-1)).max()
    if max_mm <= 0 or peak == 0:
        return np.zeros(tuple(shape) + (3,))
    return field * (max_mm / peak)


def _rotation(deg_xyz) -> np.ndarray:
    ax, ay, az = np.deg2rad(deg_xyz)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _mni_head(resolution_mm: float, pad_mm: float, neck_mm: float, gm_scale=None):
    """Tissue probabilities and head labels on a padded MNI grid (RAS, isotropic)."""
    from ..spatial.templates import load_template

    gm = load_template("GM", resolution_mm).get_fdata()
    wm = load_template("WM", resolution_mm).get_fdata()
    mask = load_template("mask", resolution_mm).get_fdata() > 0
    aff = load_template("GM", resolution_mm).affine.copy()
    if gm_scale is not None:  # planted atrophy: GM probability scaled, the rest becomes CSF
        gm = gm * np.asarray(gm_scale, dtype=float)
    gm = gm * mask
    wm = wm * mask
    total = gm + wm
    over = total > 1
    gm[over] /= total[over]
    wm[over] /= total[over]
    csf = np.clip(1.0 - gm - wm, 0, 1) * mask
    p = int(round(pad_mm / resolution_mm))
    pn = int(round(neck_mm / resolution_mm))
    pads = ((p, p), (p, p), (pn, p))
    gm, wm, csf = (np.pad(a, pads) for a in (gm, wm, csf))
    mask = np.pad(mask, pads)
    aff[:3, 3] -= aff[:3, :3] @ np.array([p, p, pn])
    return gm, wm, csf, mask, aff


def whole_head_phantom(resolution_mm: float = 2.0, max_deformation_mm: float = 4.0,
                       rotation_deg=(4.0, -3.0, 5.0), translation_mm=(3.0, -4.0, 6.0),
                       bias: float = 0.2, noise: float = 0.015, gm_scale=None,
                       pad_mm: float = 24.0, neck_mm: float = 50.0, random_state=0) -> dict:
    """Whole-head T1w-like phantom in a native pose, with ground truth.

    Parameters
    ----------
    resolution_mm : voxel size of the MNI-derived source and of the native grid (isotropic, mm).
    max_deformation_mm : peak of the smooth random deformation (mm).
    rotation_deg, translation_mm : rigid pose of the head in the native scanner frame.
    bias : amplitude of the smooth multiplicative bias field (0.2 = +-20 %).
    noise : Gaussian noise SD (template intensity units).
    gm_scale : optional MNI-grid array (template shape at ``resolution_mm``) multiplying the GM
        probability before warping (planted atrophy < 1 or increase > 1; GM lost becomes CSF).
    pad_mm, neck_mm : head margin around the template's field of view and neck length below it.
    random_state : seed.

    Returns
    -------
    dict with nibabel images ``t1w`` (whole head), ``gm``, ``wm``, ``csf`` (probabilities),
    ``brain_mask`` (uint8) on the native grid, ``tiv_ml`` (ground-truth GM+WM+CSF volume inside
    the template brain mask; the 2.5 mm extra-cerebral CSF rim outside it is not counted),
    ``gm_ml``, and ``mni_to_native`` (callable mapping MNI mm points (n, 3) to native mm).
    """
    rng = np.random.default_rng(random_state)
    gm, wm, csf, mask, aff = _mni_head(resolution_mm, pad_mm, neck_mm, gm_scale)
    shape = mask.shape
    r = float(resolution_mm)
    # head layers by distance (mm) outside the brain mask
    dist = ndi.distance_transform_edt(~mask, sampling=r)
    # round the head: distance to a smoothed brain hull to avoid sulcal detail in the skull
    hull = ndi.gaussian_filter(mask.astype(float), 6.0 / r) > 0.2
    dist_h = ndi.distance_transform_edt(~hull, sampling=r)
    csf_rim = (dist > 0) & (dist_h <= 2.5)
    skull = (dist_h > 2.5) & (dist_h <= 8.5)
    scalp = (dist_h > 8.5) & (dist_h <= 14.0)
    # neck: elliptic cylinder under the brain, centred on the brainstem
    ijk = np.argwhere(mask)
    low = ijk[:, 2].min()
    stem = ijk[ijk[:, 2] <= low + 3]
    ci, cj = stem[:, 0].mean(), stem[:, 1].mean()
    ii, jj, kk = np.indices(shape, sparse=True)
    ell = ((ii - ci) * r / 55.0) ** 2 + ((jj - cj) * r / 50.0) ** 2
    neck = (kk < low + int(20 / r)) & (ell <= 1.0) & ~mask & ~csf_rim
    neck_fat = neck & (ell > 0.8)
    head = np.zeros(shape, dtype=np.float32)
    head[skull] = INTENSITY["skull"]
    head[scalp] = INTENSITY["scalp"]
    head[neck] = INTENSITY["muscle"]
    head[neck_fat] = INTENSITY["scalp"]
    head[csf_rim] = INTENSITY["csf"]  # extra-cerebral CSF: outside the brain mask, not in TIV
    brain_int = INTENSITY["gm"] * gm + INTENSITY["wm"] * wm + INTENSITY["csf"] * csf
    img_mni = np.where(mask, brain_int, head).astype(np.float32)

    # native grid: same shape/resolution, axis-aligned; content = MNI(T(x_native))
    rot = _rotation(rotation_deg)
    centre = aff[:3, :3] @ ((np.asarray(shape) - 1) / 2.0) + aff[:3, 3]
    u = smooth_deformation(shape, r, max_deformation_mm, random_state=rng.integers(1 << 31))
    nat_aff = aff.copy()
    idx = np.indices(shape).reshape(3, -1).astype(float)
    x_nat = (nat_aff[:3, :3] @ idx + nat_aff[:3, 3:4])
    # native -> MNI point mapping: y = R (x - c - t) + c, then + u(y) (deformation in MNI frame)
    y = rot @ (x_nat - centre[:, None] - np.asarray(translation_mm, float)[:, None]) + centre[:, None]
    inv_aff = np.linalg.inv(aff)
    vox = inv_aff[:3, :3] @ y + inv_aff[:3, 3:4]
    disp = np.stack([ndi.map_coordinates(u[..., a], vox, order=1, mode="nearest") for a in range(3)])
    vox = inv_aff[:3, :3] @ (y + disp) + inv_aff[:3, 3:4]

    def warp(a, order=1):
        return ndi.map_coordinates(a.astype(np.float32), vox, order=order, mode="constant",
                                   cval=0.0).reshape(shape)

    t1 = warp(img_mni)
    gm_n, wm_n, csf_n = warp(gm), warp(wm), warp(csf)
    brain_n = (warp(mask.astype(np.float32)) >= 0.5).astype(np.uint8)
    # bias field: smooth low-order multiplicative field
    c = (np.indices(shape).reshape(3, -1).T - (np.asarray(shape) - 1) / 2.0) / (np.asarray(shape) / 2.0)
    coef = rng.uniform(-1, 1, size=6)
    poly = (coef[0] * c[:, 0] + coef[1] * c[:, 1] + coef[2] * c[:, 2]
            + coef[3] * c[:, 0] * c[:, 1] + coef[4] * c[:, 2] ** 2 + coef[5] * c[:, 1] * c[:, 2])
    poly = poly / max(np.abs(poly).max(), 1e-9)
    field = np.exp(np.log1p(bias) * poly).reshape(shape) if bias > 0 else 1.0
    t1 = t1 * field + noise * rng.standard_normal(shape)
    t1 = np.clip(t1, 0, None).astype(np.float32) * 1000.0
    vox_ml = r ** 3 / 1000.0

    def mni_to_native(pts):
        """Approximate inverse of the native->MNI mapping (fixed-point on the deformation)."""
        pts = np.atleast_2d(np.asarray(pts, float))
        yy = pts.copy()
        for _ in range(10):
            v = inv_aff[:3, :3] @ yy.T + inv_aff[:3, 3:4]
            d = np.stack([ndi.map_coordinates(u[..., a], v, order=1, mode="nearest") for a in range(3)]).T
            yy = pts - d
        return (rot.T @ (yy - centre).T).T + centre + np.asarray(translation_mm, float)

    mk = lambda a, dt=np.float32: nib.Nifti1Image(np.asarray(a, dtype=dt), nat_aff)  # noqa: E731
    return {
        "t1w": mk(t1), "gm": mk(gm_n), "wm": mk(wm_n), "csf": mk(csf_n), "brain_mask": mk(brain_n, np.uint8),
        "tiv_ml": float((gm_n + wm_n + csf_n).sum() * vox_ml),
        "gm_ml": float(gm_n.sum() * vox_ml),
        "mni_to_native": mni_to_native,
    }


def shell_phantom(thickness_mm: float = 4.0, inner_radius_mm: float = 20.0, voxel_mm: float = 1.0,
                  margin_mm: float = 6.0, partial_volume: bool = True):
    """Concentric spheres: WM ball (radius ``inner_radius_mm``), GM shell of ``thickness_mm``, CSF.

    Returns
    -------
    seg : int ndarray, 1 = CSF/background, 2 = GM, 3 = WM (Atropos/DiReCT convention)
    gm_prob, wm_prob : float ndarrays (partial-volume fractions by 4x supersampling when
        ``partial_volume``, else binary)
    affine : voxel -> mm (isotropic ``voxel_mm``, centred on the sphere)
    """
    r_out = inner_radius_mm + thickness_mm
    n = int(np.ceil(2 * (r_out + margin_mm) / voxel_mm)) | 1
    c = (n - 1) / 2.0
    sub = 4 if partial_volume else 1
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    gmp = np.zeros((n, n, n))
    wmp = np.zeros((n, n, n))
    ii = np.arange(n) - c
    for ox in offs:
        for oy in offs:
            for oz in offs:
                x = (ii + ox)[:, None, None] * voxel_mm
                y = (ii + oy)[None, :, None] * voxel_mm
                z = (ii + oz)[None, None, :] * voxel_mm
                rr = np.sqrt(x ** 2 + y ** 2 + z ** 2)
                wmp += rr <= inner_radius_mm
                gmp += (rr > inner_radius_mm) & (rr <= r_out)
    gmp /= sub ** 3
    wmp /= sub ** 3
    csfp = 1 - gmp - wmp
    seg = np.argmax(np.stack([csfp, gmp, wmp]), axis=0) + 1
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -c * voxel_mm
    return seg.astype(np.int32), gmp, wmp, affine
