"""Participant + group stages on a small synthetic study with planted connectivity effects.

Cleaned BOLD is written directly (6 mm MNI grid) as the func stage would; patients get a planted
coupling of the right amygdala (affected side after alignment) with the left insula. Left-affected
patients are flipped (flip_to R): their effect is planted mirrored (left amygdala <-> right insula)
so it lines up only if seed naming, seed mirroring and group-level flipping are all right.
"""
from __future__ import annotations

import logging
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from hfsmri.derivatives import Derivatives
from hfsmri.spatial.atlas import region_mask
from hfsmri.spatial.templates import load_template
from hfsmri.stage_outputs import FuncOutputs
from hfsmri.study import Study
from tests.naming import gname

RES = 6
T = 60
N_PAT, N_CON = 6, 6


def _simulate(out: Derivatives, subjects, roles, sides, rng):
    """Effects are planted in the aligned orientation (affected side = R) and the 4D data of
    left-affected patients is then mirrored into their native orientation."""
    from hfsmri.spatial.flip import flip_array_x

    mask_img = load_template("mask", RES)
    mask = np.asarray(mask_img.dataobj) > 0
    aff = mask_img.affine
    regions = {k: region_mask(v, mask_img) & mask for k, v in {
        "amyR": "ho:Right_Amygdala", "insL": "aal:Insula_L", "thaR": "ho:Right_Thalamus",
        "thaL": "ho:Left_Thalamus", "smg": "aal:SupraMarginal_L+aal:SupraMarginal_R",
        "smgL": "aal:SupraMarginal_L"}.items()}
    for sub, role, side in zip(subjects, roles, sides):
        data = rng.standard_normal(mask.shape + (T,)).astype(np.float32)
        data *= mask[..., None]
        s_amy, s_thr, s_thl = rng.standard_normal((3, T))
        data[regions["amyR"]] += 2.0 * s_amy
        data[regions["thaR"]] += 2.0 * s_thr
        data[regions["thaL"]] += 2.0 * s_thl
        data[regions["smgL"]] += 0.7 * s_thl  # contra thalamus: same coupling in both groups
        if role == "patient":
            data[regions["insL"]] += 1.0 * s_amy  # Xu 2019: amygdala <-> (left) insula up
            data[regions["smg"]] += 0.8 * s_thr  # Niu 2020: thalamus <-> supramarginal gyri up
        if side == "L":
            data = flip_array_x(data, aff)
        data = np.round(data * 100).astype(np.int16)  # int16 on disk: smaller, faster to (de)compress
        for desc, arr, suffix in (("clean", data, "bold"), ("brain", mask.astype(np.uint8), "mask")):
            p = out.path(sub, None, "func", suffix, res=RES, entities={"task": "rest", "desc": desc})
            out.save_nifti(nib.Nifti1Image(arr, aff), p)


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    from hfsmri.conn import participant
    from hfsmri.group import run_stage

    root = tmp_path_factory.mktemp("conn_stage")
    out = Derivatives(root)
    rng = np.random.default_rng(0)
    subjects = [f"{i:02d}" for i in range(1, N_PAT + N_CON + 1)]
    roles = ["patient"] * N_PAT + ["control"] * N_CON
    sides = ["L", "R", "L", "R", "R", "L"] + ["n/a"] * N_CON
    _simulate(out, subjects, roles, sides, rng)
    parts = pd.DataFrame({"group": ["HFS" if r == "patient" else "HC" for r in roles],
                          "age": rng.normal(50, 8, len(subjects)).round(1),
                          "affected_side": sides,
                          "hama": [*rng.normal(10, 3, N_PAT).round(1), *[np.nan] * N_CON]},
                         index=pd.Index(subjects, name="participant_id"))
    analyses = {"seed_fc": {"seeds": ["amygdalaR", "thalamusR", "thalamusL"], "spheres": {}, "fwhm": 6.0},
                "graph": {"atlas": "aal", "kind": "pearson", "sparsity_min": 0.1, "sparsity_max": 0.3,
                          "sparsity_step": 0.1, "n_random": 2, "nbs_threshold": 3.0},
                "ica": {"n_components": 4, "variance_normalise": True}}
    study = Study(participants=parts, covariates=["age"], covariate_types={"age": "continuous"},
                  clinical=["hama"], affected_side_column="affected_side", flip_to="R",
                  analyses=analyses, preprocessing={"func": {"resolution": RES}},
                  stats={"n_perm": 60, "tfce": True, "alpha": 0.05, "cluster_forming_p": 0.001, "random_seed": 0})
    summaries = {}
    for s in subjects:
        ctx = SimpleNamespace(subject=s, session=None, out=out, analyses=analyses, work_dir=root / "work",
                              preprocessing=study.preprocessing, flip=study.flipped(s), seed=0,
                              log=logging.getLogger("test"), func=FuncOutputs(), flip_to="R")
        summaries[s] = participant.run(ctx)
    gctx = SimpleNamespace(study=study, out=out, analyses=analyses, stats=study.stats, seed=0, nprocs=1,
                           log=logging.getLogger("test"), work_dir=None)
    gsum = run_stage(gctx, "conn")
    return root, out, study, summaries, gsum


def test_participant_outputs_named_by_contract(study_run):
    root, out, study, summaries, _ = study_run
    f = root / "sub-01" / "func"
    names = sorted(p.name for p in f.iterdir())
    assert "sub-01_task-rest_space-MNI152NLin2009aSym_res-6_seed-amygdalaIpsi_desc-fisherz_boldmap.nii.gz" in names
    assert "sub-01_task-rest_space-MNI152NLin2009aSym_res-6_seed-thalamusContra_desc-fisherzsmooth_boldmap.nii.gz" in names
    assert "sub-01_task-rest_space-MNI152NLin2009aSym_atlas-aal_meas-pearson_desc-fisherz_relmat.tsv" in names
    assert "sub-01_task-rest_space-MNI152NLin2009aSym_atlas-aal_meas-pearson_desc-graphnodalauc_stats.tsv" in names
    # sub-01 is flipped (affected L): its Ipsi amygdala seed is the native LEFT amygdala
    import json

    side = json.loads((f / "sub-01_task-rest_space-MNI152NLin2009aSym_res-6_seed-amygdalaIpsi_desc-fisherz_boldmap.json").read_text())
    assert study.flipped("01") and "mirrored" in side["SeedRegion"] and side["SubjectFlippedAtGroupLevel"]
    z = nib.load(f / "sub-01_task-rest_space-MNI152NLin2009aSym_res-6_seed-amygdalaIpsi_desc-fisherz_boldmap.nii.gz")
    mask_img = load_template("mask", RES)
    amy_l = region_mask("ho:Left_Amygdala", mask_img) & (np.asarray(mask_img.dataobj) > 0)
    assert np.asarray(z.dataobj)[amy_l].mean() > 1.0  # seed region correlates with its own mean
    # the relmat is a symmetric Fisher-z matrix with node names
    rel = pd.read_csv(f / "sub-01_task-rest_space-MNI152NLin2009aSym_atlas-aal_meas-pearson_desc-fisherz_relmat.tsv",
                      sep="\t", index_col=0)
    assert list(rel.index) == list(rel.columns) and "Amygdala_R" in rel.columns
    m = rel.to_numpy(float)
    ok = np.isfinite(m)
    assert np.allclose(m[ok], m.T[ok]) and np.all(np.diag(m)[np.isfinite(np.diag(m))] == 0)


def test_rerun_is_skipped(study_run):
    from hfsmri.conn import participant

    root, out, study, _, _ = study_run
    ctx = SimpleNamespace(subject="02", session=None, out=out, analyses=study.analyses, work_dir=root,
                          preprocessing=study.preprocessing, flip=False, seed=0, log=logging.getLogger("t"),
                          func=FuncOutputs(), flip_to="R")
    s = participant.run(ctx)
    assert s["seed_fc"].get("skipped") and s["graph"].get("skipped")


def test_group_finds_planted_amygdala_insula_effect(study_run):
    root, out, study, _, gsum = study_run
    d = root / "group" / "seed_fc" / "seed-amygdalaIpsi"
    for kind in ("t", "tfce", "fwe", "clusters"):
        assert (d / gname(kind, "patient-gt-control")).exists()
    rois = pd.read_csv(d / "rois.tsv", sep="\t").set_index("roi")
    # planted: patients' Ipsi amygdala couples with the Contra insula (after alignment)
    hit = rois.loc["amygdalaIpsi-insulaContra"]
    assert hit.estimate > 0.3 and hit.p_perm < 0.05
    assert rois.loc["amygdalaIpsi-insulaIpsi"].p_perm > 0.05
    # voxel-wise: the TFCE FWE map peaks in the contra (left) insula
    t = np.asarray(nib.load(d / gname("t", "patient-gt-control")).dataobj)
    mask_img = load_template("mask", RES)
    ins_l = region_mask("aal:Insula_L", mask_img)
    assert t[ins_l].mean() > 3 and t[~ins_l & (np.asarray(mask_img.dataobj) > 0)].mean() < 1
    assert (d / "correlations.tsv").exists()
    # thalamus (Niu 2020): Ipsi thalamus <-> both supramarginal gyri up; Contra thalamus unchanged
    th = pd.read_csv(root / "group" / "seed_fc" / "seed-thalamusIpsi" / "rois.tsv", sep="\t").set_index("roi")
    for col in ("thalamusIpsi-SMGIpsi", "thalamusIpsi-SMGContra"):
        assert th.loc[col].estimate > 0.2 and th.loc[col].p_perm < 0.05
    thc = pd.read_csv(root / "group" / "seed_fc" / "seed-thalamusContra" / "rois.tsv", sep="\t").set_index("roi")
    # the patients' SMG also carries the Ipsi thalamus signal, which dilutes its correlation with the
    # Contra thalamus: a real decrease in patients (visible now that ROI tests have enough
    # permutations, stats.roi_n_perm); no other Contra-thalamus pair differs
    assert thc.loc["thalamusContra-SMGContra"].estimate < 0
    assert thc.drop(index="thalamusContra-SMGContra").p_perm.min() > 0.01


def test_group_graph_outputs(study_run):
    root, out, study, _, gsum = study_run
    g = root / "group" / "graph"
    glob = pd.read_csv(g / "global" / "rois.tsv", sep="\t")
    assert {"clustering", "global_efficiency", "modularity"} <= set(glob.roi)
    deg = pd.read_csv(g / "degree" / "rois.tsv", sep="\t")
    assert "Amygdala_R" in set(deg.roi) and "p_fdr" in deg.columns
    e = pd.read_csv(g / "edges" / gname("edges", "patient-gt-control"), sep="\t")
    assert {"node_i", "node_j", "t", "p", "q_fdr"} <= set(e.columns)
    # the planted amygdala-insula coupling is the strongest group edge after alignment
    top = e.sort_values("t", ascending=False).iloc[0]
    assert {top.node_i, top.node_j} & {"Amygdala_R", "Insula_L"}
    assert (g / "nbs" / gname("components", "patient-gt-control")).exists()


def test_group_ica_outputs(study_run):
    root, out, study, _, gsum = study_run
    comps = pd.read_csv(root / "group" / "ica" / "components.tsv", sep="\t")
    assert len(comps) == 4 and {"network", "match_r"} <= set(comps.columns)
    img = nib.load(root / "group" / "ica" / gname("ica_maps"))
    assert img.shape[3] == 4
    assert any((root / "group" / "ica" / f"ic-{k}" / gname("t", "patient-gt-control")).exists()
               for k in range(1, 5))
