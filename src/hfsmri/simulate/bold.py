"""Resting-state BOLD of one simulated subject: a latent network model (pure numpy).

Signal in percent of the voxel mean, grey matter::

    s(x,t) = a(x) * A_reg * [ R_j(t) + sum_e c_e w_e(x) S_e(t) ]          network / region part
           + a(x) * A_loc * [ sqrt(p(x)) L(x,t) + sqrt(1 - p(x)) E(x,t) ]  local part (ReHo)
           + A_th * thermal(x,t)

* ``R_j`` (AAL2 region j): sqrt(.6) N_k(j) + sqrt(.4) own_j — ``N_k`` one slow signal per network
  (see :data:`hfsmri.simulate.anatomy.NETWORKS`), all band-limited to 0.01-0.08 Hz with a 1/f^0.5
  shape, unit variance.
* seed FC: ``S_e`` is the seed region's signal, ``w_e`` the effect's target weight, and
  ``c_e = 0.3 + sigma_fc * C_e`` with ``C_e`` the subject's coupling deviation (effect for patients).
* ReHo: ``L`` is spatially smooth (Gaussian, FWHM 9 mm on the native grid, so that the 27 voxels of
  a 3 mm neighbourhood share most of it) and ``E`` independent between voxels, both slow (the
  neural band and spectrum of ``R_j``, unit variance), so ``p`` trades shared for unshared local
  signal at constant power (ALFF does not change with p); the coherence
  ``p = 0.5 + sigma_reho * Z_reho`` (clipped 0.01-0.99) sets how much of the local signal
  neighbouring voxels share.
* ALFF: ``a = exp(sigma_alff * Z_alff)`` scales the neural (slow) part, regional and local alike.
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
from .fields import FWHM_TO_SIGMA, band_limited_noise, band_limited_spectrum
from .t1w import bias_field

TR = 2.0
A_REG, A_LOC, A_TH = 1.0, 2.0, 0.6   # percent signal change
FC_BASE = 0.3
P_BASE = 0.5
LOCAL_FWHM_MM = 9.0
P_CLIP = (0.01, 0.99)


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


def fourier_shift(ts: np.ndarray, delta_s: float, tr: float) -> np.ndarray:
    """``ts(t + delta_s)`` of series sampled every ``tr`` s (time on axis 0), by a phase shift of
    their discrete Fourier coefficients: exact for the simulator's periodic band-limited series
    (:func:`~hfsmri.simulate.fields.band_limited_noise` builds them from Fourier coefficients)."""
    return _Shifter(ts, tr).at(delta_s)


class _Shifter:
    """The spectrum of series (time on axis 0), shifted in time on demand (see :func:`fourier_shift`)."""

    def __init__(self, ts: np.ndarray, tr: float):
        self.n = ts.shape[0]
        self.spec = np.fft.rfft(np.asarray(ts, np.float64), axis=0)
        self.freqs = np.fft.rfftfreq(self.n, d=tr)
        self.shape = (-1,) + (1,) * (ts.ndim - 1)

    def at(self, delta_s: float) -> np.ndarray:
        phase = np.exp(2j * np.pi * self.freqs * float(delta_s)).reshape(self.shape)
        return np.fft.irfft(self.spec * phase, n=self.n, axis=0).astype(np.float32)


def _smooth_band_limited_box(rng: np.random.Generator, box_shape: tuple, n_t: int, sigma_vox) -> np.ndarray:
    """(X, Y, Z, n_t) float32 noise, spatially Gaussian-smooth (``sigma_vox`` voxels per axis) and
    band-limited in time like the neural signals (:func:`~hfsmri.simulate.fields.band_limited_noise`
    spectrum): built from complex Fourier coefficients of the in-band frequencies only, each
    smoothed in space, then transformed to time (exact, and cheaper than smoothing every volume)."""
    freqs = np.fft.rfftfreq(n_t, d=TR)
    shape_amp = band_limited_spectrum(freqs)
    inband = np.nonzero(shape_amp > 0)[0]
    spec = np.zeros(tuple(box_shape) + (freqs.size,), np.complex64)
    for k in inband:
        re = ndimage.gaussian_filter(rng.standard_normal(box_shape, dtype=np.float32), sigma_vox, mode="constant", truncate=3.0)
        im = ndimage.gaussian_filter(rng.standard_normal(box_shape, dtype=np.float32), sigma_vox, mode="constant", truncate=3.0)
        spec[..., k] = (re + 1j * im) * np.float32(shape_amp[k])
    return np.fft.irfft(spec, n=n_t, axis=-1).astype(np.float32)


def simulate_bold(transform: SubjectTransform, z_reho: MniMap, z_alff: MniMap, couplings: dict,
                  fc_targets: dict, sigma: dict, rng: np.random.Generator, resolution_mm: float = 3.0,
                  n_volumes: int = 120, motion_scale: float = 1.0, noise_scale: float = 1.0,
                  acq=None, head=None):
    """Return ``(data int16 4D, affine, confounds DataFrame, info)``.

    ``couplings``: ``{effect_id: C}`` (SD units); ``fc_targets``: ``{effect_id: (seed MniMap weight,
    target MniMap weight)}`` on the MNI grid. ``acq``: the
    :class:`~hfsmri.simulate.scanner.Acquisition` (grid, storage, bias, slice timing; None = the
    old RAS grid). With ``acq.slice_timing`` the slow signals (network, region, seed, global,
    physiological) of stored slice k are those at ``t + slice_timing[k]`` (white noise and head
    motion are per volume). ``head``: full-head parameters (static scalp/eye/neck signal with
    thermal noise and motion, :data:`hfsmri.simulate.head.BOLD`); None = brain only.
    """
    if acq is None:
        shape, affine = native_grid(resolution_mm, "brain", "RAS")
        vox = float(resolution_mm)
    else:
        shape, affine = acq.shape, acq.affine
        vox = float(resolution_mm) if acq.legacy else round(acq.voxel_mm, 1)
    legacy = acq is None or acq.legacy
    st = None if acq is None or not acq.slice_timing else np.asarray(acq.slice_timing, float)
    if acq is None or acq.legacy:
        y = grid_points(shape, affine)
        x = transform.native_to_mni(y)
    else:
        y, x = transform.grid_to_mni(shape, affine)
    pf = prefiltered(2, vox)
    brain = pf["brain"].sample(x)
    inside = brain > 0.05
    xs, ys = x[inside], y[inside]
    nv = xs.shape[0]
    gm, wm, csf = (pf[k].sample(xs) for k in ("GM", "WM", "CSF"))
    reg = bold_regions(2)
    labels = reg["labels"].sample(xs, order=0).astype(np.int64)
    n_t = int(n_volumes)
    # stored slice index (third voxel axis) of every simulated voxel, and the slices present
    kslice = np.nonzero(inside)[0] % shape[2] if st is not None else None
    slices = np.unique(kslice) if st is not None else None

    # latent signals
    nets = band_limited_noise(rng, len(reg["networks"]) + 1, n_t, TR)  # last = global
    values = sorted(reg["network_of"])
    own = band_limited_noise(rng, len(values), n_t, TR)
    region_ts = np.zeros((n_t, max(values) + 1), np.float32)
    for col, v in enumerate(values):
        region_ts[:, v] = np.sqrt(0.6) * nets[:, reg["network_of"][v]] + np.sqrt(0.4) * own[:, col]
    unlabelled = labels == 0
    if st is None:
        neural = region_ts[:, labels]  # (n_t, nv); label 0 -> zeros
        if unlabelled.any():  # brainstem, WM, unlabelled GM: a weak share of the global signal
            neural[:, unlabelled] = 0.5 * nets[:, -1:]
    else:  # each slice sees the slow signals at its own acquisition time
        neural = np.empty((n_t, nv), np.float32)
        region_sh, glob_sh = _Shifter(region_ts, TR), _Shifter(nets[:, -1:], TR)
        for k in slices:
            sel = kslice == k
            rk = region_sh.at(st[k])
            neural[:, sel] = rk[:, labels[sel]]
            un = sel & unlabelled
            if un.any():
                neural[:, un] = 0.5 * glob_sh.at(st[k])
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
        if st is None:
            neural[:, sel] += (c * tw[sel])[None, :] * seed_ts[:, None]
        else:
            seed_sh = _Shifter(seed_ts, TR)
            for k in np.unique(kslice[sel]):
                sk = sel & (kslice == k)
                neural[:, sk] += (c * tw[sk])[None, :] * seed_sh.at(st[k])[:, None]
    amp = np.exp(sigma["alff"] * z_alff.sample(xs)).astype(np.float32)
    neural *= (A_REG * amp)[None, :]

    # local coherent noise on the native grid (ReHo), generated in the brain's bounding box
    p = np.clip(P_BASE + sigma["reho"] * z_reho.sample(xs), *P_CLIP).astype(np.float32)
    sig_vox = LOCAL_FWHM_MM * FWHM_TO_SIGMA / np.asarray(acq.zooms if not legacy else (resolution_mm,) * 3)
    if legacy:
        sig_vox = float(sig_vox[0])
        sig4 = (sig_vox, sig_vox, sig_vox, 0.0)
    else:
        sig4 = tuple(float(v) for v in sig_vox) + (0.0,)
    inside3 = inside.reshape(shape)
    nz = np.nonzero(inside3)
    bb = tuple(slice(max(int(a.min()) - 2, 0), min(int(a.max()) + 3, n)) for a, n in zip(nz, shape))
    local = _smooth_band_limited_box(rng, tuple(b.stop - b.start for b in bb), n_t, sig4[:3])[inside3[bb]].T
    local /= local.std() + 1e-9  # (n_t, nv)

    glob = nets[:, -1]
    time = np.arange(n_t, dtype=np.float32) * TR  # s; respiration/cardiac alias to ~0.2 / ~0.1 Hz at TR 2 s
    ph_resp, ph_card = rng.uniform(0, 6.3), rng.uniform(0, 6.3)

    def physio_at(t):
        resp = np.sin(2 * np.pi * 0.2 * t + ph_resp) * (1 + 0.3 * np.sin(2 * np.pi * 0.013 * t))
        card = np.sin(2 * np.pi * 0.1 * t + ph_card)
        return (1.5 * resp + 1.0 * card).astype(np.float32)

    physio = physio_at(time)
    # all white (independent) parts in one draw: GM local non-shared part, WM and CSF noise, thermal
    white_sd = np.sqrt((0.4 * wm) ** 2 + (0.6 * csf) ** 2
                       + (A_TH * noise_scale) ** 2).astype(np.float32)
    pct = rng.standard_normal((n_t, nv), dtype=np.float32)
    pct *= white_sd[None, :]
    pct += gm[None, :] * (neural + (A_LOC * amp * np.sqrt(p))[None, :] * local)
    del local
    # the unshared part of the local signal: slow like L, independent between voxels
    pct += (gm * A_LOC * amp * np.sqrt(1.0 - p))[None, :] * band_limited_noise(rng, nv, n_t, TR)
    del neural
    if st is None:
        pct += (0.3 * wm + 0.3)[None, :] * glob[:, None]
        pct += csf[None, :] * physio[:, None]
    else:
        glob_sh = _Shifter(glob, TR)
        for k in slices:
            sel = kslice == k
            pct[:, sel] += (0.3 * wm[sel] + 0.3)[None, :] * glob_sh.at(st[k])[:, None]
            pct[:, sel] += csf[sel][None, :] * physio_at(time + np.float32(st[k]))[:, None]
    tn = np.linspace(-1, 1, n_t, dtype=np.float32)
    drift = rng.normal(0, 0.3, (2, nv)).astype(np.float32)
    pct += tn[:, None] * drift[0] + (tn ** 2 - np.float32(1 / 3))[:, None] * drift[1]

    # static head signal outside the brain (full head): scalp, eyes, neck
    hidx = None
    if head is not None:
        from . import head as head_model
        from .anatomy import tissue_maps

        d = tissue_maps(2)["outside_mm"].sample(x, order=1, cval=100.0)
        hidx, frac, het = head_model.head_fractions(x, d, head, vox)
        head_mean = (1.0 - brain[hidx]) * head_model.intensity(frac, head_model.BOLD, None, het) * np.float32(1000.0)
        keep = head_mean > 1.0
        hidx, head_mean = hidx[keep], head_mean[keep]
    if (acq is None or acq.bias is None) and head is None:
        mean_in = ((1.0 * gm + 0.8 * wm + 1.4 * csf) * 1000.0 * bias_field(ys, rng, 0.1)).astype(np.float32)
        bias_all = None
    else:
        obj = inside.copy()
        if hidx is not None:
            obj[hidx] = True
        if acq is not None and acq.bias is not None:
            from .scanner import BiasField

            centre = transform.mni_to_native_rigid(np.asarray([[0.0, -15.0, 10.0]]))[0]
            field = BiasField.random(rng, centre, acq.bias, y[obj])
            bias_all = np.zeros(y.shape[0], np.float32)
            bias_all[obj] = field(y[obj])
        else:
            bias_all = np.zeros(y.shape[0], np.float32)
            bias_all[obj] = bias_field(y[obj], rng, 0.1)
        mean_in = ((1.0 * gm + 0.8 * wm + 1.4 * csf) * 1000.0 * bias_all[inside]).astype(np.float32)
    signal = pct
    signal *= mean_in[None, :] / np.float32(100.0)
    signal += mean_in[None, :]

    # first-order head motion
    motion = _motion(rng, n_t, motion_scale)
    mean_img = np.zeros(y.shape[0], np.float32)
    mean_img[inside] = mean_in
    if hidx is not None:
        head_mean = head_mean * bias_all[hidx]
        mean_img[hidx] += head_mean
    if legacy:
        grads = np.gradient(mean_img.reshape(shape), resolution_mm)
        G_all = np.stack([g.reshape(-1) for g in grads], axis=1)  # (n, 3) per mm, world == voxel axes (RAS)
        G = G_all[inside]
    else:  # gradient along the voxel axes -> world (RAS) mm: dM/dy = dM/dijk . A^-1
        grads = np.gradient(mean_img.reshape(shape))
        ainv = np.linalg.inv(affine[:3, :3]).astype(np.float32)
        G_all = np.stack([g.reshape(-1) for g in grads], axis=1) @ ainv
        G = G_all[inside]
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
    if hidx is not None:  # static head signal + thermal noise + motion (brain voxels: add the static part)
        in_brain = inside[hidx]
        ho = hidx[~in_brain]
        rh = y[ho] - centre
        design_h = np.concatenate([G_all[ho], np.cross(rh, G_all[ho])], axis=1).astype(np.float32)
        hs = head_mean[~in_brain][None, :] - motion.astype(np.float32) @ design_h.T
        hs += rng.standard_normal(hs.shape, dtype=np.float32) * np.float32(A_TH * noise_scale * 10.0)
        data[:, ho] = np.rint(np.clip(hs, 0, 32767)).astype(np.int16)
        hb = hidx[in_brain]
        add = np.rint(head_mean[in_brain]).astype(np.int32)
        data[:, hb] = np.clip(data[:, hb].astype(np.int32) + add[None, :], 0, 32767).astype(np.int16)
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
