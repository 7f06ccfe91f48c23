"""Ground truth written next to the simulated dataset, under ``derivatives/ground_truth/``.

Files:

* ``dataset_description.json`` (DatasetType derivative),
* ``effects.tsv`` (+ ``effects.json`` column descriptions): one row per planted effect and
  analysis/metric — contract columns ``effect_id, analysis, metric, region, hemisphere, direction,
  cohens_d, clinical_score, clinical_r, mask`` plus ``mask_unaligned, seed, modality,
  planted_metric, post_factor, source``,
* ``masks/<effect_id>_space-MNI152NLin2009aSym_res-2_mask.nii.gz``: binary MNI mask of each
  effect; for ipsi/contra effects it is the mask as placed for a patient affected on the right
  (i.e. after aligning patients with ``flip_to: R``), and ``..._desc-unaligned_mask.nii.gz`` is the
  union of both sides (where the effect lies across patients without flipping),
* ``subjects.tsv``: per subject and session the pose/size of the head, and per planted effect the
  subject's planted deviation ``effect-<id>`` in SD units (group shift + clinical part; 0 for
  controls' effects outside fc),
* ``sub-*/[ses-*/]func/*_desc-confounds_timeseries.tsv``: fMRIPrep-style motion/physiological
  confounds of each BOLD run (true motion parameters).
"""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .effects import GT_COLUMNS, EffectSet, ground_truth_rows

from ..spatial.templates import TEMPLATE_SPACE as SPACE  # noqa: E402

COLUMN_DOC = {
    "effect_id": "identifier of the planted effect",
    "analysis": "analysis name as in study.yaml analyses (vbm, roi_volumes, thickness, dti, tbss, dwi_rois, reho, alff, seed_fc)",
    "metric": "group-result metric folder name (gm, volume, thickness, fa, md, ad, rd, reho, alff, falff, seed-<name>)",
    "region": "region specification (atlas label spec, or JSON of sphere/box/within/tissue)",
    "hemisphere": "L, R, bilateral, midline, ipsi or contra (relative to the patient's affected side)",
    "direction": "+1 patients higher than controls, -1 lower",
    "cohens_d": "planted standardised difference of the noise-free metric at a voxel (patients - controls, SD units); reho/alff/fc: of the metric measured from a 4-minute run (hfsmri.simulate.effects.BOLD_MEASUREMENT_SD)",
    "clinical_score": "participants.tsv score the metric correlates with among patients (n/a = none)",
    "clinical_r": "planted correlation (noise-free metric vs score) among patients",
    "mask": "MNI mask (relative path) of the effect, aligned so the affected side is R",
    "mask_unaligned": "MNI mask of the effect over both sides (ipsi/contra effects), else same as mask",
    "seed": "seed name for seed_fc effects",
    "modality": "anat, dwi or func",
    "planted_metric": "metric named in the effects file",
    "post_factor": "fraction of the effect present in later sessions (post-MVD)",
    "source": "study of the review the effect follows",
}


def write_ground_truth(root: Path, effects: EffectSet, weights: dict, ref_img: nib.Nifti1Image,
                       generated_by: dict) -> Path:
    gt = Path(root) / "derivatives" / "ground_truth"
    (gt / "masks").mkdir(parents=True, exist_ok=True)
    desc = {"Name": "hfsmri simulator ground truth", "BIDSVersion": "1.8.0", "DatasetType": "derivative",
            "GeneratedBy": [generated_by]}
    (gt / "dataset_description.json").write_text(json.dumps(desc, indent=2))
    paths = {}
    for e in effects.effects:
        ew = weights[e.id]
        name = f"masks/{e.id}_space-{SPACE}_res-2_mask.nii.gz"
        nib.save(nib.Nifti1Image(ew.mask_r.astype(np.uint8), ref_img.affine), gt / name)
        paths[e.id] = name
        if e.lateralised:
            uname = f"masks/{e.id}_space-{SPACE}_res-2_desc-unaligned_mask.nii.gz"
            nib.save(nib.Nifti1Image((ew.mask_r | ew.mask_l).astype(np.uint8), ref_img.affine), gt / uname)
            paths[e.id + "__lr"] = uname
    rows = ground_truth_rows(effects, paths)
    df = pd.DataFrame(rows, columns=GT_COLUMNS)
    df.to_csv(gt / "effects.tsv", sep="\t", index=False, na_rep="n/a")
    (gt / "effects.json").write_text(json.dumps({k: {"Description": v} for k, v in COLUMN_DOC.items()}, indent=2))
    (gt / "effects_used.yaml").write_text(_effects_yaml(effects))
    return gt


def _effects_yaml(effects: EffectSet) -> str:
    import yaml

    items = []
    for e in effects.effects:
        d = {"id": e.id, "metric": e.metric, "direction": e.direction, "cohens_d": e.cohens_d,
             "region": e.region, "hemisphere": e.hemisphere, "source": e.source}
        if e.clinical_score:
            d["clinical"] = {"score": e.clinical_score, "r": e.clinical_r}
        if e.seed:
            d["seed"], d["seed_region"] = e.seed, e.seed_region
        if e.tissue:
            d["tissue"] = e.tissue
        if e.analyses:
            d["analyses"] = list(e.analyses)
        items.append(d)
    return yaml.safe_dump({"version": 1, "post_factor": effects.post_factor, "sigma": dict(effects.sigma),
                           "effects": items}, sort_keys=False)


def write_subjects_table(root: Path, rows: list[dict]) -> Path:
    path = Path(root) / "derivatives" / "ground_truth" / "subjects.tsv"
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["participant_id", "session"]).reset_index(drop=True)
    df.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.5g")
    return path
