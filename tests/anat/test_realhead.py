"""The structural stage on a real head no one here made (Colin27, MRIcron's ``ch2`` with skull, face
and neck; issue 19), under the headers and storage scanners write.

The 1 mm head is transformed as a scanner would see it (header rotated/shifted = a tilted
acquisition, voxel order/handedness, voxel sizes, integer or float storage) and then sampled at
2 mm along its own voxel axes (as a 2 mm acquisition in that frame), so the suite stays cheap.
References: the same head under the identity header (the invariance a correct pipeline must have:
same brain mask voxel for voxel after mapping back, same TIV and GM volume) and the distributed
brain-extracted Colin27 (``ch2bet``).
"""
from __future__ import annotations

import logging
import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.image import resample_img
from scipy import ndimage as ndi

from hfsmri.anat.qc import dice
from hfsmri.bids import SubjectInputs
from hfsmri.derivatives import Derivatives
from hfsmri.pipeline import ParticipantContext
from tests import realdata as R

pytestmark = pytest.mark.slow  # four structural runs (fast profile, 2 mm): ~2 min on one core

PRE = {"anat": {"template_resolution": 2, "profile": "fast"}}
# name: (header rotation deg (x, y, z), header shift mm, voxel order, voxel sizes mm, storage dtype)
CASES = {
    "reference": ((0, 0, 0), (0, 0, 0), "RAS", (2.0, 2.0, 2.0), np.uint8),
    "oblique12": ((12, 0, 0), (3.5, -7.25, 11.0), "RAS", (2.0, 2.0, 2.0), np.float32),
    "oblique_sagittal_int16": ((-10, 8, 15), (-4.0, 2.5, -6.0), "PSR", (2.0, 2.0, 2.0), np.int16),
    "oblique_lps_anisotropic": ((6, -12, 0), (0, 0, 0), "LPS", (2.0, 1.96, 2.4), np.float32),
}


def rigid(degrees, shift) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = R.rotation(degrees)
    m[:3, 3] = shift
    return m


def acquire(head: nib.Nifti1Image, voxel_mm, dtype) -> nib.Nifti1Image:
    """Resample ``head`` onto a grid with the same axes and field-of-view centre at ``voxel_mm``
    (linear), stored as ``dtype`` (integers scaled to use their range, as scanners store them)."""
    aff = np.asarray(head.affine, float)
    vs = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    vox = np.asarray(voxel_mm, float)
    shape = np.maximum(1, np.round(np.asarray(head.shape[:3]) * vs / vox).astype(int))
    new = aff.copy()
    new[:3, :3] = aff[:3, :3] / vs * vox
    centre = aff[:3, :3] @ ((np.asarray(head.shape[:3]) - 1) / 2.0) + aff[:3, 3]
    new[:3, 3] = centre - new[:3, :3] @ ((shape - 1) / 2.0)
    f = nib.Nifti1Image(np.asarray(head.dataobj, np.float32), head.affine)
    with warnings.catch_warnings():  # binary masks are resampled linearly on purpose (then thresholded)
        warnings.simplefilter("ignore", UserWarning)
        out = resample_img(f, target_affine=new, target_shape=tuple(int(s) for s in shape),
                           interpolation="linear", force_resample=True, copy_header=True).get_fdata()
    if np.issubdtype(dtype, np.integer):
        out = np.round(np.clip(out, 0, None) * (np.iinfo(dtype).max * 0.9 / out.max()))
    img = nib.Nifti1Image(out.astype(dtype), new)
    img.set_data_dtype(dtype)
    return img


def scanner_view(img, degrees, shift, order):
    """``img`` under a rotated/shifted header, stored in voxel ``order`` (real voxels untouched)."""
    return R.reorder(R.reheader(img, degrees, shift), order)


def to_reference(mask_img, header_rigid, reference) -> np.ndarray:
    """A native mask of a transformed head mapped back onto the reference grid (the head's world
    point p sits at ``header_rigid @ p`` in the transformed image; linear, threshold 0.5)."""
    m = np.asarray(mask_img.dataobj, np.float32)
    vox = np.linalg.inv(mask_img.affine) @ header_rigid @ reference.affine
    out = ndi.affine_transform(m, vox[:3, :3], offset=vox[:3, 3], output_shape=reference.shape[:3], order=1)
    return out >= 0.5


def run_cases(tmp, cases=CASES, pre=PRE) -> dict:
    """The stage on Colin27 under every case of ``cases`` (see module doc); also used by
    ``benchmarks/bench_anat.py --parts invariance``. Returns {case: {summary, mask, t1, rigid, gm}}
    and ``"ch2bet"``: the distributed brain mask on the reference case's grid."""
    from hfsmri.anat import participant as P

    head = nib.load(str(R.colin27_head()))
    brain = nib.load(str(R.colin27_brain()))
    bet_mask = nib.Nifti1Image((np.asarray(brain.dataobj) > 0).astype(np.float32), brain.affine)
    out = {}
    for name, (deg, shift, order, vox, dtype) in cases.items():
        t1 = acquire(scanner_view(head, deg, shift, order), vox, dtype)
        sub = name.replace("_", "")
        path = tmp / f"sub-{sub}_T1w.nii.gz"
        nib.save(t1, str(path))
        ctx = ParticipantContext(subject=sub, session=None, inputs=SubjectInputs(subject=sub, t1w=path),
                                 out=Derivatives(tmp / "out"), work_dir=tmp / "work" / sub, analyses={},
                                 preprocessing=pre, omp_nthreads=1, log=logging.getLogger("test-realhead"))
        summary = P.run(ctx)
        out[name] = {"summary": summary, "mask": nib.load(ctx.anat["brain_mask"]), "t1": t1,
                     "rigid": rigid(deg, shift), "gm": nib.load(ctx.anat["gm_probseg"])}
    ref = out[next(iter(cases))]["t1"]
    out["ch2bet"] = to_reference(acquire(bet_mask, (2.0, 2.0, 2.0), np.float32), np.eye(4), ref)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return run_cases(tmp_path_factory.mktemp("realhead"))


def test_stored_as_the_cases_say(runs):
    """The inputs really are oblique / reordered / anisotropic / integer (guards the test itself)."""
    t1 = runs["oblique_sagittal_int16"]["t1"]
    assert nib.aff2axcodes(t1.affine) == ("P", "S", "R") and t1.get_data_dtype() == np.int16
    t1 = runs["oblique_lps_anisotropic"]["t1"]
    assert nib.aff2axcodes(t1.affine) == ("L", "P", "S")
    assert np.allclose(sorted(np.sqrt((t1.affine[:3, :3] ** 2).sum(0))), [1.96, 2.0, 2.4])
    assert runs["oblique12"]["t1"].affine[1, 2] != 0  # rotated direction cosines


def test_brain_mask_matches_distributed_brain_extraction(runs):
    ref = runs["reference"]
    d = dice(to_reference(ref["mask"], np.eye(4), ref["t1"]), runs["ch2bet"])
    assert d >= 0.93, d


@pytest.mark.parametrize("name", [c for c in CASES if c != "reference"])
def test_same_head_same_result_under_any_header(runs, name):
    ref, run = runs["reference"], runs[name]
    mask = to_reference(run["mask"], run["rigid"], ref["t1"])
    d = dice(mask, to_reference(ref["mask"], np.eye(4), ref["t1"]))
    assert d >= 0.95, (name, d)
    s0, s1 = ref["summary"], run["summary"]
    assert abs(s1["tiv_ml"] / s0["tiv_ml"] - 1) < 0.02, (name, s1["tiv_ml"], s0["tiv_ml"])
    assert abs(s1["gm_ml"] / s0["gm_ml"] - 1) < 0.03, (name, s1["gm_ml"], s0["gm_ml"])
    assert dice(mask, runs["ch2bet"]) >= 0.93
