"""T1w image-quality metrics (IQMs) as MRIQC defines them (pure numpy/scipy, no I/O).

Definitions follow MRIQC (Esteban et al. 2017, PLoS ONE 12:e0184661): ``mriqc/qc/anatomical.py``
(the formulas) and ``mriqc/interfaces/anatomical.py`` ``StructuralQC`` (what goes into them),
MRIQC 24.x. They are computed on MRIQC's ``in_noinu``: the N4-corrected *whole-head* T1w in its
native grid (not skull-stripped, not resampled), with the structural stage's own brain mask and
CSF/GM/WM probability maps, and a head mask and an air ("hat") mask built here.

Tissue statistics (:func:`tissue_stats`, MRIQC ``summary_stats``): for each tissue the intensities
weighted by its probability map: weighted mean, weighted median and 5/95th percentiles (SAS
definition, as statsmodels' ``DescrStatsW.quantile``), weighted standard deviation (ddof 0), ``n``
= sum of the probabilities, and MAD = median |x - median| / 0.6745 of the voxels whose probability
is above half its maximum (statsmodels' normalised ``mad``). The background ("bg") uses the air mask
as weights. MRIQC rounds intensities to integers and probabilities to 3 decimals first; hfsmri does
not (no effect on integer-valued scanner images beyond the 3rd decimal of the weights).

Metrics (all unitless ratios):

* ``snr_<tissue>`` = median / (stdv * sqrt(n / (n - 1))) per tissue (CSF, GM, WM); ``snr_total`` is
  their mean (MRIQC ``snr``, single-region SNR). Higher is better.
* ``cnr`` = |median_WM - median_GM| / sqrt(stdv_bg^2 + stdv_GM^2 + stdv_WM^2) (MRIQC ``cnr``,
  Magnotta & Friedman 2006, as MRIQC >= 22). Higher is better.
* ``cjv`` = (MAD_WM + MAD_GM) / |median_WM - median_GM| (Ganzetti et al. 2016, MRIQC ``cjv``).
  Lower is better.
* ``efc`` = entropy focus criterion (Atkinson et al. 1997) normalised by its maximum, over all
  voxels outside the rotation mask (MRIQC ``efc``). Lower is better (0..1).
* ``fber`` = median |x|^2 in the head / median |x|^2 in the air (everything outside the head mask
  and the rotation mask); -1 when the air holds no signal (skull-stripped or zero-filled image),
  as MRIQC. Higher is better.
* ``inu_range`` = |P95 - P5| of the N4 bias field (raw / N4-corrected, normalised to median 1)
  in the brain (MRIQC ``inu_range``; its ``inu_med`` is 1 by this normalisation and not reported).
  Values near 0 are better.

Masks (MRIQC's algorithms, :func:`head_mask`, :func:`air_mask`, :func:`rotation_mask`): the head
mask thresholds the gradient magnitude of the intensity-normalised image (Mortamet et al. 2009 as in
MRIQC's ``headmsk_wf``; Gaussian sigma 4 mm instead of MRIQC's 4 voxels so that the mask does not
depend on the voxel size); the air ("hat") mask is the background above the plane through the
glabella and the inion (MNI z = -14 mm, mapped to the subject), minus the artefact voxels found as
MRIQC's ``artifact_mask`` (background intensity > 10 MADs, away from the head).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["TISSUES", "weighted_quantiles", "tissue_stats", "snr", "cnr", "cjv", "efc", "fber",
           "inu_range", "rotation_mask", "head_mask", "air_mask", "hat_side", "t1w_iqms",
           "MAD_NORMAL", "DIETRICH_FACTOR", "HAT_LANDMARKS_MNI"]

TISSUES = ("csf", "gm", "wm")
#: statsmodels' ``mad`` normalisation: MAD / Phi^-1(3/4) estimates the SD of a normal sample
MAD_NORMAL = 0.6744897501960817
#: 1 / sqrt(2 / (4 - pi)): Rayleigh background SD -> Gaussian noise SD (Dietrich et al. 2007)
DIETRICH_FACTOR = 0.6551364
#: glabella and inion (MNI mm, MRIQC ``ArtifactMask`` defaults) and a third point of their plane
HAT_LANDMARKS_MNI = np.array([[0.0, 90.0, -14.0], [0.0, -120.0, -14.0], [60.0, 0.0, -14.0]])


# ----------------------------------------------------------------------------- statistics
def _sas_quantiles(y: np.ndarray, wsum: np.ndarray, probs) -> np.ndarray:
    """SAS weighted quantiles of distinct sorted values ``y`` with positive summed weights ``wsum``."""
    s = np.cumsum(wsum)
    out = []
    for p in np.atleast_1d(probs):
        t = float(p) * s[-1]
        j = int(np.searchsorted(s, t, side="left"))
        if j >= len(y):
            out.append(y[-1])
        elif s[j] == t and j + 1 < len(y):
            out.append(0.5 * (y[j] + y[j + 1]))
        else:
            out.append(y[j])
    return np.asarray(out, dtype=np.float64)


def weighted_quantiles(x, w, probs) -> np.ndarray:
    """Weighted quantiles with the SAS definition used by statsmodels' ``DescrStatsW.quantile``.

    Weights of tied values are summed; with s_j the cumulative weights of the distinct sorted values
    y_j and W their total, the p-quantile is y_{j+1} when s_j < pW < s_{j+1}, (y_j + y_{j+1}) / 2 when
    pW = s_j, and y_1 when pW < s_1. Zero weights are ignored.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    w = np.asarray(w, dtype=np.float64).ravel()
    keep = w > 0
    if not keep.any():
        return np.full(len(np.atleast_1d(probs)), np.nan)
    y, inv = np.unique(x[keep], return_inverse=True)
    return _sas_quantiles(y, np.bincount(inv.ravel(), weights=w[keep], minlength=y.size), probs)


def tissue_stats(data, weights: dict) -> dict:
    """MRIQC ``summary_stats`` (see module doc) of ``data`` for each weight map in ``weights``.

    Returns ``{label: {"mean", "median", "p05", "p95", "stdv", "mad", "n"}}``; a label whose weights
    sum to 0 gets NaN statistics and ``n`` = 0. The intensities of all labels are sorted once.
    """
    d = np.asarray(data, dtype=np.float64)
    ws = {}
    union = np.zeros(d.shape, bool)
    for label, wmap in weights.items():
        w = np.asarray(wmap)
        if w.shape != d.shape:
            raise ValueError(f"weights '{label}' have shape {w.shape}, data {d.shape}")
        ws[label] = w
        union |= w > 0
    x = d[union]
    y, inv = np.unique(x, return_inverse=True)
    inv = inv.ravel()
    out = {}
    for label, wfull in ws.items():
        w = np.clip(wfull[union].astype(np.float64), 0.0, None)
        n = float(w.sum())
        if n <= 0:
            out[label] = {k: float("nan") for k in ("mean", "median", "p05", "p95", "stdv", "mad")}
            out[label]["n"] = 0.0
            continue
        mean = float((w * x).sum() / n)
        stdv = float(np.sqrt((w * (x - mean) ** 2).sum() / n))
        wsum = np.bincount(inv, weights=w, minlength=y.size)
        pos = wsum > 0
        p05, med, p95 = _sas_quantiles(y[pos], wsum[pos], (0.05, 0.5, 0.95))
        core = x[w > 0.5 * w.max()]
        mad = float(np.median(np.abs(core - med)) / MAD_NORMAL) if core.size else float("nan")
        out[label] = {"mean": mean, "median": float(med), "p05": float(p05), "p95": float(p95),
                      "stdv": stdv, "mad": mad, "n": n}
    return out


# ----------------------------------------------------------------------------- formulas
def snr(mu_fg: float, sigma_fg: float, n: float) -> float:
    """Single-region SNR = mu / (sigma * sqrt(n / (n - 1))) (MRIQC ``snr``)."""
    if not (n > 1 and sigma_fg > 0):
        return float("nan")
    return float(mu_fg / (sigma_fg * np.sqrt(n / (n - 1.0))))


def cnr(mu_wm: float, mu_gm: float, sigma_air: float, sigma_wm: float, sigma_gm: float) -> float:
    """CNR = |mu_WM - mu_GM| / sqrt(sigma_air^2 + sigma_GM^2 + sigma_WM^2) (MRIQC ``cnr``)."""
    den = np.sqrt(sigma_air ** 2 + sigma_gm ** 2 + sigma_wm ** 2)
    return float(abs(mu_wm - mu_gm) / den) if den > 0 else float("nan")


def cjv(mu_wm: float, mu_gm: float, sigma_wm: float, sigma_gm: float) -> float:
    """CJV = (sigma_WM + sigma_GM) / |mu_WM - mu_GM| (MRIQC ``cjv``; MRIQC passes the MADs)."""
    d = abs(mu_wm - mu_gm)
    return float((sigma_wm + sigma_gm) / d) if d > 0 else float("nan")


def efc(img, framemask=None) -> float:
    """Entropy focus criterion normalised by its maximum (MRIQC ``efc``, Atkinson et al. 1997).

    E = -sum_j (x_j / x_max) ln(x_j / x_max) with x_max = sqrt(sum_j x_j^2) over the N voxels
    outside ``framemask``; EFC = E / E_max with E_max = -sqrt(N) ln(1 / sqrt(N)) (all voxels equal).
    0 when all the energy is in one voxel, 1 for a uniform image. Negative values are set to 0.
    """
    x = np.clip(np.asarray(img, dtype=np.float64), 0.0, None)
    if framemask is not None:
        x = x[~np.asarray(framemask, bool)]
    x = x.ravel()
    n = x.size
    b_max = np.sqrt((x ** 2).sum())
    if n < 2 or b_max <= 0:
        return float("nan")
    efc_max = n * (1.0 / np.sqrt(n)) * np.log(1.0 / np.sqrt(n))
    return float((1.0 / efc_max) * np.sum((x / b_max) * np.log((x + 1e-16) / b_max)))


def fber(img, headmask, rotmask=None) -> float:
    """FBER = median |x|^2 in the head / median |x|^2 outside it and outside ``rotmask`` (MRIQC
    ``fber``); -1 when that background's median energy is < 1e-3 or it is empty (no signal outside
    the head: skull-stripped or zero-filled images)."""
    x = np.asarray(img, dtype=np.float64)
    head = np.asarray(headmask, bool)
    air = ~head
    if rotmask is not None:
        air &= ~np.asarray(rotmask, bool)
    if not head.any():
        return float("nan")
    if not air.any():  # everything outside the head is zero-filled: no signal outside the head
        return -1.0
    fg = np.median(np.abs(x[head]) ** 2)
    bg = np.median(np.abs(x[air]) ** 2)
    return -1.0 if bg < 1e-3 else float(fg / bg)


def inu_range(raw, corrected, mask) -> float:
    """Spread |P95 - P5| of the bias field raw / corrected in ``mask`` (voxels with both > 0), the
    field normalised to median 1 there (MRIQC ``inu_range`` on N4's field)."""
    r = np.asarray(raw, dtype=np.float64)
    c = np.asarray(corrected, dtype=np.float64)
    sel = np.asarray(mask, bool) & (c > 0) & (r > 0)
    if sel.sum() < 10:
        return float("nan")
    bias = r[sel] / c[sel]
    bias /= np.median(bias)
    return float(abs(np.percentile(bias, 95) - np.percentile(bias, 5)))


# ----------------------------------------------------------------------------- masks
def _keep_two_largest(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lab, n = ndi.label(mask)
    removed = np.zeros_like(mask, dtype=bool)
    if n > 2:
        sizes = ndi.sum(mask, lab, range(n + 1))
        order = np.argsort(sizes)[::-1]
        small = np.isin(lab, order[2:]) & (lab > 0)
        removed = small
        mask = mask & ~small
    return mask, removed


def rotation_mask(img) -> np.ndarray:
    """Voxels <= 0 forming the large empty regions left by rotation / zero padding (MRIQC
    ``RotationMask``: opening, the two largest components, nothing when < 500 voxels)."""
    m = np.pad(np.asarray(img) <= 0, 1, mode="constant", constant_values=True)
    m = ndi.binary_opening(m, structure=ndi.generate_binary_structure(3, 2))
    m, _ = _keep_two_largest(m)
    m = m[1:-1, 1:-1, 1:-1]
    return m if m.sum() >= 500 else np.zeros(m.shape, bool)


def head_mask(img, brain_mask, zooms, sigma_mm: float = 4.0, threshold: float = 15.0) -> np.ndarray:
    """Head mask from the gradient magnitude (MRIQC ``image_gradient`` + ``gradient_threshold``).

    The image is scaled to 100 at its 99.5th percentile with the brain set to 100; its Gaussian
    gradient magnitude (sigma ``sigma_mm``) is scaled to 100 at its 99.5th percentile (brain = 100);
    voxels above ``threshold`` are closed (two iterations of the radius-2 18-connected ball; the
    array zero-padded first so that a head touching the field of view is not eroded), eroded
    once, united with the brain mask dilated twice (MRIQC dilates with ``border_value=1``, which adds
    the image frame to the mask and, after hole filling, can make the whole image "head"; hfsmri
    does not), all but the two largest components dropped and holes filled.
    """
    data = np.asarray(img, dtype=np.float32).copy()
    brain = np.asarray(brain_mask, bool)
    zooms = np.asarray(zooms, dtype=float)[:3]
    dmax = np.percentile(data, 99.5)
    if dmax > 0:
        data *= 100.0 / dmax
    data[brain] = 100.0
    grad = ndi.gaussian_gradient_magnitude(data, sigma_mm / zooms)
    gmax = np.percentile(grad, 99.5)
    if gmax > 0:
        grad *= 100.0 / gmax
    grad[brain] = 100.0
    struct = ndi.iterate_structure(ndi.generate_binary_structure(3, 2), 2)
    pad = 6  # the closing must not erode a head that touches the field of view from the image border
    m = ndi.binary_closing(np.pad(grad > threshold, pad), struct, iterations=2)
    m = ndi.binary_erosion(m, ndi.generate_binary_structure(3, 2))[pad:-pad, pad:-pad, pad:-pad]
    m |= ndi.binary_dilation(brain, struct, iterations=2)  # MRIQC's border_value=1 would add the image frame
    m, _ = _keep_two_largest(m)
    return ndi.binary_fill_holes(m, struct)


def hat_side(shape, affine, plane_points) -> np.ndarray:
    """Boolean (shape) of voxels strictly superior to the plane through the three world (mm) points
    ``plane_points`` (3, 3): the first two are the glabella and the inion, the third a lateral point;
    'superior' is the side the normal points to after orienting it towards +z of the mapped frame."""
    p = np.asarray(plane_points, dtype=float)
    nrm = np.cross(p[1] - p[0], p[2] - p[0])
    if np.linalg.norm(nrm) == 0:
        raise ValueError("hat plane points are collinear")
    nrm /= np.linalg.norm(nrm)
    if nrm[2] < 0:
        nrm = -nrm
    a = np.asarray(affine, dtype=float)
    coef = nrm @ a[:3, :3]  # signed distance is linear in (i, j, k)
    d0 = float(nrm @ (a[:3, 3] - p[0]))
    i, j, k = (np.arange(s, dtype=float) for s in shape[:3])
    dist = coef[0] * i[:, None, None] + coef[1] * j[None, :, None] + coef[2] * k[None, None, :] + d0
    return dist > 0


def air_mask(img, headmask, hat=None, zscore: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """(air, artefacts): background outside the head (and, with ``hat``, above the glabella-inion
    plane), without MRIQC's artefact voxels (``artifact_mask``: background values > ``zscore``
    MADs of the non-zero background, farther from the head than 10 % of the largest distance,
    opened with the 6-connected cross)."""
    x = np.asarray(img, dtype=np.float64)
    head = np.asarray(headmask, bool)
    hat_m = ~head if hat is None else (~head & np.asarray(hat, bool))
    art = np.zeros(x.shape, bool)
    bg = x[hat_m]
    pos = bg[bg > 0]
    if pos.size >= 10:
        spread = np.median(np.abs(pos - np.median(pos))) / MAD_NORMAL
        cand = np.zeros(x.shape, bool)
        if spread > 0:
            cand[hat_m] = bg / spread > zscore
        if cand.any():  # the distance map only when there are candidates (it costs ~2 s at 1 mm)
            dist = ndi.distance_transform_edt(~head)
            cand &= dist >= 0.10 * dist[hat_m].max()
            art = ndi.binary_opening(cand, ndi.generate_binary_structure(3, 1))
    return hat_m & ~art, art


# ----------------------------------------------------------------------------- all together
def t1w_iqms(n4_head, raw_head, brain_mask, pvms: dict, zooms, affine=None, hat_points=None) -> dict:
    """The T1w IQMs of the module doc.

    Parameters
    ----------
    n4_head : N4-corrected whole-head T1w (3D array, native grid).
    raw_head : the raw T1w on the same grid (for the bias field); None skips ``inu_range``.
    brain_mask : boolean brain mask (3D).
    pvms : {"csf", "gm", "wm"} probability maps (3D, 0..1).
    zooms : voxel sizes (mm).
    affine, hat_points : voxel -> world affine and the glabella / inion / lateral points in world
        mm (:data:`HAT_LANDMARKS_MNI` mapped to the subject); without them the air mask is the whole
        background.

    Returns a dict of floats: ``snr_csf``, ``snr_gm``, ``snr_wm``, ``snr_total``, ``cnr``, ``cjv``,
    ``efc``, ``fber``, ``inu_range``, plus ``sigma_air`` (SD of the air voxels, image units) and
    ``n_air`` (voxels) for the record.
    """
    img = np.nan_to_num(np.asarray(n4_head, dtype=np.float64))
    img[img < 0] = 0.0
    brain = np.asarray(brain_mask, bool)
    for k in TISSUES:
        if k not in pvms:
            raise ValueError(f"missing tissue probability map '{k}'")
    rot = rotation_mask(img)
    head = head_mask(img, brain, zooms)
    hat = hat_side(img.shape, affine, hat_points) if (affine is not None and hat_points is not None) else None
    air, _ = air_mask(img, head, hat)  # zero-filled voxels stay in the air, as MRIQC's airdata
    weights = {k: pvms[k] for k in TISSUES}
    weights["bg"] = air.astype(np.float64)
    st = tissue_stats(img, weights)
    out = {f"snr_{k}": snr(st[k]["median"], st[k]["stdv"], st[k]["n"]) for k in TISSUES}
    out["snr_total"] = float(np.mean([out[f"snr_{k}"] for k in TISSUES]))
    sig_air = st["bg"]["stdv"] if st["bg"]["n"] > 0 else 0.0
    out["cnr"] = cnr(st["wm"]["median"], st["gm"]["median"], sig_air, st["wm"]["stdv"], st["gm"]["stdv"])
    out["cjv"] = cjv(st["wm"]["median"], st["gm"]["median"], st["wm"]["mad"], st["gm"]["mad"])
    out["efc"] = efc(img, rot)
    out["fber"] = fber(img, head, rot)
    out["inu_range"] = inu_range(raw_head, img, brain) if raw_head is not None else float("nan")
    out["sigma_air"] = float(sig_air)
    out["n_air"] = int(air.sum())
    return out
