"""Resting BOLD: planted coupling, local coherence (ReHo) and amplitude (ALFF) effects and head
motion, checked with plain numpy on the images (region-mean correlations, neighbour correlations,
temporal SD, the image centroid) against the planted truth."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import signal

MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]

from ._helpers import MAIN, effects_table, load, mask_on, participants, template_on


def _bold(root, sid):
    d, img = load(root / sid / "func" / f"{sid}_task-rest_bold.nii.gz")
    return d.astype(np.float64), img


def _region_ts(d, m):
    x = d[m].mean(axis=0)
    return (x - x.mean()) / x.std()


def _fz(a, b):
    return float(np.arctanh(np.corrcoef(a, b)[0, 1]))


def _neighbour_corr(d, m, conf):
    """Local coherence: mean Pearson correlation of each voxel with its +x neighbour (both in
    ``m``) after regressing out, per voxel, a quadratic trend, the 6 true motion parameters and the
    region's mean signal (so only local, sub-regional shared signal remains)."""
    x = d[m]
    n = x.shape[1]
    t = np.linspace(-1, 1, n)
    X = np.column_stack([np.ones(n), t, t * t, conf[MOTION].to_numpy(), x.mean(axis=0)])
    beta, *_ = np.linalg.lstsq(X, x.T, rcond=None)
    full = np.zeros(d.shape)
    full[m] = x - (X @ beta).T
    both = m[:-1] & m[1:]
    a, b = full[:-1][both], full[1:][both]
    return float(np.mean((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))))


def _lowfreq_amp(d, m, tr=2.0):
    """Mean over voxels of the 0.01-0.08 Hz amplitude in percent of the voxel mean (Welch-free:
    plain periodogram of the linearly detrended series)."""
    x = signal.detrend(d[m], axis=1) / d[m].mean(axis=1, keepdims=True) * 100
    f = np.fft.rfftfreq(x.shape[1], tr)
    amp = np.abs(np.fft.rfft(x, axis=1))
    band = (f >= 0.01) & (f <= 0.08)
    return float(amp[:, band].mean())


@pytest.fixture(scope="module")
def bold_data(bold_study):
    p = participants(bold_study)
    out = {sid: _bold(bold_study, sid) for sid in p.participant_id}
    img = next(iter(out.values()))[1]
    return p, out, img, template_on("GM", img) > 0.5


def test_planted_coupling(bold_study, bold_data):
    """thalamusR -> cuneus coupling: in every subject the coupled pair correlates more than the
    thalamus with an uncoupled region of the cuneus' own network (calcarine), and patients (coupling
    0.3 + 8 x 0.05 x bold_gain, the planted d being that of the measured FC) more than controls (0.3)."""
    from hfsmri.spatial.atlas import region_mask

    p, data, img, gm = bold_data
    thal = region_mask("aal:Thalamus_R", img) & gm
    cun = mask_on(bold_study / "derivatives" / "ground_truth" / effects_table(bold_study)["mask"].iloc[0], img) & gm
    calc = region_mask("aal:Calcarine_L+aal:Calcarine_R", img) & gm & ~cun
    coupled, uncoupled = [], []
    for sid in p.participant_id:
        d = data[sid][0]
        coupled.append(_fz(_region_ts(d, thal), _region_ts(d, cun)))
        uncoupled.append(_fz(_region_ts(d, thal), _region_ts(d, calc)))
    coupled, uncoupled = np.array(coupled), np.array(uncoupled)
    pat = (p.group == "HFS").to_numpy()
    assert (coupled > uncoupled).all()
    assert coupled[pat].min() > coupled[~pat].max()


def test_planted_reho_and_alff(bold_study, bold_data):
    """Local coherence p = 0.5 -/+ 7 x 0.05 x bold_gain (clipped to 0.01-0.99): neighbour correlation
    lower / higher in every patient than in every control; amplitude x exp(10 x 0.06 x bold_gain)
    of the neural signal: higher low-frequency amplitude (region over the rest of GM) in patients
    (bold_gain: hfsmri.simulate.effects, the planted d being that of the measured metric)."""
    p, data, img, gm = bold_data
    eff = effects_table(bold_study)
    gt = bold_study / "derivatives" / "ground_truth"
    pat = (p.group == "HFS").to_numpy()
    masks = {k: mask_on(gt / eff[eff.effect_id == k]["mask"].iloc[0], img, erode=1) & gm
             for k in ("reho-down", "reho-up", "alff-up")}
    rest = gm & ~np.logical_or.reduce(list(masks.values()))
    conf = {s: pd.read_csv(gt / s / "func" / f"{s}_task-rest_desc-confounds_timeseries.tsv", sep="\t")
            for s in p.participant_id}

    def coherence(key):
        return np.array([_neighbour_corr(data[s][0], masks[key], conf[s]) for s in p.participant_id])

    down, up = coherence("reho-down"), coherence("reho-up")
    assert down[pat].max() < down[~pat].min()
    assert up[pat].min() > up[~pat].max()
    amp = np.array([_lowfreq_amp(data[s][0], masks["alff-up"]) / _lowfreq_amp(data[s][0], rest)
                    for s in p.participant_id])
    assert amp[pat].mean() > 1.15 * amp[~pat].mean()


def test_default_fc_effects_signs_pooled(main_study):
    """Default (review) seed-FC effects at d = 2.5: averaged over the planted pairs, patients'
    seed-target Fisher z is higher for the +1 effects and lower for the -1 (caudate-OFC) one."""
    from hfsmri.spatial.atlas import region_mask

    p = participants(main_study)
    eff = effects_table(main_study)
    fc = eff[(eff.analysis == "seed_fc") & ~eff.hemisphere.isin(["ipsi", "contra"])].drop_duplicates("effect_id")
    gt = main_study / "derivatives" / "ground_truth"
    pat = (p.group == "HFS").to_numpy()
    img = _bold(main_study, p.participant_id[0])[1]
    gm = template_on("GM", img) > 0.5
    from hfsmri.simulate.effects import load_effects

    seeds = {e.id: e.seed_region for e in load_effects("default").effects if e.metric == "fc"}
    zs = np.zeros((len(p), len(fc)))
    for i, sid in enumerate(p.participant_id):
        d = _bold(main_study, sid)[0]
        for j, (_, r) in enumerate(fc.iterrows()):
            seed = region_mask(seeds[r.effect_id], img) & gm
            zs[i, j] = _fz(_region_ts(d, seed), _region_ts(d, mask_on(gt / r["mask"], img) & gm))
    signed = (zs[pat].mean(0) - zs[~pat].mean(0)) * fc.direction.to_numpy()
    assert signed.mean() > 0.1
    assert (signed > 0).mean() >= 0.75


def test_motion_parameters_match_image_motion(main_study):
    """The confounds TSV holds the true motion: the image centroid follows trans_x/y/z, FD is
    Power et al.'s formula (50 mm radius) of the six parameters."""
    p = participants(main_study)
    gt = main_study / "derivatives" / "ground_truth"
    for sid in p.participant_id[:3]:
        d, img = _bold(main_study, sid)
        conf = pd.read_csv(gt / sid / "func" / f"{sid}_task-rest_desc-confounds_timeseries.tsv", sep="\t")
        assert len(conf) == MAIN["n_volumes"]
        assert {"trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "framewise_displacement",
                "global_signal", "csf", "white_matter"} <= set(conf.columns)
        mp = conf[["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]].to_numpy()
        fd = np.r_[0, np.abs(np.diff(mp[:, :3], axis=0)).sum(1) + 50 * np.abs(np.diff(mp[:, 3:], axis=0)).sum(1)]
        assert np.allclose(conf.framewise_displacement, fd, atol=1e-4)
        assert 0.005 < fd.mean() < 0.5  # realistic resting-state FD (mm)
        flat = d.reshape(-1, d.shape[3])
        ijk = np.indices(d.shape[:3]).reshape(3, -1).T
        xyz = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
        centroid = (xyz.T @ flat) / flat.sum(axis=0)
        for k, col in enumerate(["trans_x", "trans_y", "trans_z"]):
            if conf[col].std() < 0.03:
                continue
            # > 0.7, not 1: the slow, spatially smooth neural signal (GM SD ~2.3 %, local part
            # FWHM 9 mm) also moves the intensity-weighted centroid
            assert np.corrcoef(centroid[k], conf[col])[0, 1] > 0.7, (sid, col)
            slope = np.polyfit(conf[col], centroid[k], 1)[0]
            assert 0.5 < slope < 1.1, (sid, col, slope)
