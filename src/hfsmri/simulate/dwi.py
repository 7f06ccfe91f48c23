"""Diffusion-weighted images of one simulated subject (pure numpy; the caller writes them).

Gradient table (:func:`gradient_table`): ``n_dirs`` directions spread evenly on the sphere
(electrostatic repulsion of antipodal point pairs, dipy's ``disperse_charges``, fixed seed; each
direction then given a random sign), b = 1000 s/mm², and ``1 + n_dirs // 10`` b = 0 volumes (first
volume and then interleaved). ``bvec`` is in the voxel frame of the stored image; the image is
stored LAS (affine with negative determinant, as FSL stores radiological images), so this is also
the FSL/BIDS convention without any x flip — FSL, MRtrix (``-fslgrad``) and dipy read it the same.

Signal per voxel (three compartments, partial volume from the prefiltered tissue maps)::

    S = S0 * bias * [ WM  * exp(-b (l_perp + (l_par - l_perp) (g.v)^2))
                    + 1.1 GM  * exp(-b 0.8e-3)
                    + 2.0 CSF * exp(-b 3.0e-3) ]

WM: axial diffusivity ``l_par = 1.7e-3 (1 + sigma_par Z_par)``, radial ``l_perp = l0 (1 + sigma_perp
Z_perp)`` with ``l0`` = 0.35e-3 in the Jülich tract maps (coherent; FA ~0.8) and 0.6e-3 elsewhere in
WM (FA ~0.6), mm²/s; fibre direction ``v`` = the tract axis (see :mod:`hfsmri.simulate.anatomy`)
rotated by the subject's head rotation. Rician noise with SD = S0_WM / ``snr`` (default 25).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .anatomy import MniMap, fibre_field, prefiltered
from .deformation import SubjectTransform, grid_points, native_grid
from .t1w import bias_field, rician

B_VALUE = 1000.0
L_PAR = 1.7e-3
L_PERP_TRACT = 0.35e-3
L_PERP_WM = 0.60e-3
D_GM = 0.8e-3
D_CSF = 3.0e-3
S0_WM = 1000.0


@lru_cache(maxsize=8)
def _directions(n_dirs: int) -> np.ndarray:
    from dipy.core.sphere import HemiSphere, disperse_charges

    rng = np.random.default_rng(1000 + n_dirs)
    theta = np.arccos(rng.uniform(0, 1, n_dirs))
    phi = rng.uniform(0, 2 * np.pi, n_dirs)
    hemi = HemiSphere(theta=theta, phi=phi)
    hemi, _ = disperse_charges(hemi, 5000)
    v = hemi.vertices / np.linalg.norm(hemi.vertices, axis=1, keepdims=True)
    signs = np.where(rng.random(n_dirs) < 0.5, -1.0, 1.0)
    return v * signs[:, None]


def gradient_table(n_dirs: int = 30, n_b0: int | None = None, bval: float = B_VALUE):
    """Return ``(bvals (n,), bvecs (n, 3))``: b0 first, then interleaved every ~10 directions."""
    if n_dirs < 6:
        raise ValueError(f"at least 6 diffusion directions are needed for a tensor fit, got {n_dirs}")
    if n_b0 is None:
        n_b0 = 1 + n_dirs // 10
    dirs = _directions(int(n_dirs))
    bvals, bvecs = [], []
    b0_left = n_b0
    step = max(1, int(np.ceil(n_dirs / max(n_b0 - 1, 1))))
    for k in range(n_dirs):
        if b0_left and k % step == 0:
            bvals.append(0.0)
            bvecs.append([0.0, 0.0, 0.0])
            b0_left -= 1
        bvals.append(float(bval))
        bvecs.append(dirs[k])
    for _ in range(b0_left):
        bvals.append(0.0)
        bvecs.append([0.0, 0.0, 0.0])
    return np.asarray(bvals), np.asarray(bvecs, dtype=float)


def simulate_dwi(transform: SubjectTransform, z_perp: MniMap, z_par: MniMap, sigma_perp: float, sigma_par: float,
                 rng: np.random.Generator, resolution_mm: float = 2.5, n_dirs: int = 30, snr: float = 25.0,
                 diffusivity_scale: float = 1.0, acq=None, head=None):
    """Return ``(data int16 4D, affine, bvals, bvecs, info)`` of the subject's native DWI.

    ``acq``: the :class:`~hfsmri.simulate.scanner.Acquisition` (grid and storage; None = the old
    LAS grid). ``bvecs`` are the gradient directions in the FSL/BIDS convention of the written
    image (image axes, x negated when det(affine) > 0); the signal uses the same directions mapped
    to world space with :func:`~hfsmri.simulate.scanner.bvecs_to_world`, so any header (oblique,
    LPS, RAS, ...) gives a consistent image/bvec pair. ``head``: full-head parameters (scalp,
    eyes, neck signal, :data:`hfsmri.simulate.head.B0` / ``ADC``); None = brain only.
    """
    if acq is None:
        shape, affine = native_grid(resolution_mm, "brain", "LAS")
        vox = float(resolution_mm)
    else:
        shape, affine = acq.shape, acq.affine
        vox = float(resolution_mm) if acq.legacy else round(acq.voxel_mm, 1)
    bvals, bvecs = gradient_table(n_dirs)
    if acq is None or acq.legacy:
        y = grid_points(shape, affine)
        x = transform.native_to_mni(y)
    else:
        y, x = transform.grid_to_mni(shape, affine)
    pf = prefiltered(2, vox)
    brain = pf["brain"].sample(x)
    inside = brain > 0.01
    xs, ys = x[inside], y[inside]
    gm, wm, csf = (pf[k].sample(xs) for k in ("GM", "WM", "CSF"))
    ff = fibre_field(2)
    axis = ff["axis"].sample(xs, order=0, cval=-1).astype(np.int64)
    coh = ff["coherence"].sample(xs, order=1, cval=0.6)
    axis = np.where(axis < 0, 1, axis)
    l_par = L_PAR * diffusivity_scale * (1.0 + sigma_par * z_par.sample(xs))
    l0 = L_PERP_WM + (L_PERP_TRACT - L_PERP_WM) * np.clip((coh - 0.6) / 0.4, 0, 1)
    l_perp = l0 * diffusivity_scale * (1.0 + sigma_perp * z_perp.sample(xs))
    l_perp = np.clip(l_perp, 0.05e-3, l_par)
    if acq is None or acq.legacy:
        # gradient directions in world (RAS) frame: voxel axis 0 runs right-to-left (LAS)
        g_world = bvecs * np.array([-1.0, 1.0, 1.0])
    else:
        from .scanner import bvecs_to_world

        g_world = bvecs_to_world(bvecs, affine)
    h = g_world @ transform.rotation  # h[k] = R^T g: components in the MNI (fibre) frame
    proj2 = h[:, axis].T ** 2  # (n_vox, n_vol) (g . v)^2
    b = bvals[None, :]
    s_wm = np.exp(-b * (l_perp[:, None] + (l_par - l_perp)[:, None] * proj2))
    s_iso = 1.1 * gm[:, None] * np.exp(-b * D_GM * diffusivity_scale) + 2.0 * csf[:, None] * np.exp(-b * D_CSF)
    data = np.zeros((y.shape[0], bvals.size), np.float32)
    if head is None and (acq is None or acq.bias is None):
        sig = (wm[:, None] * s_wm + s_iso) * (S0_WM * bias_field(ys, rng, 0.08))[:, None]
        data[inside] = sig
    else:
        data[inside] = wm[:, None] * s_wm + s_iso
        obj = inside.copy()
        if head is not None:
            from . import head as head_model
            from .anatomy import tissue_maps

            d = tissue_maps(2)["outside_mm"].sample(x, order=1, cval=100.0)
            idx, frac, het = head_model.head_fractions(x, d, head, vox)
            s0 = head_model.intensity(frac, head_model.B0, None, het)
            adc = np.asarray([head_model.ADC[c] for c in head_model.CLASSES], np.float32)
            s0_c = np.asarray([head_model.B0[c] for c in head_model.CLASSES], np.float32)
            # per-class signal decay exp(-b ADC_c), weighted by the class's share of S0
            w = frac * s0_c[:, None]
            decay = np.exp(-np.outer(bvals, adc)).astype(np.float32)          # (n_vol, n_classes)
            mix = (decay @ w) / np.maximum(w.sum(axis=0), 1e-6)               # (n_vol, n_idx)
            data[idx] += ((1.0 - brain[idx]) * s0)[:, None] * mix.T
            obj[idx] = True
        if acq is not None and acq.bias is not None:
            from .scanner import BiasField

            centre = transform.mni_to_native_rigid(np.asarray([[0.0, -15.0, 10.0]]))[0]
            field = BiasField.random(rng, centre, acq.bias, y[obj])
            data[obj] *= (S0_WM * field(y[obj]))[:, None]
        else:
            data[obj] *= (S0_WM * bias_field(y[obj], rng, 0.08))[:, None]
    data = rician(data, S0_WM / snr, rng)
    data = np.clip(np.rint(data), 0, 32767).astype(np.int16).reshape(shape + (bvals.size,))
    info = {"n_b0": int((bvals == 0).sum()), "n_dirs": int(n_dirs), "snr_b0_wm": float(snr)}
    return data, affine, bvals, bvecs, info
