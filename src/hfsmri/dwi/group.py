"""TBSS at the group level: the ``derive`` hook of ``tbss`` (:func:`tbss_metrics`).

Mean FA over the voxels every participant covers, skeleton at ``fa_threshold``, every
participant's FA projected onto it and MD/AD/RD at the FA indices (:mod:`hfsmri.dwi.tbss`) →
``group/tbss/`` mean FA, skeleton mask and ``<metric>/`` skeletonised maps (names: ``group_path`` kinds ``mean_fa``, ``skeleton``, ``skeletonised``) and the
skeleton statistics (``tfce_setting``). Longitudinal: the baseline skeleton is kept and each session
is projected by its own search (FSL ``tbss_non_FA``; :func:`tbss_session_values`).
"""
from __future__ import annotations

import numpy as np

from hfsmri.analyses import DWI_MASK, TEMPLATE_SPACE
from hfsmri.errors import HfsmriError, InputDataError

METRICS = ("fa", "md", "ad", "rd")


def _session_maps(gctx, spec, sub, ses, res, shape) -> dict:
    """One participant's FA/MD/AD/RD of one session (metric -> 3D float64; non-finite values,
    i.e. outside the brain, set to 0). A map on another grid raises :class:`InputDataError`."""
    from hfsmri.group.inputs import load_map

    out = {}
    for inp in spec.needs:
        if inp is DWI_MASK:
            continue
        m = inp.entities["param"]
        p = inp.path(gctx.out, sub, ses, res)
        a = load_map(p, what=f"{m.upper()} map")
        if a.shape[:3] != tuple(shape):
            raise InputDataError(f"{m.upper()} map grid {a.shape} differs from the TBSS skeleton grid "
                                 f"{tuple(shape)} (MNI {res} mm)", path=p)
        out[m] = np.nan_to_num(np.asarray(a, dtype=np.float64).reshape(shape), nan=0.0, posinf=0.0, neginf=0.0)
    return out


def tbss_session_values(gctx, skeleton, subjects, sessions, res, spec) -> dict:
    """Skeleton values of every participant and session, projected onto one (baseline) skeleton:
    ``{(participant, session): {metric: (n_skel,) array}}`` in :attr:`Skeleton.indices` order
    (``spec``: the TBSS analysis, whose ``needs`` are the four tensor maps and the brain mask)."""
    from hfsmri.dwi.tbss import project_metrics

    values = {}
    for s in subjects:
        for ses in sessions:
            maps = _session_maps(gctx, spec, s, ses, res, skeleton.skeleton.shape)
            fa = maps.pop("fa")
            values[(s, ses)], _ = project_metrics(skeleton, fa, maps)
    return values


def tbss_metrics(gctx, spec, params) -> list:
    """The ``derive`` hook of ``tbss``: skeleton outputs written, one MetricData per metric."""
    import nibabel as nib

    from hfsmri.dwi.tbss import tbss, to_volume
    from hfsmri.group import inputs, write
    from hfsmri.group.runner import MetricData, baseline, resolution
    from hfsmri.spatial.templates import template_grid
    from hfsmri.stats.design import session_pair

    study, out = gctx.study, gctx.out
    maps_in = {i.entities["param"]: i for i in spec.needs if i is not DWI_MASK}
    res, ses = resolution(gctx, maps_in["fa"].res), baseline(study)
    sel = inputs.select(gctx, spec.stage, spec.needs, [], (), ses, res)
    subjects = sel.included
    if len(subjects) < 4:
        raise HfsmriError(f"TBSS needs at least 4 participants with tensor maps, found {len(subjects)}")
    grid = template_grid(res)

    def stack(inp, what):
        return np.stack([inputs.load_map(inp.path(out, s, ses, res), grid, what).astype(np.float32) for s in subjects])

    fa = stack(maps_in["fa"], "FA map")
    common = np.all(stack(DWI_MASK, "brain mask") > 0, axis=0) & np.all(fa > 0, axis=0)
    others = {m: np.where(common[None], stack(i, f"{m.upper()} map"), 0.0) for m, i in maps_in.items() if m != "fa"}
    thr = float(params["fa_threshold"])
    result = tbss(np.where(common[None], fa, 0.0), others, threshold=thr, voxel_size=(float(res),) * 3)
    sk = result.skeleton
    meta = {"Session": ses, "Space": TEMPLATE_SPACE, "Resolution": res, "Subjects": subjects,
            "Method": "TBSS (clean-room, Smith et al. 2006)", "Threshold": thr, "NSkeletonVoxels": sk.n_voxels}
    write.save(out.group_path(spec.name, kind="mean_fa"),
                     nib.Nifti1Image(sk.mean_fa.astype(np.float32), grid[1]), meta)
    write.save_mask(out, spec.name, None, sk.skeleton, grid[1], kind="skeleton", meta=meta)
    if sk.n_voxels == 0:
        raise HfsmriError(f"TBSS skeleton is empty at FA threshold {thr}")
    cache: dict = {}

    def session_values(s, ses_):
        if "values" not in cache:
            pre, post = session_pair(study)
            both = [x for x in inputs.labels(study)
                    if all(i.path(out, x, y, res).exists() for i in maps_in.values() for y in (pre, post))]
            cache["values"] = tbss_session_values(gctx, sk, both, (pre, post), res, spec)
        return cache["values"].get((s, ses_))

    long_side = {"Method": meta["Method"], "Threshold": thr, "NSkeletonVoxels": sk.n_voxels, "SkeletonSession": ses,
                 "Projection": "each session's FA projected onto the baseline skeleton by its own search; "
                               "MD/AD/RD at that session's FA indices (tbss_non_FA)"}
    data = []
    for m in METRICS:
        write.save(out.group_path(spec.name, m, kind="skeletonised"),
                         nib.Nifti1Image(to_volume(sk, result.values[m]).astype(np.float32), grid[1]), meta)
        data.append(MetricData(
            m, subjects, sel.excluded, mask=sk.skeleton, affine=grid[1], values=result.values[m],
            tfce=params["tfce_setting"], sidecar={"Analysis": spec.name, "Metric": m, "Session": ses},
            session_map=lambda s, ses_, m=m: None if (v := session_values(s, ses_)) is None else to_volume(
                sk, v[m]).astype(np.float32),
            long_mask=sk.skeleton, long_sidecar=long_side))
    return data
