"""Root cause of "Atropos exited with non-zero status 1" on oblique T1w (issue 19): antspyx writes the
prior images to NIfTI (float32 origin) and ITK then finds the in-memory image and the priors "not
in the same physical space" (tolerance 1e-6 x voxel size). ``to_ants`` now snaps the geometry to
values a NIfTI round trip keeps.

References: ITK's own NIfTI writer/reader (the round trip), and Atropos itself (it must run)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy.spatial.transform import Rotation

from hfsmri.anat.segmentation import _bounding_box, atropos_segment
from hfsmri.spatial.resample import ants_geometry, to_ants, to_nib


def _oblique_affine(seed: int, spacing=(1.0, 0.98, 0.98)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.eye(4)
    a[:3, :3] = Rotation.random(random_state=seed).as_matrix() * np.asarray(spacing)
    a[:3, 3] = rng.uniform(-120, 120, 3)
    return a


def test_nifti_round_trip_keeps_the_snapped_geometry(tmp_path):
    import ants

    for seed in range(40):
        spacing = (1.0, 0.98, 0.98) if seed % 2 else (0.9, 0.9, 1.2)
        img = nib.Nifti1Image(np.zeros((3, 4, 5), np.float32), _oblique_affine(seed, spacing))
        a = to_ants(img)
        ants.image_write(a, str(tmp_path / "g.nii.gz"))
        b = ants.image_read(str(tmp_path / "g.nii.gz"))
        assert np.array_equal(a.origin, b.origin) and np.array_equal(a.spacing, b.spacing)
        assert np.abs(np.asarray(a.direction) - np.asarray(b.direction)).max() < 1e-6
        # the snap moves no voxel by more than 1e-4 mm, and the nibabel round trip is consistent
        back = to_nib(a).affine
        corners = np.array([[0, 0, 0, 1], [2, 3, 4, 1]], float).T
        assert np.abs(back @ corners - img.affine @ corners).max() < 1e-4
        o, s, d = ants_geometry(back)
        assert np.array_equal(o, a.origin) and np.array_equal(s, a.spacing)


def test_atropos_with_priors_runs_on_an_oblique_grid():
    """The failing call of the structural stage, reduced: an image on an oblique grid with a
    non-float32 origin (the mask's bounding box of a rotated head) and three prior images."""
    g = np.indices((24, 26, 22)).astype(np.float32)
    r = np.sqrt(((g - np.array([12, 13, 11])[:, None, None, None]) ** 2).sum(0))
    data = np.where(r < 5, 300.0, np.where(r < 8, 200.0, 100.0)).astype(np.float32)
    data += np.random.default_rng(0).normal(0, 5, data.shape).astype(np.float32)
    inside = r < 10
    start = np.array([b.start for b in _bounding_box(inside, pad=2)], float)  # Atropos runs on this box
    aff = _oblique_affine(3)
    for k in range(1000):  # an origin of the box that float32 (NIfTI) moves by > 2e-6 mm
        box_origin = aff[:3, :3] @ start + aff[:3, 3]
        if np.abs(box_origin.astype(np.float32).astype(float) - box_origin).max() > 2e-6:
            break
        aff[:3, 3] += 0.0123456789
    img = nib.Nifti1Image(data, aff)
    mask = nib.Nifti1Image(inside.astype(np.uint8), aff)
    priors = [np.clip(1 - abs(r - c) / 3, 0, 1) for c in (9.5, 6.5, 2.5)]  # CSF (outer), GM, WM (core)
    seg = atropos_segment(img, mask, priors=priors, nthreads=1)
    assert seg["seg"][12, 13, 11] == 3 and seg["seg"][12, 13, 11 + 9] == 1
