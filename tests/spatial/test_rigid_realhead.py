"""Mean EPI / b0 -> T1w rigid registration (``rigid_to_anatomy``) on a real head under oblique
headers (issue 19): a known subject motion between the two acquisitions must be recovered.

The T1w is the distributed brain-extracted Colin27 (what the func/dwi stages hand over: the
skull-stripped T1w) under a rotated/shifted header at 2 mm. The "EPI" is the real head with an
EPI-like contrast (CSF bright, white matter dark), sampled on its own oblique 3 mm grid after a
known rigid motion Q of the subject. Reference: Q itself (planted truth)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from hfsmri.anat.midspace import read_ants_affine
from hfsmri.spatial.registration import rigid_to_anatomy
from hfsmri.spatial.resample import to_ants
from tests import realdata as R
from tests.anat.test_realhead import acquire, rigid


def epi_like(head: nib.Nifti1Image, motion: np.ndarray, header_deg, voxel_mm=3.0, shape=(64, 72, 48)):
    """The real head seen by an EPI acquisition: contrast inverted in the brain (T2*-like), sampled
    on an oblique ``voxel_mm`` grid centred on the brain, after the subject moved by ``motion``:
    the EPI world point y shows the head at ``motion @ y`` of the T1w world."""
    d = np.asarray(head.dataobj, np.float32)
    brain = d > 0
    epi = np.where(brain, d.max() * 1.1 - d, 0.0).astype(np.float32)
    epi = ndi.gaussian_filter(epi, 1.0)
    a = np.eye(4)
    a[:3, :3] = R.rotation(header_deg) * voxel_mm
    centre = np.array([0.0, -18.0, 10.0])
    a[:3, 3] = centre - a[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    vox = np.linalg.inv(head.affine) @ motion @ a
    data = ndi.affine_transform(epi, vox[:3, :3], offset=vox[:3, 3], output_shape=shape, order=1)
    return nib.Nifti1Image(data.astype(np.float32), a)


def test_rigid_to_anatomy_recovers_known_motion_under_oblique_headers(tmp_path):
    brain = nib.load(str(R.colin27_brain()))
    t1_header = rigid((15, -5, 8), (2.0, -3.0, 4.0))
    t1 = acquire(R.reheader(brain, (15, -5, 8), (2.0, -3.0, 4.0)), (2.0, 2.0, 2.0), np.float32)
    # subject motion between T1w and EPI, expressed in the T1w world (where the head now lies)
    motion = rigid((7, -4, 10), (3.0, -5.0, 2.0))
    head_in_t1_world = nib.Nifti1Image(np.asarray(brain.dataobj, np.float32), t1_header @ brain.affine)
    epi = epi_like(head_in_t1_world, motion, header_deg=(-10, 0, 5))
    fwd = rigid_to_anatomy(to_ants(epi), to_ants(t1), tmp_path / "epi2t1_")
    est = read_ants_affine(fwd[0])  # T1w (fixed) world -> EPI (moving) world points
    truth = np.linalg.inv(motion)
    # error over the brain's points (T1w world)
    m = np.asarray(t1.dataobj) > 0.05 * np.asarray(t1.dataobj).max()
    ijk = np.array(np.nonzero(m), float)[:, ::50]
    pts = t1.affine[:3, :3] @ ijk + t1.affine[:3, 3][:, None]
    err = np.linalg.norm((est[:3, :3] - truth[:3, :3]) @ pts + (est[:3, 3] - truth[:3, 3])[:, None], axis=0)
    print(f"rigid EPI->T1w: max error {err.max():.3f} mm, mean {err.mean():.3f} mm")
    assert err.max() < 1.0, err.max()  # a third of an EPI voxel
    rel = est[:3, :3] @ truth[:3, :3].T
    angle = np.degrees(np.arccos(np.clip((np.trace(rel) - 1) / 2, -1, 1)))
    print(f"rotation error {angle:.3f} deg")
    assert angle < 0.5, angle
