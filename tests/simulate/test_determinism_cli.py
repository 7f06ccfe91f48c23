"""Determinism (seed -> identical data, independent of worker count), the deformed head is of adult
size, the effects file is validated, and the ``hfsmri simulate`` command writes a dataset."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from hfsmri.errors import HfsmriError
from hfsmri.simulate import load_effects, simulate_study

from ._helpers import participants

# the console script next to the interpreter (``python -m hfsmri`` needs a __main__ module)
HFSMRI = str(Path(sys.executable).with_name("hfsmri"))
TINY = dict(n_patients=1, n_controls=1, resolution=5.0, n_dirs=6, n_volumes=20, deform=True)


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def _same(a, b) -> bool:
    fa, fb = _files(a), _files(b)
    if fa != fb:
        return False
    for rel in fa:
        if rel.name == "dataset_description.json":
            continue
        if rel.name.endswith(".nii.gz"):
            ia, ib = nib.load(a / rel), nib.load(b / rel)
            if not (np.array_equal(np.asarray(ia.dataobj), np.asarray(ib.dataobj))
                    and np.array_equal(ia.affine, ib.affine)):
                return False
        elif (a / rel).read_bytes() != (b / rel).read_bytes():
            return False
    return True


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("det")
    a = simulate_study(base / "a", seed=3, n_jobs=1, **TINY)
    b = simulate_study(base / "b", seed=3, n_jobs=2, **TINY)
    c = simulate_study(base / "c", seed=4, n_jobs=2, **dict(TINY, modalities=("anat", "func")))
    return a, b, c


def test_same_seed_identical_any_worker_count(tiny_runs):
    a, b, _ = tiny_runs
    assert _same(a, b)


def test_different_seed_differs(tiny_runs):
    a, _, c = tiny_runs
    sid = participants(a).participant_id[0]
    for rel in (f"{sid}/anat/{sid}_T1w.nii.gz", f"{sid}/func/{sid}_task-rest_bold.nii.gz"):
        assert not np.array_equal(np.asarray(nib.load(a / rel).dataobj), np.asarray(nib.load(c / rel).dataobj))


def test_deformed_heads_have_adult_intracranial_volume(tiny_runs):
    """The ICBM152 template brain is 1883 ml (nilearn mask); subjects are scaled to adult TIV
    (~1400 ml women, ~1580 ml men): the simulated brain volume is template x scale^3 (the smooth
    deformation preserves volume to a few %) and lies in the adult range."""
    from nilearn import datasets

    mask = datasets.load_mni152_brain_mask(resolution=1)
    template_ml = float(np.asarray(mask.dataobj).sum()) * abs(np.linalg.det(mask.affine[:3, :3])) / 1000
    assert template_ml == pytest.approx(1883, rel=0.02)
    for root in tiny_runs:
        subj = pd.read_csv(root / "derivatives" / "ground_truth" / "subjects.tsv", sep="\t")
        p = participants(root).set_index("participant_id")
        for _, r in subj.iterrows():
            assert r.deform_rms_mm > 1.0 and 0.8 < r.scale < 1.05
            assert r.tiv_ml == pytest.approx(template_ml * r.scale ** 3, rel=0.06)
            assert 1150 < r.tiv_ml < 1800
            assert 0.35 < r.gm_volume_ml / r.tiv_ml < 0.6
            assert p.loc[r.participant_id, "sex"] in ("F", "M")


def test_effects_file_validation(tmp_path):
    assert len(load_effects("none")) == 0
    d = load_effects("default")
    assert len(d) >= 30 and d.post_factor == 0.5
    bad = tmp_path / "bad.yaml"
    bad.write_text("effects:\n  - {id: x, metric: gm, direction: 2, cohens_d: 1, region: 'aal:Thalamus_L'}\n")
    with pytest.raises(HfsmriError, match="direction"):
        load_effects(bad)
    bad.write_text("effects:\n  - {id: x, metric: volume, direction: 1, cohens_d: 1, region: 'aal:Thalamus_L'}\n")
    with pytest.raises(HfsmriError, match="metric"):
        load_effects(bad)
    with pytest.raises(HfsmriError, match="not found"):
        load_effects(tmp_path / "missing.yaml")
    with pytest.raises(HfsmriError, match="empty"):
        simulate_study(tmp_path / "out", n_patients=1, n_controls=1, modalities=("anat",), resolution=6,
                       deform=False, effects={"effects": [{"id": "x", "metric": "gm", "direction": -1,
                                                            "cohens_d": 1, "region": {"sphere": [0, 0, 300],
                                                                                      "radius": 4}}]})


def test_cli_simulate_writes_dataset(tmp_path):
    out = tmp_path / "cli"
    cmd = [HFSMRI, "simulate", str(out), "--n-patients", "1", "--n-controls", "1",
           "--resolution", "5", "--n-volumes", "20", "--n-dirs", "6", "--no-deform", "--seed", "2",
           "--sessions", "pre,post"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    p = participants(out)
    assert len(p) == 2
    sid = p.participant_id[0]
    for ses in ("pre", "post"):
        base = out / sid / f"ses-{ses}"
        assert (base / "anat" / f"{sid}_ses-{ses}_T1w.nii.gz").is_file()
        assert (base / "dwi" / f"{sid}_ses-{ses}_dwi.bvec").is_file()
        img = nib.load(base / "func" / f"{sid}_ses-{ses}_task-rest_bold.nii.gz")
        assert img.shape[3] == 20
    assert (out / "derivatives" / "ground_truth" / "effects.tsv").is_file()
    # a user error: exit 1 with a message naming the field, no traceback
    bad = subprocess.run([HFSMRI, "simulate", str(tmp_path / "bad"), "--n-dirs", "3"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "n_dirs" in bad.stderr and "Traceback" not in bad.stderr
