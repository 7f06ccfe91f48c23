"""End to end through the command line: simulate -> participant -> group -> report, every analysis.

A small simulated study (3 patients + 3 controls, no per-subject deformation, short BOLD, few
diffusion directions, 20 permutations) checks that all stages connect, that every output the
contract names exists with the contract's columns, and that a second run reuses finished work.
Detection power is tested per modality elsewhere (and in the demo); 3 + 3 subjects are for wiring.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from hfsmri.cli import main
from tests.naming import gname

pytestmark = pytest.mark.slow

SPACE = "space-MNI152NLin2009aSym"
CLUSTER_COLUMNS = ["cluster_id", "n_voxels", "volume_mm3", "peak_x", "peak_y", "peak_z", "peak_stat",
                   "p_fwe", "aal_label", "ho_label"]
ANALYSES = {"vbm": {}, "thickness": {}, "roi_volumes": {}, "dti": {"motion_correction": False}, "tbss": {},
            "dwi_rois": {}, "reho": {}, "alff": {}, "dc": {}, "vmhc": {}, "seed_fc": {"seeds": ["amygdalaL", "thalamusR"]},
            "ica": {"n_components": 5}, "graph": {"n_random": 2, "sparsity_step": 0.05}}
#: group metric folders the contract names, per analysis (at least these must exist)
GROUP_METRICS = {"vbm": ["gm"], "thickness": ["thickness"], "dti": ["fa", "md", "ad", "rd"], "tbss": ["fa", "md"],
                 "dwi_rois": ["fa"], "reho": ["reho"], "alff": ["alff", "falff"], "dc": ["dcb", "dcw"],
                 "vmhc": ["vmhc"], "seed_fc": ["seed-amygdalaContra", "seed-thalamusIpsi"]}


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    from hfsmri.simulate import simulate_study

    root = tmp_path_factory.mktemp("e2e")
    bids = simulate_study(root / "bids", n_patients=3, n_controls=3, seed=3, deform=False, n_volumes=50,
                          n_dirs=12, n_jobs=2)
    cfg = {"group_column": "group", "groups": {"patient": "HFS", "control": "HC"}, "covariates": ["age"],
           "clinical": ["severity"], "affected_side_column": "affected_side", "flip_to": "R",
           "analyses": ANALYSES, "preprocessing": {"anat": {"profile": "fast"}},
           "stats": {"n_perm": 20, "tfce": True, "alpha": 0.05, "cluster_forming_p": 0.001, "random_seed": 0,
                     "voxelwise_clinical": ["severity"]}}
    study = root / "study.yaml"
    study.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = root / "out"
    t0 = time.perf_counter()
    code_p = main([str(bids), str(out), "participant", "--study", str(study), "--nprocs", "2",
                   "--omp-nthreads", "1"])
    t_part = time.perf_counter() - t0
    code_g = main([str(bids), str(out), "group", "--study", str(study), "--nprocs", "2"])
    return {"bids": Path(bids), "out": out, "study": study, "codes": (code_p, code_g), "t_part": t_part}


def test_runs_succeed(study_run):
    assert study_run["codes"] == (0, 0), (study_run["out"] / "logs").as_posix()


def test_participant_outputs_follow_the_contract(study_run):
    out = study_run["out"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "hfsmri"
    assert (out / "study.resolved.yaml").exists()
    sub = "sub-01"
    d = out / sub
    expect = [
        d / "anat" / f"{sub}_{SPACE}_res-2_label-GM_desc-modulated_probseg.nii.gz",
        d / "dwi" / f"{sub}_{SPACE}_res-2_model-tensor_param-fa_dwimap.nii.gz",
        d / "dwi" / f"{sub}_{SPACE}_res-2_model-tensor_param-md_dwimap.nii.gz",
    ]
    for suffix in ("reho", "alff", "falff", "dcb", "dcw", "vmhc"):
        assert list((d / "func").glob(f"{sub}_*{SPACE}_res-3_*{suffix}.nii.gz")), suffix
    assert list((d / "func").glob(f"{sub}_*seed-amygdalaContra_desc-fisherz_*.nii.gz"))
    assert list(d.rglob(f"{sub}_*_stats.tsv")), "per-subject ROI tables"
    for p in expect:
        assert p.exists(), p.name
        assert p.with_name(p.name.replace(".nii.gz", ".json")).exists(), "sidecar of " + p.name
        img = nib.load(p)
        assert np.isfinite(np.asarray(img.dataobj)).all()


def test_group_outputs_follow_the_contract(study_run):
    group = study_run["out"] / "group"
    for analysis, metrics in GROUP_METRICS.items():
        for metric in metrics:
            folder = group / analysis / metric
            assert folder.is_dir(), f"{analysis}/{metric}"
            voxelwise = analysis not in ("dwi_rois",)
            if voxelwise:
                for c in ("patient-gt-control", "patient-lt-control"):
                    for name in (gname("t", c), gname("tfce", c),
                                 gname("fwe", c)):
                        assert (folder / name).exists(), f"{analysis}/{metric}/{name}"
                    cl = pd.read_csv(folder / gname("clusters", c), sep="\t")
                    assert set(CLUSTER_COLUMNS) <= set(cl.columns)
                    logp = np.asarray(nib.load(folder / gname("fwe", c)).dataobj)
                    # 20 permutations: the smallest attainable FWE p is 1/21
                    assert logp.max() <= -np.log10(1 / 21) + 1e-6
    for roi_folder in (group / "dwi_rois" / "fa", group / "roi_volumes" / "volume"):
        rois = pd.read_csv(roi_folder / "rois.tsv", sep="\t")
        assert len(rois) > 0
        assert (roi_folder / "correlations.tsv").exists()
    assert list((group / "ica").glob("ic-*"))
    assert (group / "graph").is_dir()


def test_report_shows_every_analysis(study_run):
    html = (study_run["out"] / "report.html").read_text()
    for analysis in ANALYSES:
        assert analysis in html, analysis
    assert "Ground truth" in html or "ground truth" in html


def test_second_run_reuses_finished_work(study_run):
    out = study_run["out"]
    maps = sorted(out.glob("sub-*/*/*.nii.gz"))
    before = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in maps}
    t0 = time.perf_counter()
    code = main([str(study_run["bids"]), str(out), "participant", "--study", str(study_run["study"]),
                 "--nprocs", "2", "--omp-nthreads", "1"])
    elapsed = time.perf_counter() - t0
    assert code == 0
    after = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in maps}
    assert before == after
    assert elapsed < study_run["t_part"] / 3


def test_group_level_reused_until_an_output_is_deleted(study_run):
    """Unchanged inputs: every group stage is reused (files untouched); deleting one analysis'
    group folder by hand makes its stage (and only it) run again."""
    import shutil

    out, bids, study = study_run["out"], study_run["bids"], study_run["study"]
    vbm = sorted((out / "group" / "vbm").rglob("*.nii.gz"))
    alff_dir = out / "group" / "alff"
    before = {p: p.stat().st_mtime_ns for p in vbm}
    assert main([str(bids), str(out), "group", "--study", str(study), "--no-report"]) == 0
    assert {p: p.stat().st_mtime_ns for p in vbm} == before
    shutil.rmtree(alff_dir)
    assert main([str(bids), str(out), "group", "--study", str(study), "--no-report"]) == 0
    assert (alff_dir / "alff" / gname("fwe", "patient-gt-control")).is_file()
    assert {p: p.stat().st_mtime_ns for p in vbm} == before  # the anat stage was not redone
