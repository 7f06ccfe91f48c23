"""``hfsmri demo``: simulate a small HFS study, run every analysis, write the report.

Layout of ``OUTPUT_DIR`` (default ``hfsmri_demo``)::

    OUTPUT_DIR/bids/          simulated raw BIDS dataset (+ derivatives/ground_truth/)
    OUTPUT_DIR/study.yaml     the demo's study definition
    OUTPUT_DIR/derivatives/   hfsmri outputs; report at OUTPUT_DIR/derivatives/report.html

Demo settings (chosen so that 10 + 10 subjects finish in <= 15 min on 2 cores, see README):
:data:`DEMO_STATS` permutations, the simulator's default resolutions (T1w 2 mm, DWI 2.5 mm, BOLD
3 mm) and a 4-minute BOLD run (:data:`hfsmri.simulate.dataset.DEMO_VOLUMES` = 120 volumes; the
simulator's own default is 8 minutes). A second run
reuses everything already finished (the simulated data and every up-to-date derivative).
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import yaml

from .analyses import ANALYSES

log = logging.getLogger("hfsmri")

#: demo statistics: fewer permutations than a real study (5000; 150 give FWE p in steps of 1/151 =
#: 0.0066) and voxel-wise correlation maps for severity only (ROI correlations still cover every
#: score), to keep the demo within 15 minutes
DEMO_STATS = {"n_perm": 150, "tfce": True, "alpha": 0.05, "cluster_forming_p": 0.001, "random_seed": 0,
              "voxelwise_clinical": ["severity"]}
QUICK_STATS = {"n_perm": 100, "tfce": True, "alpha": 0.05, "cluster_forming_p": 0.001, "random_seed": 0,
               "voxelwise_clinical": ["severity"]}


def demo_study_config(n_perm: int | None = None, quick: bool = False) -> dict:
    """study.yaml used by the demo (every analysis, the review's clinical scores, flipping on)."""
    stats = dict(QUICK_STATS if quick else DEMO_STATS)
    if n_perm is not None:
        stats["n_perm"] = int(n_perm)
    return {
        "group_column": "group",
        "groups": {"patient": "HFS", "control": "HC"},
        "covariates": ["age", "sex"],
        "clinical": ["severity", "duration_months", "hama", "hamd"],
        "affected_side_column": "affected_side",
        # no flipping: the review's table gives most lateral findings by absolute hemisphere (17 of
        # the 21 lateral effects the simulator plants; 4 are ipsi/contra-lateral to the affected
        # side), and mirroring the ~60 % left-affected patients would scatter those over both sides
        "flip_to": None,
        # every analysis with its demo settings (hfsmri.analyses: no per-volume DWI motion
        # correction, as the simulated DWI has no head motion; ICA with 10 components, 2 restarts)
        "analyses": {name: dict(spec.demo) for name, spec in ANALYSES.items()},
        # the fast structural profile (one Atropos pass, SyN 20x10x0): 26 s instead of 44 s CPU per
        # subject, TIV within 2 % of the simulated truth (docs/anatomy.md)
        "preprocessing": {"anat": {"profile": "fast"}},
        "stats": stats,
    }


def _simulate_once(bids: Path, n_patients: int, n_controls: int, seed: int, quick: bool) -> None:
    from .simulate import simulate_study
    from .simulate.scanner import USER_PRESET

    marker = bids / "derivatives" / "ground_truth" / "effects.tsv"
    if marker.exists() and (bids / "participants.tsv").exists() and _simulated_with(bids) == USER_PRESET:
        log.info("demo: reusing simulated data in %s", bids)
        return
    tmp = bids.with_name(bids.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    from .simulate.dataset import DEMO_VOLUMES

    # the scanner-like preset (full heads with face and neck, tilted heads, oblique headers, mixed
    # storage, bias fields, BOLD slice timing): the demo's subjects are not aligned to MNI
    kwargs = {"n_volumes": 60 if quick else DEMO_VOLUMES, "scanner": USER_PRESET}
    t0 = time.perf_counter()
    simulate_study(tmp, n_patients=n_patients, n_controls=n_controls, seed=seed, **kwargs)
    shutil.rmtree(bids, ignore_errors=True)
    os.replace(tmp, bids)
    log.info("demo: simulated %d patients + %d controls in %.0f s", n_patients, n_controls,
             time.perf_counter() - t0)


def _simulated_with(bids: Path) -> str | None:
    """Scanner preset recorded in a simulated dataset's description (None if unknown)."""
    import json

    try:
        gen = json.loads((bids / "derivatives" / "ground_truth" / "dataset_description.json").read_text())["GeneratedBy"]
        return gen[0]["Parameters"]["scanner"]["preset"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def run_demo(output_dir: str | Path = "hfsmri_demo", n_patients: int = 10, n_controls: int = 10,
             n_perm: int | None = None, nprocs: int | None = None, seed: int = 1, quick: bool = False) -> Path:
    """Run the whole demo; returns the path of report.html."""
    from .api import run_level

    root = Path(output_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    bids, deriv = root / "bids", root / "derivatives"
    t0 = time.perf_counter()
    _simulate_once(bids, n_patients, n_controls, seed, quick)
    study = root / "study.yaml"
    study.write_text(yaml.safe_dump(demo_study_config(n_perm, quick), sort_keys=False))
    for level in ("participant", "group"):
        t = time.perf_counter()
        run_level(level, bids, deriv, study, nprocs=nprocs)
        log.info("demo: %s level in %.0f s", level, time.perf_counter() - t)
    report = deriv / "report.html"
    log.info("demo: finished in %.0f s", time.perf_counter() - t0)
    _print_summary(deriv, demo_study_config(n_perm, quick))
    return report


def _print_summary(deriv: Path, study: dict) -> None:
    """One screen of findings: significant clusters per analysis and ground-truth score."""
    import pandas as pd

    from .derivatives import group_path
    from .stats.design import contrast_names

    lines = ["", "hfsmri demo: findings (FWE p < alpha)"]
    folders = sorted(m for a in group_path(deriv, kind="folder").glob("*") if a.is_dir() for m in a.iterdir()
                     if m.is_dir())
    for folder in folders:
        for c in contrast_names(study.get("clinical"), study.get("sessions")):
            f = group_path(deriv, folder.parent.name, folder.name, c, "clusters")
            try:
                df = pd.read_csv(f, sep="\t") if f.is_file() else None
            except Exception:
                continue
            if df is not None and len(df):
                top = df.sort_values("p_fwe").iloc[0]
                labels = [str(top.get(k)) for k in ("aal_label", "ho_label")
                          if isinstance(top.get(k), str) and top.get(k).strip()]
                label = labels[0] if labels else "an unlabelled region (e.g. white matter)"
                lines.append(f"  {folder.parent.name}/{folder.name} {c}: {df['cluster_id'].nunique()} cluster(s), "
                             f"best p_fwe={top['p_fwe']:.3g} at {label}")
    summary = deriv / "report" / "ground_truth_summary.tsv"
    if summary.exists():
        try:
            s = pd.read_csv(summary, sep="\t")
            if {"n_hits", "n_evaluated"} <= set(s.columns):
                lines.append(f"  ground truth: {int(s['n_hits'].sum())} of {int(s['n_evaluated'].sum())} "
                             "evaluated planted effects recovered")
        except Exception:
            pass
    lines += _power_vs_recovery_lines(deriv)
    print("\n".join(lines))


def _power_vs_recovery_lines(deriv: Path) -> list[str]:
    """Predicted power of each planted effect at the demo's size beside recovered yes/no (issue 23)."""
    import pandas as pd

    from .errors import HfsmriError
    from .power.recovery import power_beside_recovery, summary_lines

    try:
        groups = pd.read_csv(deriv / "participants.tsv", sep="\t")["group"].value_counts()
        n = int(groups.min())
        done = deriv / "report" / "power_vs_recovery.tsv"  # the report computed it (ground-truth section)
        table = pd.read_csv(done, sep="\t") if done.is_file() else power_beside_recovery(deriv, n)
        return summary_lines(table, n)
    except (OSError, KeyError, ValueError, HfsmriError) as exc:
        log.warning("demo: predicted power vs recovery not computed: %s", exc)
        return []
