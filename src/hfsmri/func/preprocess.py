"""Minimal DPARSF-style preprocessing of raw resting-state BOLD into 3 mm MNI space (I/O on images).

Raw BOLD (:func:`preprocess_raw`):

1. drop the first ``dummy_scans`` volumes (default 5);
1b. slice-timing correction when a plan is given (``preprocessing.func.slice_timing``: auto = when
   the sidecar has ``SliceTiming``): every slice is shifted to the middle of the acquisition window
   (Fourier interpolation, :mod:`hfsmri.func.slicetime`), before realignment as in fMRIPrep and
   DPARSF;
2. rigid realignment of every volume (least squares, two passes, :mod:`hfsmri.func.realign`;
   about 100x faster than one ANTs registration per volume, which costs 1-3 s per volume here);
   six parameters per volume (mm, rad) relative to the first kept volume;
3. mean EPI -> subject T1w (ANTs rigid, Mattes MI) and on to MNI with the anatomical stage's
   T1w -> MNI transforms when the anat stage provided them (``ctx.anat.t1w_preproc`` and
   ``ctx.anat.to_mni_transforms``); otherwise mean EPI -> MNI template directly (ANTs affine,
   Mattes MI, onto the brain-masked template T1);
4. every raw volume is resampled *once* to the isotropic MNI grid of ``resolution`` mm
   (:func:`hfsmri.spatial.templates.template_grid`), through the composition MNI <- T1w <- mean
   EPI <- volume (linear interpolation): the MNI voxel centres are mapped to mean-EPI space once
   with ANTs (``apply_transforms_to_points``), then through each volume's rigid matrix;
5. brain mask = template brain mask on that grid, restricted to voxels with signal (temporal mean
   above 10 % of the 98th percentile in the template mask and non-zero variance).


fMRIPrep outputs (:func:`load_fmriprep`) are used as they are: the preproc BOLD in
MNI152NLin2009cAsym is resampled (linear) onto the same grid if its grid differs, its mask
(nearest) is intersected with the template brain mask.
"""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from hfsmri.errors import InputDataError
from hfsmri.spatial.templates import load_template, template_grid

__all__ = ["repetition_time", "load_bold", "preprocess_raw", "load_fmriprep", "signal_mask",
           "tissue_masks"]


def repetition_time(img, json_path=None, tr=None, path=None) -> float:
    """TR in seconds: explicit value, else the sidecar's RepetitionTime, else the NIfTI header;
    outside [0.1, 20] s is an error naming the file (:func:`hfsmri.bids.check_repetition_time`)."""
    from hfsmri.bids import check_repetition_time

    if tr is not None and float(tr) > 0:
        return check_repetition_time(float(tr), json_path or path)
    if json_path is not None and Path(json_path).exists():
        try:
            meta = json.loads(Path(json_path).read_text())
        except ValueError as exc:
            raise InputDataError(f"invalid JSON sidecar ({exc})", path=json_path) from None
        if "RepetitionTime" in meta:
            val = float(meta["RepetitionTime"])
            if val > 0:
                return check_repetition_time(val, json_path)
    zooms = img.header.get_zooms()
    if len(zooms) > 3 and zooms[3] > 0:
        units = img.header.get_xyzt_units()[1] if hasattr(img.header, "get_xyzt_units") else "sec"
        val = float(zooms[3])
        return check_repetition_time(val / 1000.0 if units == "msec" else val, path,
                                     "RepetitionTime (NIfTI header pixdim[4])")
    raise InputDataError("repetition time unknown: no RepetitionTime in the sidecar and none in the header",
                         path=path, field="RepetitionTime")


def load_bold(path) -> nib.Nifti1Image:
    """Load a 4D BOLD image, checking dimensions and finiteness of a few volumes."""
    path = Path(path)
    try:
        img = nib.load(str(path))
    except Exception as exc:
        raise InputDataError(f"cannot read BOLD image ({exc})", path=path) from None
    if len(img.shape) != 4 or img.shape[3] < 10:
        raise InputDataError(f"BOLD must be 4D with at least 10 volumes, got shape {img.shape}", path=path)
    return img


def signal_mask(mean3d: np.ndarray, std3d: np.ndarray, template_mask: np.ndarray) -> np.ndarray:
    """Template mask restricted to voxels with signal (see module doc, step 5)."""
    tm = template_mask.astype(bool)
    inside = mean3d[tm]
    if inside.size == 0:
        return tm
    ref = np.percentile(inside, 98)
    return tm & (mean3d > 0.1 * ref) & (std3d > 0)


def tissue_masks(resolution: float, brain_mask: np.ndarray, threshold: float = 0.9):
    """WM and CSF masks for the mean nuisance signals, from the template tissue priors.

    Voxels with prior probability >= ``threshold`` inside the brain mask; WM is eroded once
    (6-connectivity) to keep it away from grey matter, as DPABI's eroded WM masks. If a mask ends
    up with fewer than 10 voxels, the threshold is relaxed to the 95th percentile of the prior.
    """
    from scipy import ndimage

    out = {}
    for kind in ("WM", "CSF"):
        prior = np.asarray(load_template(kind, resolution).dataobj, dtype=float)
        m = (prior >= threshold) & brain_mask
        if kind == "WM":
            er = ndimage.binary_erosion(m)
            m = er if er.sum() >= 10 else m
        if m.sum() < 10:
            vals = prior[brain_mask]
            cut = np.percentile(vals, 95) if vals.size else 1.0
            m = (prior >= cut) & brain_mask & (prior > 0)
        if m.sum() == 0:
            raise InputDataError(f"no {kind} voxels in the brain mask for nuisance signals")
        out[kind] = m
    return out["WM"], out["CSF"]


def _template_on_disk(kind: str, resolution: float, work_dir: Path) -> Path:
    p = work_dir / f"template_{kind}_res-{resolution:g}.nii.gz"
    if not p.exists():
        nib.save(load_template(kind, resolution), str(p))
    return p


def _mni_points_in_epi(to_template, grid_affine, ijk):
    """World (RAS mm) points of the mean EPI that the MNI grid voxels ``ijk`` (3, N) map to.

    ANTs works in LPS; a transform list that warps the moving image into the fixed space maps
    *points* from fixed to moving space (``antsApplyTransformsToPoints`` convention).
    """
    import ants
    import pandas as pd

    ras = grid_affine[:3, :3] @ ijk + grid_affine[:3, 3:4]
    lps = ras.T * np.array([-1.0, -1.0, 1.0])
    pts = pd.DataFrame(lps, columns=["x", "y", "z"])
    moved = ants.apply_transforms_to_points(3, pts, list(to_template)).to_numpy(dtype=float)
    return (moved * np.array([-1.0, -1.0, 1.0])).T  # back to RAS, (3, N)


def preprocess_raw(bold_path, tr: float, work_dir, dummy_scans: int = 5, resolution: float = 3,
                   t1w=None, to_mni=None, log=None, slice_timing: dict | None = None):
    """Raw BOLD -> motion-corrected BOLD on the MNI grid (see module doc).

    ``slice_timing``: None (no correction) or ``{"times": [...] s, "axis": 0|1|2, "reverse": bool,
    "ref_time": s}`` (:func:`hfsmri.func.participant.slice_timing_plan`).

    Returns dict: ``img`` (nib 4D float32 on the template grid), ``mask`` (bool 3D),
    ``motion`` ((n, 6) mm/rad), ``registration`` ("anat" or "direct"), ``n_dummy``,
    ``to_template`` (ANTs transform files, mean EPI -> MNI; with "anat" the anatomical transforms
    followed by the rigid mean EPI -> T1w ones), ``mean_epi`` (path of the native mean EPI).
    """
    import ants
    from scipy import ndimage

    from hfsmri.func.realign import realign
    from hfsmri.spatial.registration import rigid_to_anatomy

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    img = load_bold(bold_path)
    n_all = img.shape[3]
    if dummy_scans >= n_all - 10:
        raise InputDataError(f"dropping {dummy_scans} dummy scans leaves fewer than 10 of {n_all} volumes",
                             path=bold_path, field="preprocessing.func.dummy_scans")
    data = np.asarray(img.dataobj, dtype=np.float32)[..., dummy_scans:]
    if not np.all(np.isfinite(data)):
        raise InputDataError("BOLD contains NaN or infinite values", path=bold_path)
    a_epi = img.affine
    n_t = data.shape[3]
    if slice_timing is not None:
        from hfsmri.func.slicetime import slice_time_correct

        if log:
            log.info("slice-timing correction: %d slices along axis %d to t = %.4g s (Fourier)",
                     len(slice_timing["times"]), slice_timing["axis"], slice_timing["ref_time"])
        data = slice_time_correct(data, slice_timing["times"], tr, axis=slice_timing["axis"],
                                  reverse=slice_timing["reverse"], ref_time=slice_timing["ref_time"])
    if log:
        log.info("realignment of %d volumes (rigid, least squares)", n_t)
    ra = realign(data, a_epi)
    mean_path = work_dir / "mean_epi.nii.gz"
    nib.save(nib.Nifti1Image(ra["mean"].astype(np.float32), a_epi), str(mean_path))
    mean_epi = ants.image_read(str(mean_path))

    if t1w is not None and to_mni:
        t1 = ants.image_read(str(t1w))
        to_template = list(to_mni) + rigid_to_anatomy(mean_epi, t1, work_dir / "epi2t1_")
        how = "anat"
    else:
        rr = max(2.0, float(resolution))
        tmpl = ants.image_read(str(_template_on_disk("T1", rr, work_dir)))
        tmask = ants.image_read(str(_template_on_disk("mask", rr, work_dir)))
        reg = ants.registration(fixed=tmpl * tmask, moving=mean_epi, type_of_transform="Affine",
                                outprefix=str(work_dir / "epi2mni_"))
        to_template = list(reg["fwdtransforms"])
        how = "direct"
    if log:
        log.info("EPI -> MNI registration: %s; resampling %d volumes to %g mm", how, n_t, resolution)

    shape, affine = template_grid(resolution)
    tm = np.asarray(load_template("mask", resolution).dataobj) > 0
    support = ndimage.binary_dilation(tm, iterations=1)
    ijk = np.array(np.nonzero(support), dtype=float)
    y = _mni_points_in_epi(to_template, affine, ijk)  # mean-EPI (reference) world points
    yh = np.vstack([y, np.ones(y.shape[1])])
    inv_epi = np.linalg.inv(a_epi)
    out = np.zeros(tuple(shape) + (n_t,), dtype=np.float32)
    for k in range(n_t):
        vox = (inv_epi @ ra["matrices"][k] @ yh)[:3]
        out[support, k] = ndimage.map_coordinates(data[..., k], vox, order=1, mode="constant", cval=0.0)
    mask = signal_mask(out.mean(axis=3), out.std(axis=3), tm)
    res_img = nib.Nifti1Image(out, affine)
    res_img.header.set_xyzt_units("mm", "sec")
    res_img.header.set_zooms((float(resolution),) * 3 + (float(tr),))
    return {"img": res_img, "mask": mask, "motion": ra["params"], "registration": how,
            "n_dummy": int(dummy_scans), "to_template": to_template, "mean_epi": str(mean_path)}


def load_fmriprep(bold_path, mask_path=None, resolution: float = 3, drop=None):
    """fMRIPrep preproc BOLD (MNI152NLin2009cAsym) on hfsmri's grid of ``resolution`` mm.

    ``drop``: boolean (n,) of volumes to remove (non-steady-state). Returns ``(img, mask)``.
    """
    from nilearn import image as nimg

    img = load_bold(bold_path)
    shape, affine = template_grid(resolution)
    if drop is not None and np.any(drop):
        keep = np.flatnonzero(~np.asarray(drop, bool))
        img = nimg.index_img(img, keep)
    same = img.shape[:3] == tuple(shape) and np.allclose(img.affine, affine, atol=1e-3)
    if not same:
        img = nimg.resample_img(img, target_affine=affine, target_shape=shape, interpolation="linear",
                                force_resample=True, copy_header=True)
    data = np.asarray(img.dataobj, dtype=np.float32)
    if not np.all(np.isfinite(data)):
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    tm = np.asarray(load_template("mask", resolution).dataobj) > 0
    mask = signal_mask(data.mean(axis=3), data.std(axis=3), tm)
    if mask_path is not None:
        mimg = nib.load(str(mask_path))
        if not (mimg.shape[:3] == tuple(shape) and np.allclose(mimg.affine, affine, atol=1e-3)):
            mimg = nimg.resample_img(mimg, target_affine=affine, target_shape=shape, interpolation="nearest",
                                     force_resample=True, copy_header=True)
        mask &= np.asarray(mimg.dataobj) > 0
    out = nib.Nifti1Image(data, affine)
    out.header.set_xyzt_units("mm", "sec")
    return out, mask
