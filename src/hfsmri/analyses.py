"""Registry of analyses: which participant stage computes each, and their default parameters.

The keys are the contract's ``analyses`` keys of study.yaml and the ``<analysis>`` folder names
of group results. Defaults here are the ones written to ``study.resolved.yaml``; a parameter a
user sets in study.yaml overrides its default; an unknown parameter is an error (typo guard).
"""
from __future__ import annotations

import copy

#: analysis -> participant stage package (hfsmri.<stage>.participant / .group)
STAGE_OF = {
    "vbm": "anat", "thickness": "anat", "roi_volumes": "anat",
    "dti": "dwi", "tbss": "dwi", "dwi_rois": "dwi",
    "reho": "func", "alff": "func", "dc": "func", "vmhc": "func",
    "seed_fc": "conn", "ica": "conn", "graph": "conn",
}

#: participant stages in the order they run for a subject (later ones reuse earlier outputs)
STAGE_ORDER = ("anat", "dwi", "func", "conn")

#: stages a stage needs to have run first (func preprocessing feeds connectivity)
STAGE_NEEDS = {"conn": ("func",), "func": (), "dwi": (), "anat": ()}

#: input each stage needs: attribute of bids.SubjectInputs
STAGE_INPUT = {"anat": "t1w", "dwi": "dwi", "func": "bold", "conn": "bold"}

DEFAULTS: dict[str, dict] = {
    "vbm": {"resolution": 2, "fwhm": 8.0, "modulated": True, "unmodulated": False},
    "thickness": {"method": "laplace", "resolution": 2, "fwhm": 0.0, "atlas": "harvard_oxford"},
    "roi_volumes": {"tiv": "covariate"},
    "dti": {"fit": "wls", "b0_threshold": 50, "bmax": 1500, "resolution": 2,
            "denoise": None, "motion_correction": True},
    "tbss": {"fa_threshold": 0.2, "tfce_setting": "skeleton"},
    "dwi_rois": {"atlas": "juelich", "callosum_scheme": "witelson"},
    "reho": {"neighborhood": 27, "fwhm": 4.0},
    "alff": {"band": [0.01, 0.08], "fwhm": 4.0},
    "dc": {"r_threshold": 0.25, "fwhm": 4.0},
    "vmhc": {"fwhm": 4.0},
    "seed_fc": {"seeds": ["amygdalaL", "amygdalaR", "thalamusL", "thalamusR",
                          "putamenL", "putamenR", "caudateL", "caudateR"],
                "spheres": {}, "fwhm": 6.0},
    "ica": {"n_components": 20, "variance_normalise": True, "n_init": 10},
    "graph": {"atlas": "aal", "kind": "pearson", "sparsity_min": 0.05, "sparsity_max": 0.40,
              "sparsity_step": 0.01, "n_random": 20, "nbs_threshold": 3.0},
}

#: preprocessing parameters shared by the analyses of a modality (study.yaml ``preprocessing``)
PREPROCESSING_DEFAULTS: dict[str, dict] = {
    "anat": {"template_resolution": 2, "registration": "SyN", "brain_extraction": "template",
             "bet_margin_mm": 5.0, "longitudinal": "midspace", "profile": "standard"},
    "dwi": {"b0_threshold": 50},
    "func": {"dummy_scans": 5, "resolution": 3, "band": [0.01, 0.08], "global_signal": False,
             "scrubbing": False, "fd_scrub_threshold": 0.5, "max_mean_fd": 0.2,
             "exclude_high_motion": False, "slice_timing": "auto"},
}

#: ``voxelwise_clinical``: clinical-score correlations as voxel-wise maps for every score (true),
#: none (false: ROI correlations only), or the listed scores; ROI correlations always cover all.
STATS_DEFAULTS = {"n_perm": 5000, "tfce": True, "alpha": 0.05, "cluster_forming_p": 0.001,
                  "random_seed": 0, "voxelwise_clinical": True}


def defaults(name: str) -> dict:
    return copy.deepcopy(DEFAULTS[name])
