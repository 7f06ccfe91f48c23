"""Robust starting points for registering a whole head: robust field of view and a multi-start
rotation search.

Conventions: world coordinates are RAS+ mm (nibabel); a "point map fixed -> moving" is a 4x4
matrix taking template (fixed) world points to native (moving) world points, the direction ANTs
stores in its affine files (:func:`hfsmri.anat.midspace.write_ants_affine` writes one).

* :func:`robust_fov` (as FSL ``robustfov``): a scan with face, neck and shoulders is cut to the
  ``height_mm`` (default 180 mm) below the top of the head along the header's superior axis (world
  +z; the header tells where superior is to within the acquisition tilt, which is all any tool has),
  then to the bounding box of the head. The voxel grid is kept (sub-block of the same grid), so
  transforms estimated on the crop hold for the full image.
* :func:`rotation_search` (as FSL ``flirt -searchrx/-searchry/-searchrz`` and ANTs ``antsAI``): the
  moving image is rotated about its centre of mass over a grid of rotations (default every 30 deg
  within +-90 deg about each axis, 343 starts) and small shifts along the superior axis, each start
  scored by normalised mutual information with the template inside a template mask on a coarse
  (6 mm) lattice, and the best starts are returned for a full registration to refine. Pure numpy /
  scipy: ~1-3 s for all starts.
"""
from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from .resample import as_nib, voxel_sizes

ROBUST_FOV_HEIGHT_MM = 180.0  # vertex to below the cerebellum with margin (FSL robustfov: 170 mm)


def euler_rotation(degrees_xyz) -> np.ndarray:
    """3x3 rotation Rz @ Ry @ Rx for angles (degrees) about the x, y, z axes."""
    ax, ay, az = np.deg2rad(np.asarray(degrees_xyz, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def robust_fov(img, head: np.ndarray, height_mm: float = ROBUST_FOV_HEIGHT_MM, pad_mm: float = 10.0):
    """Crop of a whole-head image to the head's top ``height_mm`` (see module doc).

    Parameters
    ----------
    img : nibabel image (3D).
    head : boolean head mask on the grid of ``img`` (e.g. :func:`hfsmri.anat.brain_extraction.head_mask`).
    height_mm : kept extent below the highest head voxel along world +z (mm).
    pad_mm : margin around the head's bounding box (mm).

    Returns
    -------
    (cropped nibabel image on a sub-block of the same grid, with every voxel below the cut set to
    0 (other voxels, background included, keep their values), cropped head mask, slices into the
    original array, number of head voxels removed below the cut).
    """
    img = as_nib(img)
    head = np.asarray(head, bool)
    if not head.any():
        sl = tuple(slice(0, n) for n in head.shape)
        return img, head, sl, 0
    aff = np.asarray(img.affine, float)
    ijk = np.nonzero(head)
    z = aff[2, :3] @ np.array(ijk, dtype=float) + aff[2, 3]
    keep_pts = z >= z.max() - float(height_mm)
    kept = np.zeros_like(head)
    kept[tuple(i[keep_pts] for i in ijk)] = True
    removed = int((~keep_pts).sum())
    pad = np.ceil(float(pad_mm) / voxel_sizes(img)).astype(int)
    idx = np.nonzero(kept)
    sl = tuple(slice(max(int(i.min()) - p, 0), min(int(i.max()) + p + 1, n))
               for i, p, n in zip(idx, pad, head.shape))
    data = np.asarray(img.dataobj, dtype=np.float32)[sl].copy()
    i, j, k = (np.arange(s.start, s.stop, dtype=np.float64) for s in sl)
    zz = (aff[2, 0] * i[:, None, None] + aff[2, 1] * j[None, :, None] + aff[2, 2] * k[None, None, :]
          + aff[2, 3])
    data[zz < z.max() - float(height_mm)] = 0  # below the cut (neck, shoulders)
    new = aff.copy()
    new[:3, 3] = aff[:3, :3] @ np.array([s.start for s in sl], float) + aff[:3, 3]
    return nib.Nifti1Image(data, new), kept[sl], sl, removed


def centre_of_mass_mm(data: np.ndarray, affine: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Intensity-weighted centre of mass (world mm) of ``data`` (inside ``mask`` when given)."""
    w = np.clip(np.asarray(data, dtype=np.float64), 0, None)
    if mask is not None:
        w = w * np.asarray(mask, bool)
    if w.sum() <= 0:
        w = np.ones_like(w)
    c = np.array(ndi.center_of_mass(w))
    return np.asarray(affine, float)[:3, :3] @ c + np.asarray(affine, float)[:3, 3]


def normalised_mi(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """Normalised mutual information (H(a) + H(b)) / H(a, b) of two samples (Studholme 1999; 1..2)."""
    if a.size < 10 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0
    h, _, _ = np.histogram2d(a, b, bins=bins)
    p = h / h.sum()
    px, py = p.sum(1), p.sum(0)

    def ent(q):
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    hj = ent(p.ravel())
    return (ent(px) + ent(py)) / hj if hj > 0 else 1.0


def start_map(rotation: np.ndarray, c_fixed, c_moving, shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Point map fixed -> moving: x_m = c_m + shift + R (x_f - c_f) (4x4, RAS)."""
    M = np.eye(4)
    M[:3, :3] = rotation
    M[:3, 3] = np.asarray(c_moving, float) + np.asarray(shift, float) - rotation @ np.asarray(c_fixed, float)
    return M


SCALP_MM = 16.0  # scalp + skull at the vertex (Colin27: head top z = 103 mm, brain top 84 mm)
SLAB_MM = 90.0   # depth below the brain's top whose centroid pins the start (cranium, never the neck)


def _slab_centre(points: np.ndarray, top_offset_mm: float) -> np.ndarray:
    """Centre of a head/brain point cloud (3, n), in its own frame: x, y = centroid of the points
    within ``SLAB_MM`` below ``top - top_offset_mm``; z = that level minus ``SLAB_MM`` / 2."""
    top = points[2].max() - top_offset_mm
    slab = points[2] >= top - SLAB_MM
    return np.array([points[0, slab].mean(), points[1, slab].mean(), top - SLAB_MM / 2.0])


def rotation_search(fixed, fixed_mask, moving, moving_mask=None, fixed_brain=None, max_deg: float = 90.0,
                    step_deg: float = 30.0, shifts_mm=(-10.0, 0.0, 10.0), lattice_mm: float = 6.0,
                    smooth_mm: float = 4.0, n_best: int = 3) -> list[dict]:
    """Best rigid starting points of ``moving`` on ``fixed`` by exhaustive search (module doc).

    Parameters
    ----------
    fixed, fixed_mask : template image and the mask where the metric is evaluated (nibabel).
    moving : native image (nibabel; e.g. the :func:`robust_fov` crop of an N4 whole head).
    moving_mask : the head (everything but air) on the moving grid. With it and ``fixed_brain``
        (the template's brain mask), each start pins the top of the head (minus ``SCALP_MM``) to the
        top of the template brain and the centroid of the cranium (the ``SLAB_MM`` below) to that of
        the template brain, in the frame of the start's rotation: a neck, shoulders or a face in the
        field of view do not move this centre, as they move a centre of mass. Without them the
        centres of mass are aligned.
    max_deg, step_deg : rotation grid about each axis (degrees).
    shifts_mm : shifts along the start's superior axis added to the centre alignment (the scalp's
        thickness varies; centres of mass of a head with face lie below the brain's).
    lattice_mm : spacing of the fixed-mask sample points; ``smooth_mm`` Gaussian FWHM applied to
        both images first.
    n_best : number of starts returned (distinct rotations, best first).

    Returns
    -------
    list of dicts ``{"map": 4x4 fixed->moving point map, "nmi": score, "degrees": (rx, ry, rz),
    "shift_mm": dz}``, best first.
    """
    fixed, moving = as_nib(fixed), as_nib(moving)
    fa = np.asarray(fixed.affine, float)
    ma = np.asarray(moving.affine, float)
    fdat = np.asarray(fixed.dataobj, dtype=np.float32)
    mdat = np.asarray(moving.dataobj, dtype=np.float32)
    fs = ndi.gaussian_filter(fdat, smooth_mm / 2.3548 / voxel_sizes(fixed))
    ms = ndi.gaussian_filter(mdat, smooth_mm / 2.3548 / voxel_sizes(moving))
    # fixed sample points on a lattice inside the mask
    step = np.maximum(1, np.round(lattice_mm / voxel_sizes(fixed)).astype(int))
    fm = np.asarray(as_nib(fixed_mask).dataobj) > 0
    sub = np.zeros_like(fm)
    sub[::step[0], ::step[1], ::step[2]] = True
    ijk = np.array(np.nonzero(fm & sub), dtype=float)
    xf = fa[:3, :3] @ ijk + fa[:3, 3][:, None]
    vf = fs[fm & sub]
    pinned = moving_mask is not None and fixed_brain is not None
    if pinned:
        fb = np.asarray(as_nib(fixed_brain).dataobj) > 0
        c_f = _slab_centre(fa[:3, :3] @ np.array(np.nonzero(fb), float) + fa[:3, 3][:, None], 0.0)
        hm = np.asarray(moving_mask, bool)
        hstep = max(1, int(round(4.0 / float(voxel_sizes(moving).min()))))  # ~4 mm point cloud
        hsub = np.zeros_like(hm)
        hsub[::hstep, ::hstep, ::hstep] = True
        head_pts = ma[:3, :3] @ np.array(np.nonzero(hm & hsub), float) + ma[:3, 3][:, None]
    else:
        c_f = centre_of_mass_mm(fdat, fa, fm)
        c_com = centre_of_mass_mm(mdat, ma, moving_mask)
    inv_m = np.linalg.inv(ma)
    angles = np.arange(-max_deg, max_deg + 1e-6, step_deg)
    results = []
    for deg in itertools.product(angles, angles, angles):
        R = euler_rotation(deg)
        c_m = R @ _slab_centre(R.T @ head_pts, SCALP_MM) if pinned else c_com
        for dz in shifts_mm:
            M = start_map(R, c_f, c_m, R @ np.array([0.0, 0.0, dz]))
            vox = (inv_m @ M)[:3, :3] @ xf + (inv_m @ M)[:3, 3][:, None]
            vm = ndi.map_coordinates(ms, vox, order=1, mode="constant", cval=0.0)
            results.append({"map": M, "nmi": normalised_mi(vf, vm), "degrees": tuple(float(d) for d in deg),
                            "shift_mm": float(dz)})
    results.sort(key=lambda r: -r["nmi"])
    best, seen = [], set()
    for r in results:
        if r["degrees"] in seen:
            continue
        seen.add(r["degrees"])
        best.append(r)
        if len(best) >= n_best:
            break
    return best
