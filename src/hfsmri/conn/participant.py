"""Participant stage of functional connectivity: seed FC maps, ROI connectome, graph metrics.

Input (written by the func stage, :mod:`hfsmri.func.participant`):
``sub-X[_ses-Y]_task-rest_space-MNI152NLin2009aSym_res-<r>_desc-clean_bold.nii.gz`` and
``..._desc-brain_mask.nii.gz`` in ``func/`` (``r`` = ``preprocessing.func.resolution``).

Outputs in ``sub-X/[ses-Y/]func/`` (all with ``task-rest``):

* ``seed_fc``: per seed ``..._res-<r>_seed-<name>_desc-fisherz_boldmap.nii.gz`` (Fisher z of the
  Pearson correlation with the seed's mean time course; the contract's ``_seed-<name>_desc-fisherz``)
  and ``..._desc-fisherzsmooth_boldmap.nii.gz`` (Gaussian ``seed_fc.fwhm`` mm inside the mask; the
  group analysis uses it). Suffix ``boldmap``: BEP012 (functional derivatives) has no settled suffix
  for seed-correlation maps, we use its generic map suffix; the JSON sidecar names the seed region,
  its voxel count and the method.
* ``graph``: ``..._atlas-<a>_timeseries.tsv`` (ROI mean time courses, BEP017 naming),
  ``..._atlas-<a>_meas-<kind>_desc-fisherz_relmat.tsv`` (Fisher z connectivity matrix, node names
  as header and first column), ``..._atlas-<a>_meas-<kind>_desc-graphglobal_stats.tsv`` (one row per
  sparsity), ``desc-graphnodal_stats.tsv`` (sparsity x node), ``desc-graphauc_stats.tsv`` (AUC of
  the global metrics) and ``desc-graphnodalauc_stats.tsv`` (node x nodal-metric AUC).
* ``ica`` has no participant output (group ICA needs all subjects).

Affected-side alignment: outputs are in the subject's native (unflipped) orientation, as all func
outputs; the group stage mirrors flipped subjects. Seed *names* follow the study's ``flip_to``
(``amygdalaIpsi``/``amygdalaContra``, :func:`hfsmri.conn.seeds.aligned_name`), and for a flipped
subject the ``Ipsi`` seed is the mirror image (x -> -x) of the ``flip_to``-side region, so that
after the group-level flip every subject's Ipsi seed is the same region on the ``flip_to`` side.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from hfsmri.analyses import DEFAULTS, PREPROCESSING_DEFAULTS
from hfsmri.errors import InputDataError
from hfsmri.spatial.templates import TEMPLATE_SPACE

TASK = "rest"
ANALYSES = ("seed_fc", "graph", "ica")


def params_for(analyses: dict | None, name: str) -> dict:
    """Analysis parameters with the registry defaults filled in."""
    p = dict(DEFAULTS.get(name, {}))
    p.update(((analyses or {}).get(name) or {}))
    return p


def func_resolution(preprocessing: dict | None):
    fp = dict(PREPROCESSING_DEFAULTS["func"])
    fp.update(((preprocessing or {}).get("func") or {}))
    r = float(fp["resolution"])
    return int(r) if r.is_integer() else r


def sparsities(p: dict) -> np.ndarray:
    lo, hi, step = float(p["sparsity_min"]), float(p["sparsity_max"]), float(p["sparsity_step"])
    if not (0 < lo <= hi <= 1) or step <= 0:
        from hfsmri.errors import StudyError

        raise StudyError(f"sparsity range {lo}..{hi} step {step} is invalid (need 0 < min <= max <= 1, step > 0)",
                         field="graph.sparsity_min/max/step")
    n = int(np.floor((hi - lo) / step + 1e-9)) + 1
    return np.round(lo + step * np.arange(n), 6)


def input_paths(out, sub, ses, res) -> tuple[Path, Path]:
    bold = out.path(sub, ses, "func", "bold", space=TEMPLATE_SPACE, res=res, entities={"task": TASK, "desc": "clean"})
    mask = out.path(sub, ses, "func", "mask", space=TEMPLATE_SPACE, res=res, entities={"task": TASK, "desc": "brain"})
    return bold, mask


def seed_map_path(out, sub, ses, res, name, smooth=False) -> Path:
    return out.path(sub, ses, "func", "boldmap", space=TEMPLATE_SPACE, res=res,
                    entities={"task": TASK, "seed": name, "desc": "fisherzsmooth" if smooth else "fisherz"})


def conn_path(out, sub, ses, atlas, kind, what) -> Path:
    """Connectome/graph table paths: what in {timeseries, relmat, graphglobal, graphnodal, graphauc,
    graphnodalauc}."""
    atlas_ent = atlas_entity(atlas)
    if what == "timeseries":
        return out.path(sub, ses, "func", "timeseries", space=TEMPLATE_SPACE,
                        entities={"task": TASK, "atlas": atlas_ent}, ext=".tsv")
    if what == "relmat":
        return out.path(sub, ses, "func", "relmat", space=TEMPLATE_SPACE,
                        entities={"task": TASK, "atlas": atlas_ent, "meas": kind, "desc": "fisherz"}, ext=".tsv")
    return out.path(sub, ses, "func", "stats", space=TEMPLATE_SPACE,
                    entities={"task": TASK, "atlas": atlas_ent, "meas": kind, "desc": what}, ext=".tsv")


def atlas_entity(atlas: str) -> str:
    s = str(atlas)
    if s.endswith((".nii", ".nii.gz")):
        s = Path(s).name.split(".")[0]
    return "".join(ch for ch in s if ch.isalnum()) or "user"


def flip_to_of(ctx) -> str | None:
    """The study's ``flip_to`` (R/L) from the context, or None (no affected-side alignment)."""
    return str(ctx.flip_to).upper() if ctx.flip_to else None


def _load_inputs(ctx, res):
    bold_p = Path(ctx.func.clean_bold) if ctx.func.clean_bold else None
    mask_p = Path(ctx.func.brain_mask) if ctx.func.brain_mask else None
    dbold, dmask = input_paths(ctx.out, ctx.subject, ctx.session, res)
    bold_p = bold_p or dbold
    mask_p = mask_p or dmask
    for p in (bold_p, mask_p):
        if not Path(p).exists():
            raise InputDataError("cleaned BOLD / brain mask from the func stage not found (did the func stage run?)",
                                 path=p)
    return bold_p, mask_p


def run(ctx) -> dict:
    """Connectivity participant stage (see module doc). Returns a JSON-serialisable summary."""
    requested = [a for a in ANALYSES if a in (ctx.analyses or {})]
    todo = [a for a in requested if a != "ica"]
    summary: dict = {}
    if not todo:
        return {"note": "group ICA runs at group level"} if requested else {}
    res = func_resolution(getattr(ctx, "preprocessing", None))
    bold_p, mask_p = _load_inputs(ctx, res)
    img = nib.load(str(bold_p))
    mask_img = nib.load(str(mask_p))
    mask = np.asarray(mask_img.dataobj) > 0
    if img.ndim != 4 or img.shape[:3] != mask.shape:
        raise InputDataError(f"cleaned BOLD shape {img.shape} does not match its mask {mask.shape}", path=bold_p)
    data = None

    def get_data():
        nonlocal data
        if data is None:
            data = np.asarray(img.dataobj, dtype=np.float32)
        return data

    inputs = [bold_p, mask_p]
    flip_to = flip_to_of(ctx)
    if "seed_fc" in todo:
        summary["seed_fc"] = _seed_fc(ctx, get_data, img, mask, res, inputs, flip_to)
    if "graph" in todo:
        summary["graph"] = _graph(ctx, get_data, img, mask, res, inputs)
    if "ica" in requested:
        summary["ica"] = {"note": "group ICA runs at group level"}
    return summary


# ---------------------------------------------------------------------------- seed FC
def subject_seeds(p: dict, flip_to, flipped: bool):
    """[(output name, Seed used on this subject's native grid)] for the configured seeds."""
    from hfsmri.conn.seeds import Seed, aligned_name, resolve_seeds

    out = []
    for s in resolve_seeds(p.get("seeds") or (), p.get("spheres") or {}, where="analyses.seed_fc"):
        name = aligned_name(s, flip_to)
        if flipped and flip_to:
            spec = s.spec
            if isinstance(spec, dict):
                spec = {"sphere": [-float(spec["sphere"][0])] + [float(v) for v in spec["sphere"][1:]],
                        "radius": spec["radius"]}
                s = Seed(s.name, spec, s.hemisphere, s.description + " (mirrored x -> -x: flipped subject)")
            else:
                s = Seed(s.name, ("mirror", spec), s.hemisphere, s.description + " (mirrored x -> -x: flipped subject)")
        out.append((name, s))
    return out


def _seed_mask(seed, img, mask):
    from hfsmri.conn.seeds import seed_masks
    from hfsmri.spatial.flip import flip_array_x

    if isinstance(seed.spec, tuple) and seed.spec and seed.spec[0] == "mirror":
        from hfsmri.conn.seeds import Seed

        base = Seed(seed.name, seed.spec[1], seed.hemisphere, seed.description)
        m = seed_masks([base], img, np.ones(mask.shape, bool), where="analyses.seed_fc")[seed.name]
        m = flip_array_x(m, img.affine) & mask
        if not m.any():
            from hfsmri.errors import StudyError

            raise StudyError(f"mirrored seed {seed.name} has no in-brain voxel", field="analyses.seed_fc.seeds")
        return m
    return seed_masks([seed], img, mask, where="analyses.seed_fc")[seed.name]


def _seed_fc(ctx, get_data, img, mask, res, inputs, flip_to) -> dict:
    from hfsmri.conn.seedfc import seed_fc_maps
    from hfsmri.func.maps import smooth_in_mask

    p = params_for(ctx.analyses, "seed_fc")
    fwhm = float(p.get("fwhm", 6.0) or 0.0)
    seeds = subject_seeds(p, flip_to, bool(ctx.flip))
    params = {"seeds": [[n, repr(s.spec)] for n, s in seeds], "fwhm": fwhm, "flip_to": flip_to,
              "flipped": bool(ctx.flip), "method": "pearson-fisherz-v1"}
    out = ctx.out
    sub, ses = ctx.subject, ctx.session
    paths = {n: (seed_map_path(out, sub, ses, res, n), seed_map_path(out, sub, ses, res, n, smooth=True))
             for n, _ in seeds}
    if all(out.is_done(pp, inputs, params) for pair in paths.values() for pp in pair):
        return {"seeds": list(paths), "skipped": True}
    masks = {n: _seed_mask(s, img, mask) for n, s in seeds}
    maps = seed_fc_maps(get_data(), mask, masks)
    vox = np.abs(np.diag(img.affine)[:3])
    info = {}
    for n, s in seeds:
        z = maps[n]
        meta = {"Description": "Fisher z (arctanh, r clipped to +-(1-1e-7)) of the Pearson correlation between each "
                "voxel's cleaned BOLD and the seed's mean time course",
                "Seed": n, "SeedRegion": s.description, "SeedSpec": repr(s.spec), "SeedVoxels": int(masks[n].sum()),
                "AffectedSideNaming": f"Ipsi = {flip_to} side (flip_to)" if flip_to else None,
                "SubjectFlippedAtGroupLevel": bool(ctx.flip), "Space": TEMPLATE_SPACE, "TaskName": TASK}
        raw_p, sm_p = paths[n]
        out.save_nifti(nib.Nifti1Image(z.astype(np.float32), img.affine), raw_p, sidecar=meta,
                       inputs=inputs, params=params)
        zs = smooth_in_mask(z, mask, fwhm, vox).astype(np.float32)
        out.save_nifti(nib.Nifti1Image(zs, img.affine), sm_p, sidecar={**meta, "SmoothingFWHMmm": fwhm},
                       inputs=inputs, params=params)
        info[n] = {"voxels": int(masks[n].sum()), "mean_z": float(z[mask].mean())}
    return {"seeds": info}


# ---------------------------------------------------------------------------- connectome + graph
def _graph(ctx, get_data, img, mask, res, inputs) -> dict:
    from hfsmri.conn.connectome import (correlation_matrix, fisher_z_matrix, load_rois, matrix_frame,
                                        roi_timeseries)
    from hfsmri.graph.metrics import graph_analysis, graph_auc, nodal_auc

    p = params_for(ctx.analyses, "graph")
    kind = str(p.get("kind", "pearson")).lower()
    if kind not in ("pearson", "partial", "tangent"):
        from hfsmri.errors import StudyError

        raise StudyError(f"unknown connectivity kind {kind!r}: pearson, partial or tangent", field="graph.kind")
    mat_kind = "pearson" if kind == "tangent" else kind  # tangent is a group-level measure
    sp = sparsities(p)
    weighted = bool(p.get("weighted", False))
    atlas = str(p.get("atlas", "aal"))
    params = {"atlas": atlas, "kind": mat_kind, "sparsities": sp.tolist(), "weighted": weighted,
              "n_random": int(p.get("n_random", 20)), "seed": int(ctx.seed), "method": "graph-v1"}
    out = ctx.out
    sub, ses = ctx.subject, ctx.session
    names = ("timeseries", "relmat", "graphglobal", "graphnodal", "graphauc", "graphnodalauc")
    paths = {w: conn_path(out, sub, ses, atlas, mat_kind, w) for w in names}
    if all(out.is_done(pp, inputs, params) for pp in paths.values()):
        return {"atlas": atlas, "skipped": True}
    rois = load_rois(atlas, img, mask, p.get("atlas_labels"))
    ts = roi_timeseries(get_data(), mask, rois)
    missing = [n for n, m in zip(rois.names, rois.members) if m.size == 0]
    if len(missing) == rois.n:
        raise InputDataError(f"no ROI of atlas {atlas} overlaps the brain mask", path=inputs[1])
    ts_df = pd.DataFrame(ts, columns=rois.names)
    meta = {"Atlas": atlas, "Nodes": rois.n, "EmptyNodes": missing, "TaskName": TASK,
            "NodeCoordinatesMNI": np.round(rois.coords, 2).tolist()}
    out.save_tsv(ts_df, paths["timeseries"], inputs=inputs, params=params,
                 sidecar={**meta, "Description": "mean cleaned BOLD per ROI (in-mask voxels)"})
    z = fisher_z_matrix(correlation_matrix(ts, mat_kind))
    out.save_tsv(matrix_frame(z, rois.names), paths["relmat"], inputs=inputs, params=params, index=True,
                 sidecar={**meta, "Description": f"Fisher z of the {mat_kind} correlation matrix, diagonal 0, "
                          "NaN for empty ROIs", "Measure": mat_kind})
    zg = np.nan_to_num(z, nan=0.0)  # empty ROIs become isolated nodes
    gdf, ndf = graph_analysis(zg, sp, weighted=weighted, n_random=int(p.get("n_random", 20)),
                              random_state=int(ctx.seed), node_names=rois.names)
    gmeta = {**meta, "Weighted": weighted, "Sparsities": sp.tolist(), "NRandom": int(p.get("n_random", 20)),
             "Conventions": "hfsmri.graph.metrics (networkx definitions; see docs/connectivity.md)"}
    out.save_tsv(gdf.reset_index(), paths["graphglobal"], inputs=inputs, params=params,
                 sidecar={**gmeta, "Description": "global graph metrics per sparsity"})
    out.save_tsv(ndf.reset_index(), paths["graphnodal"], inputs=inputs, params=params,
                 sidecar={**gmeta, "Description": "nodal graph metrics per sparsity and node"})
    auc = graph_auc(gdf)
    out.save_tsv(auc.to_frame().T, paths["graphauc"], inputs=inputs, params=params,
                 sidecar={**gmeta, "Description": "area under the curve (trapezoid over sparsity) of each global metric"})
    nauc = nodal_auc(ndf)
    out.save_tsv(nauc.reset_index(), paths["graphnodalauc"], inputs=inputs, params=params,
                 sidecar={**gmeta, "Description": "per node, area under that node's metric curve over sparsity"})
    return {"atlas": atlas, "nodes": rois.n, "empty_nodes": len(missing),
            "auc": {k: (None if not np.isfinite(v) else float(v)) for k, v in auc.items()}}
