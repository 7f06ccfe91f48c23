"""Power analysis by simulation (``hfsmri power``). See docs/power.md.

>>> from hfsmri.power import run_power
>>> run_power("power_out", effects="default", ns=[10, 20, 30, 50], n_sim=100)  # doctest: +SKIP
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import HfsmriError
from .analytic import correlation_power, ttest_power
from .image_engine import image_power, score_group_outputs
from .report import write_power_report
from .roi_engine import roi_power
from .specs import power_tests

log = logging.getLogger("hfsmri.power")

__all__ = ["run_power", "power_tests", "roi_power", "image_power", "score_group_outputs", "ttest_power",
           "correlation_power", "write_power_report"]

ENGINE_DOC = {
    "roi": ("ROI engine: each planted effect is one ROI value per subject drawn as the simulator plants "
            "its noise-free metric (patients shifted by direction x Cohen's d, clinical link r with the "
            "score among patients), plus null ROIs; group t-tests and patient correlations corrected across "
            "the ROIs of each analysis/metric (FDR as the pipeline's ROI tables; FWE = Holm or max-statistic). "
            "It ignores measurement noise (see reliability), registration and voxel-wise multiplicity: "
            "an upper bound for the voxel-wise pipeline at the planted effect size."),
    "image": ("image engine: whole studies simulated as raw BIDS and run through the participant and group "
              "pipeline; an effect is detected when its ground-truth mask holds a voxel with corrected "
              "p < alpha in the planted direction; a false positive is a significant voxel away from every "
              "planted mask of that map."),
}


def run_power(output_dir, effects="default", ns=(10, 20, 30, 50), n_sim: int = 100, seed: int = 0, *,
              engine: str = "roi", test: str = "parametric", n_perm: int = 1000, alpha: float = 0.05,
              n_null: int = 10, reliability: float = 1.0, correction: str = "fwe", analyses=None,
              nprocs: int | None = None, keep: bool = False, simulate_kwargs=None) -> Path:
    """Estimate, by simulating studies of each size, the power to detect every planted effect and
    the false-positive rate; write ``power.tsv``, ``false_positives.tsv``, ``power_curve.png`` and
    ``power.html`` into ``output_dir`` and return the path of ``power.html``.

    Parameters
    ----------
    output_dir : folder for the results (created)
    effects : "default" (the simulator's review-based effects), a YAML file (simulator format, or
        a simple list of ``{id, cohens_d, direction, analyses, clinical}``), a dict or an EffectSet
    ns : subjects per group (patients = controls = n)
    n_sim : simulated studies per size
    seed : base seed (results are a deterministic function of the arguments)
    engine : "roi" (fast, default) or "image" (full pipeline per simulated study)
    test : ROI engine: "parametric" (t distribution, Holm FWE) or "permutation" (as the pipeline,
        ``n_perm`` label permutations, max-statistic FWE)
    n_perm : permutations (ROI permutation test; study.yaml ``stats.n_perm`` of the image engine)
    alpha : significance level of the corrected p-values
    n_null : ROI engine: null ROIs added per analysis/metric (false-positive estimate)
    reliability : ROI engine: share of the observed between-subject variance that is signal
    correction : correction shown in the HTML headline table and plot ("fwe", "fdr", "uncorrected")
    analyses, nprocs, keep, simulate_kwargs : image engine only (analyses to run, processes, keep
        the simulated studies, extra arguments of ``simulate_study``)
    """
    if engine not in ENGINE_DOC:
        raise HfsmriError(f"engine must be one of {sorted(ENGINE_DOC)}, got {engine!r}", field="engine")
    if correction not in ("fwe", "fdr", "uncorrected"):
        raise HfsmriError(f"correction must be fwe, fdr or uncorrected, got {correction!r}", field="correction")
    if not (0 < float(alpha) < 1):
        raise HfsmriError(f"alpha must be in (0, 1), got {alpha}", field="alpha")
    ns = sorted({int(n) for n in ns})
    if not ns or ns[0] < 3:
        raise HfsmriError(f"--n: group sizes must be integers >= 3, got {list(ns)}", field="n")
    if int(n_sim) < 1:
        raise HfsmriError(f"--n-sim must be >= 1, got {n_sim}", field="n_sim")
    out = Path(output_dir)
    t0 = time.perf_counter()
    tests = power_tests(effects)
    if engine == "roi":
        power, fp = roi_power(tests, ns, n_sim=int(n_sim), seed=int(seed), alpha=float(alpha), test=test,
                              n_perm=int(n_perm), n_null=int(n_null), reliability=float(reliability))
    else:
        power, fp = image_power(effects, ns, int(n_sim), int(seed), out / "work", alpha=float(alpha),
                                analyses=analyses, n_perm=int(n_perm), nprocs=nprocs, keep=keep,
                                simulate_kwargs=simulate_kwargs)
    settings = {"engine": engine, "engine_description": ENGINE_DOC[engine],
                "test": test if engine == "roi" else "permutation GLM + TFCE (pipeline)",
                "effects": str(effects) if isinstance(effects, (str, Path)) else "custom",
                "ns": ns, "n_sim": int(n_sim), "seed": int(seed), "alpha": float(alpha), "n_perm": int(n_perm),
                "n_null_rois_per_family": int(n_null), "reliability": float(reliability),
                "n_tests": int(len(tests)), "seconds": round(time.perf_counter() - t0, 1)}
    path = write_power_report(out, power, fp, settings, correction=correction)
    log.info("power: %d planted test(s), %d size(s) x %d simulations in %.1f s -> %s", len(tests), len(ns),
             n_sim, time.perf_counter() - t0, path)
    return path
