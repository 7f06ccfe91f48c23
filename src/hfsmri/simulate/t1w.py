"""Whole-head T1-weighted image of one simulated subject (pure numpy; the caller writes it).

Model (intensities relative to white matter = 1):

* brain: GM/WM/CSF fractions of the MNI template at the subject's MNI point (partial volume by
  Gaussian prefiltering to the native voxel size), with the subject's GM map
  ``GM' = GM * (1 + sigma_gm * Z_gm)``. GM lost or gained trades with the neighbouring tissue: in
  the deep grey nuclei with WM (:func:`~hfsmri.simulate.anatomy.deep_gm_weight`), elsewhere with
  WM and CSF in proportion ``lam = WM / (WM + CSF + 0.05)`` of the voxel, i.e. the GM/WM and the
  GM/CSF boundaries both move (a boundary voxel that loses GM gets brighter on the WM side and
  darker on the CSF side, never more GM-like; a pure-GM voxel trades with CSF). A gain takes from
  that mix first, then from the other tissue.
  Intensity = 0.58 GM + 1.0 WM + 0.18 CSF (3 T MPRAGE-like contrast).
* outside the brain, by distance d (mm) from the brain surface with a smooth subject-specific
  thickness change: meninges/CSF (0-2.5 mm, 0.18), outer skull table (dark 0.06), diploe (marrow,
  0.35), inner table, then the scalp (fat/muscle 0.75), then air (0). So brain extraction has
  something real to remove.
* a smooth multiplicative bias field (exp of a random 2nd-order polynomial, about ±12 %),
* Rician noise with SD 2.5 % of WM (WM SNR ~40). Stored as int16 with WM ~ 1000.
"""
from __future__ import annotations

import numpy as np

from .anatomy import MniMap, deep_gm_weight, prefiltered, tissue_maps
from .deformation import SubjectTransform, grid_points, native_grid

I_GM, I_WM, I_CSF = 0.58, 1.0, 0.18
WM_LEVEL = 1000.0
#: label of brain voxels (brain fraction >= 0.5) in ``info["head_class"]`` (head classes are 0..8)
BRAIN_CLASS = 9
#: in ``WM / (WM + CSF + eps)``: a voxel without WM or CSF (pure GM) trades its GM with CSF
PURE_GM_EPS = 0.05


def _smoothstep(x, edge, width=1.0):
    return 1.0 / (1.0 + np.exp(-(x - edge) / width))


def shell_intensity(d: np.ndarray, thick: np.ndarray) -> np.ndarray:
    """Non-brain T1w intensity at distance ``d`` mm outside the brain; ``thick`` scales layers."""
    t = thick
    s1 = _smoothstep(d, 2.5 * t, 0.5)   # start of skull
    s2 = _smoothstep(d, 4.0 * t, 0.5)   # diploe
    s3 = _smoothstep(d, 6.5 * t, 0.5)   # inner -> outer table
    s4 = _smoothstep(d, 8.0 * t, 0.5)   # scalp starts
    s5 = _smoothstep(d, 14.0 * t, 0.7)  # air
    val = I_CSF * (1 - s1) + 0.06 * (s1 - s2) + 0.35 * (s2 - s3) + 0.06 * (s3 - s4) + 0.75 * (s4 - s5)
    return val


def bias_field(points: np.ndarray, rng: np.random.Generator, amplitude: float = 0.12) -> np.ndarray:
    """exp(random quadratic polynomial of position), points (n, 3) mm; about ±amplitude."""
    p = points / 100.0
    terms = [p[:, 0], p[:, 1], p[:, 2], p[:, 0] * p[:, 1], p[:, 0] * p[:, 2], p[:, 1] * p[:, 2],
             p[:, 0] ** 2, p[:, 1] ** 2, p[:, 2] ** 2]
    coef = rng.normal(0.0, amplitude / 2.0, len(terms))
    log_b = sum(c * t for c, t in zip(coef, terms))
    return np.exp(log_b - np.median(log_b)).astype(np.float32)


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of signal + complex Gaussian noise of SD ``sigma`` per channel (float32)."""
    out = rng.standard_normal(signal.shape, dtype=np.float32)
    out *= np.float32(sigma)
    out += signal
    np.square(out, out=out)
    n2 = rng.standard_normal(signal.shape, dtype=np.float32)
    n2 *= np.float32(sigma)
    np.square(n2, out=n2)
    out += n2
    return np.sqrt(out, out=out)


def _brain_t1(xs, pf, z_gm, sigma_gm, contrast):
    """T1w intensity of the brain tissue at template points ``xs`` (see module doc); returns
    ``(tissue, brain fraction, GM fraction after the subject's change)``."""
    gm = pf["GM"].sample(xs)
    wm = pf["WM"].sample(xs)
    csf = pf["CSF"].sample(xs)
    brain = np.clip(gm + wm + csf, 0.0, 1.0)
    z = z_gm.sample(xs, order=1)
    gm2 = np.clip(gm * (1.0 + sigma_gm * z), 0.0, None)
    delta = gm2 - gm
    # share of the GM change traded with WM (the rest with CSF): WM in the deep grey nuclei (see
    # anatomy.deep_gm_weight); in the cortex the voxel's own WM : CSF ratio, so that the GM/WM and
    # GM/CSF boundaries both move and a partial-volume voxel losing GM never looks more GM-like
    deep = deep_gm_weight(2).sample(xs, order=1)
    lam = deep + (1.0 - deep) * wm / (wm + csf + PURE_GM_EPS)
    gain = np.clip(delta, 0, None)
    loss = np.clip(-delta, 0, None)
    first_wm = np.minimum(gain * lam, wm)
    first_csf = np.minimum(gain * (1.0 - lam), csf)
    rest = gain - first_wm - first_csf
    more_csf = np.minimum(rest, csf - first_csf)
    more_wm = np.minimum(rest - more_csf, wm - first_wm)
    from_csf, from_wm = first_csf + more_csf, first_wm + more_wm
    gm2 = gm - loss + from_csf + from_wm
    csf2 = csf - from_csf + loss * (1.0 - lam)
    wm2 = wm - from_wm + loss * lam
    i_gm = I_WM - (I_WM - I_GM) * contrast
    tissue = i_gm * gm2 + I_WM * wm2 + I_CSF * csf2
    return tissue, brain, gm2


def simulate_t1w(transform: SubjectTransform, z_gm: MniMap, sigma_gm: float, rng: np.random.Generator,
                 resolution_mm: float = 2.0, noise: float = 0.025, contrast: float = 1.0,
                 acq=None, head=None, return_classes: bool = False):
    """Return ``(data 3D, affine, info dict)`` of the subject's native T1w.

    ``z_gm``: the subject's standardised GM deviation map (MNI); ``contrast`` scales GM/WM
    contrast (site effects). ``acq``: the :class:`~hfsmri.simulate.scanner.Acquisition` (grid,
    storage type, intensity scale, bias model); None = the old fixed RAS grid, int16, WM 1000.
    ``head``: :class:`~hfsmri.simulate.head.HeadParams` for the full head (face, neck); None = the
    old brain-skull-scalp shells. ``info``: simulated GM and TIV (ml); with a smooth bias model also
    ``bias_field`` (coarse grid data, affine: ground truth); with ``return_classes`` the dominant
    tissue per voxel (``head_class``: -1 air, 0.. head classes, :data:`BRAIN_CLASS` brain) and its
    fraction (``head_purity``).
    """
    if acq is None:
        shape, affine = native_grid(resolution_mm, "head", "RAS")
        vox, vox_vol, min_zoom = float(resolution_mm), float(resolution_mm) ** 3, float(resolution_mm)
    else:
        shape, affine = acq.shape, acq.affine
        vox, vox_vol, min_zoom = acq.voxel_mm, float(np.prod(acq.zooms)), float(min(acq.zooms))
        if not acq.legacy:
            vox = round(vox, 1)
    if acq is None or acq.legacy:
        y = grid_points(shape, affine)
        x = transform.native_to_mni(y)
    else:
        y, x = transform.grid_to_mni(shape, affine)
    res_src = 1 if min_zoom < 1.5 else 2
    base = tissue_maps(res_src)
    d = base["outside_mm"].sample(x, order=1, cval=100.0)
    pf = prefiltered(res_src, float(vox))
    out = np.zeros(y.shape[0], np.float32)
    labels = None
    if head is None:
        obj = d < 20.0
        xs = x[obj]
        tissue, brain, gm2 = _brain_t1(xs, pf, z_gm, sigma_gm, contrast)
        thick_field = 1.0 + 0.08 * np.sin(xs[:, 0] / 23.0 + rng.uniform(0, 6.3)) * np.cos(xs[:, 1] / 31.0 + rng.uniform(0, 6.3))
        thick = np.float32(rng.uniform(0.9, 1.15)) * thick_field
        shell = shell_intensity(np.clip(d[obj], 0.0, None), thick)
        out[obj] = tissue + (1.0 - brain) * shell
    else:
        from . import head as head_model

        bsel = d < 3.0 * vox + 3.0
        tissue, brain, gm2 = _brain_t1(x[bsel], pf, z_gm, sigma_gm, contrast)
        brain_full = np.zeros(y.shape[0], np.float32)
        brain_full[bsel] = brain
        out[bsel] = tissue
        idx, frac, het = head_model.head_fractions(x, d, head, vox)
        out[idx] += (1.0 - brain_full[idx]) * head_model.intensity(frac, head_model.T1W, head, het)
        obj = np.zeros(y.shape[0], bool)
        obj[idx] = True
        obj |= bsel & (brain_full > 0.01)
        if return_classes:
            labels = np.full(y.shape[0], -1, np.int8)
            labels[idx] = head_model.dominant_class(frac)
            labels[brain_full >= 0.5] = BRAIN_CLASS
            purity = np.zeros(y.shape[0], np.float32)
            purity[idx] = frac.max(axis=0) * (1.0 - brain_full[idx])
            purity[labels == BRAIN_CLASS] = brain_full[labels == BRAIN_CLASS]
    info_extra = {}
    if acq is not None and acq.bias is not None:
        from .scanner import BiasField, coarse_grid

        centre = transform.mni_to_native_rigid(np.asarray([[0.0, -15.0, 10.0]]))[0]
        field = BiasField.random(rng, centre, acq.bias, y[obj])
        out[obj] *= field(y[obj])
        cshape, caff = coarse_grid(shape, affine, 4)
        info_extra["bias_field"] = (field(grid_points(cshape, caff)).reshape(cshape), caff)
    else:
        out[obj] *= bias_field(y[obj], rng)
    level = WM_LEVEL if acq is None else acq.wm_level
    out *= np.float32(level)
    out = rician(out, noise * level, rng)
    if acq is None:
        data = np.clip(np.rint(out), 0, 32767).astype(np.int16).reshape(shape)
    else:
        from .scanner import store

        data = store(out, acq.dtype).reshape(shape)
    info = {"gm_volume_ml": float(gm2.sum() * vox_vol / 1000.0),
            "tiv_ml": float(brain.sum() * vox_vol / 1000.0)}
    info.update(info_extra)
    if labels is not None:
        info["head_class"] = labels.reshape(shape)
        info["head_purity"] = purity.reshape(shape)
    return data, affine, info
