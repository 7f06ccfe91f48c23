"""Per-subject geometry: native scanner grids and the mapping native mm -> MNI mm.

A simulated subject's brain is the MNI template brain, individually modified (tissue, diffusion,
function), and *placed in the scanner* by a transform ``T``. The simulator only ever needs the
inverse direction: for every native voxel centre ``y`` (scanner mm) the MNI point ``x`` whose
tissue it contains::

    x = (1/s) * R^T (y - t)            rigid pose (rotation R, translation t) and global scale s
    x <- x + u(x)                      smooth nonlinear displacement u (mm)

``s`` is the head size relative to the template. The ICBM152 2009 template brain is large (brain
mask 1883 ml: GM 996, WM 670, CSF 217 ml), so ``s`` is drawn around :data:`HEAD_SCALE` (women
0.906, men 0.943: total intracranial volume (TIV) ~1400 / ~1580 ml, as adult eTIV norms) with SD
``scale_sd`` = 0.033 (TIV SD ~10 %); TIV varies as s**3. ``R`` a few degrees about each axis, ``t`` a few mm, and ``u`` a Gaussian random
displacement field (FWHM ``deform_fwhm`` mm, RMS ``deform_rms`` mm per component). The Jacobian of
the whole map stays positive for the defaults (max |du/dx| ~ 0.2). With ``deform=False`` the map
is the identity (x = y), which keeps unit tests exact.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from .fields import CoarseGrid, HEAD_HI, HEAD_LO, sample_field, smooth_field

TEMPLATE_TIV_ML = 1883.0  # brain mask volume of the bundled ICBM152 2009 template (GM+WM+CSF)
# mean linear head scale by sex: s**3 * 1883 ml = ~1400 ml (women) / ~1580 ml (men)
HEAD_SCALE = {"F": 0.906, "M": 0.943, None: 0.925}

# native fields of view (scanner mm, before the subject pose), generous around MNI brain/head
FOV = {
    "head": ((-96.0, -132.0, -96.0), (96.0, 104.0, 112.0)),   # whole head incl. scalp (T1w)
    "brain": ((-84.0, -120.0, -66.0), (84.0, 90.0, 96.0)),    # EPI (DWI, BOLD) slab
}


def native_grid(resolution_mm: float, fov: str = "head", orientation: str = "RAS"):
    """Return ``(shape, affine)`` of an axis-aligned native grid.

    ``orientation`` "RAS" (affine diag(+r, +r, +r)) or "LAS" (first axis runs right-to-left,
    affine diag(-r, r, r), negative determinant as in FSL/radiological storage; used for DWI so that
    the FSL bvec convention and the voxel-frame convention coincide).
    """
    r = float(resolution_mm)
    lo, hi = (np.asarray(v, float) for v in FOV[fov])
    shape = tuple(int(np.floor((h - l) / r)) + 1 for l, h in zip(lo, hi))
    affine = np.diag([r, r, r, 1.0])
    affine[:3, 3] = lo
    if orientation == "LAS":
        affine[0, 0] = -r
        affine[0, 3] = lo[0] + r * (shape[0] - 1)
    elif orientation != "RAS":
        raise ValueError(f"orientation must be RAS or LAS, got {orientation!r}")
    return shape, affine


def fast_grid_points(shape, affine) -> np.ndarray:
    """World (mm) coordinates (n, 3, float32) of every voxel centre of a grid, in C order, built
    by broadcasting along the three axes (several times faster than :func:`grid_points`'s matrix
    product; the values can differ from it in the last bit, so the old ``ideal`` grids keep
    :func:`grid_points` and stay byte-identical)."""
    a = np.asarray(affine, np.float64)
    out = np.empty(tuple(shape) + (3,), np.float32)
    i, j, k = (np.arange(n, dtype=np.float64) for n in shape)
    for d in range(3):
        out[..., d] = (a[d, 0] * i[:, None, None] + a[d, 1] * j[None, :, None]
                       + (a[d, 2] * k + a[d, 3])[None, None, :])
    return out.reshape(-1, 3)


def grid_points(shape, affine, mask: np.ndarray | None = None) -> np.ndarray:
    """World (mm) coordinates (n, 3) of the voxel centres of a grid (optionally only where mask)."""
    if mask is None:
        ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    else:
        ijk = np.nonzero(mask)
        ijk = np.vstack(ijk).astype(np.float32)
    return (affine[:3, :3].astype(np.float32) @ ijk + affine[:3, 3:4].astype(np.float32)).T


@dataclass
class SubjectTransform:
    """Native (scanner) mm -> MNI mm mapping of one subject (see module doc).

    Attributes: ``rotation`` (3x3), ``translation`` (mm), ``scale``, ``disp`` (3, *grid.shape) or
    None, ``grid`` (CoarseGrid of the displacement).
    """

    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: float = 1.0
    disp: np.ndarray | None = None
    grid: CoarseGrid | None = None

    @classmethod
    def identity(cls) -> "SubjectTransform":
        return cls()

    @classmethod
    def random(cls, rng: np.random.Generator, deform: bool = True, rot_deg: float = 3.0,
               trans_mm: float = 4.0, scale_sd: float = 0.033, deform_rms: float = 2.5,
               deform_fwhm: float = 40.0, scale_mean: float = 1.0) -> "SubjectTransform":
        """Draw a subject: rotation ~ N(0, rot_deg) per axis, translation ~ N(0, trans_mm),
        scale ~ N(scale_mean, scale_sd) (clipped to ±3 SD; see :data:`HEAD_SCALE` for realistic
        means), displacement field RMS ``deform_rms`` mm."""
        angles = rng.normal(0.0, rot_deg, 3)
        rot = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
        trans = rng.normal(0.0, trans_mm, 3)
        scale = float(scale_mean + np.clip(rng.normal(0.0, scale_sd), -3 * scale_sd, 3 * scale_sd))
        disp, grid = None, None
        if deform:
            grid = CoarseGrid.covering(HEAD_LO, HEAD_HI, 8.0)
            disp = smooth_field(rng, deform_fwhm, grid, n=3) * np.float32(deform_rms)
        return cls(rot, trans, scale, disp, grid)

    @property
    def is_identity(self) -> bool:
        return (self.disp is None and self.scale == 1.0 and np.allclose(self.rotation, np.eye(3))
                and np.allclose(self.translation, 0))

    def rigid_to_mni(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, np.float64)
        return (((y - self.translation) @ self.rotation) / self.scale).astype(np.float32)

    def mni_to_native_rigid(self, x: np.ndarray) -> np.ndarray:
        """Forward rigid + scale map of (n, 3) MNI mm points to native mm, ``y = s R x + t``
        (the inverse of :meth:`rigid_to_mni`; the nonlinear displacement is ignored). Used to
        place a field of view on the head."""
        x = np.asarray(x, np.float64)
        return (self.scale * x) @ np.asarray(self.rotation).T + np.asarray(self.translation)

    def grid_to_mni(self, shape, affine) -> tuple[np.ndarray, np.ndarray]:
        """``(y, x)``: world points of every voxel of a grid and their MNI points (fast path of
        ``native_to_mni(grid_points(...))`` for the scanner-like grids: the rigid part is folded
        into the grid's affine)."""
        y = fast_grid_points(shape, affine)
        a = np.asarray(affine, np.float64)
        m = np.eye(4)
        m[:3, :3] = np.asarray(self.rotation).T / self.scale
        m[:3, 3] = -m[:3, :3] @ np.asarray(self.translation, np.float64)
        x = fast_grid_points(shape, m @ a)
        return y, self._displace(x)

    def _displace(self, x: np.ndarray) -> np.ndarray:
        if self.disp is not None:
            from scipy import ndimage

            idx = self.grid.to_index(x)
            for k in range(3):
                x[:, k] += ndimage.map_coordinates(self.disp[k], idx, order=1, mode="nearest", prefilter=False)
        return x

    def native_to_mni(self, y: np.ndarray) -> np.ndarray:
        """Map (n, 3) native mm points to MNI mm points."""
        x = self.rigid_to_mni(y)
        if self.disp is not None:
            u = np.stack([sample_field(self.disp[k], self.grid, x, order=1) for k in range(3)], axis=1)
            x = x + u
        return x

    def as_dict(self) -> dict:
        rx, ry, rz = Rotation.from_matrix(self.rotation).as_euler("xyz", degrees=True)
        return {"rot_x_deg": rx, "rot_y_deg": ry, "rot_z_deg": rz,
                "trans_x_mm": self.translation[0], "trans_y_mm": self.translation[1],
                "trans_z_mm": self.translation[2], "scale": self.scale,
                "deform_rms_mm": 0.0 if self.disp is None else float(np.sqrt((self.disp ** 2).mean(axis=(1, 2, 3))).mean())}
