"""End to end, fMRI (issue 12): a simulated pre/post-MVD study through ``hfsmri participant`` and
``hfsmri group`` (ALFF/fALFF); the longitudinal designs find the planted recovery of ALFF in the
precentral gyri (post − pre > 0 in patients) with the planted sign.

Planted: lower ALFF in patients' precentral gyri, d = 6 (log-amplitude SD 0.12: the neural
fluctuation amplitude is exp(−0.72) ≈ 0.49 of the controls' at baseline), halved after surgery
(``post_factor`` 0.5), 8 patients + 2 controls, 120 volumes (4 min), 4 mm, ALFF smoothing 8 mm FWHM.
Smaller planted effects are not found at this size: with d = 3, 6 patients, 60 volumes and 4 mm
smoothing the mean paired t in the mask was ≈ 0 (the earlier expected failure of
``test_end_to_end.py``); with d = 6 / 120 volumes / 4 mm the per-subject change of the mask-mean
zALFF is positive in all 8 patients (+0.13 to +0.34) but the voxel-wise mean t in the mask is only
2.0: the amplitude of a 4-minute run sampled voxel by voxel (≈ 17 frequency bins in 0.01–0.08 Hz)
is far noisier than its regional mean. Measured (8 mm): ALFF mean t 2.9 in the mask, FWE −log10 p
1.31; fALFF t 2.7, −log10 p 1.70; precentral ROI paired change t 3.9 (ALFF), permutation p 0.02
(the floor with 100 permutations).

A hit is either an FWE-significant voxel of ``patient-post-gt-pre`` inside the planted mask (ALFF or
fALFF) or a significant positive paired change of a precentral review ROI in
``rois_longitudinal.tsv``, as for the DWI check of ``test_end_to_end.py``.
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ..e2e_helpers import mask_on_grid, run_participant_and_group
from tests.naming import gname

EFFECTS = {"post_factor": 0.5, "effects": [
    {"id": "alff-precentral", "metric": "alff", "direction": -1, "cohens_d": 6.0,
     "region": "aal:Precentral_L+aal:Precentral_R", "hemisphere": "bilateral"},
]}

STUDY = """\
group_column: group
groups: {patient: HFS, control: HC}
sessions: [pre, post]
analyses: {alff: {fwhm: 8}}
preprocessing: {func: {resolution: 4, dummy_scans: 2}}
stats: {n_perm: 100, tfce: true, alpha: 0.05, cluster_forming_p: 0.001, random_seed: 0}
"""


@pytest.mark.slow
def test_planted_alff_recovery_found(tmp_path):
    from hfsmri.simulate import simulate_study

    bids = simulate_study(tmp_path / "bids", n_patients=8, n_controls=2, sessions=["pre", "post"], deform=False,
                          resolution=4, modalities=("func",), n_volumes=120, seed=0, effects=EFFECTS)
    out = run_participant_and_group(bids, tmp_path, STUDY)

    gt_dir = bids / "derivatives" / "ground_truth"
    truth = pd.read_csv(gt_dir / "effects.tsv", sep="\t").query("analysis == 'alff'")
    assert set(truth["post_factor"]) == {0.5} and set(truth["direction"]) == {-1}
    hits, seen = [], {}
    for metric in ("alff", "falff"):
        d = out / "group" / "alff" / metric
        # recovery: patients' effect shrinks after surgery, so post - pre > 0 (opposite to direction -1)
        logp_img = nib.load(d / gname("fwe", "patient-post-gt-pre"))
        mask = mask_on_grid(gt_dir / truth["mask"].iloc[0], logp_img)
        logp = np.asarray(logp_img.dataobj)
        t = np.asarray(nib.load(d / gname("t", "patient-post-gt-pre")).dataobj)
        seen[metric] = {"max_logp_in_mask": round(float(logp[mask].max()), 2), "mean_t": round(float(t[mask].mean()), 2)}
        assert t[mask].mean() > 1.0, (metric, seen)          # the change has the planted sign in the mask
        opposite = np.asarray(nib.load(d / gname("fwe", "patient-post-lt-pre")).dataobj)
        assert not (opposite[mask] > -np.log10(0.05)).any(), (metric, "significant decrease in the mask")
        meta = json.loads((d / gname("fwe", "patient-post-gt-pre", sidecar=True)).read_text())
        assert meta["DesignInfo"]["kind"] == "paired" and meta["Sessions"] == ["pre", "post"]
        assert meta["NSubjects"] == 8
        if (logp[mask] > -np.log10(0.05)).any():
            hits.append(f"{metric} voxel-wise")
        rois = pd.read_csv(d / gname("rois_longitudinal"), sep="\t")
        pre = rois[(rois.design == "paired-patient") & rois.roi.str.startswith("Precentral")
                   & (rois.contrast == "patient-post-gt-pre")]
        assert len(pre), rois.roi.unique()
        seen[metric]["roi"] = pre[["roi", "mean_change", "t", "p_perm"]].round(3).to_dict("records")
        hits += [f"{metric} ROI {r.roi}" for r in pre.itertuples() if r.mean_change > 0 and r.p_perm < 0.05]
    assert hits, f"planted ALFF recovery not found: {seen}"

    # the report scores the planted recovery from the simulator's ground truth (docs/report.md)
    from hfsmri.report.build import build_report

    build_report(out, ground_truth_dir=gt_dir, n_jobs=1)
    scores = pd.read_csv(out / "report" / "ground_truth_scores.tsv", sep="\t")
    rec = scores[(scores.test == "recovery") & (scores.analysis == "alff")].set_index("metric")
    assert set(rec["contrast"]) == {"patient-post-gt-pre"}
    voxel_hits = {h.split()[0] for h in hits if h.endswith("voxel-wise")}
    for metric in ("alff", "falff"):
        if metric in rec.index:
            assert rec.loc[metric, "hit"] == int(metric in voxel_hits), (metric, rec.loc[metric].to_dict())
