"""Registration helpers: geometry conversion, recovery of a planted deformation, Jacobian
modulation (volume preservation) and determinism. Runs on the 3 mm template grid for speed."""
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from hfsmri.anat.qc import dice
from hfsmri.anat.registration import tissue_syn
from hfsmri.anat.synthetic import smooth_deformation
from hfsmri.anat.vbm import modulate
from hfsmri.spatial import registration as R
from hfsmri.spatial.resample import to_ants, to_nib, voxel_volume_ml
from hfsmri.spatial.templates import load_template

RES = 3


def test_ants_nib_roundtrip_geometry():
    import ants

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    aff = np.eye(4)
    aff[:3, :3] = q * np.array([1.5, 2.0, 2.5])
    aff[:3, 3] = [10, -20, 30]
    img = nib.Nifti1Image(rng.random((5, 6, 7)).astype(np.float32), aff)
    a = to_ants(img)
    # ANTs physical points are LPS: (-x, -y, z) of nibabel's RAS world point
    for ijk in [(0, 0, 0), (4, 5, 6), (2, 3, 1)]:
        ras = aff[:3, :3] @ np.array(ijk) + aff[:3, 3]
        lps = np.array(ants.transform_index_to_physical_point(a, list(ijk)))
        assert np.allclose(lps, ras * [-1, -1, 1], atol=1e-4)
    back = to_nib(a)
    assert np.allclose(back.affine, aff, atol=1e-5)
    assert np.array_equal(back.get_fdata(), img.get_fdata())


@pytest.fixture(scope="module")
def deformed():
    """Template tissue maps moved by a known affine + smooth deformation (native space)."""
    gm, wm, t1 = (load_template(k, RES) for k in ("GM", "WM", "T1"))
    shape, aff = gm.shape, gm.affine
    u = smooth_deformation(shape, RES, 7.0, smooth_mm=12.0, random_state=4) / RES
    zoom = np.diag([1.06, 0.95, 1.03])
    c = (np.asarray(shape) - 1) / 2.0
    idx = np.indices(shape).reshape(3, -1).astype(float)
    src = zoom @ (idx - c[:, None]) + c[:, None] + u.reshape(-1, 3).T
    warp = lambda im: ndi.map_coordinates(im.get_fdata(), src, order=1).reshape(shape).astype(np.float32)  # noqa: E731
    g, w = warp(gm), warp(wm)
    csf = np.clip(warp(load_template("mask", RES)) - g - w, 0, 1)
    t1w = (0.58 * g + 1.0 * w + 0.18 * csf) * 1000  # simulator-like contrast, not the template's
    mk = lambda a: nib.Nifti1Image(a.astype(np.float32), aff)  # noqa: E731
    return {"gm": mk(g), "wm": mk(w), "t1w": mk(t1w), "tgm": gm, "tmpl": t1}


@pytest.fixture(scope="module")
def transforms(deformed, tmp_path_factory):
    out = tmp_path_factory.mktemp("reg")
    aff = R.register_to_mni(deformed["t1w"], deformed["tmpl"], "Affine", seed=0, nthreads=1, out_dir=out, prefix="a_")
    syn = tissue_syn(deformed["gm"], deformed["wm"], aff.fwd, RES, "SyN", seed=0, nthreads=1, out_dir=out)
    return aff, syn


def test_registration_recovers_planted_deformation(deformed, transforms):
    aff, syn = transforms
    tg = deformed["tgm"].get_fdata() > 0.5
    before = dice(deformed["gm"].get_fdata() > 0.5, tg)
    d_aff = dice(R.apply_to_mni(deformed["gm"], aff, deformed["tmpl"]).get_fdata() > 0.5, tg)
    warped = R.apply_to_mni(deformed["gm"], syn, deformed["tmpl"]).get_fdata()
    d_syn = dice(warped > 0.5, tg)
    assert d_syn >= 0.85
    # SyN does not lose what the affine gained (it may add little on a mostly-affine deformation)
    assert d_syn > d_aff - 0.005 and d_aff > before
    r_before = np.corrcoef(deformed["gm"].get_fdata().ravel(), deformed["tgm"].get_fdata().ravel())[0, 1]
    r_after = np.corrcoef(warped.ravel(), deformed["tgm"].get_fdata().ravel())[0, 1]
    assert r_after > r_before + 0.05


def test_jacobian_modulation_preserves_total_gm(deformed, transforms):
    _, syn = transforms
    tmpl = deformed["tmpl"]
    gm_mni = R.apply_to_mni(deformed["gm"], syn, tmpl).get_fdata()
    jac = R.jacobian_determinant(syn, tmpl).get_fdata()
    # the planted zoom has determinant 1.06*0.95*1.03: native volume per MNI volume ~ 1/1.037
    assert np.median(jac[deformed["tgm"].get_fdata() > 0.5]) == pytest.approx(1 / (1.06 * 0.95 * 1.03), rel=0.05)
    total_native = deformed["gm"].get_fdata().sum() * voxel_volume_ml(deformed["gm"])
    total_mod = modulate(gm_mni, jac).sum() * voxel_volume_ml(tmpl)
    total_unmod = gm_mni.sum() * voxel_volume_ml(tmpl)
    assert total_mod == pytest.approx(total_native, rel=0.02)
    assert abs(total_unmod / total_native - 1) > abs(total_mod / total_native - 1)


def test_inverse_maps_template_mask_back(deformed, transforms):
    _, syn = transforms
    m = R.apply_from_mni(load_template("mask", RES), syn, deformed["gm"], "nearest").get_fdata() > 0
    truth = (deformed["gm"].get_fdata() + deformed["wm"].get_fdata()) > 0.5
    # GM+WM of the deformed subject lies inside the mapped-back template mask
    assert (m & truth).sum() / truth.sum() > 0.97


def _affine_parameters(t1w_path, tmpl_path, out_dir):
    """One registration in a fresh process (ITK fixes its thread pool at first use in a process, so
    the thread count a test worker started with must not leak in); returns the affine parameters."""
    import os

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    import ants

    from hfsmri.spatial import registration as reg

    tr = reg.register_to_mni(nib.load(t1w_path), nib.load(tmpl_path), "Affine", seed=3, nthreads=1, out_dir=out_dir)
    return np.asarray(ants.read_transform(tr.fwd[0]).parameters)


def test_registration_is_deterministic(deformed, tmp_path):
    """Same input, seed and thread count -> identical transform, in two separate processes (as a
    resumed run is)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    nib.save(deformed["t1w"], tmp_path / "t1w.nii.gz")
    nib.save(deformed["tmpl"], tmp_path / "tmpl.nii.gz")
    params = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
            params.append(ex.submit(_affine_parameters, str(tmp_path / "t1w.nii.gz"), str(tmp_path / "tmpl.nii.gz"),
                                    tmp_path / name).result())
    assert np.array_equal(params[0], params[1])
