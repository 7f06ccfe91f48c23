"""Derivatives naming, atomic writes, provenance and skip-if-done."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from hfsmri.derivatives import Derivatives, atomic_path, provenance_hash
from hfsmri.errors import HfsmriError

S = "space-MNI152NLin2009aSym"


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


def test_integrity_recorded_and_checked(tmp_path):
    """The sidecar records the output's size and SHA-256; a truncated or altered output is not done."""
    import hashlib

    d = Derivatives(tmp_path)
    img = nib.Nifti1Image(np.arange(1000, dtype=np.float32).reshape(10, 10, 10), np.eye(4))
    p = d.path("01", None, "anat", "probseg", res=2, entities={"label": "GM"})
    d.save_nifti(img, p, params={"a": 1})
    rec = json.loads(p.with_name(p.name.replace(".nii.gz", ".json")).read_text())["Integrity"]
    raw = p.read_bytes()
    assert rec == {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}  # independent recomputation
    assert d.is_done(p, params={"a": 1})
    p.write_bytes(raw[:-10])
    assert not d.is_done(p, params={"a": 1})
    bad = bytearray(raw)
    bad[len(bad) // 2] ^= 1
    p.write_bytes(bytes(bad))  # same size, other content
    assert not d.is_done(p, params={"a": 1})
    p.write_bytes(raw)
    assert d.is_done(p, params={"a": 1})


def test_read_derivative_image_table_and_errors(tmp_path):
    from hfsmri.derivatives import read_derivative
    from hfsmri.errors import InputDataError

    d = Derivatives(tmp_path)
    data = (np.arange(60, dtype=np.int16).reshape(3, 4, 5) - 7)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    img.header.set_slope_inter(0.5, 1.0)  # scaled data: same values as nib.load
    p = d.path("01", None, "func", "reho", res=2)
    d.save_nifti(img, p)
    got = read_derivative(p)
    np.testing.assert_array_equal(np.asarray(got.dataobj), np.asarray(nib.load(p).dataobj))
    np.testing.assert_array_equal(got.affine, nib.load(p).affine)
    t = d.path("01", None, "func", "stats", space=None, entities={"desc": "qc"}, ext=".tsv")
    d.save_tsv(pd.DataFrame({"mean_fd": [0.1, 0.2]}), t)
    assert read_derivative(t)["mean_fd"].tolist() == [0.1, 0.2]
    t.write_text("mean_fd\n0.1\n")  # altered after writing: the record no longer matches
    with pytest.raises(InputDataError, match=r"sub-01.*damaged|truncated"):
        read_derivative(t)
    with pytest.raises(InputDataError, match="does not exist"):
        read_derivative(tmp_path / "sub-09" / "x.nii.gz")


def test_remove_stale_temporaries_rules(tmp_path):
    """Dead writer on this host or older than the limit: removed; live writer, other files,
    excluded folders: kept."""
    import os
    import subprocess
    import sys
    import time

    from hfsmri.derivatives import _host_tag, remove_stale_temporaries

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    host = _host_tag()
    try:
        sub = tmp_path / "sub-01" / "func"
        ex = tmp_path / "bids" / "sub-01"
        sub.mkdir(parents=True)
        ex.mkdir(parents=True)
        dead = sub / f".a.nii.gz.{host}-{p.pid}-abcdefgh.tmp.nii.gz"
        alive = sub / f".b.nii.gz.{host}-{live.pid}-abcdefgh.tmp.nii.gz"
        foreign_new = sub / ".c.tsv.otherhost-1-abcdefgh.tmp.tsv"
        foreign_old = sub / ".d.tsv.otherhost-1-abcdefgh.tmp.tsv"
        legacy_old = sub / ".e.json.k2j4h5g6.tmp.json"
        user = sub / ".f.tmp.notes"
        in_bids = ex / f".g.nii.gz.{host}-{p.pid}-abcdefgh.tmp.nii.gz"
        for f in (dead, alive, foreign_new, foreign_old, legacy_old, user, in_bids):
            f.write_text("x")
        old = time.time() - 7200
        for f in (foreign_old, legacy_old, user):
            os.utime(f, (old, old))
        removed = remove_stale_temporaries(tmp_path, exclude=[tmp_path / "bids"])
        assert sorted(removed) == sorted([dead, foreign_old, legacy_old])
        assert alive.exists() and foreign_new.exists() and user.exists() and in_bids.exists()
    finally:
        live.kill()
        live.wait()


def test_storage_error_translation():
    import errno

    from hfsmri.errors import StorageError, storage_error

    e = storage_error(OSError(errno.ENOSPC, "No space left on device"), "/out/x.nii.gz")
    assert isinstance(e, StorageError) and e.fatal and str(e).startswith("/out/x.nii.gz: cannot write: no space")
    e = storage_error(OSError(errno.EROFS, "Read-only file system", "/out"))
    assert e.fatal and "read-only file system" in str(e) and str(e).startswith("/out:")
    e = storage_error(OSError(errno.ENOSPC, "full"), where="OUTPUT_DIR /o or the work directory /w")
    assert str(e).startswith("cannot write in OUTPUT_DIR /o or the work directory /w: no space left")
    assert not storage_error(OSError(errno.EACCES, "denied", "/x")).fatal
    assert storage_error(OSError(errno.ENOENT, "missing")) is None and storage_error(ValueError()) is None
