"""Stage hooks (hfsmri.qc.record) and QC figures: names, files, valid small PNGs, cached metrics."""
from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from hfsmri.derivatives import Derivatives
from hfsmri.qc import figures as F
from hfsmri.qc import record, table
from hfsmri.stage_outputs import AnatOutputs

MAX_PNG_BYTES = 150_000


def _ctx(tmp_path, **kw):
    si = SimpleNamespace(subject="01", session=None, t1w=kw.pop("t1w", None), dwi_json=kw.pop("dwi_json", None))
    return SimpleNamespace(subject="01", session=kw.pop("session", None), inputs=si, out=Derivatives(tmp_path / "out"),
                           log=logging.getLogger("test"), anat=kw.pop("anat", AnatOutputs()), **kw)


def _check_png(path, size=None):
    assert path.is_file() and path.parent.name == "figures"
    assert path.stat().st_size < MAX_PNG_BYTES
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        if size is not None:
            assert im.size == size
        return im.size


def test_figure_names_are_bids_like_and_in_figures(tmp_path):
    out = Derivatives(tmp_path)
    from hfsmri.spatial.templates import TEMPLATE_SPACE

    names = {k: F.figure_path(out, "01", "pre", k).relative_to(tmp_path).as_posix() for k in F.FIGURES}
    assert names["t1w_mni"] == f"sub-01/ses-pre/figures/sub-01_ses-pre_space-{TEMPLATE_SPACE}_desc-reg_T1w.png"
    assert names["bold_carpet"] == "sub-01/ses-pre/figures/sub-01_ses-pre_task-rest_desc-carpetplot_bold.png"
    assert names["dwi_coreg"] == "sub-01/ses-pre/figures/sub-01_ses-pre_desc-coreg_dwi.png"
    with pytest.raises(ValueError, match="unknown QC figure"):
        F.figure_path(out, "01", None, "nope")
    # the structural stage's overlay is the hfsmri.qc one (one owner)
    from hfsmri.anat import qc as anat_qc

    assert anat_qc.registration_overlay is F.registration_overlay


def test_func_hook_writes_metrics_and_three_small_figures(tmp_path):
    from tests.func._synth import synthetic_bold

    data, affine, mask, motion = synthetic_bold(resolution=6, n_t=50, seed=1)
    from hfsmri.func.confounds import framewise_displacement

    fd = framewise_displacement(motion)
    ts = data[mask].T.astype(np.float64)
    ctx = _ctx(tmp_path)
    inputs, params = [], {"func": {"x": 1}}
    iqm = record.func(ctx, ts=ts, data4d=data, mask=mask, affine=affine, fd=fd, tr=2.0, fd_threshold=0.5,
                      scrubbing=False, source="fmriprep", registration="fmriprep", coreg=None, inputs=inputs,
                      params=params)
    assert set(iqm) == set(table.modality_columns("bold"))
    from hfsmri.qc.functional import bold_iqms

    ref = bold_iqms(ts, fd, 0.5)
    assert iqm["tsnr"] == pytest.approx(ref["tsnr"]) and iqm["mean_fd"] == pytest.approx(fd[1:].mean())
    t = table.collect(tmp_path / "out")
    assert t["modality"].tolist() == ["bold"] and t.loc[0, "dvars_std"] == pytest.approx(iqm["dvars_std"])
    # figures: valid PNGs under figures/, small; the carpet has its fixed pixel size (7.2 x 4.6 in at 80 dpi)
    _check_png(F.figure_path(ctx.out, "01", None, "bold_carpet"), size=(576, 368))
    _check_png(F.figure_path(ctx.out, "01", None, "bold_tsnr"))
    _check_png(F.figure_path(ctx.out, "01", None, "bold_coreg"))
    # resume: the same inputs and parameters give the cached metrics; other parameters recompute
    assert record.cached(ctx.out, "01", None, "bold", inputs, params) == iqm
    assert record.cached(ctx.out, "01", None, "bold", inputs, {"func": {"x": 2}}) is None


def test_carpet_figure_draws_the_tissue_ordered_matrix(tmp_path):
    """Rendering check: a carpet whose GM rows are +2 and WM rows -2 shows a bright band over a dark
    band, in that order and proportion, in the carpet panel of the PNG."""
    mat = np.vstack([np.full((30, 40), 2.0), np.full((10, 40), -2.0)])
    rows = np.r_[np.ones(30, int), np.full(10, 2)]
    p = tmp_path / "carpet.png"
    F.carpet_plot(mat, rows, {1: "GM", 2: "WM"}, np.zeros(40), np.ones(40), p, tr=2.0)
    im = np.asarray(Image.open(p).convert("L"), float)
    col = im[:, im.shape[1] // 2]  # a column through the middle of the carpet
    dark = np.flatnonzero(col < 25)
    assert dark.size and np.all(np.diff(dark) == 1)  # one dark (WM) band
    top = dark.min() - 1
    while top > 0 and col[top - 1] > 230:  # the bright (GM) band right above it
        top -= 1
    n_bright = dark.min() - top
    assert top > im.shape[0] * 0.35  # the carpet is below the FD and DVARS panels
    assert n_bright / dark.size == pytest.approx(3.0, rel=0.1)


def test_dwi_hook_finds_planted_dropouts_and_draws(tmp_path):
    import ants

    from hfsmri.spatial.templates import load_template

    brain = np.asarray(load_template("mask", 4).dataobj) > 0
    aff = load_template("mask", 4).affine
    rng = np.random.default_rng(0)
    bvals = np.r_[0, 0, 0, np.full(24, 1000.0)]
    sig = np.where(brain, 900.0, 0.0)[..., None] * np.where(bvals > 0, 0.35, 1.0)
    data = np.abs(sig + 15 * rng.standard_normal(sig.shape) + 1j * 15 * rng.standard_normal(sig.shape))
    data[:, :, 20, 10] *= 0.3  # one dropout slice
    ident = tmp_path / "identity.mat"
    ants.write_transform(ants.create_ants_transform(transform_type="AffineTransform", dimension=3), str(ident))
    ctx = _ctx(tmp_path)
    iqm = record.dwi(ctx, raw=data.astype(np.float32), affine=aff, bvals=bvals, b0_threshold=50, mask=brain,
                     b0=data[..., :3].mean(-1), motion=None, reg={"how": "direct", "transforms": [str(ident)]},
                     t1w_to_mni=None, inputs=[], params={})
    assert iqm["dwi_outlier"] == pytest.approx(1 / 24)
    assert iqm["b0_snr"] == pytest.approx(900 / 15, rel=0.05)
    assert iqm["dwi_motion"] is None  # no motion correction: n/a
    _check_png(F.figure_path(ctx.out, "01", None, "dwi_slices"))
    _check_png(F.figure_path(ctx.out, "01", None, "dwi_coreg"))
    side = json.loads((ctx.out.root / "sub-01" / "dwi" / "sub-01_desc-iqm_stats.json").read_text())
    assert side["Method"]["outlier_volumes"] == [10]  # index in the 4D series
    assert side["Method"]["b0_snr_method"] == "b0 repeats" and side["dwi_outlier"]["Units"] == "fraction 0-1"


def test_anat_hook_on_a_phantom(tmp_path):
    from tests.qc.test_structural import _phantom

    img, brain, pv, aff = _phantom(np.random.default_rng(5))
    raw = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(img, aff), raw)
    ctx = _ctx(tmp_path, t1w=raw)
    n4 = nib.Nifti1Image(img, aff)
    iqm = record.anat(ctx, n4=n4, brain_mask=brain, seg=pv, transforms=None,
                      dice={"brain_mask_dice": 0.97, "gm_dice": 0.71}, inputs=[raw], params={"a": 1})
    assert iqm["t1w_dice"] == 0.97 and iqm["gm_dice"] == 0.71
    assert iqm["snr_wm"] == pytest.approx(1000 / 20, rel=0.05)
    assert iqm["inu_range"] == pytest.approx(0.0, abs=1e-6)  # raw == N4 image: a flat bias field
    assert record.cached(ctx.out, "01", None, "T1w", [raw], {"a": 1}) == iqm
