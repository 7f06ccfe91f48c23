"""Participant stage on a synthetic DWI placed in MNI space: maps written with contract names,
FA in MNI follows the planted FA, ROI table written; bad gradients raise InputDataError."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from hfsmri.errors import InputDataError
from tests.dwi._synth import fibonacci_dirs


def _dwi(tmp_path, bad_row=None):
    from hfsmri.spatial.templates import load_template

    wm = np.asarray(load_template("WM", 3).dataobj, float)
    brain = np.asarray(load_template("mask", 3).dataobj) > 0
    aff = load_template("mask", 3).affine
    lperp = np.where(wm > 0.5, 0.35e-3, 0.8e-3)
    lpar = np.where(wm > 0.5, 1.7e-3, 0.85e-3)
    bvals = np.r_[0, 0, np.full(20, 1000.0)]
    bvecs = np.vstack([np.zeros((2, 3)), fibonacci_dirs(20)])
    gx2 = bvecs[:, 0] ** 2
    sig = 1000 * brain[..., None] * np.exp(-bvals * (lperp[..., None] + (lpar - lperp)[..., None] * gx2))
    sig = sig * (1 + 0.3 * ndimage.gaussian_filter(wm, 2))[..., None]  # T2-ish contrast for registration
    img = nib.Nifti1Image(sig.astype(np.float32), aff)
    f = tmp_path / "sub-01_dwi.nii.gz"
    nib.save(img, f)
    if bad_row is not None:
        bvecs[bad_row] = np.nan
    np.savetxt(tmp_path / "sub-01_dwi.bval", bvals[None], fmt="%g")
    np.savetxt(tmp_path / "sub-01_dwi.bvec", bvecs.T, fmt="%.8f")
    lam = np.stack([lpar, lperp, lperp], -1)
    md = lam.mean(-1)
    fa_true = np.sqrt(1.5 * ((lam - md[..., None]) ** 2).sum(-1) / (lam ** 2).sum(-1)) * brain
    return f, fa_true


def _ctx(tmp_path, f, analyses):
    from hfsmri.derivatives import Derivatives
    from hfsmri.stage_outputs import AnatOutputs, DwiOutputs

    si = SimpleNamespace(subject="01", session=None, dwi=f, bval=f.with_name("sub-01_dwi.bval"),
                         bvec=f.with_name("sub-01_dwi.bvec"), dwi_json=None, qsiprep_dwi=None,
                         qsiprep_bval=None, qsiprep_bvec=None)
    return SimpleNamespace(subject="01", session=None, inputs=si, out=Derivatives(tmp_path / "out"),
                           work_dir=tmp_path / "work", analyses=analyses, preprocessing={}, flip=False, seed=0,
                           omp_nthreads=1, log=logging.getLogger("test"), anat=AnatOutputs(),
                           dwi=DwiOutputs())


@pytest.mark.slow
def test_participant_stage_writes_contract_maps(tmp_path):
    from hfsmri.dwi import participant

    f, fa_true = _dwi(tmp_path)
    analyses = {"dti": {"motion_correction": False, "resolution": 3}, "dwi_rois": {}}
    ctx = _ctx(tmp_path, f, analyses)
    summary = participant.run(ctx)
    assert summary["registration"] == "direct" and summary["gradients"]["n_b0"] == 2
    out = ctx.out.root / "sub-01" / "dwi"
    fa_p = out / "sub-01_space-MNI152NLin2009aSym_res-3_model-tensor_param-fa_dwimap.nii.gz"
    for m in ("fa", "md", "ad", "rd"):
        assert (out / fa_p.name.replace("param-fa", f"param-{m}")).exists()
    fa = np.asarray(nib.load(fa_p).dataobj)
    sel = (fa > 0) & (fa_true > 0)
    assert np.corrcoef(fa[sel], fa_true[sel])[0, 1] > 0.8
    tsv = out / "sub-01_space-MNI152NLin2009aSym_res-3_desc-tracts_stats.tsv"
    import pandas as pd

    df = pd.read_csv(tsv, sep="\t").set_index("roi")
    assert {"ccGenu", "ccBody", "ccSplenium", "slfL"} <= set(df.index)
    from hfsmri.dwi.participant import _tract_masks

    masks = _tract_masks(3.0, "witelson")
    for roi in ("ccBody", "cstL"):  # ROI means follow the planted FA's ROI means (registration blur)
        planted = fa_true[masks[roi] & (fa > 0)].mean()
        assert abs(df.loc[roi, "fa"] - planted) < 0.1, (roi, df.loc[roi, "fa"], planted)
    again = participant.run(ctx)  # provenance: second run skips the fit
    assert again.get("skipped") is True


def test_participant_bad_bvec_names_file_and_row(tmp_path):
    from hfsmri.dwi import participant

    f, _ = _dwi(tmp_path, bad_row=5)
    ctx = _ctx(tmp_path, f, {"dti": {"motion_correction": False, "resolution": 3}})
    with pytest.raises(InputDataError, match=r"sub-01_dwi.bvec.*\[5\]"):
        participant.run(ctx)
