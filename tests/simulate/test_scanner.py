"""A simulator that looks like a scanner (``scanner="realistic"`` and its single options).

Headers (oblique direction cosines, anisotropic voxels, stored orientation, data types) are read
back with nibabel and compared with what subjects.tsv says was drawn; the full head is compared
with the real Colin27 head (intensity ratios and scalp thickness measured the same way on both);
world-space consistency is checked by resampling differently stored images of the same subject
onto one grid (nilearn); b-vectors are checked with dipy tensor fits against the planted fibres;
slice timing against the lag between slices measured in the BOLD signal; the bias field against
the white-matter intensity of the written image.
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.orientations import aff2axcodes, axcodes2ornt, inv_ornt_aff, io_orientation

from hfsmri.errors import HfsmriError
from hfsmri.simulate import simulate_study

from hfsmri.simulate.scanner import WM_LEVEL, WM_LEVEL_UINT8

from ._helpers import effects_table, load, mask_on, participants

REAL = dict(n_patients=1, n_controls=1, seed=21, resolution=4.0, n_dirs=12, n_volumes=30,
            scanner="realistic", n_jobs=2)
# two GM effects (one lateralised): enough ground truth to compare, fast to build
GM_EFFECTS = {"effects": [
    {"id": "gm-thal", "metric": "gm", "direction": -1, "cohens_d": 3.0, "region": "aal:Thalamus_L+aal:Thalamus_R",
     "hemisphere": "bilateral"},
    {"id": "gm-put", "metric": "gm", "direction": -1, "cohens_d": 3.0, "region": "aal:Putamen_L+aal:Putamen_R",
     "hemisphere": "ipsi", "clinical": {"score": "severity", "r": 0.5}}]}


def _subjects(root) -> pd.DataFrame:
    return pd.read_csv(root / "derivatives" / "ground_truth" / "subjects.tsv", sep="\t")


def _obliquity_deg(affine) -> float:
    """Angle (deg) between a header's direction cosines and the nearest axis-aligned frame."""
    a = np.asarray(affine, float)[:3, :3]
    cos = a / np.linalg.norm(a, axis=0)
    ornt = io_orientation(affine)
    perm = np.zeros((3, 3))
    for i, (ax, sign) in enumerate(ornt):
        perm[int(ax), i] = sign
    rot = cos @ perm.T
    return float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1))))


@pytest.fixture(scope="module")
def realistic_study(tmp_path_factory):
    """1 HFS + 1 HC, realistic scanner, all modalities, 4 mm."""
    return simulate_study(tmp_path_factory.mktemp("scanner") / "real", **REAL)


def test_realistic_headers_match_what_was_drawn(realistic_study):
    root = realistic_study
    subj = _subjects(root).set_index("participant_id")
    desc = json.loads((root / "derivatives" / "ground_truth" / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Parameters"]["scanner"]["preset"] == "realistic"
    angles = []
    for sid in participants(root).participant_id:
        r = subj.loc[sid]
        for mod, rel in (("t1w", f"anat/{sid}_T1w.nii.gz"), ("dwi", f"dwi/{sid}_dwi.nii.gz"),
                         ("bold", f"func/{sid}_task-rest_bold.nii.gz")):
            img = nib.load(root / sid / rel)
            assert "".join(aff2axcodes(img.affine)) == r[f"{mod}_axcodes"]
            zooms = tuple(float(v) for v in str(r[f"{mod}_voxel_mm"]).split("x"))
            assert img.header.get_zooms()[:3] == pytest.approx(zooms, abs=1e-4)
            ang = _obliquity_deg(img.affine)
            assert ang == pytest.approx(r[f"{mod}_oblique_deg"], abs=0.01) and ang <= 15.0 + 1e-6
            assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
            angles.append(ang)
            if mod == "bold":  # EPI slabs are axial: the stored slice axis is S-I
                assert r[f"{mod}_axcodes"][2] in "SI"
        t1 = nib.load(root / sid / "anat" / f"{sid}_T1w.nii.gz")
        assert t1.header.get_data_dtype() == np.dtype(r["t1w_dtype"])
        meta = json.loads((root / sid / "anat" / f"{sid}_T1w.json").read_text())
        assert meta["SliceThickness"] == pytest.approx(t1.header.get_zooms()[2], abs=1e-4)
    assert max(angles) > 3.0  # tilted acquisitions, not axis-aligned


def test_explicit_scanner_options(tmp_path):
    """Single options override the preset exactly: sagittal PIR, 0.9 x 0.9 x 1.2 voxels, uint8."""
    root = simulate_study(tmp_path / "x", 1, 0, seed=3, resolution=5.0, modalities=("anat", "dwi"), n_dirs=6,
                          n_jobs=1, scanner={"preset": "realistic", "t1w_orientation": "PIR", "oblique_deg": 12,
                                             "anisotropy": [0.9, 0.9, 1.2], "t1w_dtype": "uint8",
                                             "epi_orientation": "LPS"})
    t1 = nib.load(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    assert aff2axcodes(t1.affine) == ("P", "I", "R") and t1.header.get_data_dtype() == np.uint8
    assert t1.header.get_zooms() == pytest.approx((4.5, 4.5, 6.0))
    assert 0 < _obliquity_deg(t1.affine) <= 12.0 + 1e-6
    assert np.asarray(t1.dataobj).max() == 255 or np.percentile(np.asarray(t1.dataobj), 99.9) > 100
    dwi = nib.load(root / "sub-01" / "dwi" / "sub-01_dwi.nii.gz")
    assert aff2axcodes(dwi.affine) == ("L", "P", "S")
    side = json.loads((root / "sub-01" / "dwi" / "sub-01_dwi.json").read_text())
    assert side["PhaseEncodingDirection"] == "j"  # stored j runs posterior: the sign follows the axis


def test_bad_scanner_options_are_named_errors(tmp_path):
    for bad, key in (({"preset": "fancy"}, "scanner.preset"), ({"t1w_orientation": "RAX"}, "scanner.t1w_orientation"),
                     ({"epi_orientation": "PIR"}, "scanner.epi_orientation"), ({"oblique_deg": 90}, "scanner.oblique_deg"),
                     ({"bias": 2}, "scanner.bias"), ({"anisotropy": [1, 1]}, "scanner.anisotropy"),
                     ({"slice_timing": "spiral"}, "scanner.slice_timing"), ({"colour": 1}, "scanner.colour")):
        with pytest.raises(HfsmriError, match=key.replace(".", r"\.")):
            simulate_study(tmp_path / "bad", 1, 0, modalities=("anat",), resolution=6, deform=False, scanner=bad)
    assert not (tmp_path / "bad").exists()


def test_ground_truth_does_not_depend_on_the_scanner(tmp_path):
    """Effects, masks and every planted per-subject value are the same whatever the pose, grid and
    storage; the simulated TIV only changes by the sampling of another grid."""
    kw = dict(n_patients=2, n_controls=1, seed=5, resolution=6.0, modalities=("anat",), n_jobs=1,
              effects=GM_EFFECTS)
    a = simulate_study(tmp_path / "ideal", scanner="ideal", **kw)
    b = simulate_study(tmp_path / "real", scanner="realistic", **kw)
    ga, gb = a / "derivatives" / "ground_truth", b / "derivatives" / "ground_truth"
    assert (ga / "effects.tsv").read_bytes() == (gb / "effects.tsv").read_bytes()
    for m in sorted((ga / "masks").glob("*.nii.gz")):
        assert np.array_equal(np.asarray(nib.load(m).dataobj), np.asarray(nib.load(gb / "masks" / m.name).dataobj))
    sa, sb = _subjects(a), _subjects(b)
    planted = [c for c in sa.columns if c.startswith("effect-")] + ["scale", "deform_rms_mm"]
    pd.testing.assert_frame_equal(sa[planted], sb[planted])
    assert np.allclose(sa.tiv_ml, sb.tiv_ml, rtol=0.03)
    assert (a / "participants.tsv").read_bytes() == (b / "participants.tsv").read_bytes()
    # the realistic subjects are really posed differently (tilted, shifted in the coil)
    assert (np.abs(sb[["t1w_rot_x_deg", "t1w_rot_y_deg", "t1w_rot_z_deg"]]).to_numpy().max() > 2.0)
    assert (np.abs(sb[["t1w_trans_y_mm", "t1w_trans_z_mm"]]).to_numpy().max() > 8.0)


def _resample(img, ref):
    from nilearn import image

    src = nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine)
    out = image.resample_to_img(src, ref, interpolation="continuous", force_resample=True, copy_header=True)
    return np.asarray(out.dataobj)


def test_world_space_is_the_same_whatever_the_header(tmp_path):
    """One subject (no deformation: world = MNI) written with different headers — axis-aligned
    RAS, oblique sagittal PIR with 1.2 mm slices, oblique axial LPS as uint8 with another scale —
    resampled onto one grid gives the same head: the same MNI point is the same anatomy."""
    base = dict(n_patients=1, n_controls=0, seed=9, resolution=4.0, deform=False, modalities=("anat",), n_jobs=1,
                effects=GM_EFFECTS)
    common = {"preset": "realistic", "bias": 0.0, "oblique_deg": 20}
    specs = {"ras": dict(common, t1w_orientation="RAS", oblique_deg=0, anisotropy="none", t1w_dtype="int16"),
             "pir": dict(common, t1w_orientation="PIR", anisotropy=[1, 1, 1.2], t1w_dtype="int16"),
             "lps8": dict(common, t1w_orientation="LPS", anisotropy="none", t1w_dtype="uint8")}
    roots = {k: simulate_study(tmp_path / k, scanner=s, **base) for k, s in specs.items()}
    imgs = {k: nib.load(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz") for k, root in roots.items()}
    ref = imgs["ras"]
    r = np.asarray(ref.dataobj, np.float32)
    assert _obliquity_deg(imgs["pir"].affine) > 2 and _obliquity_deg(imgs["lps8"].affine) > 2
    head = r > 0.3 * np.percentile(r, 99)
    inner = np.zeros_like(head)  # away from the grid edges, which an oblique box does not cover
    inner[3:-3, 3:-3, 3:-3] = True
    gt = effects_table(roots["ras"]).set_index("effect_id")
    masks = {eid: mask_on(roots["ras"] / "derivatives" / "ground_truth" / gt.loc[eid, "mask"].iloc[0]
                          if isinstance(gt.loc[eid, "mask"], pd.Series) else
                          roots["ras"] / "derivatives" / "ground_truth" / gt.loc[eid, "mask"], ref) & inner
             for eid in ("gm-thal", "gm-put")}
    for k in ("pir", "lps8"):
        v = _resample(imgs[k], ref)
        sel = head & inner & (v > 0)
        scale = float(np.median(v[sel]) / np.median(r[sel]))
        cc = np.corrcoef(v[sel], r[sel])[0, 1]
        assert cc > 0.9, (k, cc)
        # the intensity scale of the stored type (uint8: WM 120, int16: WM 1000) is all that differs
        assert scale == pytest.approx(WM_LEVEL_UINT8 / WM_LEVEL if k == "lps8" else 1.0, rel=0.06)
        for eid, m in masks.items():  # the planted GM effect regions: the same mean from any header
            assert v[m].mean() / scale == pytest.approx(r[m].mean(), rel=0.05), (k, eid)


# ---------------------------------------------------------------- the full head
@pytest.fixture(scope="module")
def head_2mm(tmp_path_factory):
    """One subject's full head at 2 mm in MNI position (no deformation, no bias field), int16,
    isotropic voxels (the Colin27 comparison below is made at 2 mm on both heads)."""
    root = simulate_study(tmp_path_factory.mktemp("head") / "h", 1, 0, seed=2, resolution=2.0, deform=False,
                          modalities=("anat",), effects="none", n_jobs=1,
                          scanner={"preset": "realistic", "bias": 0.0, "t1w_dtype": "int16", "anisotropy": "none"})
    return nib.load(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")


def _head_measures(img, brain: np.ndarray) -> dict:
    """Contrast and size of the head around the brain, measured the same way on any T1w: intensity
    relative to the brain's 95th percentile (~WM) in shells over the cranial vault (> 10 mm above
    the brain's centre): share of dark voxels (< 0.3: CSF, bone) 0-8 mm out, share of bright
    voxels (> 0.9: fat) 4-16 mm out, their medians; brain-to-skin distance along 5 rays."""
    from scipy import ndimage

    d = np.asarray(img.dataobj, np.float32)
    vox = np.sqrt((img.affine[:3, :3] ** 2).sum(0))
    r = d / np.percentile(d[brain], 95)
    dist = ndimage.distance_transform_edt(~brain, sampling=vox)
    xyz = (np.indices(d.shape).reshape(3, -1).T @ img.affine[:3, :3].T + img.affine[:3, 3]).reshape(d.shape + (3,))
    centre = xyz[brain].mean(axis=0)
    vault = xyz[..., 2] > centre[2] + 10
    s08 = vault & (dist > 0) & (dist <= 8)
    s416 = vault & (dist > 4) & (dist <= 16)
    head = ndimage.binary_fill_holes(ndimage.binary_closing(r > 0.12, iterations=2))
    inv = np.linalg.inv(img.affine)
    skin = {}
    for name, v in {"up": (0, 0, 1), "left": (-1, 0, 0.2), "right": (1, 0, 0.2), "back": (0, -1, 0.2)}.items():
        v = np.asarray(v, float) / np.linalg.norm(v)
        last_b = last_h = 0.0
        for t in np.arange(0, 160, 0.5):
            ijk = np.rint(inv[:3, :3] @ (centre + t * v) + inv[:3, 3]).astype(int)
            if (ijk < 0).any() or (ijk >= d.shape).any():
                break
            last_b = t if brain[tuple(ijk)] else last_b
            last_h = t if head[tuple(ijk)] else last_h
        skin[name] = last_h - last_b
    return {"dark_0_8": float((r[s08] < 0.3).mean()), "bright_4_16": float((r[s416] > 0.9).mean()),
            "median_0_8": float(np.median(r[s08])), "p90_4_16": float(np.percentile(r[s416], 90)), "skin": skin}


def test_full_head_looks_like_colin27(head_2mm):
    """The simulated scalp/skull against the real Colin27 head (Debian mricron-data, 1 mm, averaged
    to 2 mm as the simulator's partial volume): dark (CSF + bone) and bright (fat) shares, their
    levels and the brain-to-skin distance agree."""
    from nilearn import datasets, image

    from tests.realdata import colin27_brain, colin27_head

    h = nib.load(colin27_head())
    d = np.asarray(h.dataobj, np.float32)[:180, :216, :180]
    b = np.asarray(nib.load(colin27_brain()).dataobj)[:180, :216, :180] > 0
    aff = h.affine.copy()
    aff[:3, :3] *= 2
    aff[:3, 3] += 0.5
    colin = _head_measures(nib.Nifti1Image(d.reshape(90, 2, 108, 2, 90, 2).mean((1, 3, 5)), aff),
                           b.reshape(90, 2, 108, 2, 90, 2).mean((1, 3, 5)) > 0.5)
    mask = image.resample_to_img(datasets.load_mni152_brain_mask(resolution=1), head_2mm, interpolation="nearest",
                                 force_resample=True, copy_header=True)
    sim = _head_measures(head_2mm, np.asarray(mask.dataobj) > 0)
    # Colin27: dark 0.41, bright 0.25, median 0.35, p90 1.21, skin 16.5-22.5 mm; simulated heads
    # (seeds 2-5): 0.30-0.48, 0.15-0.33, 0.30-0.36, 0.95-1.27, 17-24.5 mm (marrow, fat and scalp
    # vary between subjects): the tolerances are that between-subject range
    assert sim["dark_0_8"] == pytest.approx(colin["dark_0_8"], abs=0.15)
    assert sim["bright_4_16"] == pytest.approx(colin["bright_4_16"], abs=0.12)
    assert sim["median_0_8"] == pytest.approx(colin["median_0_8"], abs=0.08)
    assert sim["p90_4_16"] == pytest.approx(colin["p90_4_16"], abs=0.3)
    for k, v in colin["skin"].items():
        assert sim["skin"][k] == pytest.approx(v, abs=6.0), k


def test_full_head_tissues_and_intensity_order():
    """Skull, scalp, face, eyes and neck are there, with the T1w intensity order of a real head
    (MPRAGE, relative to WM): fat > WM > marrow > muscle > CSF, vitreous > cortical bone; the field
    of view reaches the neck."""
    from hfsmri.simulate.anatomy import MniMap
    from hfsmri.simulate.deformation import SubjectTransform
    from hfsmri.simulate.head import CLASSES, HeadParams
    from hfsmri.simulate.scanner import draw_acquisition, resolve_scanner
    from hfsmri.simulate.t1w import BRAIN_CLASS, simulate_t1w
    from hfsmri.spatial.templates import template_grid

    spec = resolve_scanner({"preset": "realistic", "t1w_dtype": "int16", "bias": 0.0, "anisotropy": "none"})
    tf = SubjectTransform.identity()
    acq = draw_acquisition(spec, "anat", 3.0, tf, np.random.default_rng(0))
    shape, aff = template_grid(2)
    z = MniMap(np.zeros(shape, np.float32), aff)
    data, affine, info = simulate_t1w(tf, z, 0.1, np.random.default_rng(1), 3.0, acq=acq,
                                      head=HeadParams.random(np.random.default_rng(2)), return_classes=True)
    lab, pure = info["head_class"], info["head_purity"] > 0.7   # mostly one tissue (3 mm partial volume)
    vox_ml = float(np.prod(acq.zooms)) / 1000
    med = {c: float(np.median(data[(lab == k) & pure])) / WM_LEVEL for k, c in enumerate(CLASSES)}
    vol = {c: float((lab == k).sum() * vox_ml) for k, c in enumerate(CLASSES)}
    assert vol["bone"] + vol["marrow"] > 250 and vol["skin"] > 80 and vol["fat"] > 150 and vol["eye"] > 4
    assert vol["muscle"] > 500 and vol["cord"] > 1  # neck muscles, spinal cord below the medulla
    assert med["fat"] > 1.0 > med["marrow"] > med["muscle"] > max(med["csf"], med["eye"]) > med["bone"]
    assert med["bone"] < 0.2 and 0.4 < med["muscle"] < 0.6
    xyz = np.argwhere(lab >= 0) @ affine[:3, :3].T + affine[:3, 3]
    assert xyz[:, 2].min() < -120  # neck well below the skull base (MNI z of the foramen magnum ~ -60)
    assert np.median(data[lab == -1]) < 0.05 * WM_LEVEL  # background: noise only



# ---------------------------------------------------------------- bias field
def test_bias_field_strength_and_ground_truth(tmp_path):
    """A ±20 % bias: the ground-truth field spans (1 + 0.2) / (1 - 0.2) between its 1st and 99th
    percentile over the head, and it is the field the image carries (white matter / WM level)."""
    from ._helpers import template_on

    root = simulate_study(tmp_path / "b", 1, 0, seed=4, resolution=3.0, deform=False, modalities=("anat",),
                          effects="none", n_jobs=1,
                          scanner={"preset": "realistic", "t1w_dtype": "int16", "bias": 0.2, "anisotropy": "none"})
    t1 = nib.load(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    data = np.asarray(t1.dataobj, np.float32)
    bias = _resample(nib.load(root / "derivatives" / "ground_truth" / "sub-01" / "anat" / "sub-01_desc-bias_T1w.nii.gz"), t1)
    head = data > 0.15 * WM_LEVEL
    p1, p99 = np.percentile(bias[head & (bias > 0)], [1, 99])
    assert p99 / p1 == pytest.approx(1.2 / 0.8, abs=0.08)
    assert np.median(bias[head]) == pytest.approx(1.0, abs=0.05)
    wm = (template_on("WM", t1) > 0.97) & (bias > 0)
    ratio = data[wm] / WM_LEVEL
    assert np.median(ratio / bias[wm]) == pytest.approx(1.0, abs=0.05)
    assert np.corrcoef(np.log(ratio), np.log(bias[wm]))[0, 1] > 0.8
    assert np.percentile(ratio, 95) / np.percentile(ratio, 5) > 1.15  # visibly inhomogeneous WM


# ---------------------------------------------------------------- b-vectors
def _tensor_fit_on_oblique_grid(code):
    """A DWI simulated on an oblique ``code`` grid of a rotated head, fitted with dipy using the
    b-vectors as written: principal directions of tract voxels (b-vector frame), the image
    affine, and the planted fibre axis (world: the template axis rotated with the head)."""
    import dipy.reconst.dti as dti
    from dipy.core.gradients import gradient_table
    from scipy.spatial.transform import Rotation

    from hfsmri.simulate.anatomy import MniMap, fibre_field
    from hfsmri.simulate.deformation import SubjectTransform
    from hfsmri.simulate.dwi import simulate_dwi
    from hfsmri.simulate.scanner import FOV_CENTRE_MNI, FOV_MM, Acquisition, grid_affine
    from hfsmri.spatial.templates import template_grid

    head = Rotation.from_euler("xyz", [12, -6, 25], degrees=True).as_matrix()
    tf = SubjectTransform(head, np.array([3.0, -12.0, 25.0]))
    grid_rot = Rotation.from_euler("xyz", [-10, 0, -20], degrees=True).as_matrix()
    centre = tf.mni_to_native_rigid(np.asarray([FOV_CENTRE_MNI["dwi"]]))[0]
    shape, affine = grid_affine(FOV_MM["dwi"], centre, grid_rot, code, (4.0, 4.0, 4.0))
    acq = Acquisition("dwi", shape, affine, code, (4.0, 4.0, 4.0), 0.0)
    gshape, gaff = template_grid(2)
    zero = MniMap(np.zeros(gshape, np.float32), gaff)
    data, aff, bvals, bvecs, _ = simulate_dwi(tf, zero, zero, 0.0, 0.0, np.random.default_rng(0), 4.0, n_dirs=30,
                                              snr=80.0, acq=acq)
    fit = dti.TensorModel(gradient_table(bvals, bvecs=bvecs)).fit(data.astype(float), mask=data[..., 0] > 300)
    ijk = np.argwhere(data[..., 0] > 300)
    x = tf.native_to_mni(ijk @ aff[:3, :3].T + aff[:3, 3])
    ff = fibre_field(2)
    axis = ff["axis"].sample(x, order=0, cval=-1).astype(int)
    sel = (fit.fa[tuple(ijk.T)] > 0.45) & (ff["coherence"].sample(x) > 0.9) & (axis >= 0)
    return fit.evecs[tuple(ijk[sel].T)][:, :, 0], aff, head[:, axis[sel]].T, axis[sel]


def test_bvecs_are_in_image_axes_fsl_convention():
    """Oblique grids of a rotated head stored LPS / RAS (det > 0) and LAS (det < 0): a dipy tensor
    fit with the written b-vectors, mapped to world with the FSL/BIDS rule (direction cosines, x
    negated when det > 0), points along the planted fibres (corpus callosum L-R, IFOF/SLF A-P, CST
    S-I, rotated with the head: median |cos| > 0.99); read without the x rule it does not."""
    for code in ("LPS", "RAS", "LAS"):
        e1, aff, planted, axis = _tensor_fit_on_oblique_grid(code)
        cosines = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
        flip = np.diag([-1.0, 1.0, 1.0]) if np.linalg.det(aff[:3, :3]) > 0 else np.eye(3)
        cos = np.abs(((e1 @ (cosines @ flip).T) * planted).sum(axis=1))
        for ax in (0, 1, 2):
            assert (axis == ax).sum() >= 50
            assert np.median(cos[axis == ax]) > 0.99, (code, ax, np.median(cos[axis == ax]))
        if code != "LAS":
            naive = np.abs(((e1 @ cosines.T) * planted).sum(axis=1))
            assert min(np.median(naive[axis == ax]) for ax in (0, 1, 2)) < 0.5, code


# ---------------------------------------------------------------- slice timing
def _lag_s(a, b, tr, band=(0.01, 0.08)):
    """Delay (s) of series b relative to a, b(t) = a(t + lag), from the cross-spectrum phase slope."""
    from scipy.signal import detrend

    fa, fb = np.fft.rfft(detrend(a)), np.fft.rfft(detrend(b))
    f = np.fft.rfftfreq(len(a), tr)
    sel = (f >= band[0]) & (f <= band[1])
    w = np.abs(fa[sel] * fb[sel])
    ph = np.angle(fb[sel] * np.conj(fa[sel]))
    return float((w * ph * f[sel]).sum() / (2 * np.pi * (w * f[sel] ** 2).sum()))


@pytest.mark.parametrize("order", ["interleaved", "none"])
def test_slice_timing_in_sidecar_and_in_signal(tmp_path, order):
    """``SliceTiming`` (stored slice order, here LPI: slices stored top-down) follows the declared
    acquisition order, and the signal really carries it: in one AAL region, the slices acquired in
    the second half of the TR lag those of the first half by the difference of their mean times
    (cross-spectrum phase slope); without slice timing there is no lag and no SliceTiming."""
    from hfsmri.simulate.bold import TR
    from hfsmri.spatial.atlas import region_mask

    root = simulate_study(tmp_path / order, 1, 0, seed=6, resolution=4.0, deform=False, modalities=("func",),
                          effects="none", n_volumes=200, n_jobs=1,
                          scanner={"preset": "realistic", "slice_timing": order, "epi_orientation": "LPI",
                                   "oblique_deg": 0, "anisotropy": "none"})
    stem = root / "sub-01" / "func" / "sub-01_task-rest_bold"
    img = nib.load(str(stem) + ".nii.gz")
    meta = json.loads(stem.with_suffix(".json").read_text())
    data = np.asarray(img.dataobj, np.float32)
    n = data.shape[2]
    if order == "none":
        assert "SliceTiming" not in meta
        times = np.zeros(n)
    else:
        times = np.asarray(meta["SliceTiming"])
        assert meta["SliceEncodingDirection"] == "k" and len(times) == n
        # interleaved from the foot (Siemens): odd count -> slices 0, 2, 4, ... first; stored top-down
        foot = np.arange(n)
        first = 0 if n % 2 else 1
        acq = np.r_[foot[first::2], foot[1 - first::2]]
        expected = np.empty(n)
        expected[acq] = np.arange(n) * TR / n
        assert np.allclose(times, expected[::-1], atol=1e-6)
    ref = nib.Nifti1Image(data[..., 0], img.affine)
    roi = region_mask("aal:Frontal_Sup_2_L+aal:Frontal_Sup_2_R+aal:Precentral_L+aal:Precentral_R", ref)
    k = np.nonzero(roi)[2]
    t_vox = times[k]
    early, late = t_vox < TR / 2, t_vox >= TR / 2
    ts = data[roi]                                                    # (n_vox, n_t)
    if order == "none":
        early, late = (k % 2 == 0), (k % 2 == 1)
    a, b = ts[early].mean(axis=0), ts[late].mean(axis=0)
    expected_lag = t_vox[late].mean() - t_vox[early].mean() if order != "none" else 0.0
    assert _lag_s(a, b, TR) == pytest.approx(expected_lag, abs=0.25)
    if order != "none":
        assert expected_lag > 0.6


# ---------------------------------------------------------------- determinism and command line
def test_realistic_is_deterministic(tmp_path):
    from .test_determinism_cli import _same

    kw = dict(n_patients=1, n_controls=1, seed=7, resolution=6.0, n_dirs=6, n_volumes=20, scanner="realistic",
              effects=GM_EFFECTS)
    a = simulate_study(tmp_path / "a", n_jobs=1, **kw)
    b = simulate_study(tmp_path / "b", n_jobs=2, **kw)
    assert _same(a, b)


def test_cli_scanner_options(tmp_path):
    import subprocess

    from .test_determinism_cli import HFSMRI

    out = tmp_path / "cli"
    cmd = [HFSMRI, "simulate", str(out), "--n-patients", "1", "--n-controls", "0", "--resolution", "6",
           "--n-volumes", "20", "--n-dirs", "6", "--no-deform", "--scanner", "ideal", "--oblique-deg", "10",
           "--t1w-orientation", "LPS", "--t1w-dtype", "float32", "--bias", "0.1", "--slice-timing", "ascending",
           "--anisotropy", "1,1,1.2", "--effects", "none"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    desc = json.loads((out / "derivatives" / "ground_truth" / "dataset_description.json").read_text())
    sc = desc["GeneratedBy"][0]["Parameters"]["scanner"]
    assert sc["preset"] == "ideal" and sc["oblique_deg"] == 10 and sc["t1w_orientation"] == "LPS"
    assert sc["anisotropy"] == [1, 1, 1.2] and sc["bias"] == 0.1 and sc["slice_timing"] == "ascending"
    t1 = nib.load(out / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    assert aff2axcodes(t1.affine) == ("L", "P", "S") and t1.header.get_data_dtype() == np.float32
    assert t1.header.get_zooms() == pytest.approx((6.0, 6.0, 7.2))
    assert "SliceTiming" in json.loads((out / "sub-01" / "func" / "sub-01_task-rest_bold.json").read_text())
    bad = subprocess.run([HFSMRI, "simulate", str(tmp_path / "bad"), "--t1w-orientation", "XYZ"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "scanner.t1w_orientation" in bad.stderr and "Traceback" not in bad.stderr
