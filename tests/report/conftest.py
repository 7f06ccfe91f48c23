"""Fixtures: a small fake hfsmri OUTPUT_DIR with planted, known results (2 mm MNI grid)."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from hfsmri.spatial.templates import template_grid
from tests.naming import gname

EVIL = "<script>alert('x')</script>"


def world_to_ijk(affine, xyz):
    return tuple(np.rint(np.linalg.inv(affine) @ np.r_[xyz, 1.0])[:3].astype(int))


def box(shape, affine, center_mm, half_vox=2):
    m = np.zeros(shape, bool)
    i, j, k = world_to_ijk(affine, center_mm)
    m[i - half_vox:i + half_vox + 1, j - half_vox:j + half_vox + 1, k - half_vox:k + half_vox + 1] = True
    return m


#: planted truth of the fake study (MNI mm centres)
HIT_CENTER = (-12.0, -18.0, 8.0)      # left thalamus: significant in patient-lt-control, planted -1
MISS_CENTER = (40.0, 30.0, 30.0)      # right DLPFC: planted -1, nothing significant there
FALSE_CENTER = (30.0, -60.0, -30.0)   # right cerebellum: significant in patient-gt-control, nothing planted


def participants_df(n_pat=6, n_con=6, seed=0):
    rng = np.random.default_rng(seed)
    n = n_pat + n_con
    ids = [f"sub-{i:02d}" for i in range(1, n + 1)]
    df = pd.DataFrame({
        "participant_id": ids,
        "group": ["HFS"] * n_pat + ["HC"] * n_con,
        "age": np.round(rng.normal(55, 8, n), 1),
        "sex": rng.choice(["F", "M"], n),
        "affected_side": ["L", "R"] * (n_pat // 2) + ["R"] * (n_pat % 2) + ["n/a"] * n_con,
        "severity": list(rng.integers(1, 5, n_pat)) + [np.nan] * n_con,
        EVIL: ["a"] * n,
    })
    return df


def write_fake_output(root: Path, with_vbm=True, with_rois=True, with_gt=True, evil_id=False) -> dict:
    """Create OUTPUT_DIR (root/derivatives) and a ground-truth folder (root/bids/derivatives/ground_truth)."""
    out = root / "derivatives"
    out.mkdir(parents=True)
    shape, aff = template_grid(2)
    study = {"group_column": "group", "groups": {"patient": "HFS", "control": "HC"}, "covariates": ["age", "sex"],
             "clinical": ["severity"], "affected_side_column": "affected_side", "flip_to": "R",
             "analyses": {"vbm": {"fwhm": 8.0}, "roi_volumes": {}, "reho": {}},
             "stats": {"n_perm": 100, "tfce": True, "alpha": 0.05, "random_seed": 0}}
    (out / "study.resolved.yaml").write_text(yaml.safe_dump(study))
    parts = participants_df()
    if evil_id:
        parts.loc[0, "participant_id"] = "sub-" + EVIL
    parts.to_csv(out / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    (out / "logs").mkdir()
    bids = root / "bids"
    (out / "logs" / "run_info.json").write_text(json.dumps(
        {"bids_dir": str(bids), "excluded": {"13": "no T1w"}, "flipped": ["sub-01", "sub-03", "sub-05"]}))
    rng = np.random.default_rng(1)
    for i, pid in enumerate(parts["participant_id"][:12]):
        lab = pid[4:]
        d = out / pid
        d.mkdir(parents=True, exist_ok=True)
        fd = 0.1 + 0.01 * rng.standard_normal() if i != 3 else 1.5   # sub-04 is a motion outlier
        summ = {"subject": lab, "session": None, "flipped": i in (0, 2, 4),
                "stages": {"anat": {"registration_dice": 0.9 + 0.005 * rng.standard_normal(), "tiv_ml": 1500.0},
                           "func": {"mean_fd_mm": fd, "tsnr": 60 + rng.standard_normal()},
                           "dwi": {"n_directions": 30} if i != 5 else {"error": "no bvec " + EVIL}}}
        if "<" not in lab:
            (d / f"{pid}_desc-hfsmri_summary.json").write_text(json.dumps(summ))
    fig_dir = out / "sub-01" / "anat" / "figures"
    fig_dir.mkdir(parents=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(rng.random((20, 20)))
    fig.savefig(fig_dir / "sub-01_desc-reg_overlay.png")
    plt.close(fig)

    info = {"out": out, "bids": bids, "shape": shape, "affine": aff}
    if with_vbm:
        g = out / "group" / "vbm" / "gm"
        g.mkdir(parents=True)
        hit = box(shape, aff, HIT_CENTER)
        false = box(shape, aff, FALSE_CENTER)
        for c, blob in (("patient-lt-control", hit), ("patient-gt-control", false),
                        ("corr-severity-pos", None), ("corr-severity-neg", None)):
            t = np.zeros(shape, np.float32)                                # noise in a central box only
            logp = np.zeros(shape, np.float32)
            inner = (slice(25, 65), slice(30, 80), slice(25, 65))
            t[inner] = rng.normal(0, 1, t[inner].shape)
            logp[inner] = np.minimum(np.abs(rng.normal(0, 0.3, t[inner].shape)), 1.0)  # max below 1.3
            if blob is not None:
                t[blob] = 6.0
                logp[blob] = 2.5
            nib.save(nib.Nifti1Image(t, aff), g / gname("t", c))
            nib.save(nib.Nifti1Image(t, aff), g / gname("tfce", c))
            nib.save(nib.Nifti1Image(logp, aff), g / gname("fwe", c))
            rows = []
            if blob is not None:
                ctr = HIT_CENTER if blob is hit else FALSE_CENTER
                rows.append({"cluster_id": 1, "n_voxels": int(blob.sum()), "volume_mm3": 8.0 * blob.sum(),
                             "peak_x": ctr[0], "peak_y": ctr[1], "peak_z": ctr[2], "peak_stat": 6.0,
                             "p_fwe": 10 ** -2.5, "aal_label": EVIL, "ho_label": "Left_Thalamus"})
            pd.DataFrame(rows, columns=["cluster_id", "n_voxels", "volume_mm3", "peak_x", "peak_y", "peak_z",
                                        "peak_stat", "p_fwe", "aal_label", "ho_label"]).to_csv(
                g / gname("clusters", c), sep="\t", index=False)
        info["hit_mask"], info["false_mask"] = hit, false
    if with_rois:
        g = out / "group" / "roi_volumes" / "volume"
        g.mkdir(parents=True)
        labs = [p[4:] for p in parts["participant_id"]]
        grp = parts["group"].to_numpy()
        amy = np.where(grp == "HFS", 1.0, 2.0) + 0.1 * rng.standard_normal(len(labs))
        put = 3 + 0.1 * rng.standard_normal(len(labs))
        sev = parts["severity"].to_numpy(float)
        values = pd.DataFrame({"participant_id": parts["participant_id"], "Amygdala_L": amy, "Putamen_L": put})
        values.loc[~np.isnan(sev), "Putamen_L"] = 3 + 0.2 * sev[~np.isnan(sev)] + 0.01 * rng.standard_normal(6)
        values.to_csv(g / gname("values"), sep="\t", index=False)
        # column layout of hfsmri.stats.group_analysis.roi_group (t: patient-gt-control, two-sided p)
        pd.DataFrame({"roi": ["Amygdala_L", "Putamen_L"], "n_patient": 6, "n_control": 6, "t": [-8.0, 0.3],
                      "p_param": [1e-5, 0.7], "p_perm": [1e-3, 0.7], "p_perm_fwe": [2e-3, 0.9],
                      "p_fdr": [2e-3, 0.7], "hedges_g": [-4.0, 0.1],
                      "direction": ["patient<control", "patient>control"]}).to_csv(
            g / "rois.tsv", sep="\t", index=False)
        pd.DataFrame({"roi": ["Amygdala_L", "Putamen_L"], "score": ["severity"] * 2, "n": 6, "r": [0.1, 0.99],
                      "r_ci_low": [-0.7, 0.9], "r_ci_high": [0.8, 1.0], "p": [0.8, 1e-4], "p_perm": [0.8, 2e-3],
                      "p_fdr": [0.8, 4e-3]}).to_csv(g / "correlations.tsv", sep="\t", index=False)
        gr = out / "group" / "graph" / "global"
        gr.mkdir(parents=True)
        sp = np.repeat([0.1, 0.2, 0.3], 2)
        pd.DataFrame({"sparsity": sp, "group": ["patient", "control"] * 3, "clustering": sp * 2,
                      "global_efficiency": 1 - sp}).to_csv(gr / "metrics_by_group.tsv", sep="\t", index=False)
        lab3 = ["A", "B", EVIL]
        pd.DataFrame(np.eye(3), columns=lab3).assign(node=lab3)[["node"] + lab3].to_csv(
            gr / "mean_connectome.tsv", sep="\t", index=False)
    (out / "group").mkdir(exist_ok=True)
    (out / "group" / gname("group_summary")).write_text(json.dumps({"func": {"error": "reho crashed " + EVIL}}))
    if with_gt:
        gt = bids / "derivatives" / "ground_truth"
        (gt / "masks").mkdir(parents=True)
        rows = []
        for eid, ctr, direction in (("gm-thalamus-l", HIT_CENTER, -1), ("gm-dlpfc-r", MISS_CENTER, -1)):
            m = box(shape, aff, ctr, half_vox=1)
            nib.save(nib.Nifti1Image(m.astype(np.uint8), aff), gt / "masks" / f"{eid}.nii.gz")
            rows.append({"effect_id": eid, "analysis": "vbm", "metric": "gm", "region": "aal:Thalamus_L",
                         "hemisphere": "L", "direction": direction, "cohens_d": -1.8, "clinical_score": "n/a",
                         "clinical_r": "n/a", "mask": f"masks/{eid}.nii.gz"})
        rows[1]["region"] = "aal:Frontal_Mid_2_R"
        rows.append({"effect_id": "gm-amygdala-l", "analysis": "roi_volumes", "metric": "volume",
                     "region": "aal:Amygdala_L", "hemisphere": "L", "direction": -1, "cohens_d": -1.8,
                     "clinical_score": "n/a", "clinical_r": "n/a", "mask": "masks/gm-thalamus-l.nii.gz"})
        rows.append({"effect_id": "gm-putamen-l", "analysis": "roi_volumes", "metric": "volume",
                     "region": "aal:Putamen_L", "hemisphere": "L", "direction": 0, "cohens_d": 0.0,
                     "clinical_score": "severity", "clinical_r": 0.7, "mask": "masks/gm-thalamus-l.nii.gz"})
        rows.append({"effect_id": "reho-mfg", "analysis": "reho", "metric": "reho", "region": "aal:Frontal_Mid_2_L",
                     "hemisphere": "L", "direction": -1, "cohens_d": -1.5, "clinical_score": "n/a",
                     "clinical_r": "n/a", "mask": "masks/gm-thalamus-l.nii.gz"})
        pd.DataFrame(rows).to_csv(gt / "effects.tsv", sep="\t", index=False)
        info["gt"] = gt
    return info


@pytest.fixture(scope="session")
def fake_output(tmp_path_factory):
    """Full fake output (vbm + ROI + graph + ground truth) with its report built once per session."""
    from hfsmri.report import build_report

    root = tmp_path_factory.mktemp("fake")
    info = write_fake_output(root)
    info["report"] = build_report(info["out"])
    return info
