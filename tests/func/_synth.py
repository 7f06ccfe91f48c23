"""Tiny synthetic BOLD data sets on hfsmri's coarse MNI grids for the stage tests."""
from __future__ import annotations

import numpy as np
import nibabel as nib
import pandas as pd
from scipy import ndimage

from hfsmri.func.confounds import MOTION_COLUMNS
from hfsmri.spatial.templates import load_template, template_grid


def synthetic_bold(resolution=6, n_t=60, seed=0, symmetric=False):
    """4D BOLD on the template grid: template-T1-shaped baseline + spatially smooth fluctuations.

    Returns (data4d float32, affine, brain mask, motion (n_t, 6), wm signal, csf signal).
    """
    rng = np.random.default_rng(seed)
    shape, affine = template_grid(resolution)
    t1 = np.asarray(load_template("T1", resolution).dataobj, dtype=float)
    mask = np.asarray(load_template("mask", resolution).dataobj) > 0
    base = 1000.0 * t1 / t1[mask].mean()
    noise = rng.standard_normal(shape + (n_t,))
    noise = ndimage.gaussian_filter(noise, sigma=(1.0, 1.0, 1.0, 0.8))
    noise /= noise[mask].std()
    if symmetric:
        noise = 0.5 * (noise + noise[::-1])
    data = base[..., None] * (1.0 + 0.02 * noise)
    data[~mask] = 0.0
    motion = np.cumsum(rng.normal(0, 0.03, (n_t, 6)), axis=0) * np.array([1, 1, 1, 0.01, 0.01, 0.01])
    return data.astype(np.float32), affine, mask, motion


def write_fmriprep(tmp_path, resolution=6, n_t=60, seed=0, symmetric=False):
    data, affine, mask, motion = synthetic_bold(resolution, n_t, seed, symmetric)
    d = tmp_path / "fmriprep" / "sub-01" / "func"
    d.mkdir(parents=True)
    stem = "sub-01_task-rest_space-MNI152NLin2009cAsym"
    bold = d / f"{stem}_desc-preproc_bold.nii.gz"
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms((resolution,) * 3 + (2.0,))
    nib.save(img, bold)
    mpath = d / f"{stem}_desc-brain_mask.nii.gz"
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), mpath)
    rng = np.random.default_rng(seed + 1)
    df = pd.DataFrame(motion, columns=list(MOTION_COLUMNS))
    df["white_matter"] = 500 + rng.standard_normal(n_t)
    df["csf"] = 800 + rng.standard_normal(n_t)
    df["global_signal"] = 900 + rng.standard_normal(n_t)
    fd = np.r_[np.nan, np.abs(np.diff(motion[:, :3], axis=0)).sum(1) + 50 * np.abs(np.diff(motion[:, 3:], axis=0)).sum(1)]
    df["framewise_displacement"] = fd
    conf = d / "sub-01_task-rest_desc-confounds_timeseries.tsv"
    df.to_csv(conf, sep="\t", index=False, na_rep="n/a")
    return bold, conf, mpath, data, mask, df


def write_raw_bold(tmp_path, n_t=45, seed=0, shift_mm=(4.0, -3.0, 2.0)):
    """Raw-like BOLD: 4 mm template-contrast volumes in a shifted scanner frame, small per-volume motion.

    Returns (bold path, json path, true per-volume translation in mm (n_t, 3)).
    """
    import json

    rng = np.random.default_rng(seed)
    t1 = load_template("T1", 4)
    mask = np.asarray(load_template("mask", 4).dataobj) > 0
    base = np.asarray(t1.dataobj, dtype=float)
    base = 1000.0 * base / base[mask].mean()
    shape = base.shape
    aff = t1.affine.copy()
    aff[:3, 3] += np.asarray(shift_mm)  # scanner frame differs from MNI
    trans = np.zeros((n_t, 3))
    trans[:, 0] = np.where(np.arange(n_t) > n_t // 2, 1.0, 0.0)  # a 1 mm step in x halfway
    vols = []
    for k in range(n_t):
        moved = ndimage.shift(base, trans[k] / 4.0, order=1)
        moved = moved * (1 + 0.01 * ndimage.gaussian_filter(rng.standard_normal(shape), 1.0))
        vols.append(moved)
    data = np.stack(vols, -1).astype(np.float32)
    d = tmp_path / "bids" / "sub-01" / "func"
    d.mkdir(parents=True)
    p = d / "sub-01_task-rest_bold.nii.gz"
    img = nib.Nifti1Image(data, aff)
    img.header.set_zooms((4.0, 4.0, 4.0, 2.0))
    nib.save(img, p)
    js = d / "sub-01_task-rest_bold.json"
    js.write_text(json.dumps({"RepetitionTime": 2.0, "TaskName": "rest"}))
    return p, js, trans


def planted_reho_bold(resolution, n_t, seed, effects):
    """BOLD on the template grid whose local coherence is changed in given masks.

    ``effects``: list of (mask3d, weight): inside the mask the spatially smooth (coherent)
    fluctuation is mixed with white noise, ``w`` in [-1, 1]: w < 0 replaces a fraction |w| of the
    smooth signal by independent noise (ReHo down), w > 0 adds a fraction w of a regional common
    signal (ReHo up).
    """
    rng = np.random.default_rng(seed)
    shape, affine = template_grid(resolution)
    mask = np.asarray(load_template("mask", resolution).dataobj) > 0
    smooth = ndimage.gaussian_filter(rng.standard_normal(shape + (n_t,)), sigma=(0.8, 0.8, 0.8, 0))
    smooth /= smooth[mask].std()
    white = rng.standard_normal(shape + (n_t,))
    sig = smooth
    for m, w in effects:
        if w < 0:
            sig[m] = (1 + w) * smooth[m] + (-w) * white[m]
        else:
            common = rng.standard_normal(n_t)
            sig[m] = (1 - w) * smooth[m] + w * 2.0 * common
    data = 1000.0 * (1.0 + 0.02 * sig)
    data[~mask] = 0.0
    return data.astype(np.float32), affine


def write_fmriprep_subject(root, sub, data, affine, tr=2.0, seed=0):
    d = root / f"sub-{sub}" / "func"
    d.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{sub}_task-rest_space-MNI152NLin2009cAsym"
    bold = d / f"{stem}_desc-preproc_bold.nii.gz"
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms(tuple(np.abs(np.diag(affine)[:3])) + (tr,))
    nib.save(img, bold)
    rng = np.random.default_rng(seed)
    n_t = data.shape[3]
    motion = np.cumsum(rng.normal(0, 0.02, (n_t, 6)), axis=0) * np.array([1, 1, 1, 0.01, 0.01, 0.01])
    df = pd.DataFrame(motion, columns=list(MOTION_COLUMNS))
    df["white_matter"] = rng.standard_normal(n_t)
    df["csf"] = rng.standard_normal(n_t)
    conf = d / f"sub-{sub}_task-rest_desc-confounds_timeseries.tsv"
    df.to_csv(conf, sep="\t", index=False, na_rep="n/a")
    return bold, conf
