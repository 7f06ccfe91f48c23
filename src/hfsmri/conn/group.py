"""Connectivity at the group level: the ``derive`` hooks of :mod:`hfsmri.analyses`.

* :func:`seed_metrics`: one metric ``seed-<name>`` per seed (``amygdalaIpsi`` with ``flip_to``), ROI
  pairs with the review's targets (:data:`hfsmri.analyses.SEED_TARGETS`) on the unsmoothed maps;
* :func:`ica_metrics`: group ICA of the side-aligned cleaned BOLD (``ica/components.nii.gz``,
  ``components.tsv``), one metric ``ic-<k>`` per component (dual-regression stage-2 maps in the
  component mask; follow-ups regressed on the baseline components);
* :func:`graph_metrics`: the global and nodal AUC tables (nodes of flipped participants mirrored,
  :func:`hfsmri.spatial.flip.mirror_permutation`), plus the cross-sectional edge-wise tests and
  network-based statistic (``graph/edges``, ``graph/nbs``).
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from hfsmri.analyses import (FUNC_BOLD, SEED_MAP, SEED_RAW, SEED_TARGET_REGIONS, SEED_TARGETS, MetricSpec,
                             RoiSet)
from hfsmri.conn.participant import conn_path
from hfsmri.derivatives import read_derivative, sidecar_path
from hfsmri.errors import InputDataError
from hfsmri.spatial.flip import flip_array_x, mirror_permutation


# ---------------------------------------------------------------------------- seed FC
def pair_targets(seed_name: str, seed_base: str, flip_to) -> dict[str, str]:
    """Column name -> region spec of a seed's ROI-to-ROI pairs (each target on both sides, named
    Ipsi/Contra when ``flip_to`` is set)."""
    side = {h: h if not flip_to else ("Ipsi" if h == flip_to else "Contra") for h in "LR"}
    return {f"{seed_name}-{t}{side[h]}": SEED_TARGET_REGIONS[t].format(h=h)
            for t in SEED_TARGETS.get(seed_base, ()) for h in "LR"}


def seed_metrics(gctx, spec, params) -> list:
    """The metrics of ``seed_fc``: one per configured seed (:mod:`hfsmri.conn.seeds`)."""
    from hfsmri.conn.seeds import aligned_name, resolve_seeds

    flip_to = str(gctx.study.flip_to).upper() if getattr(gctx.study, "flip_to", None) else None
    out = []
    for seed in resolve_seeds(params.get("seeds") or (), params.get("spheres") or {}, where=f"analyses.{spec.name}"):
        name = aligned_name(seed, flip_to)
        targets = pair_targets(name, seed.base, flip_to)
        out.append(MetricSpec(f"seed-{name}", SEED_MAP, entities={"seed": name},
                              rois=(RoiSet(targets, values=SEED_RAW, longitudinal=False),) if targets else (),
                              sidecar={"Seed": name, "SeedRegion": seed.description,
                                       "Input": "desc-fisherzsmooth_boldmap",
                                       "AffectedSideNaming": f"Ipsi = {flip_to}" if flip_to else None}))
    return out


# ---------------------------------------------------------------------------- ICA
def _bold(gctx, sub, ses, res, grid, what="cleaned BOLD") -> np.ndarray:
    """A participant's cleaned BOLD (float32), side-aligned; on another grid an InputDataError."""
    p = FUNC_BOLD.path(gctx.out, sub, ses, res)
    img = read_derivative(p)  # integrity checked, read completely; a damaged file is an error naming it
    if img.ndim != 4:
        raise InputDataError(f"{what} is {img.ndim}D; a 4D series is expected", path=p)
    if img.shape[:3] != tuple(grid[0]) or not np.allclose(img.affine, grid[1], atol=1e-3):
        raise InputDataError(f"cleaned BOLD grid {img.shape[:3]} differs from the group ICA grid {tuple(grid[0])} "
                             "(same MNI resolution expected at every session)", path=p)
    arr = np.asarray(img.dataobj, dtype=np.float32)
    return flip_array_x(arr, img.affine) if gctx.study.flipped(sub) else arr


def dual_regression_session(gctx, subjects, ses, res, used, affine, maps, vn) -> dict:
    """Dual regression of each participant's cleaned BOLD at session ``ses`` on the group maps
    (K, V over the 3D ``used`` voxels): participant -> (K, V) float32 stage-2 maps; participants
    without that session's BOLD are left out."""
    from hfsmri.conn.dual_regression import dual_regression

    out = {}
    for s in subjects:
        if not FUNC_BOLD.path(gctx.out, s, ses, res).exists():
            continue
        arr = _bold(gctx, s, ses, res, (used.shape, affine))
        try:
            _, smap = dual_regression(arr[used].T, maps, variance_normalise=vn)
        except InputDataError as exc:
            raise InputDataError(f"dual regression: {exc}", path=FUNC_BOLD.path(gctx.out, s, ses, res)) from None
        out[s] = smap.astype(np.float32)
    return out


def ica_metrics(gctx, spec, params) -> list:
    """The ``derive`` hook of ``ica`` (see module doc)."""
    import tempfile

    import nibabel as nib

    from hfsmri.conn.ica import component_mask, group_ica, label_components, network_reference
    from hfsmri.group import inputs, write
    from hfsmri.group.runner import MetricData, _base_mask, baseline, resolution
    from hfsmri.spatial.templates import template_grid

    study, out = gctx.study, gctx.out
    res, ses, vn = resolution(gctx, FUNC_BOLD.res), baseline(study), bool(params["variance_normalise"])
    grid = template_grid(res)
    kept = inputs.select(gctx, spec.stage, spec.needs, [], (), ses, res)
    if not kept.included:
        raise InputDataError("no subject has a func brain mask (did the func participant stage run?)")
    mask = _base_mask(gctx, spec.mask, kept.included, ses, res, grid)
    subjects = [s for s in kept.included if FUNC_BOLD.path(out, s, ses, res).exists()]
    if len(subjects) < 4:
        raise InputDataError(f"group ICA needs at least 4 subjects with cleaned BOLD, found {len(subjects)}")
    # default folder: the group job's private temporary folder in <WORK_DIR>/tmp (hfsmri.scratch),
    # removed at the next start if a killed run leaves it
    with tempfile.TemporaryDirectory(prefix="hfsmri-ica-") as tmp:
        paths = [str(FUNC_BOLD.path(out, s, ses, res)) for s in subjects]
        for i, s in enumerate(subjects):
            if study.flipped(s):   # the aligned copy, uncompressed scratch
                img = nib.load(paths[i])
                paths[i] = str(Path(tmp) / f"sub-{s}_flipped_bold.nii")
                nib.save(nib.Nifti1Image(_bold(gctx, s, ses, res, grid), img.affine, img.header), paths[i])
        maps, used = group_ica(paths, nib.Nifti1Image(mask.astype(np.uint8), grid[1]),
                               n_components=int(params["n_components"]), random_state=int(gctx.seed),
                               n_init=int(params["n_init"]))
    labels = label_components(maps, network_reference(used, grid[1]))
    comp = np.zeros(used.shape + (maps.shape[0],), dtype=np.float32)
    comp[used] = maps.T
    write.save(out.group_path(spec.name, kind="ica_maps"), nib.Nifti1Image(comp, grid[1]))
    write.save(out.group_path(spec.name, kind="ica_labels"), labels.reset_index())
    stage2 = {ses: dual_regression_session(gctx, subjects, ses, res, used, grid[1], maps, vn)}

    def session_map(s, ses_, j):   # follow-ups: dual regression against the baseline components
        if ses_ not in stage2:
            stage2[ses_] = dual_regression_session(gctx, subjects, ses_, res, used, grid[1], maps, vn)
        if s not in stage2[ses_]:
            return None
        vol = np.zeros(used.shape, dtype=np.float32)
        vol[used] = stage2[ses_][s][j]
        return vol

    data = []
    for j in range(maps.shape[0]):
        cm_vec = component_mask(maps[j])
        if cm_vec.sum() < 10:
            continue
        cm = np.zeros(used.shape, bool)
        cm[used] = cm_vec
        side = {"Component": j + 1, "Network": labels.loc[j + 1, "network"],
                "NetworkMatchR": float(labels.loc[j + 1, "match_r"]), "ComponentMask": "group component z > 2.3",
                "Input": "dual regression stage-2 maps" + (" (variance-normalised time courses)" if vn else "")}
        data.append(MetricData(
            f"ic-{j + 1}", subjects, kept.excluded, mask=cm, affine=grid[1],
            values=np.stack([stage2[ses][s][j, cm_vec] for s in subjects]).astype(np.float64),
            sidecar={"Analysis": spec.name, "Session": ses, **side}, session_map=partial(session_map, j=j),
            long_subjects=subjects, long_mask=cm,
            long_sidecar={"ComponentsSession": ses,
                          "Input": side["Input"] + ", each session against the baseline group components"}))
    return data


# ---------------------------------------------------------------------------- graph
def graph_tables(gctx, sub, ses, atlas, mat_kind, names, perm) -> tuple[pd.Series, pd.DataFrame]:
    """One participant's graph AUC tables at one session, side-aligned: the global AUC row (one
    entry per metric) and the nodal AUC table (index ``names``, one column per nodal metric; for a
    flipped participant each node's row is its mirror partner's, ``perm``)."""
    from hfsmri.graph.metrics import NODAL_COLUMNS
    from hfsmri.group.inputs import read_table

    gp = conn_path(gctx.out, sub, ses, atlas, mat_kind, "graphauc")
    g = read_table(gp, "global graph AUC")
    if len(g) == 0:
        raise InputDataError("the global graph AUC table has no row", path=gp)
    npth = conn_path(gctx.out, sub, ses, atlas, mat_kind, "graphnodalauc")
    nd = read_table(npth, "nodal graph AUC")
    miss = [c for c in ("node", *NODAL_COLUMNS) if c not in nd.columns]
    if miss:
        raise InputDataError(f"missing column(s) {', '.join(miss)}", path=npth)
    nd = nd.set_index("node")
    nd.index = nd.index.astype(str)
    absent = [n for n in names if n not in nd.index]
    if absent:
        raise InputDataError(f"{len(absent)} node(s) of the atlas are missing (e.g. {absent[0]})", path=npth)
    nd = nd.loc[list(names)]
    if gctx.study.flipped(sub):
        nd = nd.iloc[perm]
        nd.index = list(names)
    return g.iloc[0], nd


def graph_metrics(gctx, spec, params) -> list:
    """The ``derive`` hook of ``graph`` (see module doc)."""
    from hfsmri.graph.metrics import NODAL_COLUMNS
    from hfsmri.group import inputs
    from hfsmri.group.runner import MetricData, baseline

    study, ses = gctx.study, baseline(gctx.study)
    atlas, kind = str(params["atlas"]), str(params["kind"]).lower()
    mat_kind = "pearson" if kind == "tangent" else kind
    qc = inputs.qc_exclusions(gctx, spec.stage, ses)
    subjects = [s for s in inputs.labels(study) if s not in qc
                and conn_path(gctx.out, s, ses, atlas, mat_kind, "graphauc").exists()]
    if len(subjects) < 4:
        raise InputDataError(f"only {len(subjects)} subjects have graph results for atlas {atlas}")
    ts0 = conn_path(gctx.out, subjects[0], ses, atlas, mat_kind, "timeseries")
    names = list(read_derivative(ts0, nrows=0).columns)
    try:   # the nodes' MNI centres (sidecar of the time series) pair nodes without L/R names
        coords = np.asarray(json.loads(sidecar_path(ts0).read_text()).get("NodeCoordinatesMNI"), float)
    except Exception:
        coords = None
    perm = mirror_permutation(names, coords)
    tables = {s: graph_tables(gctx, s, ses, atlas, mat_kind, names, perm) for s in subjects}
    cache: dict = {}

    def row(sub, ses_, folder, cols):
        if sub in qc:
            return None
        if (sub, ses_) not in cache:
            have = all(conn_path(gctx.out, sub, ses_, atlas, mat_kind, w).exists()
                       for w in ("graphauc", "graphnodalauc"))
            cache[(sub, ses_)] = graph_tables(gctx, sub, ses_, atlas, mat_kind, names, perm) if have else None
        t = cache[(sub, ses_)]
        return None if t is None else pd.to_numeric((t[0] if folder == "global" else t[1][folder]).reindex(cols),
                                                    errors="coerce")

    gtab = pd.DataFrame({s: t[0] for s, t in tables.items()}).T
    folders = {"global": gtab[[c for c in gtab.columns if gtab[c].notna().all()]].astype(float)}
    for m in NODAL_COLUMNS:
        tab = pd.DataFrame({s: t[1][m] for s, t in tables.items()}).T
        tab = tab.loc[:, tab.notna().all() & (tab.std() > 0)]
        if tab.shape[1]:
            folders[m] = tab.astype(float)
    edge_tests(gctx, spec, params, subjects, names, perm, kind, mat_kind)
    return [MetricData(f, subjects, dict(qc), table=t, sidecar={"Analysis": spec.name, "Metric": f},
                       session_row=lambda s, x, f=f, c=list(t.columns): row(s, x, f, c))
            for f, t in folders.items()]


def edge_tests(gctx, spec, params, subjects, names0, perm, kind, mat_kind) -> None:
    """Edge-wise GLM (FDR) and network-based statistic of the group contrasts (cross-sectional)."""
    from hfsmri.conn.connectome import tangent_matrices, upper_triangle
    from hfsmri.graph.nbs import edge_statistics, nbs
    from hfsmri.group import write
    from hfsmri.group.runner import baseline, stats_of
    from hfsmri.stats.design import design_from_study, group_contrast

    study, out, ses, atlas = gctx.study, gctx.out, baseline(gctx.study), str(params["atlas"])
    mats, tss = [], []
    for s in subjects:
        fl = study.flipped(s)
        z = read_derivative(conn_path(out, s, ses, atlas, mat_kind, "relmat"), index_col=0).to_numpy(float)
        mats.append(z[np.ix_(perm, perm)] if fl else z)
        if kind == "tangent":
            ts = read_derivative(conn_path(out, s, ses, atlas, mat_kind, "timeseries"))[names0].to_numpy(float)
            tss.append(ts[:, perm] if fl else ts)
    if kind == "tangent":
        good = np.all(np.isfinite(np.stack(tss)), axis=(0, 1)) & np.all(np.stack(tss).std(axis=1) > 0, axis=0)
        mats = tangent_matrices([t[:, good] for t in tss])
        names = [n for n, g in zip(names0, good) if g]
    else:
        stack = np.stack(mats)
        off = ~np.eye(stack.shape[1], dtype=bool)
        node_ok = np.array([np.all(np.isfinite(stack[:, i, off[i]])) for i in range(stack.shape[1])])
        mats = [m[np.ix_(node_ok, node_ok)] for m in stack]
        names = [n for n, g in zip(names0, node_ok) if g]
    Y = upper_triangle(np.stack(mats))
    design = design_from_study(study, subjects)
    st = stats_of(gctx)
    n_perm, seed, thr = int(st["n_perm"]), int(st["random_seed"]), float(params["nbs_threshold"])
    meta = {"Atlas": atlas, "Measure": kind, "Nodes": names, "Design": design.to_dict(),
            "FlippedSubjects": list(design.flipped)}
    for c in (group_contrast(1), group_contrast(-1)):
        cvec = design.contrasts[c]
        write.save(out.group_path(spec.name, "edges", c, "edges"),
                         edge_statistics(Y, design.X, cvec, node_names=names),
                         {**meta, "Description": "edge-wise GLM t (one-sided in the contrast direction), "
                          "parametric p, Benjamini-Hochberg q over all edges"})
        r = nbs(Y, design.X, cvec, threshold=thr, n_perm=n_perm, random_state=seed, node_names=names)
        write.save(out.group_path(spec.name, "nbs", c, "components"), r.components,
                         {**meta, "Description": "network-based statistic (Zalesky 2010): components of edges with "
                          "t > threshold, size = number of edges, FWE p from Freedman-Lane permutations",
                          "Threshold": thr, "NPermutations": n_perm, "RandomSeed": seed})
        write.save(out.group_path(spec.name, "nbs", c, "edges"), r.edges)
