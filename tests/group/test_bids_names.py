"""Group file names follow the BIDS filename rules (official schema via ``bidsschematools``)."""
from __future__ import annotations

import pytest

from hfsmri.derivatives import GROUP_FILES, contrast_label, group_file_name, group_path
from hfsmri.stats.design import contrast_names
from tests.naming import bids_name_problems


@pytest.mark.parametrize("name, ok", [
    ("space-MNI152NLin2009aSym_contrast-patientGTcontrol_stat-t_statmap.nii.gz", True),
    ("space-MNI152NLin2009aSym_contrast-corrSeverityPos_desc-fwe_logp.nii.gz", True),
    ("sub-01_space-MNI152NLin2009aSym_res-2_model-tensor_param-fa_dwimap.nii.gz", True),
    ("rois.tsv", True),
    ("contrast-patient-gt-control_desc-fwe_logp.nii.gz", False),     # hyphens inside a value
    ("all_FA_skeletonised.nii.gz", False),                           # not key-value
    ("desc-x_space-MNI_mask.nii.gz", False),                         # desc before space
    ("space-A_space-B_mask.nii.gz", False),
    ("foo-1_mask.nii.gz", False),                                    # unknown entity
])
def test_checker_on_known_names(name, ok):
    assert (not bids_name_problems(name)) is ok


def test_every_group_file_kind_is_a_bids_name():
    names = contrast_names(["severity", "duration_months"], ["pre", "post"])
    assert len({contrast_label(c) for c in names}) == len(names)      # labels stay distinct
    for kind, pattern in GROUP_FILES.items():
        if kind in ("folder", "stage_marker"):
            continue
        for c in (names if "{c}" in pattern else [None]):
            name = group_file_name(kind, c, "fa")
            assert not bids_name_problems(name), bids_name_problems(name)
    assert group_path("/o", "vbm", "gm", "patient-gt-control", "t").name == \
        "space-MNI152NLin2009aSym_contrast-patientGTcontrol_stat-t_statmap.nii.gz"
    assert contrast_label("corr-severity-pos") == "corrSeverityPos"
