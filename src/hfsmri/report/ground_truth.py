"""Score group results against the simulator's planted effects (the report scores itself).

Input: ``<bids_dir>/derivatives/ground_truth/effects.tsv`` (contract columns ``effect_id, analysis,
metric, region, hemisphere, direction, cohens_d, clinical_score, clinical_r, mask``; ``mask`` is an
MNI-space mask NIfTI relative to the ground-truth folder) and the group result folders.

Rules
-----
* Each effect row gives up to two *tests*: ``group`` (when ``direction`` is +1/-1: contrast
  ``patient-gt-control`` for +1, ``patient-lt-control`` for -1) and ``clinical`` (when
  ``clinical_score`` is set: contrast ``corr-<score>-pos`` if ``clinical_r`` > 0 else ``-neg``).
* Voxel-wise result (a ``_desc-fwe_logp`` map exists): **hit** when at least one voxel of the effect
  mask, mapped to the statistic grid, has FWE p < alpha (−log10 p > −log10 alpha). The mask is mapped
  by "any overlap": a target voxel belongs to the mask if a mask voxel centre falls in it or its own
  centre falls in a mask voxel, so thin masks survive coarser grids.
* ROI result (``rois.tsv`` / ``correlations.tsv``, no maps): **hit** when a row whose ROI name matches
  the effect's region (atlas label names, case/side-insensitive, ``Left_X`` = ``X_L``) has corrected
  p < alpha (first present of ``p_fdr, p_fwe, p_perm_fwe, p_corrected, ..., p_perm, p``) and the sign of
  its statistic agrees with the planted direction (or ``r`` with ``clinical_r``).
* Lateralised effects with ``hemisphere`` ``ipsi``/``contra`` are written for a right-affected
  patient: with ``flip_to: L`` the mask is mirrored, with flipping off the simulator's
  ``mask_unaligned`` (both sides) is used, or else the mask united with its mirror. Seed metrics
  ``seed-<x>L/R`` are also looked up as ``seed-<x>Ipsi/Contra`` when flipping is on.
* **False clusters**: connected components (26-connectivity) of FWE-significant voxels of any contrast
  that touch no planted mask of the same analysis/metric.
* Tests whose analysis did not run are ``not run`` (``hit`` empty) — neither hit nor miss.
* Longitudinal studies (``sessions`` with >= 2 labels, first = baseline, last = follow-up): a
  group effect whose ``post_factor`` differs from 1 also gives a ``recovery`` test on the paired
  contrast of patients (:func:`hfsmri.group.runner.run_longitudinal`): the effect shrinking after surgery
  (``post_factor`` < 1) makes the change post − pre opposite to ``direction``, i.e.
  ``patient-<post>-gt-<pre>`` for a planted decrease, ``-lt-`` for an increase (the reverse when
  ``post_factor`` > 1). Scored voxel-wise like a group test; analyses with ROI tables only are
  ``not evaluated`` (their change tests are in ``desc-longitudinal_rois.tsv``).
"""
from __future__ import annotations

import re

from ..stats.design import opposite_contrast  # noqa: F401  (re-exported: the report's contrast helpers)
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

P_COLUMNS = ("p_fdr", "p_fwe", "p_perm_fwe", "p_corrected", "p_corr", "p_holm", "p_bonferroni", "p_perm", "p",
             "p_param", "pvalue", "p_value", "p_unc")
STAT_COLUMNS = ("t", "stat", "statistic", "t_stat", "tstat", "z", "cohens_d", "d", "hedges_g", "effect_size",
                "mean_diff", "difference", "diff", "beta")
R_COLUMNS = ("r", "partial_r", "rho", "r_partial", "pearson_r", "spearman_r", "corr")
ROI_COLUMNS = ("roi", "region", "name", "label", "roi_name", "node", "tract")
SCORE_COLUMNS = ("score", "clinical", "clinical_score", "variable", "covariate")

SCORE_COLUMNS_OUT = ["effect_id", "analysis", "metric", "test", "contrast", "region", "hemisphere", "expected",
                     "method", "status", "hit", "n_mask_voxels", "n_sig_voxels", "max_logp", "min_p",
                     "wrong_direction", "detail"]
FALSE_COLUMNS = ["analysis", "metric", "contrast", "cluster", "n_voxels", "volume_mm3", "peak_x", "peak_y",
                 "peak_z", "peak_logp", "aal_label", "overlaps"]


def norm(s) -> str:
    """Lower-case alphanumerics only (``"Thalamus_L"`` -> ``"thalamusl"``)."""
    return re.sub(r"[^a-z0-9]", "", str(s).lower())


def pick_column(df: pd.DataFrame, names) -> str | None:
    """First column of ``df`` whose normalised name is in ``names`` (in the order of ``names``)."""
    lookup = {norm(c): c for c in df.columns}
    for n in names:
        if norm(n) in lookup:
            return lookup[norm(n)]
    return None


def roi_column(df: pd.DataFrame) -> str | None:
    col = pick_column(df, ROI_COLUMNS)
    if col is None:
        objs = [c for c in df.columns if df[c].dtype == object]
        col = objs[0] if objs else None
    return col


# ----------------------------------------------------------------------------- masks on grids
def mask_to_grid(mask_img, shape, affine, mirror: bool = False) -> np.ndarray:
    """Boolean mask of ``mask_img`` (> 0) on the grid ``(shape, affine)``, by any overlap.

    ``mirror`` maps x -> -x in world (MNI) coordinates first. See the module doc for the rule.
    """
    m = np.asarray(mask_img.dataobj) > 0
    if m.ndim > 3:
        m = m.reshape(m.shape[:3] + (-1,)).any(axis=3)
    shape = tuple(int(s) for s in shape[:3])
    out = np.zeros(shape, dtype=bool)
    flipx = np.diag([-1.0 if mirror else 1.0, 1.0, 1.0, 1.0])
    # forward: mask voxel centres -> target voxels
    ijk = np.argwhere(m)
    if len(ijk):
        world = flipx @ mask_img.affine @ np.c_[ijk, np.ones(len(ijk))].T
        tgt = np.rint((np.linalg.inv(affine) @ world)[:3].T).astype(int)
        ok = np.all((tgt >= 0) & (tgt < shape), axis=1)
        out[tuple(tgt[ok].T)] = True
    if not len(ijk):
        return out
    # backward: target voxel centres -> mask voxels, only in the box around the mask's corners
    lo, hi = ijk.min(0) - 1, ijk.max(0) + 1
    corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]).T
    tc = (np.linalg.inv(affine) @ flipx @ mask_img.affine @ corners)[:3]
    t_lo = np.clip(np.floor(tc.min(1)).astype(int) - 1, 0, shape)
    t_hi = np.clip(np.ceil(tc.max(1)).astype(int) + 2, 0, shape)
    sub = tuple(slice(a, b) for a, b in zip(t_lo, t_hi))
    grid = np.indices(tuple(t_hi - t_lo)).reshape(3, -1) + t_lo[:, None]
    world = flipx @ affine @ np.r_[grid, np.ones((1, grid.shape[1]))]
    src = np.rint((np.linalg.inv(mask_img.affine) @ world)[:3]).astype(int)
    ok = np.all((src >= 0) & (src < np.array(m.shape)[:, None]), axis=0)
    hit = np.zeros(grid.shape[1], dtype=bool)
    hit[ok] = m[tuple(src[:, ok])]
    out[sub] |= hit.reshape(tuple(t_hi - t_lo))
    return out


def _mirror_mode(hemisphere, flip_to) -> str:
    """``"none"``, ``"mirror"`` or ``"both"`` for an effect's mask (see module doc)."""
    if str(hemisphere).strip().lower() not in ("ipsi", "contra", "ipsilateral", "contralateral"):
        return "none"
    if flip_to == "R":
        return "none"
    if flip_to == "L":
        return "mirror"
    return "both"


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and np.isnan(v)) and str(v).strip() not in ("", "n/a")


def _row_mask(masks, row, shape, affine):
    return masks.get(row.get("mask"), row.get("hemisphere"), shape, affine, row.get("mask_unaligned"))


def metric_aliases(metric: str, flip_to: str | None) -> list[str]:
    """Folder names a planted metric may have: seed L/R names become Ipsi/Contra when flipping."""
    out = [metric]
    m = re.match(r"^(seed-.*?)(L|R)$", str(metric))
    if m and flip_to in ("L", "R"):
        out.append(m.group(1) + ("Ipsi" if m.group(2) == flip_to else "Contra"))
    return out


class _Masks:
    def __init__(self, gt_dir: Path, flip_to=None):
        self.gt_dir, self.flip_to, self._cache = Path(gt_dir), flip_to, {}

    def get(self, rel, hemisphere, shape, affine, unaligned=None) -> np.ndarray | None:
        """Effect mask on a grid; ``unaligned`` (simulator's both-sides mask) replaces the mirror union."""
        mode = _mirror_mode(hemisphere, self.flip_to)
        if mode == "both" and _present(unaligned) and (self.gt_dir / str(unaligned)).is_file():
            rel, mode = unaligned, "none"
        if not _present(rel):
            return None
        key = (str(rel), mode, tuple(shape[:3]), np.asarray(affine).round(4).tobytes())
        if key not in self._cache:
            path = self.gt_dir / str(rel)
            if not path.is_file():
                self._cache[key] = None
            else:
                img = nib.load(str(path))
                if mode == "none":
                    m = mask_to_grid(img, shape, affine)
                elif mode == "mirror":
                    m = mask_to_grid(img, shape, affine, mirror=True)
                else:
                    m = mask_to_grid(img, shape, affine) | mask_to_grid(img, shape, affine, mirror=True)
                self._cache[key] = m
        return self._cache[key]


# ----------------------------------------------------------------------------- ROI name matching
def _name_key(name: str) -> tuple[str, str | None]:
    s = str(name).strip()
    m = re.match(r"(?i)^(left|right|lh|rh)[_\s.-]+(.+)$", s)
    if m:
        return norm(m.group(2)), m.group(1)[0].lower()
    m = re.match(r"(?i)^(.+?)[_\s.-]+(l|r|left|right|lh|rh)$", s)
    if m:
        return norm(m.group(1)), m.group(2)[0].lower()
    m = re.match(r"^([a-z][a-z0-9]*[a-z0-9])([LR])$", s)  # camelCase side suffix: slfL, plicR, amygdalaR
    if m:
        return norm(m.group(1)), m.group(2).lower()
    return norm(s), None


def region_tokens(region, effect_id=None) -> list[tuple[str, str | None]]:
    """Label-name keys of an effect region spec (``"aal:Thalamus_L+aal:Thalamus_R"``) and its id."""
    keys = []
    for part in re.split(r"[+,;\s]+", str(region or "")):
        part = part.strip().strip("'\"[]{}")
        if ":" in part:
            part = part.split(":", 1)[1]
        part = part.strip("/")
        if len(norm(part)) >= 3 and not re.fullmatch(r"[-\d.]+", part):
            keys.append(_name_key(part))
    if effect_id:
        bits = [b for b in re.split(r"[-_]", str(effect_id)) if b]
        side = None
        if bits and bits[-1].lower() in ("l", "r"):
            side = bits.pop().lower()
        core = [b for b in bits[1:] if len(b) >= 3] if len(bits) > 1 else bits
        # an id without a side letter takes the sides of its region labels (ipsi/contra effects are
        # written for one side; a side-free key would match both)
        sides = [side] if side else sorted({ks for _, ks in keys if ks}) or [None]
        for b in core:
            keys += [(norm(b), sd) for sd in sides]
    return keys


def roi_matches(roi_name, keys, roi_spec=None) -> bool:
    """Whether an ROI (its table name, and the label names of its region spec when known) matches
    any of the effect's ``keys`` (:func:`region_tokens`)."""
    if roi_spec is not None and any(_key_matches(c, sd, keys) for c, sd in region_tokens(roi_spec)):
        return True
    core, side = _name_key(roi_name)
    return _key_matches(core, side, keys)


def _key_matches(core, side, keys) -> bool:
    if not core:
        return False
    for kc, ks in keys:
        if not kc:
            continue
        same = kc == core or (min(len(kc), len(core)) >= 4 and (kc in core or core in kc))
        if same and (ks is None or side is None or ks == side):
            return True
    return False


def _covers(roi_mask, effect_mask, e) -> bool:
    if roi_mask is None or effect_mask is None:
        return False
    m = effect_mask(e)
    return m is not None and m.shape == roi_mask.shape and \
        float((m & roi_mask).sum()) >= ROI_OVERLAP_MIN * float(roi_mask.sum())


def _placed_keys(e, flip_to) -> list[tuple[str, str | None]]:
    """:func:`region_tokens` of an effect row on the side(s) the study puts it (:func:`_mirror_mode`:
    ipsi/contra effects mirrored when aligned to L, both sides when unflipped)."""
    keys = region_tokens(e.get("region"), e.get("effect_id"))
    mirrored = [(k, {"l": "r", "r": "l"}.get(side, side)) for k, side in keys]
    return {"none": keys, "mirror": mirrored, "both": keys + mirrored}[_mirror_mode(e.get("hemisphere"), flip_to)]


def roi_mask_on(roi: str, roi_spec, img) -> np.ndarray | None:
    """The ROI's mask on ``img``'s grid when it can be rebuilt offline: a declared region spec
    (:func:`hfsmri.spatial.atlas.region_mask`), a tract or callosal part of
    :func:`hfsmri.dwi.tracts.tract_masks`, an atlas ROI named ``aal_<label>``; else None."""
    from ..dwi.tracts import REVIEW_NAMES, tract_masks
    from ..spatial.atlas import region_mask

    try:
        if roi_spec is not None:
            m = region_mask(roi_spec, img)
        elif roi in REVIEW_NAMES:
            m = tract_masks(img, names=[roi]).get(roi)
        elif str(roi).startswith("aal_"):
            m = region_mask("aal:" + str(roi)[4:], img)
        else:
            return None
    except (ValueError, KeyError):
        return None
    return None if m is None or not np.any(m) else np.asarray(m, bool)


def effect_mask_getter(gt_dir, effects: pd.DataFrame, flip_to=None):
    """``(grid image, effect row -> bool mask on it)`` for the planted masks of ``gt_dir`` (the grid
    of the first mask that exists; ipsi/contra masks placed as :class:`_Masks` does), or (None, None)."""
    masks = _Masks(Path(gt_dir), flip_to)
    for rel in (effects["mask"] if effects is not None and "mask" in effects.columns else []):
        if _present(rel) and (Path(gt_dir) / str(rel)).is_file():
            img = nib.load(str(Path(gt_dir) / str(rel)))
            return img, (lambda e: _row_mask(masks, e, img.shape, img.affine))
    return None, None


#: share of an ROI's voxels inside a planted effect's mask above which the ROI mean carries the effect
ROI_OVERLAP_MIN = 0.05


def roi_row_status(effects: pd.DataFrame, analysis: str, metric: str, roi, sign: float,
                   score: str | None = None, flip_to: str | None = None, roi_spec=None,
                   roi_mask=None, effect_mask=None) -> str:
    """Ground truth of one significant ROI row: ``"planted"`` when a planted effect of this
    analysis/metric lies in the ROI (label-name match as the scoring, :func:`roi_matches`; for
    ipsi/contra effects the side the study's ``flip_to`` puts them on, either side when unflipped)
    with the row's sign (group row: sign of t against the effect's direction; correlation row
    (``score``): sign of r against ``clinical_r`` of that score), else ``"not planted"``.
    ``roi_spec``: the ROI's region spec when the analysis declares it (its label names match too).
    ``"related (<effect ids>)"`` when instead a planted effect of another analysis/metric on the same
    acquisition lies in the ROI (:func:`related_effects`; e.g. ALFF in a region with planted ReHo).
    With ``roi_mask`` (bool array) and ``effect_mask(effect row) -> bool array`` on its grid, an effect
    covering at least :data:`ROI_OVERLAP_MIN` of the ROI's voxels also counts (a tract ROI that runs
    through a planted region), whatever the names."""
    if effects is None or not len(effects) or not np.isfinite(sign) or sign == 0:
        return "not planted"
    for _, e in effects.iterrows():
        if str(e.get("analysis")) != analysis or metric not in metric_aliases(str(e.get("metric")), flip_to):
            continue
        if score is None:
            want = e.get("direction")
            if not _finite(want) or float(want) == 0 or (_finite(e.get("cohens_d")) and float(e["cohens_d"]) == 0):
                continue
        else:
            if str(e.get("clinical_score") or "").strip() != score or not _finite(e.get("clinical_r")):
                continue
            want = e["clinical_r"]
        if np.sign(float(want)) != np.sign(sign):
            continue
        if roi_matches(roi, _placed_keys(e, flip_to), roi_spec) or _covers(roi_mask, effect_mask, e):
            return "planted"
    rel = []
    for _, e in related_effects(effects, analysis, metric, flip_to).iterrows():
        if roi_matches(roi, _placed_keys(e, flip_to), roi_spec) or _covers(roi_mask, effect_mask, e):
            rel.append(str(e["effect_id"]))
    return f"related ({', '.join(sorted(set(rel)))})" if rel else "not planted"


# ----------------------------------------------------------------------------- contrasts
def expected_contrast(test: str, direction=None, score=None, r=None) -> str:
    from ..stats.design import clinical_contrast, group_contrast

    return group_contrast(direction) if test == "group" else clinical_contrast(score, float(r) > 0)


def recovery_contrast(direction, post_factor, sessions) -> str | None:
    """Paired contrast of patients in which the planted change after surgery shows, or None (no
    sessions, or ``post_factor`` 1 / missing: nothing planted between the sessions)."""
    if not sessions or len(sessions) < 2 or not _finite(post_factor) or float(post_factor) == 1.0:
        return None
    from ..stats.design import paired_contrast

    change = -np.sign(float(direction)) if float(post_factor) < 1.0 else np.sign(float(direction))
    return paired_contrast("patient", str(sessions[0]), str(sessions[-1]), change > 0)


def find_contrast(contrasts, name: str):
    """Contrast of ``contrasts`` (dict name -> obj) whose name equals ``name`` up to punctuation."""
    if name in contrasts:
        return contrasts[name]
    n = norm(name)
    for k, v in contrasts.items():
        if norm(k) == n:
            return v
    return None


def _finite(x) -> bool:
    try:
        return x is not None and np.isfinite(float(x))
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------- scoring
def _score_voxelwise(row, test, contrast, res, masks, thr) -> dict:
    out = {"method": "voxelwise"}
    c = find_contrast(res.contrasts, contrast)
    if c is None or c.logp is None:
        return {**out, "status": "contrast missing", "detail": f"no contrast-{contrast}_desc-fwe_logp map"}
    img = nib.load(str(c.logp))
    logp = np.asarray(img.dataobj, dtype=np.float64).reshape(img.shape[:3])
    m = _row_mask(masks, row, img.shape, img.affine)
    if m is None:
        return {**out, "status": "mask missing", "detail": f"mask file {row.get('mask')!r} not found"}
    vals = logp[m]
    n_sig = int((vals > thr).sum())
    maxl = float(vals.max()) if vals.size else np.nan
    wrong = np.nan
    o = find_contrast(res.contrasts, opposite_contrast(contrast))
    if o is not None and o.logp is not None:
        oi = nib.load(str(o.logp))
        ol = np.asarray(oi.dataobj, dtype=np.float64).reshape(oi.shape[:3])
        om = m if oi.shape[:3] == img.shape[:3] else _row_mask(masks, row, oi.shape, oi.affine)
        wrong = int((ol[om] > thr).sum())
    return {**out, "status": "hit" if n_sig > 0 else "miss", "hit": int(n_sig > 0),
            "n_mask_voxels": int(m.sum()), "n_sig_voxels": n_sig, "max_logp": maxl,
            "min_p": 10 ** -maxl if np.isfinite(maxl) else np.nan, "wrong_direction": wrong,
            "detail": f"{n_sig} of {int(m.sum())} mask voxels FWE-significant"}


def _roi_hit(df: pd.DataFrame, keys, alpha, sign, contrast=None, score=None, r_cols=STAT_COLUMNS) -> dict:
    rc = roi_column(df)
    pc = pick_column(df, P_COLUMNS)
    if rc is None or pc is None:
        return {"status": "table unreadable", "detail": "no ROI or p column"}
    sub = df[np.array([roi_matches(v, keys) for v in df[rc]], dtype=bool)]
    if score is not None:
        sc = pick_column(df, SCORE_COLUMNS)
        if sc is not None:
            sub = sub[np.array([norm(v) == norm(score) for v in sub[sc]], dtype=bool)]
    cc = pick_column(df, ("contrast",))
    directional = False
    if contrast is not None and cc is not None:
        want = sub[np.array([norm(v) == norm(contrast) for v in sub[cc]], dtype=bool)]
        if len(want):
            sub, directional = want, True
    if sub.empty:
        return {"status": "no matching ROI", "detail": "no row of the table matches the effect region"}
    stc = pick_column(sub, r_cols)
    p = pd.to_numeric(sub[pc], errors="coerce")
    ok = p < alpha
    if stc is not None:
        st = pd.to_numeric(sub[stc], errors="coerce")
        ok &= (st > 0) if directional else (np.sign(st) == sign)
    hit = bool(ok.any())
    names = ", ".join(str(v) for v in sub[rc].unique()[:6])
    return {"status": "hit" if hit else "miss", "hit": int(hit), "min_p": float(p.min()) if p.notna().any()
            else np.nan, "detail": f"ROI(s) {names}; {pc} < {alpha}" + (f" with sign of {stc}" if stc else "")}


def score_effects(effects: pd.DataFrame, results, gt_dir, alpha: float = 0.05,
                  flip_to: str | None = None, sessions=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score planted ``effects`` against group ``results`` (list of ``collect.MetricResult``);
    ``sessions``: the study's session labels (adds the ``recovery`` tests, module doc).

    Returns ``(scores, false_clusters)``: one row per effect test (columns
    :data:`SCORE_COLUMNS_OUT`; ``hit`` 1/0, empty when not evaluated) and one row per significant
    cluster that touches no planted mask (columns :data:`FALSE_COLUMNS`).
    """
    thr = -np.log10(alpha)
    masks = _Masks(Path(gt_dir), flip_to)
    by_key = {(r.analysis, r.metric): r for r in results}
    rows = []
    for _, e in effects.iterrows():
        e = e.to_dict()
        tests = []
        if _finite(e.get("direction")) and float(e["direction"]) != 0 and \
                not (_finite(e.get("cohens_d")) and float(e["cohens_d"]) == 0):
            tests.append(("group", expected_contrast("group", direction=e["direction"])))
            rec = recovery_contrast(e["direction"], e.get("post_factor"), sessions)
            if rec:
                tests.append(("recovery", rec))
        score = e.get("clinical_score")
        if isinstance(score, str) and score.strip() and _finite(e.get("clinical_r")) and float(e["clinical_r"]):
            tests.append(("clinical", expected_contrast("clinical", score=score.strip(), r=e["clinical_r"])))
        for test, contrast in tests:
            base = {"effect_id": e.get("effect_id"), "analysis": e.get("analysis"), "metric": e.get("metric"),
                    "test": test, "contrast": contrast, "region": e.get("region"),
                    "hemisphere": e.get("hemisphere"),
                    "expected": (f"d = {np.sign(float(e['direction'])) * abs(float(e['cohens_d'])):+.2f}"
                                 if test == "group" and _finite(e.get("cohens_d"))
                                 else f"direction {int(float(e['direction'])):+d}" if test == "group"
                                 else f"x {float(e['post_factor']):g} after surgery" if test == "recovery"
                                 else f"r({score}) = {float(e['clinical_r']):+.2f}")}
            res = next((by_key[(str(e.get("analysis")), m)] for m in metric_aliases(str(e.get("metric")), flip_to)
                        if (str(e.get("analysis")), m) in by_key), None)
            if res is None:
                rows.append({**base, "status": "not run", "method": "",
                             "detail": f"no group/{e.get('analysis')}/{e.get('metric')} result"})
                continue
            has_maps = any(c.logp is not None for c in res.contrasts.values())
            if has_maps:
                rows.append({**base, **_score_voxelwise(e, test, contrast, res, masks, thr)})
                continue
            keys = region_tokens(e.get("region"), e.get("effect_id"))
            if test == "recovery":
                out = {"status": "not evaluated", "detail": "ROI-level change tests: see desc-longitudinal_rois.tsv"}
            elif test == "group" and res.rois is not None:
                out = _roi_hit(res.rois, keys, alpha, np.sign(float(e["direction"])), contrast=contrast)
            elif test == "clinical" and res.correlations is not None:
                out = _roi_hit(res.correlations, keys, alpha, np.sign(float(e["clinical_r"])),
                               score=score.strip(), r_cols=R_COLUMNS + STAT_COLUMNS)
            else:
                out = {"status": "no result table", "detail": "neither maps nor an ROI/correlation table"}
            rows.append({**base, "method": "roi", **out})
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS_OUT)
    scores["hit"] = pd.array(scores["hit"], dtype="Int64")
    return scores, false_clusters(effects, results, masks, thr)


def modality_of(analysis: str) -> str | None:
    """The acquisition an analysis reads (T1w, dwi, bold; :data:`hfsmri.qc.decisions.STAGE_MODALITY`)."""
    from ..analyses import ANALYSES
    from ..qc.decisions import STAGE_MODALITY

    spec = ANALYSES.get(str(analysis))
    return STAGE_MODALITY.get(spec.stage) if spec is not None else None


def related_effects(effects: pd.DataFrame, analysis: str, metric: str, flip_to=None) -> pd.DataFrame:
    """Planted effects of *other* analyses/metrics on the same acquisition (e.g. seed-FC coupling and
    ReHo for an ALFF map: the simulator changed the BOLD signal there, so the map can differ too)."""
    if effects is None or not len(effects):
        return effects
    mod = modality_of(analysis)
    same = np.array([str(a) == analysis and metric in metric_aliases(str(m), flip_to)
                     for a, m in zip(effects["analysis"], effects["metric"])], dtype=bool)
    other = np.array([modality_of(str(a)) == mod for a in effects["analysis"]], dtype=bool)
    def nonzero(col):
        vals = effects[col] if col in effects.columns else [np.nan] * len(effects)
        return np.array([_finite(v) and float(v) != 0 for v in vals], dtype=bool)

    planted = nonzero("direction") | nonzero("clinical_r")
    return effects[~same & other & planted]


def false_clusters(effects: pd.DataFrame, results, masks: _Masks, thr: float) -> pd.DataFrame:
    """Significant clusters (26-connected, −log10 p > ``thr``) touching no planted mask of their
    metric. ``overlaps``: the planted effects of other analyses/metrics on the same acquisition whose
    mask the cluster touches (:func:`related_effects`), comma-separated, or "none"."""
    from .figures import peak_labels

    rows = []
    structure = np.ones((3, 3, 3), dtype=bool)
    for res in results:
        eff = effects[(effects["analysis"].astype(str) == res.analysis) &
                      np.array([res.metric in metric_aliases(str(m), masks.flip_to) for m in effects["metric"]],
                               dtype=bool)]
        for cname, c in sorted(res.contrasts.items()):
            if c.logp is None:
                continue
            img = nib.load(str(c.logp))
            logp = np.asarray(img.dataobj, dtype=np.float64).reshape(img.shape[:3])
            sig = logp > thr
            if not sig.any():
                continue
            planted = np.zeros(sig.shape, dtype=bool)
            for _, e in eff.iterrows():
                m = _row_mask(masks, e, img.shape, img.affine)
                if m is not None:
                    planted |= m
            lab, n = ndimage.label(sig, structure=structure)
            vox_mm3 = float(abs(np.linalg.det(img.affine[:3, :3])))
            related = None
            for k in range(1, n + 1):
                comp = lab == k
                if (comp & planted).any():
                    continue
                if related is None:  # masks of planted effects of other metrics on this acquisition
                    related = []
                    for _, e in related_effects(effects, res.analysis, res.metric, masks.flip_to).iterrows():
                        m = _row_mask(masks, e, img.shape, img.affine)
                        if m is not None and m.any():
                            related.append((str(e["effect_id"]), m))
                touch = sorted({eid for eid, m in related if (comp & m).any()})
                idx = np.argwhere(comp)
                peak = idx[np.argmax(logp[comp])]
                xyz = (img.affine @ np.r_[peak, 1.0])[:3]
                rows.append({"analysis": res.analysis, "metric": res.metric, "contrast": cname, "cluster": k,
                             "n_voxels": int(comp.sum()), "volume_mm3": comp.sum() * vox_mm3,
                             "peak_x": xyz[0], "peak_y": xyz[1], "peak_z": xyz[2],
                             "peak_logp": float(logp[tuple(peak)]), "aal_label": "",
                             "overlaps": ",".join(touch) if touch else "none"})
    df = pd.DataFrame(rows, columns=FALSE_COLUMNS)
    if len(df):
        df["aal_label"] = peak_labels(df[["peak_x", "peak_y", "peak_z"]].to_numpy())
    return df


def summarise(scores: pd.DataFrame, false: pd.DataFrame) -> pd.DataFrame:
    """One-row score: tests evaluated, hits, sensitivity, false clusters."""
    ev = scores[scores["hit"].notna()]
    n, h = len(ev), int(ev["hit"].sum()) if len(ev) else 0
    return pd.DataFrame([{"n_planted_tests": len(scores), "n_evaluated": n, "n_hits": h, "n_misses": n - h,
                          "sensitivity": h / n if n else np.nan, "n_not_evaluated": len(scores) - n,
                          "n_false_clusters": len(false),
                          "n_false_clusters_unrelated": int((false["overlaps"].astype(str) == "none").sum())
                          if len(false) and "overlaps" in false.columns else 0}])
