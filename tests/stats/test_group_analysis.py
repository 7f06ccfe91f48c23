"""Voxel-wise inference (stats.voxelwise) and its files (group.write) on a small MNI box: values,
clusters with atlas labels, sidecars."""
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from hfsmri.stats.design import design_from_study
from hfsmri.stats.glm import ols
from hfsmri.derivatives import Derivatives
from hfsmri.group import write
from hfsmri.stats.tfce import tfce
from hfsmri.stats.voxelwise import voxelwise

from .conftest import smooth_maps
from .test_clusters import mni_box, world_grid
from tests.naming import gname


def voxelwise_files(root, Y, mask, design, affine, stats, contrasts=None):
    """Inference + the group files of one metric folder; returns (folder, cluster rows)."""
    res = voxelwise(Y, mask, design, affine=affine, n_perm=stats["n_perm"], tfce=stats.get("tfce", True),
                    alpha=stats.get("alpha", 0.05), cluster_forming_p=stats.get("cluster_forming_p", 0.001),
                    random_state=stats.get("random_seed", 0), contrasts=contrasts)
    write.results(Derivatives(root), "a", "m", res, mask, affine, {})
    rows = pd.concat([r.clusters.assign(contrast=r.contrast) for r in res], ignore_index=True)
    return root / "group" / "a" / "m", rows


@pytest.fixture(scope="module")
def box():
    shape, aff = mni_box(res=3.0, lo=(-33, -48, -12), hi=(15, 12, 30))
    return shape, aff


def test_voxelwise_outputs(tmp_path, fake_study, participants, box):
    shape, aff = box
    xyz = world_grid(shape, aff)
    mask = np.linalg.norm(xyz - [-10, -18, 8], axis=-1) < 40
    d = design_from_study(fake_study, list(participants.index))
    maps = smooth_maps(20, shape, fwhm_vox=2.0, seed=11)
    blob = np.exp(-np.sum((xyz - [-10.0, -18.0, 8.0]) ** 2, axis=-1) / (2 * 5.0 ** 2))
    is_p = np.array([r == "patient" for r in d.roles])
    maps[is_p] += 2.5 * blob
    Y = maps[:, mask]
    stats = {"n_perm": 99, "tfce": True, "alpha": 0.05, "cluster_forming_p": 0.01, "random_seed": 3}
    tmp_path, table = voxelwise_files(tmp_path, Y, mask, d, aff, stats)
    for c in ("patient-gt-control", "patient-lt-control"):
        for name in (gname("t", c), gname("tfce", c), gname("fwe", c), gname("clusters", c),
                     gname("t", c, sidecar=True), gname("voxelfwe", c), gname("clusterfwe", c)):
            assert (tmp_path / name).exists(), name
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    t_img = nib.load(tmp_path / gname("t", "patient-gt-control"))
    np.testing.assert_allclose(t_img.affine, aff)
    t = t_img.get_fdata()
    ref = ols(Y, d.X, d.contrasts["patient-gt-control"]).t
    np.testing.assert_allclose(t[mask], ref, rtol=1e-5, atol=1e-5)  # float32 on disk
    assert np.all(t[~mask] == 0)
    t_lt = nib.load(tmp_path / gname("t", "patient-lt-control")).get_fdata()
    np.testing.assert_allclose(t_lt, -t, atol=1e-6)
    tf_lt = nib.load(tmp_path / gname("tfce", "patient-lt-control")).get_fdata()
    ref_tf = tfce(-t, mask)
    np.testing.assert_allclose(tf_lt, ref_tf, rtol=1e-4, atol=1e-3 * ref_tf.max())
    logp = nib.load(tmp_path / gname("fwe", "patient-gt-control")).get_fdata()
    assert logp.max() == pytest.approx(np.log10(100), rel=1e-5)  # smallest p = 1/(n_perm+1)
    side = json.loads((tmp_path / gname("fwe", "patient-gt-control", sidecar=True)).read_text())
    assert side["NNull"] == 100 and side["Contrast"] == "patient-gt-control"
    assert side["FlippedSubjects"] == [] and side["TFCE"]["E"] == 0.5
    # the planted blob is found, labelled, in the table and on disk
    gt = pd.read_csv(tmp_path / gname("clusters", "patient-gt-control"), sep="\t")
    assert len(gt) >= 1
    top = gt[~gt.is_subpeak].iloc[0]
    assert np.linalg.norm([top.peak_x + 10, top.peak_y + 18, top.peak_z - 8]) <= 9
    assert top.p_fwe < 0.05
    assert "Thalamus_L" in top.aal_shares
    assert set(table.contrast) <= {"patient-gt-control", "patient-lt-control"}
    assert (table.contrast == "patient-gt-control").sum() == len(gt)


def test_voxelwise_one_contrast_and_voxel_inference(tmp_path, fake_study, participants, box):
    shape, aff = box
    mask = np.ones(shape, bool)
    d = design_from_study(fake_study, list(participants.index))
    maps = smooth_maps(20, shape, seed=12)
    stats = {"n_perm": 19, "tfce": False, "alpha": 0.05, "cluster_forming_p": 0.01, "random_seed": 0}
    tmp_path, _ = voxelwise_files(tmp_path, maps.reshape(20, -1), mask, d, aff, stats,
                                  contrasts=["patient-gt-control"])
    assert (tmp_path / gname("tfce", "patient-gt-control")).exists()
    assert not (tmp_path / gname("t", "patient-lt-control")).exists()
    side = json.loads((tmp_path / gname("fwe", "patient-gt-control", sidecar=True)).read_text())
    assert side["Inference"] == "voxel max-t FWE"


def test_voxelwise_rejects_bad_data(tmp_path, fake_study, participants, box):
    from hfsmri.errors import InputDataError

    shape, aff = box
    d = design_from_study(fake_study, list(participants.index))
    mask = np.ones(shape, bool)
    Y = np.zeros((20, int(mask.sum())))
    Y[0, 3] = np.nan
    with pytest.raises(InputDataError, match="sub-01"):
        voxelwise(Y, mask, d, affine=aff, n_perm=5)
    with pytest.raises(InputDataError, match="in-mask voxels"):
        voxelwise(Y[:, :10], mask, d, affine=aff, n_perm=5)
