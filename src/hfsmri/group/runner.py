"""One group runner for every analysis, driven by the specs of :mod:`hfsmri.analyses`.

:func:`run_stage` runs the requested analyses of a participant stage, :func:`run_analysis` turns
a spec into :class:`MetricData` (:func:`collect` from the participant outputs its metrics declare,
or the spec's ``derive`` hook) and :func:`run_metric` analyses every metric the same way: collect →
align sides → mask → designs → inference → write → ROI tables (docs/architecture.md). A metric that
cannot be analysed is recorded as ``{"error": ...}`` while the others run, then :func:`run_stage`
raises one :class:`~hfsmri.errors.HfsmriError` listing them; longitudinal designs never raise
(their failure is recorded next to the kept cross-sectional results).
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import nibabel as nib
import numpy as np
import pandas as pd

from ..analyses import ANALYSES, CLUSTER_ROI_PREFIX, MIN_SUBJECTS, ROI_SETS, STATS_DEFAULTS, of_stage, resolve, setting
from ..errors import HfsmriError
from ..spatial import flip
from ..stats.design import clinical_score_of, designs_for, is_longitudinal, session_pair
from . import inputs, write

@dataclass
class MetricData:
    """One metric's participant data, side-aligned: what :func:`run_metric` analyses. Voxel-wise:
    ``values`` (participants x in-mask voxels, ``subjects`` order) over ``mask``; ROI means of
    ``roi_maps`` in ``regions`` (name -> region spec or 3D bool) and, with ``cluster_rois``, the
    significant clusters. ROI tests of ``table``. Longitudinal: ``session_map`` / ``session_row``
    ((participant, session) -> aligned map / ROI row, or None) over ``long_mask``, ``long_regions``."""

    name: str
    subjects: list
    excluded: dict = field(default_factory=dict)
    extra: pd.DataFrame | None = None
    mask: np.ndarray | None = None
    affine: np.ndarray | None = None
    values: np.ndarray | None = None
    table: pd.DataFrame | None = None
    regions: dict = field(default_factory=dict)
    roi_maps: dict | None = None
    cluster_rois: bool = False
    session_map: Callable | None = None
    session_row: Callable | None = None
    long_subjects: list | None = None
    long_mask: np.ndarray | None = None
    long_regions: dict = field(default_factory=dict)
    tfce: str = "3d"
    sidecar: dict = field(default_factory=dict)
    long_sidecar: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- context helpers
def stats_of(gctx) -> dict:
    return {**STATS_DEFAULTS, **{k: v for k, v in (gctx.stats or {}).items() if v is not None}}


def baseline(study):
    return study.sessions[0] if getattr(study, "sessions", None) else None


def engines(gctx) -> dict:
    """The injected permutation executor (Dask blocks with a client) and harmoniser."""
    from ..harmonize import harmonize_for_design
    from ..stats import distributed

    client = getattr(gctx, "client", None)
    permute = partial(distributed.permuted_glm, client=client) if client is not None else None
    return {"permute": permute, "harmonise": harmonize_for_design}


def resolution(gctx, ref):
    r = float(setting(ref, gctx.analyses, getattr(gctx.study, "preprocessing", None)))
    return int(r) if r.is_integer() else r


# --------------------------------------------------------------------------- stages and analyses
def contrasts_per_metric(study) -> int:
    """Contrast maps of one metric: the contrasts of the cross-sectional designs over every
    participant (at least 1; a design fault is reported by the stage itself). For the group
    progress bar only: no inference depends on it."""
    try:
        designs, _ = designs_for(study, list(study.participants.index))
        return max(1, sum(len(d.contrasts) for d in designs.values()))
    except Exception:
        return 1


def expected_maps(study, analyses, per_metric: int | None = None) -> dict:
    """Progress units of the group level: ``{analysis: metrics x contrasts}`` (``per_metric``:
    :func:`contrasts_per_metric`; an analysis whose metrics are derived at run time, e.g. the ICA
    components, counts one metric; the bar is corrected when its stage ends)."""
    per = contrasts_per_metric(study) if per_metric is None else per_metric
    return {a: per * (1 if ANALYSES[a].derive else max(1, len(ANALYSES[a].metrics)))
            for a in analyses if a in ANALYSES}


def run_stage(gctx, stage: str) -> dict:
    """Every requested analysis of ``stage``; raises after all ran if any metric failed."""
    summary, failures = {}, []
    for name in of_stage(stage):
        if name not in (gctx.analyses or {}):
            continue
        gctx.log.info("%s group: %s", stage, name)
        try:
            summary[name] = run_analysis(gctx, ANALYSES[name])
        except HfsmriError as exc:
            gctx.log.error("%s group analysis failed: %s", name, exc)
            summary[name] = {"error": str(exc)}
        if "error" in summary[name]:
            failures.append(f"{name}: {summary[name]['error']}")
        failures += [f"{name}/{m}: {v['error']}" for m, v in summary[name].items() if isinstance(v, dict)
                     and "error" in v]
    if failures:
        raise HfsmriError(f"{stage} group stage failed for " + "; ".join(failures))
    return summary


def run_analysis(gctx, spec) -> dict:
    """Collect (or derive) every metric of ``spec`` and analyse it; ``{metric: summary}``."""
    params = resolve(spec.name, (gctx.analyses or {}).get(spec.name))
    metrics = spec.metrics
    if spec.derive:
        module, fn = spec.derive.split(":")
        metrics = getattr(importlib.import_module(module), fn)(gctx, spec, params)
    out, kept = {}, []
    for m in metrics:
        name = m.name
        try:
            data = m if isinstance(m, MetricData) else collect(gctx, spec, params, m)
            out[name] = run_metric(gctx, spec, data, kept)
        except HfsmriError as exc:
            gctx.log.error("%s/%s: %s", spec.name, name, exc)
            out[name] = {"error": str(exc)}
        if getattr(gctx, "tick", None) is not None:
            gctx.tick()  # one metric's contrast maps on the group progress bar
    if stats_of(gctx)["familywise"] == "metrics" and len(kept) > 1:
        metrics_family(gctx, spec, kept, out)
    return out


def apply_family(res: list, kind: str, mask, affine, alpha: float) -> None:
    """Family-wise p of ``res`` (:func:`hfsmri.stats.family.family_p`) into each result's ``logp[kind]``
    and its cluster table (``p_fwe_family``: smallest family p in the cluster)."""
    from ..stats.family import cluster_family_p, family_p

    for r, p in zip(res, family_p(res)):
        r.logp[kind] = -np.log10(np.clip(p, 1e-300, 1.0))
        r.meta["FamilywiseFWE"] = {"scope": kind.removeprefix("fwe"), "n_tests": len(res)}
        r.clusters = cluster_family_p(r.clusters, p, r.sig, mask, affine, r.meta["ClusterConnectivity"])


def metrics_family(gctx, spec, kept: list, summary: dict) -> None:
    """``stats.familywise: metrics``: family over every contrast of every metric of the analysis;
    writes each metric's ``fwemetrics`` maps and its cluster tables again (``p_fwe_family``)."""
    from ..stats.family import cluster_family_p, family_p

    st = stats_of(gctx)
    allres = [(m, r, mask, aff) for m, res, mask, aff in kept for r in res]
    for (m, r, mask, aff), p in zip(allres, family_p([x[1] for x in allres])):
        r.logp["fwemetrics"] = -np.log10(np.clip(p, 1e-300, 1.0))
        r.meta["FamilywiseFWE"] = {"scope": "metrics", "n_tests": len(allres),
                                   "metrics": sorted({x[0] for x in allres})}
        r.clusters = cluster_family_p(r.clusters, p, r.sig, mask, aff, r.meta["ClusterConnectivity"])
        write.family_map(gctx.out, spec.name, m, r, mask, aff, "fwemetrics")
    for m in {x[0] for x in allres}:
        if isinstance(summary.get(m), dict):
            summary[m]["familywise"] = {"scope": "metrics", "n_tests": len(allres), "alpha": float(st["alpha"])}
            write.summary(gctx.out, spec.name, m, summary[m])


# --------------------------------------------------------------------------- collect
def _base_mask(gctx, rule, subjects, ses, res, grid):
    """The analysis' base mask (template, participants' own masks, white matter)."""
    from ..spatial.templates import load_template

    mask = np.ones(grid[0], bool)
    if rule.template:
        mask &= load_template(rule.template, res).get_fdata() >= rule.threshold
    if rule.subject_masks is not None:
        for s in subjects:
            p = rule.subject_masks.path(gctx.out, s, ses, res)
            mask &= aligned_map(gctx, rule.subject_masks, inputs.load_map(p, grid, "brain mask") > 0, grid[1], s)
    if rule.white_matter is not None:
        fa_in, thr = rule.white_matter
        fa = np.stack([inputs.load_map(fa_in.path(gctx.out, s, ses, res), grid, "FA map") for s in subjects])
        mask &= np.all(fa > 0, axis=0) & (fa.mean(axis=0) >= float(setting(thr, gctx.analyses, None)))
    return mask


def aligned_map(gctx, inp, arr, affine, sub):
    """``arr`` of participant ``sub`` side-aligned: mirrored (x -> -x) when the participant is flipped
    and the input (:class:`~hfsmri.analyses.Input`) was not aligned by its participant stage."""
    return arr if inp.aligned or not gctx.study.flipped(sub) else flip.flip_array_x(arr, affine)


def aligned_row(gctx, inp, row, sub):
    """A participant's ROI row side-aligned (left/right values exchanged), as :func:`aligned_map`."""
    return row if row is None or inp.aligned or not gctx.study.flipped(sub) else flip.swap_lr(row)


def collect(gctx, spec, params, metric) -> MetricData:
    """A metric's data from the participant outputs its spec declares (see module doc)."""
    from ..spatial.templates import template_grid

    study, ses, ents = gctx.study, baseline(gctx.study), metric.entities
    inp = metric.map or metric.table
    res = resolution(gctx, inp.res) if inp.res else None
    rois = metric.rois if metric.rois is not None else spec.rois
    covs = spec.extra_covariates(params)
    sel = inputs.select(gctx, spec.stage, spec.needs, [inp] + [r.values for r in rois if r.values], covs, ses, res,
                        **ents)
    if len(sel.included) < MIN_SUBJECTS:
        raise HfsmriError(f"only {len(sel.included)} participants can be analysed ("
                          f"{'; '.join(sorted(set(sel.excluded.values())))[:300]}); at least {MIN_SUBJECTS} are needed")
    subjects = sel.included
    tfce = params[spec.tfce.split(":", 1)[1]] if spec.tfce.startswith("param:") else spec.tfce
    data = MetricData(metric.name, subjects, sel.excluded, inputs.covariates(gctx, covs, subjects, ses, gctx.log),
                      tfce=tfce, sidecar={"Analysis": spec.name, "Metric": metric.name, "Session": ses,
                                          "ExtraCovariates": list(covs), "Excluded": dict(sel.excluded),
                                          **metric.sidecar})
    if metric.table is not None:
        t = metric.table

        def row(s, ses_):
            r = inputs.read_row(t.path(gctx.out, s, ses_, res, **ents), t.index, t.value or metric.name)
            return aligned_row(gctx, t, r, s)

        table = pd.DataFrame({s: r for s in subjects if (r := row(s, ses)) is not None}).T
        table = table.dropna(axis=1, how="all") if spec.table.keep == "any" else table.loc[:, table.notna().all()]
        if spec.table.exclude:
            table = table[[c for c in table.columns if not re.search(spec.table.exclude, c)]]
        if spec.table.keep == "positive":
            table = table.astype(float)
            table = table.loc[:, (table > 0).all(axis=0)]
        norm = spec.normalise(params) if spec.normalise else None
        if norm:   # e.g. ROI volumes x mean TIV / TIV
            v = pd.Series({s: inputs.covariate_values(gctx, norm, ses)[s] for s in table.index}, dtype=float)
            table = table.mul(v.mean() / v, axis=0)
        data.table, data.session_row = table, row
    if metric.map is None:
        return data
    grid = template_grid(res)
    base = _base_mask(gctx, spec.mask, inputs.select(gctx, spec.stage, spec.needs, [], (), ses, res).included,
                      ses, res, grid)

    def load(s, ses_, inp=metric.map):
        p = inp.path(gctx.out, s, ses_, res, **ents)
        return aligned_map(gctx, inp, inputs.load_map(p, grid), grid[1], s) if p.exists() else None

    maps = {s: load(s, ses) for s in subjects}
    mask = base.copy()
    cover = {"positive": lambda a: a > 0, "nonzero": lambda a: (a != 0) & np.isfinite(a)}.get(spec.mask.covered)
    for a in maps.values() if cover else ():
        mask &= cover(a)
    qc = inputs.qc_exclusions(gctx, spec.stage, ses)
    data.mask, data.affine, data.long_mask, data.session_map = mask, grid[1], base, load
    data.values = np.stack([maps[s][mask] for s in subjects]).astype(np.float64)
    data.long_subjects = [s for s in inputs.labels(study) if s not in qc]
    data.roi_maps = maps
    for r in rois:
        data.cluster_rois |= r.clusters
        data.regions.update(r.regions)
        data.long_regions.update(r.regions if r.longitudinal else {})
        if r.values is not None:
            data.roi_maps = {s: load(s, ses, r.values) for s in subjects}
    return data


def region_masks(regions: dict, mask: np.ndarray, affine) -> dict:
    """name -> 3D bool of each region (an atlas spec of :func:`hfsmri.spatial.atlas.region_mask` or a
    3D bool array) within ``mask``; regions off the atlas or the mask are left out."""
    from ..spatial.atlas import region_mask

    ref, out = nib.Nifti1Image(mask.astype(np.uint8), affine), {}
    for name, spec in regions.items():
        try:
            m = (np.asarray(spec, dtype=bool) if isinstance(spec, np.ndarray) else region_mask(spec, ref)) & mask
        except (ValueError, HfsmriError):
            continue
        if m.any():
            out[name] = m
    return out


def roi_means(maps: dict, subjects, rois: dict, k=None) -> pd.DataFrame:
    """participant x ROI mean map value (double precision); ``k``: element of a per-session pair."""
    return pd.DataFrame({n: {s: float((maps[s] if k is None else maps[s][k])[r].astype(np.float64).mean())
                             for s in subjects} for n, r in rois.items()})


# --------------------------------------------------------------------------- analyse
def run_metric(gctx, spec, data: MetricData, kept: list | None = None) -> dict:
    """Designs, inference, ROI tables and writing of one metric (see module doc); ``kept`` receives
    ``(metric, results, mask, affine)`` for a family over metrics."""
    out, st, eng = gctx.out, stats_of(gctx), engines(gctx)
    a, m = spec.name, data.name
    summary = {"n_subjects": len(data.subjects), "excluded": dict(data.excluded),
               "flipped": [s for s in data.subjects if gctx.study.flipped(s)]}
    table = data.table
    if data.values is not None:
        if int(data.mask.sum()) < 10:
            raise HfsmriError(f"{a}/{m}: fewer than 10 voxels are covered by every subject's map")
        write.save_mask(out, a, m, data.mask, data.affine)
        designs, note = designs_for(gctx.study, data.subjects, data.extra)
        if note:
            gctx.log.warning("%s/%s: clinical correlations skipped: %s", a, m, note)
        notes = []
        res = voxelwise_designs(gctx, designs, data.values, data.subjects, data.mask, data.affine, data.tfce, st, eng,
                                notes)
        if st["familywise"] != "none" and res:
            apply_family(res, "fwecontrasts", data.mask, data.affine, float(st["alpha"]))
            summary["familywise"] = {"scope": "contrasts", "n_tests": len(res), "alpha": float(st["alpha"])}
        write.results(out, a, m, res, data.mask, data.affine, data.sidecar)
        if kept is not None:
            kept.append((m, res, data.mask, data.affine))
        summary.update(n_mask_voxels=int(data.mask.sum()), n_cluster_rows=int(sum(len(r.clusters) for r in res)),
                       designs={k: len(d.subjects) for k, d in designs.items()})
        if notes:
            summary["notes"] = notes
        rois = region_masks(data.regions, data.mask, data.affine)
        if data.cluster_rois:
            rois.update(cluster_rois(res, data.mask, float(st["alpha"])))
        if rois:
            table = roi_means(data.roi_maps, data.subjects, rois)
    if table is not None and table.shape[1]:
        if len(table) < MIN_SUBJECTS:
            raise HfsmriError(f"{a}/{m}: only {len(table)} participants have ROI values; at least {MIN_SUBJECTS} "
                              "are needed")
        extra = None if data.extra is None else data.extra.loc[[s for s in table.index if s in data.extra.index]]
        r = roi_families(table, gctx.study, extra=extra, n_perm=roi_n_perm(st), alpha=float(st["alpha"]),
                         random_state=int(st["random_seed"]), harmonise=eng["harmonise"])
        write.roi_results(out, a, m, r)
        summary["n_rois"] = int(table.shape[1])
    if is_longitudinal(gctx.study):
        summary["longitudinal"] = run_longitudinal(gctx, spec, data, st, eng)
    write.summary(out, a, m, summary)
    return summary


def voxelwise_clinical_wanted(stats: dict, score: str) -> bool:
    """Whether ``stats.voxelwise_clinical`` (true / false / list of scores) asks for maps of ``score``."""
    vc = (stats or {}).get("voxelwise_clinical", True)
    return vc if isinstance(vc, bool) else score in set(vc)


def roi_n_perm(st: dict) -> int:
    """Permutations of the ROI tests: ``max(n_perm, roi_n_perm)`` (0 when ``n_perm`` is 0: parametric)."""
    st = {**STATS_DEFAULTS, **st}
    return 0 if int(st["n_perm"]) <= 0 else max(int(st["n_perm"]), int(st["roi_n_perm"]))


def voxelwise_designs(gctx, designs, Y, subjects, mask, affine, tfce_setting, st, eng, notes=None) -> list:
    """:func:`~hfsmri.stats.voxelwise.voxelwise` of every design (rows of ``Y`` in ``subjects``
    order); clinical maps only for the scores ``stats.voxelwise_clinical`` asks for, and only with
    at least ``stats.min_df_correlation`` residual df (else ROI correlations only; ``notes`` gets why)."""
    from ..stats.voxelwise import voxelwise

    st = {**STATS_DEFAULTS, **st}
    row, out = {s: i for i, s in enumerate(subjects)}, []
    for d in designs.values():
        score = next((clinical_score_of(c) for c in d.contrasts if clinical_score_of(c)), None)
        if score is not None and not voxelwise_clinical_wanted(st, score):
            gctx.log.info("voxel-wise correlation with %s skipped (stats.voxelwise_clinical)", score)
            continue
        df = len(d.subjects) - np.asarray(d.X).shape[1]
        if score is not None and df < int(st["min_df_correlation"]):
            template = ("voxel-wise correlation with %s not run: residual df = %d < %d (stats.min_df_correlation); "
                        "ROI correlations only")  # one template: the console collapses its repeats
            args = (score, df, int(st["min_df_correlation"]))
            msg = template % args
            gctx.log.warning(template, *args)
            if notes is not None:
                notes.append(msg)
            continue
        out += voxelwise(Y[[row[s] for s in d.subjects]], mask, d, affine=affine, n_perm=int(st["n_perm"]),
                         tfce=bool(st["tfce"]), alpha=float(st["alpha"]), cluster_forming_p=st["cluster_forming_p"],
                         random_state=int(st["random_seed"]), tfce_setting=tfce_setting,
                         min_cluster_voxels=int(st["min_cluster_voxels"]),
                         variance_smoothing_mm=float(st["variance_smoothing"]), **eng)
    return out


def roi_families(table: pd.DataFrame, study, **kw):
    """:func:`~hfsmri.stats.roi.roi_tests` of the a priori ROIs and, separately, of the cluster ROIs
    (names starting :data:`CLUSTER_ROI_PREFIX`): each set is its own multiple-comparison family
    (max-|t| FWE and BH FDR within the set), so clusters selected by the voxel-wise test neither
    loosen the FDR of the declared regions nor tighten their FWE. The rows carry ``roi_set``
    (:data:`ROI_SETS`); one :class:`~hfsmri.stats.roi.RoiResult` with both sets."""
    from ..stats.roi import RoiResult, roi_tests

    cl = [c for c in table.columns if str(c).startswith(CLUSTER_ROI_PREFIX)]
    parts = [(name, cols) for name, cols in (("a priori", [c for c in table.columns if c not in cl]),
                                             ("cluster", cl)) if cols]
    res = [(name, roi_tests(table[cols], study, **kw)) for name, cols in parts]
    if len(res) == 1 and res[0][0] == "a priori":
        r = res[0][1]
        r.rois.insert(1, "roi_set", "a priori")
        r.correlations.insert(1, "roi_set", "a priori")
        return r
    rois = pd.concat([r.rois.assign(roi_set=n) for n, r in res], ignore_index=True)
    corr = pd.concat([r.correlations.assign(roi_set=n) for n, r in res], ignore_index=True)
    for df in (rois, corr):
        df.insert(1, "roi_set", df.pop("roi_set"))
    values = res[0][1].values
    for _, r in res[1:]:
        values = values.merge(r.values, on="participant_id", how="outer")
    meta = dict(res[0][1].meta)
    meta["RoiSets"] = {n: ROI_SETS[n] for n, _ in res}
    return RoiResult(rois=rois, correlations=corr, values=values, meta=meta)


def cluster_rois(results, mask, alpha: float, n: int = 10) -> dict:
    """The ``n`` largest significant clusters of each group contrast (as written: float32 −log10 p),
    named ``cluster-<contrast>-<k>``."""
    from scipy import ndimage

    from ..stats.design import group_contrast

    rois = {}
    for r in results:
        if r.contrast not in (group_contrast(1), group_contrast(-1)):
            continue
        logp = np.zeros(mask.shape, np.float32)
        logp[mask] = r.logp["fwe"]
        lab, k = ndimage.label((logp.astype(np.float64) > -np.log10(alpha)) & mask)
        if k:
            sizes = ndimage.sum(lab > 0, lab, index=np.arange(1, k + 1))
            for j, i in enumerate(np.argsort(-sizes)[:n], start=1):
                rois[f"{CLUSTER_ROI_PREFIX}{r.contrast}-{j}"] = lab == (i + 1)
    return rois


# --------------------------------------------------------------------------- longitudinal
def run_longitudinal(gctx, spec, data: MetricData, st, eng) -> dict:
    """Longitudinal designs of one metric (per-subject change follow-up − baseline); never raises
    an :class:`HfsmriError` (recorded as ``{"error": ...}``)."""
    a, m, study, out = spec.name, data.name, gctx.study, gctx.out
    st = {**STATS_DEFAULTS, **{k: v for k, v in (st or {}).items() if v is not None}}  # callers may pass a partial dict
    if not is_longitudinal(study):
        return {}
    try:
        pre, post = session_pair(study)
        candidates = data.long_subjects if data.long_subjects is not None else inputs.labels(study)
        summary = {"sessions": [pre, post]}
        tables = None
        if data.session_map is not None:
            maps, subjects = {}, []
            for s in candidates:
                pair = (data.session_map(s, pre), data.session_map(s, post))
                if pair[0] is not None and pair[1] is not None:
                    maps[s] = pair
                    subjects.append(s)
            if len(subjects) < 2:
                return {"skipped": f"{len(subjects)} subject(s) with maps at both {pre} and {post}"}
            mask = data.long_mask.copy()
            for pair in maps.values():
                for arr in pair:
                    mask &= np.isfinite(arr) & (arr != 0)
            if mask.sum() < 10:
                return {"skipped": "fewer than 10 voxels covered by every map of both sessions"}
            write.save_mask(out, a, m, mask, data.affine, kind="mask_longitudinal")
            delta = {s: maps[s][1][mask].astype(np.float64) - maps[s][0][mask].astype(np.float64) for s in subjects}
            designs, _ = designs_for(study, subjects, longitudinal=True)
            side = {**data.sidecar, **data.long_sidecar, "Sessions": [pre, post],
                    "Flipped": [s for s in subjects if study.flipped(s)]}
            side.pop("Session", None)
            res, per_design = [], []
            for name, d in designs.items():
                res_d = voxelwise_designs(gctx, {name: d}, np.stack([delta[s] for s in d.subjects]), d.subjects,
                                          mask, data.affine, data.tfce, st, eng)
                per_design.append((name, d, res_d))
                res += res_d
            if st["familywise"] != "none" and res:
                apply_family(res, "fwecontrasts", mask, data.affine, float(st["alpha"]))
                summary["familywise"] = {"scope": "contrasts", "n_tests": len(res), "alpha": float(st["alpha"])}
            for name, d, res_d in per_design:
                write.results(out, a, m, res_d, mask, data.affine,
                              {**side, "Longitudinal": {"design": name, **d.info}})
            summary.update(n_subjects=len(subjects), n_mask_voxels=int(mask.sum()),
                           designs={k: {"n": len(d.subjects), "contrasts": list(d.contrasts)}
                                    for k, d in designs.items()},
                           n_cluster_rows=int(sum(len(r.clusters) for r in res)))
            if data.long_regions:
                rois = region_masks(data.long_regions, mask, data.affine)
                tables = {ses: roi_means(maps, subjects, rois, k) for k, ses in enumerate((pre, post))}
        elif data.session_row is not None:
            rows = {(s, ses): data.session_row(s, ses) for s in candidates for ses in (pre, post)}
            tables = {ses: pd.DataFrame({s: rows[(s, ses)] for s in candidates if rows[(s, ses)] is not None}).T
                      for ses in (pre, post)}
        if tables is not None:
            summary["rois"] = _long_roi(gctx, a, m, tables, pre, post, st)
        write.summary(out, a, m, summary, kind="summary_longitudinal")
        return summary
    except HfsmriError as exc:
        gctx.log.warning("%s/%s: longitudinal analysis skipped: %s", a, m, exc)
        return {"error": str(exc)}


def _long_roi(gctx, a, m, tables: dict, pre, post, st) -> dict:
    from ..stats.roi import longitudinal_roi_tests

    df = longitudinal_roi_tests(tables, gctx.study, n_perm=roi_n_perm(st), random_state=int(st["random_seed"]))
    if not df.attrs["n_rois"]:
        return {"skipped": "no ROI with values at both sessions"}
    if len(df):
        write.save(gctx.out.group_path(a, m, kind="rois_longitudinal"), df)
    return {"sessions": [pre, post], "n_rois": df.attrs["n_rois"], "n_rows": int(len(df))}
