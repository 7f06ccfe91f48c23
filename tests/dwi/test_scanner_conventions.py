"""DWI as scanners write it: every DWI dipy ships (real data) against dipy's fit, b0 volumes written
with b > 0 and a direction, and the b-vector frame under oblique / reordered / flipped headers
(checked against dcm2niix on nibabel's real Siemens DWI DICOM and against dipy on reoriented copies)."""
from __future__ import annotations

import subprocess
import warnings

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

import dipy.reconst.dti as dti
from dipy.core.gradients import gradient_table as dipy_gtab
from dipy.io.gradients import read_bvals_bvecs

from hfsmri.dwi.gradients import bvecs_to_world, gradient_table, read_gradients, world_to_bvecs
from hfsmri.dwi.tensor import TensorModel
from tests.realdata import dipy_dwi, nibabel_dicom, reheader, rotation

DIPY_DWI = ("small_64D", "small_101D", "small_25")  # every DWI with .bval/.bvec in dipy's data


def _load(name):
    f, fb, fv = dipy_dwi(name)
    return np.asarray(nib.load(f).dataobj, dtype=float), nib.load(f).affine, fb, fv


@pytest.mark.parametrize("name", DIPY_DWI)
@pytest.mark.parametrize("bmax", [1500.0, None])
def test_fa_md_equal_dipy_wls_on_every_bundled_dwi(name, bmax):
    data, _, fb, fv = _load(name)
    b, v = read_bvals_bvecs(str(fb), str(fv))
    g = read_gradients(fb, fv, n_volumes=data.shape[-1])
    model = TensorModel(g, fit="wls", max_bval=bmax)
    expect = np.arange(b.size) if bmax is None else np.flatnonzero(b <= bmax)
    if name == "small_25" and bmax is not None:  # a single b = 2000 shell: the lowest shell is used
        assert expect.size == 1 and "lowest shell" in model.volume_rule
        expect = np.arange(b.size)
    np.testing.assert_array_equal(model.volumes, expect)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = dti.TensorModel(dipy_gtab(b[expect], bvecs=v[expect]), fit_method="WLS").fit(data[..., expect])
    ours = model.fit(data)
    np.testing.assert_allclose(ours.fa, ref.fa, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.md, ref.md, atol=1e-6 * np.abs(ref.md).max(), rtol=0)


def test_b0_with_small_b_and_direction_enters_the_fit():
    """small_101D writes its b0 as b = 15 with a unit vector (as Siemens/Philips do): it keeps both."""
    data, _, fb, fv = _load("small_101D")
    b, v = read_bvals_bvecs(str(fb), str(fv))
    g = read_gradients(fb, fv, n_volumes=data.shape[-1])
    assert b[0] == 15 and g.n_b0 == 1 and g.b0_with_direction[0]
    np.testing.assert_array_equal(g.bvecs[0], v[0])
    s = g.fit_summary(1500)
    assert s["n_volumes"] == 19 and s["n_b0_with_direction"] == 1 and s["rule"] == "b <= 1500 s/mm²"
    assert 0 in s["volumes"] and len(s["excluded_volumes"]) == 102 - 19
    # zeroing the b0 vector (the old rule) changes FA by up to ~6e-3: the vector matters
    zeroed = gradient_table(np.r_[0.0, g.bvals[1:]], g.bvecs)
    fa_new = TensorModel(g, fit="wls").fit(data).fa
    fa_old = TensorModel(zeroed, fit="wls").fit(data).fa
    assert np.abs(fa_new - fa_old).max() > 1e-3


# ------------------------------------------------------------------ b-vector frame
def _dcm2niix(tmp_path, iop=None):
    """nibabel's real Siemens DWI (b0 + b1000 mosaic) through dcm2niix, optionally with the image
    orientation rewritten (row/column direction cosines), as a tilted/flipped acquisition."""
    import gzip
    import shutil

    import pydicom

    src = tmp_path / "in"
    src.mkdir()
    for name in ("siemens_dwi_0.dcm.gz", "siemens_dwi_1000.dcm.gz"):
        with gzip.open(nibabel_dicom(name)) as f:
            ds = pydicom.dcmread(f)
        if iop is not None:
            ds.ImageOrientationPatient = [float(f"{x:.8f}") for x in np.r_[iop[0], iop[1]]]
        ds.save_as(src / name[:-3])
    out = tmp_path / "out"
    out.mkdir()
    exe = shutil.which("dcm2niix") or str(__import__("pathlib").Path(__import__("sys").executable).with_name("dcm2niix"))
    subprocess.run([exe, "-o", str(out), "-f", "dwi", "-z", "n", str(src)], check=True, capture_output=True)
    return nib.load(out / "dwi.nii"), np.loadtxt(out / "dwi.bvec")


@pytest.mark.parametrize("case", ["axial", "row-flipped oblique (det > 0)", "sagittal", "coronal"])
def test_bvec_frame_matches_dcm2niix_and_the_scanner_direction(case, tmp_path):
    """The direction the scanner recorded (CSA DiffusionGradientDirection, patient LPS) equals what
    :func:`bvecs_to_world` makes of dcm2niix's FSL-convention .bvec under the image's affine."""
    import gzip

    import pydicom
    from nibabel.nicom import csareader

    with gzip.open(nibabel_dicom("siemens_dwi_1000.dcm.gz")) as f:
        csa = csareader.get_csa_header(pydicom.dcmread(f))
    world = np.array(csareader.get_vector(csa, "DiffusionGradientDirection", 3)) * [-1, -1, 1]  # LPS -> RAS
    r = rotation((20, 0, 15))
    iop = {"axial": None, "row-flipped oblique (det > 0)": (-r[:, 0], r[:, 1]),
           "sagittal": ([0, 1, 0], [0, 0, -1]), "coronal": ([1, 0, 0], [0, 0, -1])}[case]
    img, bvec = _dcm2niix(tmp_path, iop)
    g = bvec[:, 1]
    ours = bvecs_to_world(g[None], img.affine)[0]
    assert abs(ours @ world) > 1 - 1e-5, (case, ours, world)  # a gradient and its negative are the same
    np.testing.assert_allclose(np.abs(world_to_bvecs(ours[None], img.affine)[0]), np.abs(g), atol=1e-12)
    if np.linalg.det(img.affine[:3, :3]) > 0:  # without FSL's x flip the direction would be wrong
        lin = img.affine[:3, :3] / np.linalg.norm(img.affine[:3, :3], axis=0)
        assert abs((lin @ g) @ world) < 0.9


def _reoriented(img, bvecs, code):
    """The same DWI stored in another voxel order (nibabel ``as_reoriented``) with the b-vectors a
    converter writes for it, derived voxel axis by voxel axis: undo FSL's x flip of the old storage,
    permute/flip the components as the array axes, apply the x flip of the new storage."""
    ornt = ornt_transform(io_orientation(img.affine), axcodes2ornt(code))
    new = img.as_reoriented(ornt)
    f_old = -1.0 if np.linalg.det(img.affine[:3, :3]) > 0 else 1.0
    f_new = -1.0 if np.linalg.det(new.affine[:3, :3]) > 0 else 1.0
    vox_old = bvecs * [f_old, 1, 1]
    vox_new = np.zeros_like(vox_old)
    for i, (j, flip) in enumerate(ornt):
        vox_new[:, int(j)] = flip * vox_old[:, i]
    return new, vox_new * [f_new, 1, 1], ornt


@pytest.mark.parametrize("code", ["RAS", "LPS", "LAS", "PSR", "ILA"])
def test_reoriented_copy_same_fa_and_principal_direction(code):
    f, fb, fv = dipy_dwi("small_64D")  # stored P-L-S with an oblique header
    img = nib.load(f)
    b, v = read_bvals_bvecs(str(fb), str(fv))
    v = np.nan_to_num(v)
    new, v_new, ornt = _reoriented(img, v, code)
    assert nib.aff2axcodes(new.affine) == tuple(code)
    data0 = np.asarray(img.dataobj, float)
    data1 = np.asarray(new.dataobj, float)
    fit0 = TensorModel(gradient_table(b, v), fit="wls").fit(data0)
    fit1 = TensorModel(gradient_table(b, v_new), fit="wls").fit(data1)
    back = nib.orientations.apply_orientation  # maps arrays of the original order to the new one
    np.testing.assert_allclose(fit1.fa, back(fit0.fa, ornt), atol=1e-9)
    np.testing.assert_allclose(fit1.md, back(fit0.md, ornt), rtol=1e-9, atol=1e-15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = dti.TensorModel(dipy_gtab(b, bvecs=v_new)).fit(data1)  # dipy on the reoriented copy
    np.testing.assert_allclose(fit1.fa, ref.fa, atol=1e-6)
    w0 = bvecs_to_world(fit0.evecs[..., :, 0].reshape(-1, 3), img.affine).reshape(fit0.fa.shape + (3,))
    w1 = bvecs_to_world(fit1.evecs[..., :, 0].reshape(-1, 3), new.affine).reshape(fit1.fa.shape + (3,))
    w0 = np.stack([back(w0[..., k], ornt) for k in range(3)], -1)
    aniso = fit1.fa > 0.2
    assert aniso.sum() > 50
    np.testing.assert_allclose(np.abs(np.einsum("...i,...i", w0, w1))[aniso], 1.0, atol=1e-6)


def test_oblique_header_rotates_the_principal_direction():
    """A tilted acquisition: same voxels and .bvec (voxel frame), header rotated by R — FA is the
    same and the principal direction in world space turns by R."""
    f, fb, fv = dipy_dwi("small_64D")
    img = nib.load(f)
    tilted = reheader(img, (12, -7, 20), (3, -5, 8))
    g = read_gradients(fb, fv)
    data = np.asarray(img.dataobj, float)
    fit = TensorModel(g, fit="wls").fit(data)
    w0 = bvecs_to_world(fit.evecs[..., :, 0].reshape(-1, 3), img.affine)
    w1 = bvecs_to_world(fit.evecs[..., :, 0].reshape(-1, 3), tilted.affine)
    aniso = fit.fa.ravel() > 0.2
    np.testing.assert_allclose(np.abs(np.einsum("ni,ni->n", w0 @ rotation((12, -7, 20)).T, w1))[aniso], 1.0,
                               atol=1e-9)
