"""Derivatives naming, atomic writes, provenance and skip-if-done."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from hfsmri.derivatives import Derivatives, atomic_path, provenance_hash
from hfsmri.errors import HfsmriError

S = "space-MNI152NLin2009cAsym"


@pytest.mark.parametrize("kwargs, expected", [
    (dict(datatype="func", suffix="reho", res=3, entities={"task": "rest", "desc": "z"}),
     f"sub-01/func/sub-01_task-rest_{S}_res-3_desc-z_reho.nii.gz"),
    (dict(datatype="func", suffix="alff", res=3, entities={"task": "rest"}), f"sub-01/func/sub-01_task-rest_{S}_res-3_alff.nii.gz"),
    (dict(datatype="func", suffix="falff", res=3, entities={"task": "rest"}), f"sub-01/func/sub-01_task-rest_{S}_res-3_falff.nii.gz"),
    (dict(datatype="func", suffix="dcb", res=3, entities={"task": "rest"}), f"sub-01/func/sub-01_task-rest_{S}_res-3_dcb.nii.gz"),
    (dict(datatype="func", suffix="dcw", res=3, entities={"task": "rest"}), f"sub-01/func/sub-01_task-rest_{S}_res-3_dcw.nii.gz"),
    (dict(datatype="func", suffix="vmhc", res=3, entities={"task": "rest"}), f"sub-01/func/sub-01_task-rest_{S}_res-3_vmhc.nii.gz"),
    (dict(datatype="dwi", suffix="dwimap", res=2, entities={"model": "tensor", "param": "fa"}),
     f"sub-01/dwi/sub-01_{S}_res-2_model-tensor_param-fa_dwimap.nii.gz"),
    (dict(datatype="anat", suffix="probseg", res=2, entities={"label": "GM", "desc": "modulated"}),
     f"sub-01/anat/sub-01_{S}_res-2_label-GM_desc-modulated_probseg.nii.gz"),
    (dict(datatype="anat", suffix="T1w", res=2, entities={"desc": "thickness"}),
     f"sub-01/anat/sub-01_{S}_res-2_desc-thickness_T1w.nii.gz"),
    (dict(datatype="func", suffix="boldmap", res=3, entities={"task": "rest", "seed": "amygdalaR", "desc": "fisherz"}),
     f"sub-01/func/sub-01_task-rest_{S}_res-3_seed-amygdalaR_desc-fisherz_boldmap.nii.gz"),
    (dict(datatype="anat", suffix="stats", space=None, entities={"desc": "roivolumes"}, ext=".tsv"),
     "sub-01/anat/sub-01_desc-roivolumes_stats.tsv"),
])
def test_names(tmp_path, kwargs, expected):
    d = Derivatives(tmp_path)
    assert d.path("01", None, **kwargs) == tmp_path / expected


def test_session_and_description(tmp_path):
    d = Derivatives(tmp_path)
    p = d.path("01", "pre", "func", "reho", res=3, entities={"task": "rest"})
    assert p.relative_to(tmp_path).as_posix().startswith("sub-01/ses-pre/func/sub-01_ses-pre_task-rest_")
    desc = json.loads((tmp_path / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "hfsmri"
    assert d.group_dir("vbm", "gm") == tmp_path / "group" / "vbm" / "gm"


@pytest.mark.parametrize("bad", ["../x", "a/b", "01_x", ""])
def test_unsafe_values_rejected(tmp_path, bad):
    d = Derivatives(tmp_path)
    with pytest.raises(HfsmriError):
        d.path(bad, None, "anat", "T1w")
    with pytest.raises(HfsmriError):
        d.path("01", None, "anat", "T1w", entities={"desc": bad or "../"})
    with pytest.raises(HfsmriError):
        d.group_dir("../../etc")


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "sub-01" / "x.tsv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("disk full")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_writer_raising_midway(tmp_path, monkeypatch):
    d = Derivatives(tmp_path)
    img = nib.Nifti1Image(np.ones((3, 3, 3), np.float32), np.eye(4))
    p = d.path("01", None, "anat", "probseg", res=2, entities={"label": "GM"})

    def boom(*a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(OSError):
        d.save_nifti(img, p)
    assert not p.exists() and not p.with_name(p.name.replace(".nii.gz", ".json")).exists()
    assert not any(p.parent.iterdir())


def test_provenance_and_skip_if_done(tmp_path):
    d = Derivatives(tmp_path)
    src = tmp_path / "in.txt"
    src.write_text("a")
    img = nib.Nifti1Image(np.arange(27, dtype=np.float32).reshape(3, 3, 3), np.eye(4))
    p = d.path("01", None, "anat", "probseg", res=2, entities={"label": "GM"})
    assert not d.is_done(p, [src], {"fwhm": 8})
    d.save_nifti(img, p, sidecar={"Method": "test"}, inputs=[src], params={"fwhm": 8})
    side = json.loads(p.with_name(p.name.replace(".nii.gz", ".json")).read_text())
    assert side["Method"] == "test" and side["Parameters"] == {"fwhm": 8}
    assert side["Sources"][0]["sha256"] and side["GeneratedBy"]["Name"] == "hfsmri"
    assert d.is_done(p, [src], {"fwhm": 8})
    assert not d.is_done(p, [src], {"fwhm": 6})  # parameter changed
    src.write_text("b")
    assert not d.is_done(p, [src], {"fwhm": 8})  # input changed
    assert provenance_hash([], {"a": 1, "b": 2}) == provenance_hash([], {"b": 2, "a": 1})
    np.testing.assert_array_equal(nib.load(p).get_fdata(), img.get_fdata())


def test_nifti_bytes_deterministic(tmp_path):
    d = Derivatives(tmp_path)
    img = nib.Nifti1Image(np.arange(27, dtype=np.float32).reshape(3, 3, 3), np.eye(4))
    p = d.path("01", None, "anat", "T1w")
    d.save_nifti(img, p)
    first = p.read_bytes()
    import time

    time.sleep(1.1)
    d.save_nifti(img, p)
    assert p.read_bytes() == first


def test_tsv(tmp_path):
    d = Derivatives(tmp_path)
    p = d.path("01", None, "anat", "stats", space=None, entities={"desc": "roivolumes"}, ext=".tsv")
    d.save_tsv(pd.DataFrame({"roi": ["a"], "volume_mm3": [1.5]}), p, params={"x": 1})
    assert p.read_text().splitlines() == ["roi\tvolume_mm3", "a\t1.5"]
    assert d.is_done(p, params={"x": 1})


def test_outputs_get_umask_permissions(tmp_path):
    import os
    import stat

    d = Derivatives(tmp_path)
    p = d.path("01", None, "anat", "stats", space=None, ext=".tsv")
    d.save_tsv(pd.DataFrame({"a": [1]}), p)
    old = os.umask(0o022)
    os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~old
