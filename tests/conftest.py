"""Shared fixtures: tiny BIDS trees written in tmp_path."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# ANTs results depend on the ITK thread count: one thread per test process (read once by ITK)
os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"


def _img(path: Path, shape, tr=None, seed=0):
    import nibabel as nib

    rng = np.random.default_rng(seed)
    data = rng.normal(100, 10, size=shape).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]))
    if tr is not None:
        img.header.set_xyzt_units("mm", "sec")
        zooms = list(img.header.get_zooms())
        zooms[3] = tr
        img.header.set_zooms(zooms)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def make_bids(root: Path, subjects=("01", "02", "03", "04"), groups=("HFS", "HFS", "HC", "HC"),
              sessions=None, modalities=("anat", "dwi", "func"), tr=2.0, participants_extra=None):
    """Write a tiny raw BIDS dataset (random images) and return its root."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "BIDSVersion": "1.9.0"}))
    rows = ["participant_id\tgroup\tage\tsex\taffected_side\tseverity\tsite"]
    for i, (s, g) in enumerate(zip(subjects, groups)):
        side = "L" if (g == "HFS" and i % 2 == 0) else ("R" if g == "HFS" else "n/a")
        sev = str(1 + i % 4) if g == "HFS" else "0"
        rows.append(f"sub-{s}\t{g}\t{40 + 3 * i}\t{'F' if i % 2 else 'M'}\t{side}\t{sev}\tA")
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    for k, s in enumerate(subjects):
        for ses in (sessions or [None]):
            base = root / f"sub-{s}" / (f"ses-{ses}" if ses else "")
            pre = f"sub-{s}" + (f"_ses-{ses}" if ses else "")
            if "anat" in modalities:
                _img(base / "anat" / f"{pre}_T1w.nii.gz", (8, 8, 8), seed=k)
            if "dwi" in modalities:
                _img(base / "dwi" / f"{pre}_dwi.nii.gz", (6, 6, 6, 7), seed=k)
                (base / "dwi" / f"{pre}_dwi.bval").write_text("0 1000 1000 1000 1000 1000 1000\n")
                vecs = np.vstack([np.zeros(3), np.eye(3), -np.eye(3)]).T
                (base / "dwi" / f"{pre}_dwi.bvec").write_text(
                    "\n".join(" ".join(f"{v:g}" for v in row) for row in vecs) + "\n")
            if "func" in modalities:
                _img(base / "func" / f"{pre}_task-rest_bold.nii.gz", (6, 6, 6, 40), tr=tr, seed=k)
                (base / "func" / f"{pre}_task-rest_bold.json").write_text(
                    json.dumps({"RepetitionTime": tr, "TaskName": "rest"}))
    return root


@pytest.fixture
def tiny_bids(tmp_path):
    return make_bids(tmp_path / "bids")
