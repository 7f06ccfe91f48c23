"""Constants and independent measurement helpers of the simulator tests."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

MAIN = dict(n_patients=5, n_controls=5, seed=11, resolution=4.0, n_dirs=12, n_volumes=60, deform=False)

# strong, low-variance GM effects for magnitude checks: a group effect on deep grey matter
# (sessions: post = 0.4 x pre) and a pure clinical link (r = 0.9 with severity) in the precuneus
SESSION_EFFECTS = {
    "post_factor": 0.4,
    "sigma": {"gm": 0.03},
    "effects": [{"id": "gm-deep", "metric": "gm", "direction": -1, "cohens_d": 6.0,
                 "region": "aal:Thalamus_L+aal:Thalamus_R+aal:Putamen_L+aal:Putamen_R",
                 "hemisphere": "bilateral"},
                {"id": "gm-clin", "metric": "gm", "direction": -1, "cohens_d": 0.0,
                 "region": "aal:Precuneus_L+aal:Precuneus_R", "hemisphere": "bilateral",
                 "clinical": {"score": "severity", "r": 0.9}}],
}

# strong BOLD effects with little between-subject spread (directional checks of the BOLD model)
BOLD_EFFECTS = {
    "sigma": {"fc": 0.05, "reho": 0.05, "alff": 0.06},
    "effects": [{"id": "fc-thal-cuneus", "metric": "fc", "seed": "thalamusR", "seed_region": "aal:Thalamus_R",
                 "direction": 1, "cohens_d": 8.0, "region": "aal:Cuneus_L+aal:Cuneus_R", "hemisphere": "bilateral"},
                {"id": "reho-down", "metric": "reho", "direction": -1, "cohens_d": 7.0,
                 "region": "aal:Precuneus_L+aal:Precuneus_R", "hemisphere": "bilateral"},
                {"id": "reho-up", "metric": "reho", "direction": 1, "cohens_d": 7.0,
                 "region": "aal:Frontal_Sup_2_L+aal:Frontal_Sup_2_R", "hemisphere": "bilateral"},
                {"id": "alff-up", "metric": "alff", "direction": 1, "cohens_d": 10.0,
                 "region": "aal:Precentral_L+aal:Precentral_R", "hemisphere": "bilateral"}],
}



def participants(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "participants.tsv", sep="\t", dtype={"participant_id": str})


def effects_table(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "derivatives" / "ground_truth" / "effects.tsv", sep="\t")


def load(path) -> tuple[np.ndarray, nib.Nifti1Image]:
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img


def mask_on(mask_path, target_img, erode: int = 0) -> np.ndarray:
    """A ground-truth MNI mask (2 mm) on ``target_img``'s grid (nilearn nearest resampling);
    ``erode`` voxels of binary erosion on the 2 mm grid first (drops the soft effect edge)."""
    from nilearn import image
    from scipy import ndimage

    m = nib.load(str(mask_path))
    data = np.asarray(m.dataobj) > 0
    if erode:
        data = ndimage.binary_erosion(data, iterations=erode)
    src = nib.Nifti1Image(data.astype(np.float32), m.affine)
    ref = nib.Nifti1Image(np.zeros(target_img.shape[:3], np.uint8), target_img.affine)
    out = image.resample_to_img(src, ref, interpolation="nearest", force_resample=True, copy_header=True)
    return np.asarray(out.dataobj) > 0.5


def template_on(kind: str, target_img) -> np.ndarray:
    """nilearn's bundled MNI152 2009 GM/WM probability map (1 mm) resampled linearly to a grid —
    an independent reference for the tissue fractions the simulator starts from."""
    from nilearn import datasets, image

    loader = {"GM": datasets.load_mni152_gm_template, "WM": datasets.load_mni152_wm_template,
              "mask": datasets.load_mni152_brain_mask}[kind]
    src = loader(resolution=1)
    src = nib.Nifti1Image(np.asarray(src.get_fdata(), np.float32), src.affine)
    ref = nib.Nifti1Image(np.zeros(target_img.shape[:3], np.uint8), target_img.affine)
    out = image.resample_to_img(src, ref, interpolation="linear", force_resample=True, copy_header=True)
    return np.asarray(out.dataobj)


# intensities of the simulator's T1w model relative to WM (documented in hfsmri.simulate.t1w); the
# tests convert a measured intensity change to a GM-fraction change with them
T1_GM, T1_WM, T1_CSF = 0.58, 1.0, 0.18


def gm_intensity_factors(img, region: np.ndarray) -> np.ndarray:
    """Per voxel of ``region`` (``np.argwhere`` order): the T1w intensity change (relative to WM) per
    unit of GM fraction gained, for the simulator's planted model: GM trades with WM in share
    ``lam`` and with CSF in share ``1 - lam``, ``lam = deep + (1 - deep) * WM / (WM + CSF + eps)``
    (``deep``: the deep-grey-nuclei weight ``simulate.anatomy.deep_gm_weight``; WM, CSF: the
    template fractions prefiltered to the image's voxel size; both model parameters), so the factor
    is ``T1_GM - lam * T1_WM - (1 - lam) * T1_CSF``: +0.40 where GM borders CSF only, -0.42 where
    it borders WM only (deep nuclei, GM/WM boundary voxels). Valid for simulations without
    deformation (native = MNI positions)."""
    from hfsmri.simulate.anatomy import deep_gm_weight, prefiltered
    from hfsmri.simulate.t1w import PURE_GM_EPS

    xyz = (np.argwhere(region) @ img.affine[:3, :3].T + img.affine[:3, 3]).astype(np.float32)
    deep = deep_gm_weight(2).sample(xyz, order=1)
    pf = prefiltered(2, float(abs(img.affine[0, 0])))
    wm, csf = pf["WM"].sample(xyz), pf["CSF"].sample(xyz)
    lam = deep + (1.0 - deep) * wm / (wm + csf + PURE_GM_EPS)
    return T1_GM - lam * T1_WM - (1.0 - lam) * T1_CSF


def near_wm(region: np.ndarray, wm_prob: np.ndarray, voxel_mm: float, radius_mm: float = 20.0) -> np.ndarray:
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(~region) * voxel_mm
    return (dist < radius_mm) & (wm_prob > 0.9) & ~region


def fit_tensor(dwi_path: Path):
    """dipy TensorModel (WLS) fit of a simulated DWI run; returns (fit, image)."""
    import dipy.reconst.dti as dti
    from dipy.core.gradients import gradient_table
    from dipy.io.gradients import read_bvals_bvecs

    data, img = load(dwi_path)
    stem = str(dwi_path).replace(".nii.gz", "")
    bvals, bvecs = read_bvals_bvecs(stem + ".bval", stem + ".bvec")
    gtab = gradient_table(bvals, bvecs=bvecs)
    mask = data[..., bvals == 0].mean(axis=-1) > 200
    return dti.TensorModel(gtab).fit(data.astype(np.float64), mask=mask), img
