"""End to end: a simulated pre/post-MVD study through ``hfsmri participant`` and ``hfsmri group``;
the longitudinal designs of the diffusion group stages find the planted recovery (post vs pre).

Planted (simulator effects, ``derivatives/ground_truth/effects.tsv``): lower FA in the callosal
body of patients; after surgery (session ``post``) the effect shrinks to ``post_factor`` (0.5) of
its baseline size, so patients' post − pre change has the sign opposite to the effect's
``direction``. The other modalities have their own datasets (so that pytest-xdist runs them at
once): structural recovery (thalamic GM) in ``test_structural_recovery.py``, fMRI (ALFF) in
``test_func_recovery.py``.

FA d = 4 (2 SD of change after surgery): with d = 2 (the review's size) the paired FWE p in the
planted mask sat at the permutation floor (2/64 in one run, 4/64 in another), too marginal for a
test. Six patients: the paired design is tested by sign flipping, whose smallest two-sided p is
2 / 2^n (n = 5 gives 0.0625: nothing can be significant).
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
    {"id": "wm-cc-body", "metric": "fa", "direction": -1, "cohens_d": 4.0, "tissue": "wm",
     "region": {"within": "juelich:WM_Callosal_body", "box": [[-30, 30], [-22, 40], [-5, 40]]},
     "hemisphere": "midline"},
]}

STUDY = """\
group_column: group
groups: {patient: HFS, control: HC}
sessions: [pre, post]
analyses: {dti: {motion_correction: false, resolution: 4}, dwi_rois: {}}
stats: {n_perm: 100, tfce: true, alpha: 0.05, cluster_forming_p: 0.001, random_seed: 0}
"""


@pytest.mark.slow
def test_planted_fa_recovery_found(tmp_path):
    from hfsmri.simulate import simulate_study

    bids = simulate_study(tmp_path / "bids", n_patients=6, n_controls=2, sessions=["pre", "post"], deform=False,
                          resolution=4, modalities=("dwi",), n_dirs=12, seed=0,
                          effects=EFFECTS)
    out = run_participant_and_group(bids, tmp_path, STUDY)

    gt_dir = bids / "derivatives" / "ground_truth"
    truth = pd.read_csv(gt_dir / "effects.tsv", sep="\t")
    assert set(truth["post_factor"]) == {0.5}
    found = {}
    for _, row in truth.iterrows():
        if row["analysis"] != "dti":
            continue
        d = out / "group" / row["analysis"] / row["metric"]
        # recovery: the effect shrinks after surgery, so post - pre has the sign of -direction
        contrast = "patient-post-gt-pre" if row["direction"] < 0 else "patient-post-lt-pre"
        logp_img = nib.load(d / gname("fwe", contrast))
        truth_mask = mask_on_grid(gt_dir / row["mask"], logp_img)
        logp = np.asarray(logp_img.dataobj)
        hit = bool((logp[truth_mask] > -np.log10(0.05)).any())
        outside = (logp > -np.log10(0.05)) & ~truth_mask
        found[(row["modality"], row["analysis"], row["metric"])] = (hit, int(outside.sum()))
        meta = json.loads((d / gname("fwe", contrast, sidecar=True)).read_text())
        assert meta["DesignInfo"]["kind"] == "paired" and meta["Sessions"] == ["pre", "post"]
        assert meta["NSubjects"] == 6
    # the other longitudinal outputs exist: group x time interaction, ROI change table
    assert (out / "group/dti/fa" / gname("fwe", "change-patient-gt-control")).exists()
    rois = pd.read_csv(out / "group/dwi_rois/fa" / gname("rois_longitudinal"), sep="\t")
    assert {"paired-patient", "interaction"} <= set(rois["design"])
    cc = rois[(rois.design == "paired-patient") & (rois.roi == "ccBody")].iloc[0]
    assert cc["mean_change"] > 0          # FA recovers in the callosal body
    dwi_hits = [k for k, (h, _) in found.items() if k[0] == "dwi" and h] + (["dwi_rois/fa ccBody"]
                                                                          if cc["p_perm"] < 0.05 else [])
    assert dwi_hits, f"no planted FA recovery found: voxel-wise {found}, ROI p = {cc['p_perm']}"
