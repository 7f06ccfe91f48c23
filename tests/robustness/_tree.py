"""Helpers shared by the robustness tests: tiny studies and byte-level comparison of output trees."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


FUNC_STUDY = """\
group_column: group
groups: {patient: HFS, control: HC}
covariates: []
analyses:
  reho: {}
  alff: {}
preprocessing:
  func: {resolution: 4, dummy_scans: 2}
stats: {n_perm: 20, tfce: true, random_seed: 0}
"""

#: NIfTI/TSV derivatives per subject of FUNC_STUDY: clean BOLD, mask, confounds, QC + 3 metrics x 5 maps
PER_SUBJECT = 19

DWI_STUDY = """\
group_column: group
groups: {patient: HFS, control: HC}
covariates: []
analyses:
  dti: {motion_correction: false, resolution: 4, fit: %(fit)s}
  dwi_rois: {callosum_scheme: %(scheme)s}
stats: {n_perm: %(n_perm)d, tfce: true, random_seed: 3}
"""


def derivative_files(root: Path, part: str = "all") -> list[Path]:
    """NIfTI and TSV derivatives under ``root`` (relative), without logs/work/hidden temp files.
    ``part``: "participant" (sub-*), "group" (group/) or "all"."""
    out = []
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or rel.parts[0] in ("logs", "work") or p.name.startswith("."):
            continue
        if not (p.name.endswith(".nii.gz") or p.suffix == ".tsv"):
            continue
        if part == "participant" and not rel.parts[0].startswith("sub-"):
            continue
        if part == "group" and rel.parts[0] != "group":
            continue
        out.append(rel)
    return out


def same_content(a: Path, b: Path) -> bool:
    """NIfTI: identical data bytes, dtype, shape and affine; other files: identical bytes."""
    if a.name.endswith(".nii.gz"):
        x, y = nib.load(str(a)), nib.load(str(b))
        dx, dy = np.asarray(x.dataobj), np.asarray(y.dataobj)
        return (dx.dtype == dy.dtype and dx.shape == dy.shape and dx.tobytes() == dy.tobytes()
                and np.array_equal(x.affine, y.affine))
    return a.read_bytes() == b.read_bytes()


def assert_identical_trees(ref: Path, other: Path, part: str = "all") -> int:
    """Same derivative files with byte-identical data; returns the number of files compared."""
    files_ref = derivative_files(ref, part)
    assert files_ref, f"no derivatives under {ref}"
    assert derivative_files(other, part) == files_ref
    differ = [str(f) for f in files_ref if not same_content(ref / f, other / f)]
    assert not differ, f"{len(differ)} of {len(files_ref)} files differ, e.g. {differ[:5]}"
    return len(files_ref)


def stat_map(root: Path, files) -> dict:
    """(inode, mtime_ns) of each file, to prove a re-run did not rewrite it."""
    out = {}
    for f in files:
        st = (Path(root) / f).stat()
        out[str(f)] = (st.st_ino, st.st_mtime_ns)
    return out
