"""End to end, structural: a simulated pre/post-MVD study (T1w only) through ``hfsmri participant``
(mid-space subject template, then MNI) and ``hfsmri group``; the paired design finds the planted
recovery of thalamic grey matter after surgery, and nothing far from it.

Planted (``derivatives/ground_truth/effects.tsv``): less GM in both thalami of patients (d = 4, as
the FA effect of ``test_end_to_end.py``; the review's d = 1.8 is too small for 6 patients, whose
sign-flip test has 2^6 = 64 permutations); after surgery (session ``post``) the effect shrinks to
``post_factor`` 0.5, so the patients' post - pre change of modulated GM is positive there. In the
deep nuclei the simulator turns lost GM into WM-like tissue (docs/simulator.md), so this also
checks that segmentation + Jacobian modulation read that as less GM.

Measured (2 cores): simulation 8 s, participant level 16 scans at 3 mm ~115 s, group ~10 s; VBM
paired contrast: 614 of 2157 thalamus voxels FWE-significant, the 189 outside within 6 mm of the
mask (8 mm smoothing); thalamus ROI volume change t = 20 (left), 13 (right).
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from ..e2e_helpers import mask_on_grid, run_participant_and_group
from tests.naming import gname

EFFECTS = {"post_factor": 0.5, "effects": [
    {"id": "gm-thalamus", "metric": "gm", "direction": -1, "cohens_d": 4.0,
     "region": "aal:Thalamus_L+aal:Thalamus_R", "hemisphere": "bilateral"}]}

STUDY = """\
group_column: group
groups: {patient: HFS, control: HC}
sessions: [pre, post]
analyses: {vbm: {}, roi_volumes: {}}
preprocessing: {anat: {profile: fast, template_resolution: 3}}
stats: {n_perm: 100, tfce: true, alpha: 0.05, cluster_forming_p: 0.001, random_seed: 0}
"""


@pytest.mark.slow
def test_planted_gm_recovery_found(tmp_path):
    from hfsmri.simulate import simulate_study

    bids = simulate_study(tmp_path / "bids", n_patients=6, n_controls=2, sessions=["pre", "post"], deform=False,
                          resolution=3, modalities=("anat",), seed=0, effects=EFFECTS)
    out = run_participant_and_group(bids, tmp_path, STUDY)

    gt = bids / "derivatives" / "ground_truth"
    row = pd.read_csv(gt / "effects.tsv", sep="\t").query("analysis == 'vbm'").iloc[0]
    d = out / "group" / "vbm" / "gm"
    logp_img = nib.load(d / gname("fwe", "patient-post-gt-pre"))
    mask = mask_on_grid(gt / row["mask"], logp_img)
    sig = np.asarray(logp_img.dataobj) > -np.log10(0.05)
    assert (sig & mask).sum() >= 0.1 * mask.sum(), "planted GM recovery not found in the thalamus"
    vox = float(np.abs(np.linalg.det(logp_img.affine[:3, :3]))) ** (1 / 3)
    dist_mm = ndimage.distance_transform_edt(~mask) * vox
    assert not (sig & (dist_mm > 8.0)).any(), "significant voxels farther than the 8 mm smoothing from the effect"
    # the opposite direction (GM loss after surgery) finds nothing in the thalamus
    lt = np.asarray(nib.load(d / gname("fwe", "patient-post-lt-pre")).dataobj)
    assert not (lt[mask] > -np.log10(0.05)).any()
    # ROI volumes in native space: both thalami grow back in every way the paired table reports
    rois = pd.read_csv(out / "group" / "roi_volumes" / "volume" / gname("rois_longitudinal"), sep="\t")
    paired = rois[(rois.design == "paired-patient")].set_index("roi")
    for side in ("L", "R"):
        r = paired.loc[f"thalamus_{side}"]
        assert r["mean_change"] > 0 and r["t"] > 3, r.to_dict()
