"""Header-level checks of input images (issue 19, items 5 and 6): header dimensions against the data
size for NIfTI-1/2 × .nii/.nii.gz, and geometry — real scanner headers (oblique, reordered,
flipped) pass, dipy's really sheared S0_10slices and broken affines are refused."""
from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest

from hfsmri.errors import InputDataError
from hfsmri.io import SHEAR_TOL, geometry_notes, load_image
from tests.realdata import colin27_head, dipy_dwi, nibabel_data, reheader, reorder


def _write_declared(path, stored_vols, declared_vols, nifti2):
    """A 4D file storing ``stored_vols`` volumes whose header declares ``declared_vols``."""
    cls, hcls, size = (nib.Nifti2Image, nib.Nifti2Header, 540) if nifti2 else (nib.Nifti1Image, nib.Nifti1Header, 348)
    data = np.arange(5 * 4 * 3 * stored_vols, dtype=np.int16).reshape(5, 4, 3, stored_vols)
    raw_path = path.with_name("tmp.nii")
    nib.save(cls(data, np.diag([2.0, 2, 2, 1])), raw_path)
    raw = bytearray(raw_path.read_bytes())
    raw_path.unlink()
    hdr = hcls.from_fileobj(io.BytesIO(bytes(raw[:size])))
    hdr.set_data_shape((5, 4, 3, declared_vols))
    raw[:size] = hdr.binaryblock
    path.write_bytes(gzip.compress(bytes(raw)) if path.name.endswith(".gz") else bytes(raw))
    return path


@pytest.mark.parametrize("nifti2", [False, True], ids=["nifti1", "nifti2"])
@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_header_dims_against_data_size(tmp_path, nifti2, ext):
    good = _write_declared(tmp_path / f"ok{ext}", 12, 12, nifti2)
    assert load_image(good, ndim=4).shape == (5, 4, 3, 12)
    more = _write_declared(tmp_path / f"more{ext}", 60, 40, nifti2)
    assert nib.load(more).shape == (5, 4, 3, 40)  # nibabel reads the first 40 volumes without a word
    with pytest.raises(InputDataError, match=rf"more{ext}.*disagree with the data size.*60 volumes stored, 40 declared"):
        load_image(more, ndim=4, what="BOLD")
    less = _write_declared(tmp_path / f"less{ext}", 30, 40, nifti2)
    with pytest.raises(InputDataError, match=rf"less{ext}.*truncated"):
        load_image(less, ndim=4, what="BOLD")


def test_multi_member_gzip_is_measured_not_guessed(tmp_path):
    """A .nii.gz written as two gzip members (as parallel compressors do): the trailer holds only the
    last member's size, so the check decompresses to count."""
    raw = _write_declared(tmp_path / "a.nii", 12, 12, False).read_bytes()
    p = tmp_path / "multi.nii.gz"
    p.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    assert load_image(p, ndim=4).shape[3] == 12


def _real_headers():
    f, _, _ = dipy_dwi("small_64D")
    return {"colin27 (1 mm head)": nib.load(colin27_head()), "nibabel functional.nii": nib.load(nibabel_data("functional.nii")),
            "nibabel example4d.nii.gz": nib.load(nibabel_data("example4d.nii.gz")), "dipy small_64D (oblique, PLS)": nib.load(f)}


@pytest.mark.parametrize("name", ["colin27 (1 mm head)", "nibabel functional.nii", "nibabel example4d.nii.gz",
                                  "dipy small_64D (oblique, PLS)"])
def test_real_and_oblique_headers_pass(tmp_path, name):
    img = _real_headers()[name]
    variants = {"as is": img, "12° oblique": reheader(img, (12, -5, 8), (4, -2, 7)),
                "LPS": reorder(img, "LPS"), "sagittal PSR": reorder(img, "PSR")}
    for label, v in variants.items():
        # float32 round-off as a scanner writes it: the sform stored in single precision
        p = tmp_path / f"{label.replace(' ', '_').replace('°', '')}.nii.gz"
        nib.save(v, p)
        out = load_image(p, ndim=(3, 4))
        np.testing.assert_allclose(out.affine, v.affine, atol=1e-3)
        lin = out.affine[:3, :3] / np.linalg.norm(out.affine[:3, :3], axis=0)
        assert np.abs(lin.T @ lin - np.eye(3)).max() < SHEAR_TOL / 100  # far below the tolerance


def test_dipy_sheared_file_and_broken_affines_refused(tmp_path):
    import dipy

    # a file dipy ships whose affine is sheared (each slice moves 30 mm in x and y)
    s0 = __import__("pathlib").Path(dipy.__file__).parent / "data" / "files" / "S0_10slices.nii.gz"
    with pytest.raises(InputDataError, match=r"S0_10slices.nii.gz.*sheared.*reslice"):
        load_image(s0, ndim=3, what="T1w")
    base = nib.load(nibabel_data("anatomical.nii"))
    for label, aff, needle in (("zero", np.diag([1.0, 1.0, 0.0, 1.0]), "zero determinant"),
                               ("nan", np.where(np.eye(4) > 0, 1.0, np.nan), "NaN or infinite"),
                               ("shear", np.array([[1, 0.05, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
                                "sheared")):
        hdr = base.header.copy()
        hdr["qform_code"], hdr["sform_code"] = 0, 1
        for k, row in zip(("srow_x", "srow_y", "srow_z"), aff[:3]):
            hdr[k] = row
        p = tmp_path / f"{label}.nii"
        nib.save(nib.Nifti1Image(np.asanyarray(base.dataobj), None, hdr), p)
        with pytest.raises(InputDataError, match=rf"{label}.nii.*{needle}"):
            load_image(p, ndim=3, what="T1w")
    one = tmp_path / "oneslice.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 1), np.float32), np.eye(4)), one)
    with pytest.raises(InputDataError, match="oneslice.nii.gz.*single-slice"):
        load_image(one, ndim=3, what="T1w")


def test_qform_sform_disagreement_is_a_note_and_sform_is_used(tmp_path):
    img = nib.load(nibabel_data("anatomical.nii"))
    out = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header)
    shifted = img.affine.copy()
    shifted[:3, 3] += [0, 12.0, 0]
    out.set_qform(img.affine, code=1)
    out.set_sform(shifted, code=1)
    p = tmp_path / "qs.nii.gz"
    nib.save(out, p)
    loaded = load_image(p, ndim=3)
    np.testing.assert_allclose(loaded.affine, shifted, atol=1e-4)  # the sform, as nibabel / fMRIPrep
    notes = geometry_notes(loaded, p)
    assert len(notes) == 1 and "qs.nii.gz" in notes[0] and "12.00 mm" in notes[0] and "sform is used" in notes[0]
    out.set_sform(img.affine, code=1)
    nib.save(out, p)
    assert geometry_notes(nib.load(p), p) == []


def test_qform_quaternion_round_off_near_180_degrees_is_not_a_disagreement(tmp_path):
    """A header written from one affine whose rotation is near 180° (LAS/LPS storage of a tilted
    acquisition) gets a qform that differs from the sform by the quaternion's float32 round-off
    (a = sqrt(1 - b² - c² - d²)): tenths of a mm at the far corner, not a disagreement."""
    # the sform of a simulated tilted DWI (2.5 x 2.5 x 2.75 mm, LAS storage, ~13° pitch)
    aff = np.array([[-2.49976444e+00, -6.42084470e-03, -3.70750800e-02, 1.07448402e+02],
                    [-1.02644134e-03, -2.44074011e+00, 5.95206916e-01, 6.58271179e+01],
                    [-3.42954099e-02, 5.41060090e-01, 2.68455839e+00, -7.64873657e+01],
                    [0, 0, 0, 1.0]])
    img = nib.Nifti1Image(np.zeros((96, 96, 60), np.int16), aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    p = tmp_path / "tilted_las.nii.gz"
    nib.save(img, p)
    loaded = nib.load(p)
    q, s = loaded.get_qform(), loaded.get_sform()
    corner = np.array([95, 95, 59, 1.0])
    assert np.linalg.norm((q - s) @ corner) > 0.25 * 0.1  # the round-off is there (the old check warned)
    assert geometry_notes(loaded, p) == []
    shifted = aff.copy()
    shifted[:3, 3] += [0, 3.0, 0]
    loaded.set_sform(shifted, code=1)
    assert "disagree" in geometry_notes(loaded, p)[0]
