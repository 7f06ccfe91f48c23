"""Resting-state BOLD of one simulated subject: a latent network model (pure numpy).

Signal in percent of the voxel mean, grey matter::

    s(x,t) = a(x) * A_reg * [ R_j(t) + sum_e c_e w_e(x) S_e(t) ]          network / region part
           + A_loc * [ sqrt(p(x)) L(x,t) + sqrt(1 - p(x)) E(x,t) ]       local part (ReHo)
           + A_th * thermal(x,t)

* ``R_j`` (AAL2 region j): sqrt(.6) N_k(j) + sqrt(.4) own_j — ``N_k`` one slow signal per network
  (see :data:`hfsmri.simulate.anatomy.NETWORKS`), all band-limited to 0.01-0.08 Hz with a 1/f^0.5
  shape, unit variance.
* seed FC: ``S_e`` is the seed region's signal, ``w_e`` the effect's target weight, and
  ``c_e = 0.3 + sigma_fc * C_e`` with ``C_e`` the subject's coupling deviation (effect for patients).
* ReHo: ``L`` is spatially smooth noise (Gaussian, FWHM 6 mm on the native grid) and ``E`` white;
  the coherence ``p = 0.5 + sigma_reho * Z_reho`` (clipped 0.05-0.95) sets how much of the local
  signal neighbouring voxels share.
* ALFF: ``a = exp(sigma_alff * Z_alff)`` scales the low-frequency (neural) part.
* WM carries 30 % of a global signal, CSF aliased respiration (~0.2 Hz) and cardiac pulsation.
* Head motion: 6 rigid parameters (smooth random walk + rare spikes) acting through the
  first-order motion model ``dS = -grad(M) . u(x,t)``, ``u = t + omega x r`` (``M`` the mean
  image): exactly linear in the 6 parameters, so a 6/24-parameter regression removes it. The
  parameters are returned as an fMRIPrep-style confounds table.
* slow scanner drift (linear + quadratic, ~0.5 %), Gaussian thermal noise.

Mean image: GM 1.0, WM 0.8, CSF 1.4 (T2*-weighted EPI) times a smooth bias, 1000 = GM.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from .anatomy import MniMap, bold_regions, prefiltered
from .deformation import SubjectTransform, grid_points, native_grid
from .fields import FWHM_TO_SIGMA, band_limited_noise
from .t1w import bias_field

TR = 2.0
A_REG, A_LOC, A_TH = 1.0, 0.9, 0.6   # percent signal change
FC_BASE = 0.3
P_BASE = 0.5
LOCAL_FWHM_MM = 6.0


def _motion(rng: np.random.Generator, n_t: int, scale: float = 1.0) -> np.ndarray:
    """(n_t, 6): trans_x/y/z (mm), rot_x/y/z (rad); smooth drift + a few small jerks."""
    steps = rng.normal(0, 1, (n_t, 6)) * np.array([0.03, 0.04, 0.05, 0.0006, 0.0005, 0.0004])
    walk = np.cumsum(steps, axis=0)
    walk = ndimage.gaussian_filter1d(walk, 1.5, axis=0)
    n_spikes = rng.poisson(max(1.0, n_t / 100))
    for t0 in rng.integers(1, max(2, n_t - 1), n_spikes):
        jump = rng.normal(0, 1, 6) * np.array([0.15, 0.2, 0.25, 0.002, 0.002, 0.0015])
        walk[t0:] += jump
    walk -= walk[0]
    return walk * scale


def framewise_displacement(motion: np.ndarray, radius: float = 50.0) -> np.ndarray:
    """Power et al. 2012 FD (mm); rotations (rad) converted at ``radius`` mm; first value 0."""
    d = np.abs(np.diff(motion, axis=0))
    fd = d[:, :3].sum(axis=1) + radius * d[:, 3:].sum(axis=1)
    return np.concatenate([[0.0], fd])


def simulate_bold(transform: SubjectTransform, z_reho: MniMap, z_alff: MniMap, couplings: dict,
                  fc_targets: dict, sigma: dict, rng: np.random.Generator, resolution_mm: float = 3.0,
                  n_volumes: int = 120, motion_scale: float = 1.0, noise_scale: float = 1.0):
    """Return ``(data int16 4D, affine, confounds DataFrame, info)``.

    ``couplings``: ``{effect_id: C}`` (SD units); ``fc_targets``: ``{effect_id: (seed MniMap weight,
    target MniMap weight)}`` on the MNI grid.
    """
    shape, affine = native_grid(resolution_mm, "brain", "RAS")
    y = grid_points(shape, affine)
    x = transform.native_to_mni(y)
    pf = prefiltered(2, float(resolution_mm))
    brain = pf["brain"].sample(x)
    inside = brain > 0.05
    xs, ys = x[inside], y[inside]
    nv = xs.shape[0]
    gm, wm, csf = (pf[k].sample(xs) for k in ("GM", "WM", "CSF"))
    reg = bold_regions(2)
    labels = reg["labels"].sample(xs, order=0).astype(np.int64)
    n_t = int(n_volumes)

    # latent signals
    nets = band_limited_noise(rng, len(reg["networks"]) + 1, n_t, TR)  # last = global
    values = sorted(reg["network_of"])
    own = band_limited_noise(rng, len(values), n_t, TR)
    region_ts = np.zeros((n_t, max(values) + 1), np.float32)
    for col, v in enumerate(values):
        region_ts[:, v] = np.sqrt(0.6) * nets[:, reg["network_of"][v]] + np.sqrt(0.4) * own[:, col]
    neural = region_ts[:, labels]  # (n_t, nv); label 0 -> zeros
    unlabelled = labels == 0
    if unlabelled.any():  # brainstem, WM, unlabelled GM: a weak share of the global signal
        neural[:, unlabelled] = 0.5 * nets[:, -1:]
    # seed-based coupling
    for eid, (seed_w, target_w) in fc_targets.items():
        sw = seed_w.sample(xs, order=1)
        tw = target_w.sample(xs, order=1)
        if sw.sum() <= 0 or not (tw > 0).any():
            continue
        seed_label_votes = np.bincount(labels[sw > 0.5], minlength=region_ts.shape[1]) if (sw > 0.5).any() else None
        if seed_label_votes is not None and seed_label_votes[1:].any():
            seed_ts = region_ts[:, int(np.argmax(seed_label_votes[1:]) + 1)]
        else:
            seed_ts = (neural * sw).sum(axis=1) / sw.sum()
            seed_ts = (seed_ts - seed_ts.mean()) / (seed_ts.std() + 1e-9)
        c = FC_BASE + sigma["fc"] * couplings.get(eid, 0.0)
        sel = tw > 1e-3
        neural[:, sel] += (c * tw[sel])[None, :] * seed_ts[:, None]
    amp = np.exp(sigma["alff"] * z_alff.sample(xs)).astype(np.float32)
    neural *= (A_REG * amp)[None, :]

    # local coherent noise on the native grid (ReHo), generated in the brain's bounding box
    p = np.clip(P_BASE + sigma["reho"] * z_reho.sample(xs), 0.05, 0.95).astype(np.float32)
    sig_vox = LOCAL_FWHM_MM * FWHM_TO_SIGMA / resolution_mm
    inside3 = inside.reshape(shape)
    nz = np.nonzero(inside3)
    bb = tuple(slice(max(int(a.min()) - 2, 0), min(int(a.max()) + 3, n)) for a, n in zip(nz, shape))
    box = rng.standard_normal(tuple(b.stop - b.start for b in bb) + (n_t,), dtype=np.float32)
    box = ndimage.gaussian_filter(box, (sig_vox, sig_vox, sig_vox, 0.0), mode="constant", truncate=3.0)
    local = box[inside3[bb]].T  # (n_t, nv)
    del box
    local /= local.std() + 1e-9

    glob = nets[:, -1]
    time = np.arange(n_t, dtype=np.float32) * TR  # s; respiration/cardiac alias to ~0.2 / ~0.1 Hz at TR 2 s
    resp = np.sin(2 * np.pi * 0.2 * time + rng.uniform(0, 6.3)) * (1 + 0.3 * np.sin(2 * np.pi * 0.013 * time))
    card = np.sin(2 * np.pi * 0.1 * time + rng.uniform(0, 6.3))
    physio = (1.5 * resp + 1.0 * card).astype(np.float32)
    # all white (independent) parts in one draw: GM local non-shared part, WM and CSF noise, thermal
    white_sd = np.sqrt((gm * A_LOC) ** 2 * (1.0 - p) + (0.4 * wm) ** 2 + (0.6 * csf) ** 2
                       + (A_TH * noise_scale) ** 2).astype(np.float32)
    pct = rng.standard_normal((n_t, nv), dtype=np.float32)
    pct *= white_sd[None, :]
    pct += gm[None, :] * (neural + (A_LOC * np.sqrt(p))[None, :] * local)
    del neural, local
    pct += (0.3 * wm + 0.3)[None, :] * glob[:, None]
    pct += csf[None, :] * physio[:, None]
    tn = np.linspace(-1, 1, n_t, dtype=np.float32)
    drift = rng.normal(0, 0.3, (2, nv)).astype(np.float32)
    pct += tn[:, None] * drift[0] + (tn ** 2 - np.float32(1 / 3))[:, None] * drift[1]

    mean_in = ((1.0 * gm + 0.8 * wm + 1.4 * csf) * 1000.0 * bias_field(ys, rng, 0.1)).astype(np.float32)
    signal = pct
    signal *= mean_in[None, :] / np.float32(100.0)
    signal += mean_in[None, :]

    # first-order head motion
    motion = _motion(rng, n_t, motion_scale)
    mean_img = np.zeros(y.shape[0], np.float32)
    mean_img[inside] = mean_in
    grads = np.gradient(mean_img.reshape(shape), resolution_mm)
    G = np.stack([g.reshape(-1)[inside] for g in grads], axis=1)  # (nv, 3) per mm, world == voxel axes (RAS)
    centre = ys.mean(axis=0)
    r = ys - centre
    rxg = np.cross(r, G)  # omega . (r x G) == G . (omega x r)
    design = np.concatenate([G, rxg], axis=1).astype(np.float32)  # (nv, 6)
    signal -= (motion.astype(np.float32) @ design.T)

    background = (np.abs(rng.standard_normal(y.shape[0], dtype=np.float32)) * 8.0).astype(np.int16)
    data = np.empty((n_t, y.shape[0]), np.int16)
    data[:] = background[None, :]
    np.clip(signal, 0, 32767, out=signal)
    data[:, inside] = np.rint(signal).astype(np.int16)
    data = np.ascontiguousarray(np.moveaxis(data.reshape((n_t,) + shape), 0, -1))

    conf = pd.DataFrame(motion, columns=["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"])
    conf["framewise_displacement"] = framewise_displacement(motion)
    wm_sel = wm > 0.9
    csf_sel = csf > 0.7
    conf["global_signal"] = signal.mean(axis=1)
    conf["white_matter"] = signal[:, wm_sel].mean(axis=1) if wm_sel.any() else np.nan
    conf["csf"] = signal[:, csf_sel].mean(axis=1) if csf_sel.any() else np.nan
    conf = conf[["global_signal", "csf", "white_matter", "trans_x", "trans_y", "trans_z", "rot_x", "rot_y",
                 "rot_z", "framewise_displacement"]]
    info = {"n_volumes": n_t, "tr": TR, "mean_fd_mm": float(conf["framewise_displacement"].mean())}
    return data, affine, conf, info
