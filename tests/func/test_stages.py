"""Participant and group stages on tiny synthetic data (6 mm MNI grid)."""
import logging
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.signal import clean as nl_clean

sys.path.insert(0, str(Path(__file__).parent))
from _synth import (planted_reho_bold, write_fmriprep, write_fmriprep_subject,  # noqa: E402
                    write_raw_bold)

from hfsmri.analyses import DEFAULTS  # noqa: E402
from hfsmri.bids import SubjectInputs  # noqa: E402
from hfsmri.derivatives import Derivatives  # noqa: E402
from hfsmri.func import confounds as cf  # noqa: E402
from hfsmri.func import participant  # noqa: E402
from hfsmri.func.reho import reho  # noqa: E402
from hfsmri.pipeline import GroupContext, ParticipantContext  # noqa: E402
from tests.naming import gname

RES = 6


def _ctx(tmp_path, si, analyses, func=None, sub="01"):
    pre = {"func": {"resolution": RES, **(func or {})}}
    return ParticipantContext(subject=sub, session=None, inputs=si, out=Derivatives(tmp_path / "out"),
                              work_dir=tmp_path / "work" / sub, analyses={a: DEFAULTS[a] for a in analyses},
                              preprocessing=pre)


def test_fmriprep_stage_clean_bold_matches_nilearn(tmp_path):
    bold, conf, mpath, data, mask, df = write_fmriprep(tmp_path, resolution=RES, n_t=50)
    si = SubjectInputs(subject="01", fmriprep_bold=bold, fmriprep_confounds=conf, fmriprep_mask=mpath, tr=2.0)
    ctx = _ctx(tmp_path, si, ["reho", "alff", "dc", "vmhc"])
    summary = participant.run(ctx)
    out = ctx.out
    clean_p = out.path("01", None, "func", "bold", res=RES, entities={"task": "rest", "desc": "clean"})
    mask_p = out.path("01", None, "func", "mask", res=RES, entities={"task": "rest", "desc": "brain"})
    assert ctx.func.clean_bold == str(clean_p)
    cb = np.asarray(nib.load(str(clean_p)).dataobj)
    bm = np.asarray(nib.load(str(mask_p)).dataobj) > 0
    # independent reference: nilearn on the same voxels with Friston-24 + WM + CSF
    motion = df[list(cf.MOTION_COLUMNS)].to_numpy()
    confs = np.column_stack([cf.friston24(motion), df["white_matter"], df["csf"]])
    ref = nl_clean(data[bm].T.astype(float), confounds=confs, t_r=2.0, detrend=True, standardize=None,
                   filter="butterworth", high_pass=0.01, low_pass=0.08)
    np.testing.assert_allclose(cb[bm].T, ref, atol=1e-3 * np.abs(ref).max())
    # ReHo map = kernel on the written cleaned BOLD
    rh = np.asarray(nib.load(str(participant.metric_path(out, "01", None, "reho", RES))).dataobj)
    np.testing.assert_allclose(rh, reho(cb, bm, 27), atol=1e-6)
    # ALFF map = DPABI-rule ALFF of the nilearn-cleaned *unfiltered* series
    from hfsmri.func.alff import alff_falff_2d

    ref_nb = nl_clean(data[bm].T.astype(float), confounds=confs, t_r=2.0, detrend=True, standardize=None,
                      filter=False)
    al = np.asarray(nib.load(str(participant.metric_path(out, "01", None, "alff", RES))).dataobj)
    np.testing.assert_allclose(al[bm], alff_falff_2d(ref_nb, 2.0)[0], rtol=1e-5)
    z = np.asarray(nib.load(str(participant.metric_path(out, "01", None, "reho", RES, "z"))).dataobj)
    assert abs(z[bm].mean()) < 1e-4 and abs(z[bm].std(ddof=1) - 1) < 1e-4
    qc = pd.read_csv(participant.qc_path(out, "01", None), sep="\t")
    assert qc["mean_fd"].iloc[0] == pytest.approx(np.nan_to_num(df["framewise_displacement"].to_numpy()).mean())
    assert summary["n_kept"] == 50 and qc["source"].iloc[0] == "fmriprep"
    # second run: everything up to date
    ctx2 = _ctx(tmp_path, si, ["reho", "alff", "dc", "vmhc"])
    assert participant.run(ctx2)["mean_fd"] == pytest.approx(summary["mean_fd"])


def test_fmriprep_stage_scrubbing_counts(tmp_path):
    bold, conf, mpath, data, mask, df = write_fmriprep(tmp_path, resolution=RES, n_t=60)
    fd = df["framewise_displacement"].fillna(0).to_numpy()
    thr = float(np.sort(fd)[-4] - 1e-9)  # the 4 largest FD values exceed the threshold
    si = SubjectInputs(subject="01", fmriprep_bold=bold, fmriprep_confounds=conf, tr=2.0)
    ctx = _ctx(tmp_path, si, ["reho"], func={"scrubbing": True, "fd_scrub_threshold": thr})
    s = participant.run(ctx)
    assert s["n_scrubbed"] == 4
    assert s["n_kept"] <= 56  # head/tail censored volumes cannot be interpolated and are dropped too


@pytest.mark.slow
def test_raw_stage_detects_planted_motion(tmp_path):
    import json

    bold, js, trans = write_raw_bold(tmp_path, n_t=40)
    nz = nib.load(bold).shape[2]  # interleaved slice times in the sidecar: corrected before realignment
    times = [float((list(range(0, nz, 2)) + list(range(1, nz, 2))).index(z)) * 2.0 / nz for z in range(nz)]
    js.write_text(json.dumps({"RepetitionTime": 2.0, "TaskName": "rest", "SliceTiming": times}))
    si = SubjectInputs(subject="01", bold=bold, bold_json=js)
    ctx = _ctx(tmp_path, si, ["reho"], func={"dummy_scans": 5})
    s = participant.run(ctx)
    assert s["registration"] == "direct"
    t_ref = (max(times) + min(times)) / 2
    assert s["slice_timing"] == f"corrected to {t_ref:.4g} s"
    side = json.loads(ctx.out.path("01", None, "func", "bold", space="MNI152NLin2009aSym", res=RES,
                                   entities={"task": "rest", "desc": "clean"}).with_suffix("").with_suffix(".json")
                      .read_text())
    assert side["SliceTimingCorrected"] is True and side["StartTime"] == pytest.approx(t_ref)
    # one 1 mm step after dropping 5 dummies: FD peak ~1 mm, else ~0
    assert 0.8 < s["max_fd"] < 1.2
    qc = pd.read_csv(participant.qc_path(ctx.out, "01", None), sep="\t")
    assert qc["n_kept"].iloc[0] == 35 and qc["n_dummy"].iloc[0] == 5
    conf = pd.read_csv(ctx.out.path("01", None, "func", "timeseries", space=None,
                                    entities={"task": "rest", "desc": "confounds"}, ext=".tsv"), sep="\t")
    assert conf.shape[0] == 35 and {"trans_x", "rot_z_lag_power2", "white_matter", "csf"} <= set(conf.columns)


def _study(tmp_path, labels, groups):
    from hfsmri.study import Study

    bids = tmp_path / "bids"
    bids.mkdir(exist_ok=True)
    pd.DataFrame({"participant_id": [f"sub-{s}" for s in labels], "group": groups}).to_csv(
        bids / "participants.tsv", sep="\t", index=False)
    return Study.from_bids(bids, {"group_column": "group", "covariates": [],
                                  "analyses": {"reho": {}},
                                  "preprocessing": {"func": {"resolution": RES}}})


@pytest.mark.slow
def test_group_end_to_end_finds_planted_reho_effects(tmp_path):
    from hfsmri.spatial.atlas import region_mask
    from hfsmri.spatial.templates import load_template
    from hfsmri.group import run_stage

    ref = load_template("mask", RES)
    down = region_mask("aal:Frontal_Mid_2_L", ref)
    up = region_mask({"sphere": [8, -28, -32], "radius": 15}, ref)  # right pons / brainstem
    labels = [f"{i:02d}" for i in range(1, 15)]
    is_pat = [i < 7 for i in range(14)]
    fmp = tmp_path / "fmriprep"
    out = Derivatives(tmp_path / "out")
    for i, (s, p) in enumerate(zip(labels, is_pat)):
        eff = [(down, -0.8), (up, 0.6)] if p else []
        data, aff = planted_reho_bold(RES, 100, seed=100 + i, effects=eff)
        b, c = write_fmriprep_subject(fmp, s, data, aff, seed=i)
        ctx = ParticipantContext(subject=s, session=None, inputs=SubjectInputs(subject=s, fmriprep_bold=b,
                                 fmriprep_confounds=c, tr=2.0), out=out, work_dir=tmp_path / "w",
                                 analyses={"reho": {"neighborhood": 27, "fwhm": 8.0}},
                                 preprocessing={"func": {"resolution": RES}})
        participant.run(ctx)
    stats = {"n_perm": 100, "tfce": True, "alpha": 0.05, "cluster_forming_p": 0.001, "random_seed": 0}
    study = _study(tmp_path, labels, ["HFS" if p else "HC" for p in is_pat])
    g = GroupContext(study=study, out=out, analyses={"reho": {}}, stats=stats, log=logging.getLogger("t"))
    res = run_stage(g, "func")
    assert res["reho"]["reho"]["n_subjects"] == 14
    gdir = out.root / "group" / "reho" / "reho"
    lt = np.asarray(nib.load(str(gdir / gname("fwe", "patient-lt-control"))).dataobj)
    gt = np.asarray(nib.load(str(gdir / gname("fwe", "patient-gt-control"))).dataobj)
    sig = -np.log10(0.05)
    assert (lt[down] > sig).mean() > 0.3  # planted decrease found in left MFG
    assert (gt[up] > sig).sum() >= 3  # planted increase found in the right brainstem
    from scipy import ndimage

    near = ndimage.binary_dilation(down | up, iterations=2)
    inside = np.asarray(nib.load(str(gdir / gname("mask"))).dataobj) > 0 if (gdir / gname("mask")).exists() \
        else lt != 0
    assert (lt[inside & ~near] > sig).sum() < 0.02 * inside.sum()  # nothing large away from the effects
    rois = pd.read_csv(gdir / "rois.tsv", sep="\t")
    assert "MFG_L" in set(rois.iloc[:, 0].astype(str)) or "MFG_L" in rois.to_string()
    clus = pd.read_csv(gdir / gname("clusters", "patient-lt-control"), sep="\t")
    assert len(clus) >= 1

    # null study: the same maps with groups balanced over the planted effect
    null_out = Derivatives(tmp_path / "null")
    for s in labels:
        shutil.copytree(out.root / f"sub-{s}", null_out.root / f"sub-{s}")
    null_groups = ["HFS" if i % 2 == 0 else "HC" for i in range(14)]  # 4/3 planted in each group
    study0 = _study(tmp_path, labels, null_groups)
    g0 = GroupContext(study=study0, out=null_out, analyses={"reho": {}}, stats=stats, log=logging.getLogger("t"))
    run_stage(g0, "func")
    g0dir = null_out.root / "group" / "reho" / "reho"
    for c in ("patient-gt-control", "patient-lt-control"):
        lp = np.asarray(nib.load(str(g0dir / gname("fwe", c))).dataobj)
        assert (lp > sig).sum() <= 10
