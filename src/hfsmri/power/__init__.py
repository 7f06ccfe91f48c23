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
from .sizes import parse_group_sizes
from .specs import power_tests

log = logging.getLogger("hfsmri.power")

__all__ = ["run_power", "POWER_DEFAULTS", "ENGINE_DOC", "power_tests", "roi_power", "image_power", "score_group_outputs", "ttest_power",
           "correlation_power", "write_power_report", "parse_group_sizes"]

ENGINE_DOC = {
    "roi": ("ROI engine: each planted effect is one ROI value per subject drawn as the simulator plants "
            "its noise-free metric (patients shifted by direction x Cohen's d, clinical link r with the "
            "score among patients), plus null ROIs; group t-tests and patient correlations corrected across "
            "the ROIs of each analysis/metric (FDR as the pipeline's ROI tables; FWE = Holm or max-statistic). "
            "With effect_sizes='observed' the sizes are those measured in participant-level values after "
            "the pipeline (benchmarks/bench_sensitivity.py; per-voxel d for voxel-wise analyses), so "
            "registration, segmentation and BOLD noise are included; voxel-wise multiplicity and TFCE are "
            "not. With 'planted' it is an upper bound for the voxel-wise pipeline."),
    "image": ("image engine: whole studies simulated as raw BIDS and run through the participant and group "
              "pipeline; an effect is detected when its ground-truth mask holds a voxel with corrected "
              "p < alpha in the planted direction; a false positive is a significant voxel away from every "
              "planted mask of that map."),
}


#: defaults of :func:`run_power` and ``hfsmri power`` (one owner; the command line's --help shows them)
POWER_DEFAULTS = {"engine": "roi", "effects": "default", "effect_sizes": "observed", "ns": (10, 20, 30, 50),
                  "n_sim": 100, "seed": 0, "alpha": 0.05, "correction": "fwe", "n_perm": 1000,
                  "test": "parametric", "n_null": 10, "reliability": 1.0}
EFFECT_SIZES = ("observed", "planted")


def _effect_sizes(tests, effects, effect_sizes: str):
    """Planted test rows -> rows with the effect sizes the power engine uses, and their source per row
    (``planted``, ``observed-default`` or ``observed-demo``: measured after the pipeline with the
    default or the demo settings, :func:`hfsmri.simulate.effects.surviving_effect_sizes`)."""
    import pandas as pd

    from ..simulate.effects import surviving_effect_sizes

    if effect_sizes not in EFFECT_SIZES:
        raise HfsmriError(f"effect_sizes must be one of {EFFECT_SIZES}, got {effect_sizes!r}", field="effect_sizes")
    source = pd.Series("planted", index=tests.index)
    if effect_sizes == "planted":
        return tests, source
    if not (isinstance(effects, str) and effects.lower() == "default"):
        log.info("power: observed effect sizes are measured for the default effects only; using the planted "
                 "sizes of %s", effects)
        return tests, source
    out = tests.copy()
    for setting in ("demo", "default"):          # default-setting measurements win where both exist
        rows, src = surviving_effect_sizes(tests, setting)
        hit = src == "observed"
        out.loc[hit, ["cohens_d", "clinical_r"]] = rows.loc[hit, ["cohens_d", "clinical_r"]]
        source[hit] = f"observed-{setting}"
    if (source == "planted").all():
        log.warning("power: no observed effect sizes stored (benchmarks/bench_sensitivity.py --store); "
                    "using the planted sizes, an upper bound")
    return out, source


def run_power(output_dir, effects=POWER_DEFAULTS["effects"], ns=POWER_DEFAULTS["ns"],
              n_sim: int = POWER_DEFAULTS["n_sim"], seed: int = POWER_DEFAULTS["seed"], *,
              engine: str = POWER_DEFAULTS["engine"], test: str = POWER_DEFAULTS["test"],
              n_perm: int = POWER_DEFAULTS["n_perm"], alpha: float = POWER_DEFAULTS["alpha"],
              n_null: int = POWER_DEFAULTS["n_null"], reliability: float = POWER_DEFAULTS["reliability"],
              correction: str = POWER_DEFAULTS["correction"], analyses=None, nprocs: int | None = None,
              keep: bool = False, simulate_kwargs=None, effect_sizes: str = POWER_DEFAULTS["effect_sizes"]) -> Path:
    """Estimate, by simulating studies of each size, the power to detect every planted effect and
    the false-positive rate; write ``power.tsv``, ``false_positives.tsv``, ``power_curve.png`` and
    ``power.html`` into ``output_dir`` and return the path of ``power.html``.

    Parameters
    ----------
    output_dir : folder for the results (created)
    effects : "default" (the simulator's review-based effects), a YAML file (simulator format, or
        a simple list of ``{id, cohens_d, direction, analyses, clinical}``), a dict or an EffectSet
    ns : subjects per group (patients = controls = n): a list, or "10,20,30" (:func:`parse_group_sizes`)
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
    effect_sizes : ROI engine: "observed" (default; the effect sizes measured in participant-level values
        after the pipeline, stored with the simulator's effect set, for the default effects; rows
        without a measurement keep the planted size) or "planted" (the simulator's latent d: an
        upper bound). ``power.tsv`` column ``effect_size_source`` says which, per row.
    analyses, nprocs, keep, simulate_kwargs : image engine only (analyses to run, processes, keep
        the simulated studies, extra arguments of ``simulate_study``)
    """
    if engine not in ENGINE_DOC:
        raise HfsmriError(f"engine must be one of {sorted(ENGINE_DOC)}, got {engine!r}", field="engine")
    if correction not in ("fwe", "fdr", "uncorrected"):
        raise HfsmriError(f"correction must be fwe, fdr or uncorrected, got {correction!r}", field="correction")
    if not (0 < float(alpha) < 1):
        raise HfsmriError(f"alpha must be in (0, 1), got {alpha}", field="alpha")
    ns = parse_group_sizes(ns)
    if int(n_sim) < 1:
        raise HfsmriError(f"--n-sim must be >= 1, got {n_sim}", field="n_sim")
    out = Path(output_dir)
    t0 = time.perf_counter()
    tests = power_tests(effects)
    planted = tests.copy()
    source = None
    if engine == "roi":
        tests, source = _effect_sizes(tests, effects, effect_sizes)
        power, fp = roi_power(tests, ns, n_sim=int(n_sim), seed=int(seed), alpha=float(alpha), test=test,
                              n_perm=int(n_perm), n_null=int(n_null), reliability=float(reliability))
    else:
        power, fp = image_power(effects, ns, int(n_sim), int(seed), out / "work", alpha=float(alpha),
                                analyses=analyses, n_perm=int(n_perm), nprocs=nprocs, keep=keep,
                                simulate_kwargs=simulate_kwargs)
    if source is not None and len(power):
        key = list(zip(planted["effect_id"], planted["analysis"], planted["metric"]))
        src = dict(zip(key, source))
        pd_ = dict(zip(key, planted["cohens_d"]))
        pr_ = dict(zip(key, planted["clinical_r"]))
        k = list(zip(power["effect_id"], power["analysis"], power["metric"]))
        power["effect_size_source"] = [src.get(x, "planted") for x in k]
        power["planted_effect_size"] = [pr_.get(x) if t == "pearson_r" else pd_.get(x)
                                        for x, t in zip(k, power["effect_size_type"])]
    settings = {"engine": engine, "effect_sizes": effect_sizes if engine == "roi" else "pipeline (image engine)", "engine_description": ENGINE_DOC[engine],
                "test": test if engine == "roi" else "permutation GLM + TFCE (pipeline)",
                "effects": str(effects) if isinstance(effects, (str, Path)) else "custom",
                "ns": ns, "n_sim": int(n_sim), "seed": int(seed), "alpha": float(alpha), "n_perm": int(n_perm),
                "n_null_rois_per_family": int(n_null), "reliability": float(reliability),
                "n_tests": int(len(tests)), "seconds": round(time.perf_counter() - t0, 1)}
    path = write_power_report(out, power, fp, settings, correction=correction)
    log.info("power: %d planted test(s), %d size(s) x %d simulations in %.1f s -> %s", len(tests), len(ns),
             n_sim, time.perf_counter() - t0, path)
    return path
