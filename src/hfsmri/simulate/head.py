"""The whole head outside the brain: scalp, skull, face, eyes, sinuses, neck and shoulders.

No head template ships offline (nilearn's ICBM152 2009 T1 and masks are brain-only: 3550 of
1.89 M non-zero template voxels lie outside its brain mask, all at the brain edge), so the
extra-cerebral tissues are built procedurally in template (MNI) mm, around the template brain,
and move with the subject's head exactly as the brain does (the caller samples them at the MNI
points of its native voxels):

* **cranial vault** from the distance ``d`` (mm) to the template brain-mask surface: extra-axial
  CSF (0 to 2 t), inner table, diploe (marrow), outer table (skull ends at about 7.5 t), then the
  scalp: skin (2 mm), subcutaneous fat (3.5 mm x subject fat factor) and galea / temporalis
  muscle (thicker over the temporal fossa); the skin surface lies at about 19 mm (Colin27:
  brain-to-skin 17.5-23 mm);
* **face**: smooth union of ellipsoids (face, nose, chin, eyelids) with the vault; bony orbits
  filled with fat, the eyes (vitreous, lens) and optic nerves; maxilla and mandible (cortical bone
  around marrow), hard palate, tongue (muscle) under a thin oral air slit; nasal cavity with
  turbinates; frontal, maxillary and sphenoid sinuses (air lined by bone), mastoid air cells; ears
  (pinnae and canals);
* **neck and shoulders**: an elliptic neck following a gently lordotic cervical spine (vertebral
  bodies with marrow, discs, posterior arches, dens), the spinal canal (CSF) and cord continuing
  the template medulla, pharynx and trachea (air), muscle with fat planes under a subcutaneous fat
  layer, and shoulders that enter the bottom corners of a 256 mm field of view.

The model returns per-point *class fractions* (soft edges of width ~0.35 voxel: a partial-volume
approximation), so each contrast maps them with its own table (:data:`T1W`, :data:`B0`,
:data:`ADC`, :data:`BOLD`). The fractions sum to ``<= 1``; the rest is air. The brain itself is
not part of this model: the caller writes ``brain + (1 - brain_fraction) * head``.

Intensities relative to white matter (T1w, 3 T MPRAGE-like) were checked against the Colin27 head
(tests/simulate/test_scanner.py; Colin27 scalp fat reaches 1.2-1.45 of WM, skull and CSF are
dark at < 0.3, skin/muscle ~0.5-0.65).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fields import CoarseGrid, sample_field, smooth_field

CLASSES = ("skin", "fat", "muscle", "bone", "marrow", "csf", "cord", "eye", "lens")
_C = {c: i for i, c in enumerate(CLASSES)}

#: T1w intensity relative to WM (fat and marrow are scaled per subject, see HeadParams)
T1W = {"skin": 0.62, "fat": 1.25, "muscle": 0.50, "bone": 0.07, "marrow": 0.60, "csf": 0.18,
       "cord": 0.82, "eye": 0.20, "lens": 0.70}
#: DWI b = 0 signal relative to WM (fat-suppressed T2-weighted EPI)
B0 = {"skin": 0.5, "fat": 0.05, "muscle": 0.35, "bone": 0.0, "marrow": 0.05, "csf": 2.0, "cord": 0.9,
      "eye": 2.2, "lens": 0.4}
#: apparent diffusion coefficient (mm^2/s), isotropic
ADC = {"skin": 1.0e-3, "fat": 0.5e-3, "muscle": 1.5e-3, "bone": 1.0e-3, "marrow": 0.5e-3, "csf": 3.0e-3,
       "cord": 1.1e-3, "eye": 2.9e-3, "lens": 0.4e-3}
#: BOLD (T2*-weighted EPI) mean signal relative to GM
BOLD = {"skin": 0.5, "fat": 0.1, "muscle": 0.45, "bone": 0.0, "marrow": 0.1, "csf": 1.4, "cord": 0.8,
        "eye": 1.3, "lens": 0.3}

#: template box the head model lives in (mm): down to the shoulders
HEAD_BOX_LO = (-125.0, -170.0, -250.0)
HEAD_BOX_HI = (125.0, 140.0, 125.0)
TEXTURE_FWHM_MM = 6.0
#: the medulla of the template ends here (bottom of the template grid); the cord continues it
MEDULLA_Z = -72.0


@dataclass
class HeadParams:
    """One subject's head (anatomy: the same in every session)."""

    skull: float = 1.0        # skull/CSF layer thickness factor
    scalp: float = 1.0        # scalp (skin surface distance) factor
    fat: float = 1.0          # subcutaneous fat thickness factor (head, face)
    neck_fat: float = 1.0     # subcutaneous fat thickness factor (neck)
    neck: float = 1.0         # neck width factor
    marrow: float = 0.60      # diploe/vertebral marrow T1w intensity (fatty marrow: brighter with age)
    fat_int: float = 1.25     # subcutaneous fat T1w intensity
    phase: tuple = (0.0, 0.0)
    texture: np.ndarray | None = None   # (2, *grid.shape) unit smooth fields: fat planes, heterogeneity
    grid: CoarseGrid | None = None

    @classmethod
    def random(cls, rng: np.random.Generator, sex: str | None = None, age: float | None = None) -> "HeadParams":
        neck_mean = {"F": 0.96, "M": 1.04}.get(sex, 1.0)
        age_n = 0.0 if age is None else float(np.clip((age - 55.0) / 20.0, -1.5, 1.5))
        grid = CoarseGrid.covering(HEAD_BOX_LO, HEAD_BOX_HI, 3.0)
        return cls(skull=float(rng.uniform(0.9, 1.15)), scalp=float(rng.uniform(0.88, 1.15)),
                   fat=float(np.clip(np.exp(rng.normal(0.0, 0.3)), 0.5, 2.0)),
                   neck_fat=float(np.clip(np.exp(rng.normal(0.0, 0.35)), 0.5, 2.2)),
                   neck=float(np.clip(rng.normal(neck_mean, 0.04), 0.85, 1.15)),
                   marrow=float(np.clip(rng.uniform(0.55, 0.85) + 0.08 * age_n, 0.4, 0.95)),
                   fat_int=float(rng.uniform(1.2, 1.45)), phase=tuple(rng.uniform(0.0, 6.3, 2)),
                   texture=smooth_field(rng, TEXTURE_FWHM_MM, grid, n=2), grid=grid)

    def as_dict(self) -> dict:
        return {"head_skull": self.skull, "head_scalp": self.scalp, "head_fat": self.fat,
                "head_neck_fat": self.neck_fat, "head_neck": self.neck, "head_marrow": self.marrow,
                "head_fat_int": self.fat_int}


# ---------------------------------------------------------------- shapes (signed distances, mm)
def _ell(x, y, z, c, r):
    """Approximate signed distance (mm) to an ellipsoid (centre c, radii r); exact on spheres."""
    px, py, pz = (x - np.float32(c[0])) / np.float32(r[0]), (y - np.float32(c[1])) / np.float32(r[1]), \
        (z - np.float32(c[2])) / np.float32(r[2])
    k0 = np.sqrt(px * px + py * py + pz * pz)
    k1 = np.sqrt((px / np.float32(r[0])) ** 2 + (py / np.float32(r[1])) ** 2 + (pz / np.float32(r[2])) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, np.float32(1e-6))


def _ell2(u, v, ru, rv):
    """Approximate signed distance (mm) to an ellipse in a plane (radii ru, rv) at offsets u, v."""
    pu, pv = u / np.float32(ru), v / np.float32(rv)
    k0 = np.sqrt(pu * pu + pv * pv)
    k1 = np.sqrt((pu / np.float32(ru)) ** 2 + (pv / np.float32(rv)) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, np.float32(1e-6))


def _capsule(x, y, z, a, b, r):
    a = np.asarray(a, np.float32)
    ab = np.asarray(b, np.float32) - a
    px, py, pz = x - a[0], y - a[1], z - a[2]
    t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / np.float32(ab @ ab), 0.0, 1.0)
    dx, dy, dz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
    return np.sqrt(dx * dx + dy * dy + dz * dz) - np.float32(r)


def _smin(a, b, k):
    """Polynomial smooth minimum (smooth union of two signed distances, blend radius k mm)."""
    h = np.clip(0.5 + 0.5 * (b - a) / np.float32(k), 0.0, 1.0)
    return b + (a - b) * h - np.float32(k) * h * (1.0 - h)


def cord_y(z):
    """A-P position (mm) of the spinal canal axis: continues the template medulla at (0, -45) and
    bulges ~9 mm forward in the mid neck (cervical lordosis)."""
    t = np.clip((np.float32(MEDULLA_Z) - z) / np.float32(120.0), 0.0, 1.0)
    return np.float32(-45.0) + np.float32(9.0) * np.sin(np.float32(np.pi) * t)


class _Painter:
    """Class fractions (n_classes, n) composited front to back: ``paint`` lays a tissue with
    membership m over what is there (``F = F (1 - m) + m e_c``); ``air`` removes tissue."""

    def __init__(self, n):
        self.f = np.zeros((len(CLASSES), n), np.float32)

    def _sel(self, m):
        sel = np.nonzero(m > 1e-3)[0]
        return sel, m[sel]

    def paint(self, cls, m):
        sel, ms = self._sel(m)
        if sel.size:
            self.f[:, sel] *= (1.0 - ms)
            self.f[_C[cls], sel] += ms

    def air(self, m):
        sel, ms = self._sel(m)
        if sel.size:
            self.f[:, sel] *= (1.0 - ms)


def head_fractions(x_mni: np.ndarray, d_brain: np.ndarray, params: HeadParams, voxel_mm: float,
                   margin_mm: float = 3.0):
    """Class fractions of the head outside the brain at template points.

    ``x_mni`` (n, 3) template mm, ``d_brain`` (n,) signed distance to the template brain surface
    (mm, :func:`~hfsmri.simulate.anatomy.tissue_maps` ``outside_mm``), ``voxel_mm`` the native voxel
    size (sets the edge softness). Returns ``(idx, F, h)``: indices of the points inside (or within
    ``margin_mm`` of) the body, their fractions ``F`` (n_classes, len(idx)) in :data:`CLASSES`
    order, and a unit smooth field ``h`` there (tissue heterogeneity, for :func:`intensity`).
    """
    w = np.float32(0.35 * max(float(voxel_mm), 0.5))

    def inside(sd):      # membership of the region sd < 0
        return 0.5 - 0.5 * np.tanh(sd / (2.0 * w))

    def above(v):        # soft step v > 0
        return 0.5 + 0.5 * np.tanh(v / (2.0 * w))

    X, Y, Z = (np.asarray(x_mni[:, k], np.float32) for k in range(3))
    D = np.asarray(d_brain, np.float32)
    p = params
    yc_all = cord_y(Z)
    # ---------------------------------------------------------------- body surface
    temporal = np.exp(-(((np.abs(X) - 62.0) / 22.0) ** 2 + ((Y + 2.0) / 38.0) ** 2 + ((Z + 10.0) / 25.0) ** 2))
    r_scalp = (17.0 + 4.0 * temporal) * p.scalp
    body = D - r_scalp
    body = _smin(body, _ell(X, Y, Z, (0, 38, -68), (62, 46, 52)), 14.0)                 # face
    body = _smin(body, _ell(X, Y, Z, (0, 0, -72), (68, 50, 36)), 14.0)                  # cheeks, parotid, jaw angle
    body = _smin(body, _ell(np.abs(X), Y, Z, (32, 60, -37), (19, 17, 17)), 6.0)          # eyelids
    body = _smin(body, _ell(X, Y, Z, (0, 88, -50), (11, 12, 20)), 6.0)                  # nose
    body = _smin(body, _ell(X, Y, Z, (0, 97, -62), (9, 8, 8)), 5.0)                     # nose tip
    body = _smin(body, _ell(X, Y, Z, (0, 52, -104), (46, 30, 18)), 12.0)                # chin/jaw
    nw = np.float32(p.neck)
    neck = np.maximum(_ell2(X, Y - (yc_all + 10.0), 58.0 * nw, 55.0 * nw), Z + 40.0)
    body = _smin(body, neck, 18.0)
    shoulders = _ell(np.abs(X), Y, Z, (150, -30, -212), (85, 62, 58))
    body = _smin(body, shoulders, 30.0)
    body = np.minimum(body, _ell(np.abs(X), Y, Z, (89, -20, -28), (6, 13, 26)))        # pinnae
    idx = np.nonzero(body < margin_mm)[0]
    X, Y, Z, D, body, yc, temporal = X[idx], Y[idx], Z[idx], D[idx], body[idx], yc_all[idx], temporal[idx]
    AX = np.abs(X)
    P = _Painter(idx.size)
    tex = np.stack([sample_field(p.texture[k], p.grid, np.stack([X, Y, Z], 1)) for k in range(2)]) \
        if p.texture is not None else np.zeros((2, idx.size), np.float32)

    # ---------------------------------------------------------------- soft tissue by depth
    depth = -body
    neckw = 1.0 / (1.0 + np.exp((Z + 75.0) / 12.0))
    fat_t = 3.0 * p.fat * (1.0 - neckw) + 7.0 * p.neck_fat * neckw
    m_body = inside(body)
    s_skin = above(depth - 2.0)
    s_fat = above(depth - 2.0 - fat_t)
    planes = 0.6 * np.exp(-(tex[0] / 0.25) ** 2)                 # fascial fat planes: sheets around a level set
    P.f[_C["skin"]] = m_body * (1.0 - s_skin)
    P.f[_C["fat"]] = m_body * (s_skin - s_fat + s_fat * planes)
    P.f[_C["muscle"]] = m_body * s_fat * (1.0 - planes)

    # ---------------------------------------------------------------- cranial vault
    t = p.skull * (1.0 + 0.08 * np.sin(X / 23.0 + p.phase[0]) * np.cos(Y / 31.0 + p.phase[1]))
    c1 = 2.5 * t
    # the skull base (sphenoid, petrous bones, clivus) is thick: up to 12 mm more under the brain
    base = np.exp(-((X / 45.0) ** 2 + ((Y + 5.0) / 40.0) ** 2)) / (1.0 + np.exp((Z + 25.0) / 6.0))
    b_out = c1 + 5.8 * t + 12.0 * base
    vault = above(D - c1) * (1.0 - above(D - b_out))
    P.paint("bone", vault)
    P.paint("marrow", above(D - c1 - 1.8 * t) * (1.0 - above(D - b_out + 1.8 * t)))
    P.paint("csf", above(D) * (1.0 - above(D - c1)))

    def bone(sd, cortex=1.6):
        P.paint("bone", inside(sd))
        P.paint("marrow", inside(sd + cortex))

    # ---------------------------------------------------------------- facial skeleton
    bone(_ell(X, Y, Z, (0, 52, -62), (36, 30, 16)))                                    # maxilla + palate
    arch = _ell2(X, Y - 20.0, 44.0, 56.0)
    mand = np.maximum(np.maximum(np.abs(arch) - 4.5, 18.0 - Y), np.abs(Z + 111.0) - 11.0)
    mand = np.minimum(mand, _capsule(AX, Y, Z, (44, 10, -102), (47, -6, -52), 5.5))     # rami
    bone(mand)
    # vertebrae: bodies with discs, posterior arches, the dens of C2
    lev = np.mod(-82.0 - Z, 19.0)
    disc = inside(np.abs(lev - 2.5) - 2.5) * (Z < -82.0)
    vb = np.maximum(_ell2(X, Y - (yc + 19.0), 12.0, 9.0), Z + 80.0)
    P.paint("bone", inside(vb) * (1.0 - disc))
    P.paint("marrow", inside(vb + 1.5) * (1.0 - disc))
    P.paint("muscle", inside(vb) * disc)
    ring = np.maximum(np.maximum(_ell2(X, Y - yc, 15.0, 13.0), -_ell2(X, Y - yc, 10.0, 8.0)), Y - (yc - 1.0))
    ring = np.maximum(ring, Z + 78.0)
    spinous = np.maximum(_ell2(X, Y - (yc - 24.0), 3.5, 11.0), Z + 78.0)
    post = np.minimum(ring, spinous)
    P.paint("bone", inside(post) * (1.0 - disc))
    P.paint("marrow", inside(post + 1.2) * (1.0 - disc))
    bone(_capsule(X, Y, Z, (0, -45 + 14, -76), (0, -45 + 16, -95), 5.0))              # dens
    # orbits: bony walls, fat, optic nerve, globe, lens
    bone(_ell(AX, Y, Z, (32, 52, -37), (19.5, 24, 18.5)), cortex=1.2)
    P.paint("fat", inside(_ell(AX, Y, Z, (32, 45, -37), (16.5, 20.5, 15.5))))
    P.paint("cord", inside(_capsule(AX, Y, Z, (32, 48, -37), (14, 20, -24), 2.2)))
    P.paint("eye", inside(_ell(AX, Y, Z, (32, 60, -37), (12, 12, 12))))
    P.paint("lens", inside(_ell(AX, Y, Z, (32, 69.5, -37), (4.5, 2.0, 4.5))))
    # sinuses (air lined by bone), nasal cavity with turbinates, mastoid air cells
    for c, r in (((30, 50, -58), (13, 16, 15)), ((0, 77, -2), (12, 4.5, 10)), ((0, 20, -45), (11, 11, 9))):
        xs = AX if c[0] else X
        bone(_ell(xs, Y, Z, c, (r[0] + 1.5, r[1] + 1.5, r[2] + 1.5)), cortex=1.0)
        P.air(inside(_ell(xs, Y, Z, c, r)))
    bone(_ell(X, Y, Z, (0, 55, -55), (12.5, 34.5, 18.5)), cortex=1.0)
    P.air(inside(_ell(X, Y, Z, (0, 55, -55), (11, 33, 17))))
    P.paint("skin", inside(np.maximum(np.abs(X) - 1.2, _ell(X, Y, Z, (0, 55, -55), (11, 33, 17)))))  # septum
    P.paint("skin", inside(_ell(AX, Y, Z, (7, 52, -64), (3, 26, 4))))
    P.paint("skin", inside(_ell(AX, Y, Z, (7, 56, -52), (3, 20, 3))))
    P.air(inside(_ell(AX, Y, Z, (6, 95, -64), (3, 6, 3))))                              # nostrils
    P.paint("bone", inside(_ell(AX, Y, Z, (54, -32, -45), (7, 9, 9))))
    P.air(0.5 * inside(_ell(AX, Y, Z, (54, -32, -45), (6, 8, 8))) * (tex[1] > 0))
    # mouth, pharynx, trachea, ear canals
    P.paint("muscle", inside(_ell(X, Y, Z, (0, 48, -88), (22, 28, 12))))               # tongue
    P.air(inside(_ell(X, Y, Z, (0, 52, -79), (18, 24, 2.5))))
    low = 1.0 / (1.0 + np.exp((Z + 135.0) / 6.0))
    pharynx = np.maximum(_ell2(X, Y - (yc + 30.0 + 8.0 * low), 12.0 - 3.0 * low, 6.0 + 2.0 * low), Z + 62.0)
    P.air(inside(pharynx))
    P.air(inside(_ell(X, Y, Z, (0, 5, -60), (12, 16, 7))))
    P.air(inside(_capsule(AX, Y, Z, (92, -20, -33), (62, -20, -36), 3.5)))
    # spinal canal and cord (continue the template medulla below the foramen magnum)
    top = above(-62.0 - Z)
    P.paint("csf", inside(_ell2(X, Y - yc, 10.0, 8.0)) * top)
    P.paint("cord", inside(_ell2(X, Y - yc, 6.0, 4.5)) * above(MEDULLA_Z + 2.0 - Z))
    return idx, P.f, tex[1]


def intensity(F: np.ndarray, table: dict, params: HeadParams | None = None,
              heterogeneity: np.ndarray | None = None, amount: float = 0.06) -> np.ndarray:
    """Signal of class fractions ``F`` with a per-class ``table``; subject fat/marrow T1w levels
    when ``table`` is :data:`T1W`; ``heterogeneity`` (unit field) scales it by ``1 + amount * h``."""
    vals = dict(table)
    if params is not None and table is T1W:
        vals["fat"] = params.fat_int
        vals["marrow"] = params.marrow
    v = np.asarray([vals[c] for c in CLASSES], np.float32)
    out = v @ F
    if heterogeneity is not None:
        out *= 1.0 + np.float32(amount) * np.clip(heterogeneity, -3, 3)
    return out.astype(np.float32)


def dominant_class(F: np.ndarray) -> np.ndarray:
    """Index into :data:`CLASSES` of the largest fraction per point, -1 where air dominates."""
    air = 1.0 - F.sum(axis=0)
    k = np.argmax(F, axis=0)
    return np.where(F[k, np.arange(F.shape[1])] >= air, k, -1)
