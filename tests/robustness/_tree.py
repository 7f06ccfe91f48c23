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

#: NIfTI/TSV derivatives per subject of FUNC_STUDY: clean BOLD, mask, confounds, QC, image-quality
#: metrics (desc-iqm_stats.tsv) + 3 metrics x 5 maps
PER_SUBJECT = 20

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


def snapshot(root: Path) -> dict:
    """Every entry under ``root`` (hidden ones included): relative path -> (kind, mode, SHA-256 of
    files, link target of symlinks), to prove a run left a folder byte-identical."""
    import hashlib
    import os

    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if p.is_symlink():
                snap[rel] = ("link", st.st_mode, os.readlink(p))
            elif p.is_dir():
                snap[rel] = ("dir", st.st_mode, None)
            else:
                snap[rel] = ("file", st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
    return snap


SEED_STUDY = """\
group_column: group
groups: {patient: HFS, control: HC}
covariates: []
analyses:
  reho: {}
preprocessing:
  func: {resolution: 4}
stats: {n_perm: 20, tfce: false, random_seed: 0, voxelwise_clinical: false}
"""


def fabricate_func_outputs(out: Path, labels, groups, res: int = 4, seed: int = 0, effect: float = 0.8) -> None:
    """Participant outputs the func group stage reads (``desc-zsmooth`` ReHo maps + QC table with
    mean FD), written through :class:`hfsmri.derivatives.Derivatives` like the participant stage
    does: smooth noise in the template mask, patients higher by ``effect`` in a frontal block.
    A quick stand-in for running the participant level on many subjects."""
    import pandas as pd
    from scipy import ndimage

    from hfsmri.analyses import ANALYSES
    from hfsmri.derivatives import Derivatives
    from hfsmri.func.participant import metric_path, qc_path
    from hfsmri.spatial.templates import load_template

    GROUP_DESC = ANALYSES["reho"].metrics[0].map.entities["desc"]   # the version the group level reads
    d = Derivatives(out)
    tmpl = load_template("mask", res)
    mask = np.asarray(tmpl.dataobj) > 0
    rng = np.random.default_rng(seed)
    block = np.zeros(mask.shape, bool)
    block[mask.shape[0] // 3: mask.shape[0] // 2, mask.shape[1] // 2:, mask.shape[2] // 2:] = True
    for s, g in zip(labels, groups):
        a = ndimage.gaussian_filter(rng.normal(size=mask.shape), 1.0) * 3
        if g == "HFS":
            a[block] += effect
        a = np.where(mask, a + 1.0, 0).astype(np.float32)
        d.save_nifti(nib.Nifti1Image(a, tmpl.affine), metric_path(d, s, None, "reho", res, GROUP_DESC),
                     sidecar={"Description": "fabricated test map"}, params={"fabricated": True, "sub": s})
        d.save_tsv(pd.DataFrame({"participant_id": [f"sub-{s}"], "mean_fd": [0.1 + 0.01 * rng.random()]}),
                   qc_path(d, s, None), params={"fabricated": True, "sub": s})
