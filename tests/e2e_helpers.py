"""Shared steps of the end-to-end tests that run a simulated study through the command line."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def run_participant_and_group(bids: Path, root: Path, study_yaml: str, nprocs: int = 2) -> Path:
    """Write ``root/study.yaml``, run ``hfsmri BIDS root/out participant`` then ``group
    --no-report`` (both must exit 0); returns the output folder."""
    from hfsmri.cli import main

    (root / "study.yaml").write_text(study_yaml)
    out = root / "out"
    common = ["--study", str(root / "study.yaml"), "--nprocs", str(nprocs)]
    assert main([str(bids), str(out), "participant", *common]) == 0
    assert main([str(bids), str(out), "group", *common, "--no-report"]) == 0
    return out


def mask_on_grid(mask_path, ref_img) -> np.ndarray:
    """A ground-truth mask resampled (nearest neighbour, nilearn) onto ``ref_img``'s grid."""
    from nilearn.image import resample_to_img

    r = resample_to_img(nib.load(str(mask_path)), ref_img, interpolation="nearest", force_resample=True,
                        copy_header=True)
    return np.asarray(r.dataobj) > 0
