"""Group stage of functional connectivity: seed FC, ROI pairs, group ICA + dual regression, graph.

Results (``OUTPUT_DIR/group/<analysis>/<metric>/``):

* ``seed_fc/seed-<name>/``: voxel-wise permutation GLM of the smoothed Fisher-z maps
  (:func:`hfsmri.stats.group_analysis.voxelwise_group`: patient vs control with the study
  covariates, and the clinical correlations within patients; TFCE FWE), plus ``rois.tsv`` /
  ``correlations.tsv`` of the review's ROI-to-ROI pairs (:data:`SEED_TARGETS`): mean Fisher z of the
  (unsmoothed) seed map inside the target region, tested by
  :func:`hfsmri.stats.group_analysis.roi_group` (group comparison and partial correlations with
  the clinical scores, e.g. severity and HAMA, controlling the covariates).
* ``ica/``: ``components.nii.gz`` (group ICA z maps), ``components.tsv`` (network labels);
  ``ica/ic-<k>/``: voxel-wise comparison of the dual-regression stage-2 maps of component k
  within its mask (group map z > 2.3).
* ``graph/global/``: ``rois.tsv``/``correlations.tsv`` of the global metrics' AUCs (one column per
  metric); ``graph/<nodal metric>/`` (degree, strength, nodal_efficiency, betweenness, clustering,
  local_efficiency): the nodal AUCs (one column per node; ``p_fdr`` = BH across nodes);
  ``graph/edges/contrast-<c>_edges.tsv``: edge-wise t, p and BH-FDR q; ``graph/nbs/contrast-<c>_
  components.tsv`` and ``_edges.tsv``: network-based statistic.

Affected-side alignment: participant outputs are unflipped; here every map / matrix of a subject
with ``study.flipped(subject)`` is mirrored (maps: x -> -x; matrices and nodal tables: left/right
partner nodes swapped) before any statistic, at every session.

Longitudinal studies (``sessions`` lists >= 2 sessions): every result above is the cross-sectional
comparison at the first session (baseline); the longitudinal designs of :mod:`hfsmri.longitudinal`
on the per-subject change follow-up − baseline (paired ``<group>-<post>-gt/lt-<pre>``, group × time
``change-patient-gt/lt-control``, change vs change ``corr-delta<score>-pos/neg``) are added to the
same folders:

* ``seed_fc/seed-<name>/``: the smoothed seed maps of both sessions (voxel-wise);
* ``ica/ic-<k>/``: the group components stay those estimated from the baseline session; dual
  regression is also run on each subject's follow-up BOLD (mirrored like the baseline) against the
  same components, and the change of the stage-2 map of component k is tested voxel-wise within
  the component mask (``mask_longitudinal.nii.gz``: component mask where every stage-2 map of
  both sessions is non-zero);
* ``graph/global/`` and ``graph/<nodal metric>/``: the global and nodal AUC tables of both
  sessions (the ROIs / nodes of the cross-sectional tables) → ``rois_longitudinal.tsv``.

The edge-wise tests (``graph/edges/``) and the network-based statistic (``graph/nbs/``) stay
cross-sectional (baseline only).
"""
from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from hfsmri.derivatives import read_derivative
from hfsmri.conn.participant import conn_path, func_resolution, input_paths, params_for, seed_map_path
from hfsmri.errors import DesignError, HfsmriError, InputDataError
from hfsmri.longitudinal import is_longitudinal

#: region specs of the review's ROI-to-ROI targets; ``{h}`` is the hemisphere letter L/R.
TARGETS = {
    "mPFC": "aal:Frontal_Sup_Medial_{h}+aal:Frontal_Med_Orb_{h}",
    "OFC": "aal:OFCmed_{h}+aal:OFCant_{h}+aal:OFCpost_{h}+aal:OFClat_{h}",
    "insula": "aal:Insula_{h}",
    "SMG": "aal:SupraMarginal_{h}",
    "SAC": "aal:Parietal_Sup_{h}",  # somatosensory association cortex (BA 5/7, superior parietal lobule)
    "motor": "aal:Precentral_{h}",
}
_STRIATAL = ("caudate", "putamen", "accumbens", "pallidum", "dc", "vc", "drp", "vrp", "dcp", "vis")
#: seed base name -> targets (Xu 2019 amygdala; Niu 2020 thalamus; Gao 2021 striatum)
SEED_TARGETS = {"amygdala": ("mPFC", "OFC", "insula"), "thalamus": ("SMG", "SAC"),
                **{s: ("motor", "OFC") for s in _STRIATAL}}
CONTRASTS = ("patient-gt-control", "patient-lt-control")


def run(gctx) -> dict:
    """Connectivity group stage (see module doc)."""
    study = gctx.study
    requested = [a for a in ("seed_fc", "graph", "ica") if a in (gctx.analyses or {})]
    res = func_resolution(getattr(study, "preprocessing", None))
    sessions = list(getattr(study, "sessions", None) or [])
    ses = sessions[0] if sessions else None
    summary: dict = {}
    for a in requested:
        fn = {"seed_fc": _seed_fc, "graph": _graph, "ica": _ica}[a]
        try:
            summary[a] = fn(gctx, res, ses)
        except HfsmriError as exc:
            gctx.log.error("%s group analysis failed: %s", a, exc)
            summary[a] = {"error": str(exc)}
    return summary


# ---------------------------------------------------------------------------- helpers
def _subjects(study) -> list[str]:
    return [str(s).removeprefix("sub-") for s in study.participants.index]


def _flipped(study, sub) -> bool:
    return bool(getattr(study, "flip_to", None)) and bool(study.flipped(sub))


def _align(arr: np.ndarray, affine, flip: bool) -> np.ndarray:
    from hfsmri.spatial.flip import flip_array_x

    return flip_array_x(arr, affine) if flip else arr


def _group_mask(gctx, subjects, res, ses):
    """Intersection of the subjects' (aligned) func brain masks; returns (mask, affine, kept subjects)."""
    mask, affine, kept = None, None, []
    for s in subjects:
        _, mp = input_paths(gctx.out, s, ses, res)
        if not mp.exists():
            continue
        img = read_derivative(mp)
        m = _align(np.asarray(img.dataobj) > 0, img.affine, _flipped(gctx.study, s))
        if mask is None:
            mask, affine = m, img.affine
        elif m.shape != mask.shape:
            raise InputDataError(f"brain mask grid {m.shape} differs from the other subjects' {mask.shape}", path=mp)
        else:
            mask &= m
        kept.append(s)
    if mask is None or not mask.any():
        raise InputDataError("no subject has a func brain mask (did the func participant stage run?)")
    return mask, affine, kept


def _run_voxelwise(gctx, Y, subjects, mask, affine, out_dir, sidecar) -> dict:
    from hfsmri.stats.design import clinical_designs, design_from_study
    from hfsmri.stats.group_analysis import voxelwise_group

    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    design = design_from_study(gctx.study, subjects)
    clusters = voxelwise_group(Y, mask_img, design, out_dir, gctx.stats, sidecar=sidecar)
    n_clusters = {"group": int(len(clusters))}
    try:
        designs = clinical_designs(gctx.study, subjects)
    except DesignError as exc:
        gctx.log.warning("%s: no clinical correlation (%s)", out_dir, exc)
        designs = {}
    for score, d in designs.items():
        rows = [subjects.index(s) for s in d.subjects]
        cl = voxelwise_group(Y[rows], mask_img, d, out_dir, gctx.stats, sidecar=sidecar)
        n_clusters[score] = int(len(cl))
    return n_clusters


# ---------------------------------------------------------------------------- seed FC
def pair_targets(seed_name: str, seed_base: str, flip_to) -> dict[str, str]:
    """Column name -> region spec of the ROI-to-ROI pairs of one seed (both hemispheres of each
    target; names use Ipsi/Contra when ``flip_to`` is set)."""
    out = {}
    for t in SEED_TARGETS.get(seed_base, ()):
        for h in ("L", "R"):
            hn = h if not flip_to else ("Ipsi" if h == flip_to else "Contra")
            out[f"{seed_name}-{t}{hn}"] = TARGETS[t].format(h=h)
    return out


def _seed_fc(gctx, res, ses) -> dict:
    from hfsmri.conn.seeds import aligned_name, resolve_seeds
    from hfsmri.spatial.atlas import region_mask
    from hfsmri.stats.group_analysis import roi_group

    study = gctx.study
    p = params_for(gctx.analyses, "seed_fc")
    flip_to = getattr(study, "flip_to", None)
    flip_to = str(flip_to).upper() if flip_to else None
    seeds = resolve_seeds(p.get("seeds") or (), p.get("spheres") or {})
    mask, affine, subjects = _group_mask(gctx, _subjects(study), res, ses)
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    out_summary = {}
    for seed in seeds:
        name = aligned_name(seed, flip_to)
        have = [s for s in subjects if seed_map_path(gctx.out, s, ses, res, name, smooth=True).exists()
                and seed_map_path(gctx.out, s, ses, res, name).exists()]
        if len(have) < 4:
            gctx.log.warning("seed %s: only %d subjects have maps; skipped", name, len(have))
            continue
        Y = np.empty((len(have), int(mask.sum())), dtype=np.float32)
        raw = {}
        for i, s in enumerate(have):
            fl = _flipped(study, s)
            img = read_derivative(seed_map_path(gctx.out, s, ses, res, name, smooth=True))
            Y[i] = _align(np.asarray(img.dataobj, dtype=np.float32), img.affine, fl)[mask]
            rimg = read_derivative(seed_map_path(gctx.out, s, ses, res, name))
            raw[s] = _align(np.asarray(rimg.dataobj, dtype=np.float32), rimg.affine, fl)
        out_dir = gctx.out.group_dir("seed_fc", f"seed-{name}")
        side = {"Seed": name, "SeedRegion": seed.description, "Input": "desc-fisherzsmooth_boldmap",
                "AffectedSideNaming": f"Ipsi = {flip_to}" if flip_to else None}
        n_cl = _run_voxelwise(gctx, Y, have, mask, affine, out_dir, side)
        info = {"n_subjects": len(have), "clusters": n_cl}
        if len(getattr(study, "sessions", None) or []) >= 2:  # pre/post designs (hfsmri.longitudinal)
            from hfsmri.longitudinal import run_longitudinal_maps
            info["longitudinal"] = run_longitudinal_maps(
                gctx, "seed_fc", f"seed-{name}", lambda s, ses_, n_=name: seed_map_path(gctx.out, s, ses_, res, n_,
                                                                                       smooth=True),
                flip=True, base_mask=mask, sidecar=side)
        targets = pair_targets(name, seed.base, flip_to)
        if targets:
            cols = {}
            for col, spec in targets.items():
                tm = region_mask(spec, mask_img) & mask
                if tm.any():
                    cols[col] = [float(raw[s][tm].mean()) for s in have]
            if cols:
                table = pd.DataFrame(cols, index=have)
                rois, corr = roi_group(table, study, out_dir, gctx.stats)
                info["roi_pairs"] = list(cols)
        out_summary[name] = info
    return out_summary


# ---------------------------------------------------------------------------- graph
def mirror_permutation(names, coords=None, tol_mm: float = 6.0) -> np.ndarray:
    """Index array ``perm`` with aligned[i] = native[perm[i]] for a left-right mirrored brain:
    ``X_L``<->``X_R`` and ``Left_X``<->``Right_X`` by name; otherwise the node nearest to the mirrored
    centre (x -> -x) within ``tol_mm`` (from ``coords``); unmatched nodes map to themselves."""
    names = [str(n) for n in names]
    pos = {n: i for i, n in enumerate(names)}
    perm = np.arange(len(names))
    coords = None if coords is None else np.asarray(coords, float)
    for i, n in enumerate(names):
        partner = None
        for a, b in ((r"_L$", "_R"), (r"_R$", "_L"), (r"^Left_", "Right_"), (r"^Right_", "Left_")):
            if re.search(a, n):
                cand = re.sub(a, b, n)
                if cand in pos:
                    partner = pos[cand]
                    break
        if partner is None and coords is not None and np.all(np.isfinite(coords[i])):
            target = coords[i] * [-1, 1, 1]
            d = np.linalg.norm(coords - target, axis=1)
            j = int(np.nanargmin(d))
            if d[j] <= tol_mm:
                partner = j
        if partner is not None:
            perm[i] = partner
    return perm


def _read_coords(ts_path: Path):
    import json

    side = Path(str(ts_path)[: -len(".tsv")] + ".json")
    try:
        return np.asarray(json.loads(side.read_text()).get("NodeCoordinatesMNI"), float)
    except Exception:
        return None


def _read_table(path: Path, what: str) -> pd.DataFrame:
    """A participant TSV table; unreadable files raise :class:`InputDataError` naming the file."""
    try:
        return pd.read_csv(path, sep="\t")
    except Exception as exc:  # pandas raises many types for empty / malformed files
        raise InputDataError(f"cannot read the {what} table ({type(exc).__name__}: {exc})", path=path) from None


def _graph_tables(gctx, sub, ses, atlas, mat_kind, names, perm) -> tuple[pd.Series, pd.DataFrame]:
    """One subject's graph AUC tables at one session, side-aligned.

    Returns ``(global, nodal)``: the global AUC row (Series, one entry per metric) and the nodal AUC
    table (index = ``names``, one column per nodal metric); for a flipped subject the nodal rows
    are taken from the mirror partner of each node (``perm``, :func:`mirror_permutation`).
    """
    from hfsmri.graph.metrics import NODAL_COLUMNS

    gp = conn_path(gctx.out, sub, ses, atlas, mat_kind, "graphauc")
    g = _read_table(gp, "global graph AUC")
    if len(g) == 0:
        raise InputDataError("the global graph AUC table has no row", path=gp)
    npth = conn_path(gctx.out, sub, ses, atlas, mat_kind, "graphnodalauc")
    nd = _read_table(npth, "nodal graph AUC")
    miss = [c for c in ("node", *NODAL_COLUMNS) if c not in nd.columns]
    if miss:
        raise InputDataError(f"missing column(s) {', '.join(miss)}", path=npth)
    nd = nd.set_index("node")
    nd.index = nd.index.astype(str)
    absent = [n for n in names if n not in nd.index]
    if absent:
        raise InputDataError(f"{len(absent)} node(s) of the atlas are missing (e.g. {absent[0]})", path=npth)
    nd = nd.loc[list(names)]
    if _flipped(gctx.study, sub):
        nd = nd.iloc[perm]
        nd.index = list(names)
    return g.iloc[0], nd


def _graph_longitudinal(gctx, atlas, mat_kind, names, perm, tested: dict) -> dict:
    """Longitudinal ROI designs on the graph AUC tables (``graph/<folder>/rois_longitudinal.tsv``).

    ``tested``: folder (``"global"`` or a nodal metric) -> the columns (metrics / nodes) of its
    cross-sectional table; the same columns are analysed. Subjects need both sessions' AUC tables.
    Returns folder -> summary of :func:`hfsmri.longitudinal.run_longitudinal_roi`; never raises an
    :class:`HfsmriError` (``{"error": ...}``) so that the cross-sectional results are kept.
    """
    from hfsmri.longitudinal import roi_tables_by_session, run_longitudinal_roi

    cache: dict = {}

    def tables(sub, ses_):
        if (sub, ses_) not in cache:
            have = all(conn_path(gctx.out, sub, ses_, atlas, mat_kind, w).exists()
                       for w in ("graphauc", "graphnodalauc"))
            cache[(sub, ses_)] = _graph_tables(gctx, sub, ses_, atlas, mat_kind, names, perm) if have else None
        return cache[(sub, ses_)]

    out = {}
    try:
        for folder, cols in tested.items():
            def row(sub, ses_, folder=folder, cols=cols):
                t = tables(sub, ses_)
                if t is None:
                    return None
                r = t[0] if folder == "global" else t[1][folder]
                return pd.to_numeric(r.reindex(cols), errors="coerce")

            out[folder] = run_longitudinal_roi(gctx, "graph", folder, roi_tables_by_session(gctx.study, row))
    except HfsmriError as exc:
        gctx.log.warning("graph: longitudinal analysis skipped: %s", exc)
        out["error"] = str(exc)
    return out


def _graph(gctx, res, ses) -> dict:
    from hfsmri.conn.connectome import tangent_matrices, upper_triangle
    from hfsmri.graph.metrics import NODAL_COLUMNS
    from hfsmri.graph.nbs import edge_statistics, nbs
    from hfsmri.stats.design import design_from_study
    from hfsmri.stats.group_analysis import roi_group
    from hfsmri.stats.group_analysis import save_tsv_atomic, write_json_atomic

    study = gctx.study
    p = params_for(gctx.analyses, "graph")
    atlas = str(p.get("atlas", "aal"))
    kind = str(p.get("kind", "pearson")).lower()
    mat_kind = "pearson" if kind == "tangent" else kind
    subjects = [s for s in _subjects(study)
                if conn_path(gctx.out, s, ses, atlas, mat_kind, "graphauc").exists()]
    if len(subjects) < 4:
        raise InputDataError(f"only {len(subjects)} subjects have graph results for atlas {atlas}")
    ts0 = conn_path(gctx.out, subjects[0], ses, atlas, mat_kind, "timeseries")
    names0 = list(pd.read_csv(ts0, sep="\t", nrows=0).columns)
    perm = mirror_permutation(names0, _read_coords(ts0))

    # global AUC table
    glob, nodal = {}, {m: {} for m in NODAL_COLUMNS}
    mats, tss = [], []
    for s in subjects:
        fl = _flipped(study, s)
        g, nd = _graph_tables(gctx, s, ses, atlas, mat_kind, names0, perm)
        glob[s] = g
        for m in NODAL_COLUMNS:
            nodal[m][s] = nd[m]
        z = read_derivative(conn_path(gctx.out, s, ses, atlas, mat_kind, "relmat"), index_col=0).to_numpy(float)
        if fl:
            z = z[np.ix_(perm, perm)]
        mats.append(z)
        if kind == "tangent":
            ts = read_derivative(conn_path(gctx.out, s, ses, atlas, mat_kind, "timeseries"))[names0].to_numpy(float)
            tss.append(ts[:, perm] if fl else ts)
    out = {"n_subjects": len(subjects), "atlas": atlas}
    gtab = pd.DataFrame(glob).T
    gtab = gtab[[c for c in gtab.columns if gtab[c].notna().all()]]
    roi_group(gtab.astype(float), study, gctx.out.group_dir("graph", "global"), gctx.stats)
    out["global_metrics"] = list(gtab.columns)
    tested = {"global": list(gtab.columns)}
    for m in NODAL_COLUMNS:
        tab = pd.DataFrame(nodal[m]).T
        tab = tab.loc[:, tab.notna().all() & (tab.std() > 0)]
        if tab.shape[1]:
            roi_group(tab.astype(float), study, gctx.out.group_dir("graph", m), gctx.stats)
            tested[m] = list(tab.columns)
    if is_longitudinal(study):  # pre/post designs on the AUC tables (hfsmri.longitudinal)
        out["longitudinal"] = _graph_longitudinal(gctx, atlas, mat_kind, names0, perm, tested)

    # edges: FDR and NBS
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
    st = dict(gctx.stats or {})
    n_perm = int(st.get("n_perm", 5000))
    seed = int(st.get("random_seed", 0))
    thr = float(p.get("nbs_threshold", 3.0))
    edir = gctx.out.group_dir("graph", "edges")
    ndir = gctx.out.group_dir("graph", "nbs")
    meta = {"Atlas": atlas, "Measure": kind, "Nodes": names, "Design": design.to_dict(),
            "FlippedSubjects": list(design.flipped)}
    out["nbs"] = {}
    for c in CONTRASTS:
        cvec = design.contrasts[c]
        es = edge_statistics(Y, design.X, cvec, node_names=names)
        save_tsv_atomic(es, edir / f"contrast-{c}_edges.tsv")
        write_json_atomic(edir / f"contrast-{c}_edges.json",
                          {**meta, "Description": "edge-wise GLM t (one-sided in the contrast direction), "
                           "parametric p, Benjamini-Hochberg q over all edges"})
        r = nbs(Y, design.X, cvec, threshold=thr, n_perm=n_perm, random_state=seed, node_names=names)
        save_tsv_atomic(r.components, ndir / f"contrast-{c}_components.tsv")
        save_tsv_atomic(r.edges, ndir / f"contrast-{c}_edges.tsv")
        write_json_atomic(ndir / f"contrast-{c}_components.json",
                          {**meta, "Description": "network-based statistic (Zalesky 2010): components of "
                           "edges with t > threshold, size = number of edges, FWE p from Freedman-Lane "
                           "permutations", "Threshold": thr, "NPermutations": n_perm, "RandomSeed": seed})
        out["nbs"][c] = {"n_components": int(len(r.components)),
                         "min_p": float(r.components.p_fwe.min()) if len(r.components) else None}
    return out


# ---------------------------------------------------------------------------- ICA
def _dual_regression_session(gctx, subjects, ses, res, used, affine, maps, vn) -> dict:
    """Dual regression of each subject's cleaned BOLD at session ``ses`` on the group maps.

    Subjects without that session's BOLD are left out; flipped subjects are mirrored first (as for
    the group ICA). ``used``: the 3D voxel mask of ``maps`` (K, V). Returns participant -> (K, V)
    float32 stage-2 maps. A BOLD file on another grid or too short raises :class:`InputDataError`
    naming it.
    """
    from hfsmri.conn.dual_regression import dual_regression
    from hfsmri.io import load_image

    out = {}
    for s in subjects:
        bp, _ = input_paths(gctx.out, s, ses, res)
        if not bp.exists():
            continue
        img = load_image(bp, ndim=4, what="cleaned BOLD")
        if img.shape[:3] != used.shape or not np.allclose(img.affine, affine, atol=1e-3):
            raise InputDataError(f"cleaned BOLD grid {img.shape[:3]} differs from the group ICA grid {used.shape} "
                                 "(same MNI resolution expected at every session)", path=bp)
        try:
            arr = np.asarray(img.dataobj, dtype=np.float32)
        except Exception as exc:  # truncated / corrupt data block
            raise InputDataError(f"cannot read the BOLD data ({type(exc).__name__}: {exc})", path=bp) from None
        arr = _align(arr, img.affine, _flipped(gctx.study, s))
        try:
            _, smap = dual_regression(arr[used].T, maps, variance_normalise=vn)
        except InputDataError as exc:
            raise InputDataError(f"dual regression: {exc}", path=bp) from None
        out[s] = smap.astype(np.float32)
        del arr
    return out


def _ica_session_maps(gctx, subjects, baseline_stage2, res, used, affine, maps, vn) -> dict:
    """Stage-2 maps of both sessions for the longitudinal designs: (participant, session) -> (K, V).

    The baseline maps are those of the cross-sectional analysis (``baseline_stage2``, rows in
    ``subjects`` order); the follow-up maps come from :func:`_dual_regression_session` against the
    same (baseline) group components.
    """
    from hfsmri.longitudinal import session_pair

    pre, post = session_pair(gctx.study)
    follow = _dual_regression_session(gctx, subjects, post, res, used, affine, maps, vn)
    out = {(s, pre): baseline_stage2[i] for i, s in enumerate(subjects) if s in follow}
    out.update({(s, post): m for s, m in follow.items()})
    return out


def _component_image(stage2, j: int, used: np.ndarray, affine):
    """3D image of component ``j`` of a (K, V) stage-2 array on the ``used`` grid (None stays None)."""
    if stage2 is None:
        return None
    vol = np.zeros(used.shape, dtype=np.float32)
    vol[used] = stage2[j]
    return nib.Nifti1Image(vol, affine)


def _ica(gctx, res, ses) -> dict:
    import tempfile

    from hfsmri.conn.dual_regression import dual_regression
    from hfsmri.conn.ica import component_mask, group_ica, label_components, network_reference
    from hfsmri.stats.group_analysis import save_tsv_atomic
    from hfsmri.derivatives import save_nifti_atomic

    study = gctx.study
    p = params_for(gctx.analyses, "ica")
    k = int(p.get("n_components", 20))
    vn = bool(p.get("variance_normalise", True))
    mask, affine, subjects = _group_mask(gctx, _subjects(study), res, ses)
    subjects = [s for s in subjects if input_paths(gctx.out, s, ses, res)[0].exists()]
    if len(subjects) < 4:
        raise InputDataError(f"group ICA needs at least 4 subjects with cleaned BOLD, found {len(subjects)}")
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    # default folder: the group job's private temporary folder in <WORK_DIR>/tmp (hfsmri.scratch),
    # removed at the next start if a killed run leaves it
    with tempfile.TemporaryDirectory(prefix="hfsmri-ica-") as tmp:
        paths = []
        for s in subjects:
            bp, _ = input_paths(gctx.out, s, ses, res)
            if _flipped(study, s):
                img = read_derivative(bp)
                arr = _align(np.asarray(img.dataobj, dtype=np.float32), img.affine, True)
                fp = Path(tmp) / f"sub-{s}_flipped_bold.nii"  # uncompressed scratch copy
                nib.save(nib.Nifti1Image(arr, img.affine, img.header), fp)
                del arr
                paths.append(str(fp))
            else:
                paths.append(str(bp))
        maps, used = group_ica(paths, mask_img, n_components=k, random_state=int(gctx.seed),
                                n_init=int(p.get("n_init", 10)))
        labels = label_components(maps, network_reference(used, affine))
        idir = gctx.out.group_dir("ica")
        comp = np.zeros(used.shape + (maps.shape[0],), dtype=np.float32)
        comp[used] = maps.T
        save_nifti_atomic(nib.Nifti1Image(comp, affine), idir / "components.nii.gz")
        labels_out = labels.reset_index()
        save_tsv_atomic(labels_out, idir / "components.tsv")
        # dual regression
        stage2 = np.empty((len(subjects), maps.shape[0], int(used.sum())), dtype=np.float32)
        for i, fp in enumerate(paths):
            img = nib.load(fp)
            Ysub = np.asarray(img.dataobj, dtype=np.float32)[used].T
            _, smap = dual_regression(Ysub, maps, variance_normalise=vn)
            stage2[i] = smap
    out = {"n_components": int(maps.shape[0]), "labels": labels["network"].tolist(), "components": {}}
    by_session = None
    if is_longitudinal(study):  # follow-up dual regression against the baseline components
        try:
            by_session = _ica_session_maps(gctx, subjects, stage2, res, used, affine, maps, vn)
        except HfsmriError as exc:
            gctx.log.warning("ica: longitudinal analysis skipped: %s", exc)
            out["longitudinal"] = {"error": str(exc)}
    for j in range(maps.shape[0]):
        cm_vec = component_mask(maps[j])
        if cm_vec.sum() < 10:
            continue
        cm = np.zeros(used.shape, bool)
        cm[used] = cm_vec
        out_dir = gctx.out.group_dir("ica", f"ic-{j + 1}")
        side = {"Component": j + 1, "Network": labels.loc[j + 1, "network"],
                "NetworkMatchR": float(labels.loc[j + 1, "match_r"]),
                "Input": "dual regression stage-2 maps" + (" (variance-normalised time courses)" if vn else ""),
                "ComponentMask": "group component z > 2.3"}
        n_cl = _run_voxelwise(gctx, stage2[:, j, cm_vec].astype(np.float64), subjects, cm, affine, out_dir, side)
        out["components"][j + 1] = {"network": side["Network"], "clusters": n_cl}
        if by_session is not None:  # pre/post designs (hfsmri.longitudinal)
            from hfsmri.longitudinal import run_longitudinal_maps

            flipped = sorted({s for s, _ in by_session if _flipped(study, s)})
            out["components"][j + 1]["longitudinal"] = run_longitudinal_maps(
                gctx, "ica", f"ic-{j + 1}", lambda s, ses_, j=j: _component_image(by_session.get((s, ses_)), j, used,
                                                                                 affine),
                base_mask=cm, out_dir=out_dir,
                sidecar={**side, "Flipped": flipped, "ComponentsSession": ses,
                         "Input": side["Input"] + ", each session against the baseline group components"})
    return out
