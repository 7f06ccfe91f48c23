"""Planted effects: the effects file (YAML), its validation, region masks and ground-truth rows.

An effect changes one *quantity* of the simulated brains of patients in one region:

=========  ==========================  =====================================================
metric     quantity changed            reported as (analysis/metric, direction)
=========  ==========================  =====================================================
gm         GM fraction (relative)      vbm/gm, roi_volumes/volume (+ thickness if listed)
fa/rd/md   radial diffusivity λ⊥       {dti,tbss,dwi_rois}/{fa: -q, rd: +q, md: +q}
ad         axial diffusivity λ∥        {dti,tbss,dwi_rois}/{ad: +q, md: +q, fa: +q}
reho       local coherence             reho/reho
alff       low-frequency amplitude     alff/alff, alff/falff
fc         coupling target <- seed     seed_fc/seed-<seed>
=========  ==========================  =====================================================

(``q`` = direction of the quantity: for ``metric: fa, direction: -1`` λ⊥ goes up, q = +1.)

Size: a subject's noise-free metric at a voxel is ``base * (1 + sigma * Z)`` (``base + sigma * Z``
for reho/fc, ``exp(sigma * Z)`` amplitude for alff) where ``Z`` is a unit-variance smooth random
field (between-subject variability). In an effect region a patient's ``Z`` is shifted by
``direction * cohens_d`` (times ``post_factor`` in later sessions), so ``cohens_d`` is the
standardised difference of the noise-free metric at a voxel. BOLD metrics (reho, alff, fc) are
measured with noise, so their shift is ``cohens_d * bold_gain`` and ``cohens_d`` is the standardised
difference of the metric an ideal pipeline measures from a 4-minute run (see
:data:`BOLD_MEASUREMENT_SD`). With a clinical link
``{score, r}`` the patient's ``Z`` in the region is ``r * zscore(score) + sqrt(1 - r^2) * Z``, i.e.
the metric correlates with the score at ``r`` among patients. DTI rows derived from one planted
diffusivity get their own Cohen's d by a Monte Carlo calculation at a typical tract voxel.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from hfsmri.analyses import SAME_MAPS_AS, VOXELWISE_ANALYSES, measuring, of_stage, seed_metric
from hfsmri.errors import HfsmriError

DEFAULT_FILE = Path(__file__).with_name("default_effects.yaml")

METRIC_QUANTITY = {"gm": "gm", "fa": "lperp", "rd": "lperp", "md": "lperp", "ad": "lpar",
                   "reho": "reho", "alff": "alff", "fc": "fc"}
QUANTITY_SIGN = {"fa": -1, "rd": 1, "md": 1, "ad": 1, "gm": 1, "reho": 1, "alff": 1, "fc": 1}
QUANTITY_MODALITY = {"gm": "anat", "lperp": "dwi", "lpar": "dwi", "reho": "func", "alff": "func", "fc": "func"}
DEFAULT_SIGMA = {"gm": 0.10, "lperp": 0.08, "lpar": 0.04, "reho": 0.12, "alff": 0.12, "fc": 0.12}
HEMISPHERES = {"L", "R", "bilateral", "midline", "ipsi", "contra"}
CLINICAL_SCORES = {"severity", "duration_months", "hama", "hamd"}
DTI_ANALYSES = of_stage("dwi")   # the diffusion analyses of hfsmri.analyses, in registry order
_SEED_RE = re.compile(r"^[A-Za-z0-9]+$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# BOLD metrics are measured, not seen: a subject's ReHo / ALFF / seed FC from a 4-minute run varies
# around its noise-free value (finite-sample noise of correlations and band power, thermal noise,
# the run's own realisation of the slow signals). So that ``cohens_d`` is the standardised group
# difference *of the metric an ideal pipeline measures* (as the literature's effect sizes are), a
# BOLD effect shifts the latent quantity by ``d * sqrt(sigma^2 + m^2) / sigma`` SD units, where
# ``m`` (in the quantity's own units: coherence p, log amplitude, coupling c) is the measurement
# noise expressed as an equivalent latent SD. Implied kernel-level reliability (the latent share
# of the between-subject variance, an ICC) = sigma^2 / (sigma^2 + m^2).
# Calibrated once by ``python benchmarks/bench_sensitivity.py --kernel 120 --n 10 --calibrate``
# (120 volumes at TR 2 s, 3 mm, BOLD in MNI position, ReHo (27 voxels) and ALFF at a voxel, FC
# between the seed and target ROI means; the numbers are in docs/simulator.md, "Sensitivity").
# Longer runs have less measurement noise, so at 240 volumes the observed d is somewhat larger.
BOLD_MEASUREMENT_SD = {"reho": 0.31, "alff": 0.21, "fc": 0.26}


def bold_gain(quantity: str, sigma: dict) -> float:
    """Latent shift per unit of planted Cohen's d for a BOLD quantity (``sqrt(1 + (m/sigma)^2)``)."""
    m, s = BOLD_MEASUREMENT_SD[quantity], float(sigma[quantity])
    return float(np.sqrt(1.0 + (m / s) ** 2))


# typical coherent tract voxel used to convert a planted diffusivity effect into each metric's d
TRACT_L1 = 1.7e-3
TRACT_LPERP = 0.35e-3


@dataclass
class Effect:
    """One planted effect (see module doc)."""

    id: str
    metric: str
    direction: int
    cohens_d: float
    region: object
    hemisphere: str = "bilateral"
    clinical_score: str | None = None
    clinical_r: float = 0.0
    seed: str | None = None
    seed_region: object = None
    tissue: str | None = None
    source: str = ""
    analyses: list | None = None

    @property
    def quantity(self) -> str:
        return METRIC_QUANTITY[self.metric]

    @property
    def modality(self) -> str:
        return QUANTITY_MODALITY[self.quantity]

    @property
    def q_direction(self) -> int:
        """Direction of the planted quantity (e.g. +1 = λ⊥ up for ``fa`` down)."""
        return int(self.direction * QUANTITY_SIGN[self.metric])

    @property
    def q_clinical_r(self) -> float:
        return float(self.clinical_r * QUANTITY_SIGN[self.metric])

    @property
    def lateralised(self) -> bool:
        return self.hemisphere in ("ipsi", "contra")


@dataclass
class EffectSet:
    effects: list = field(default_factory=list)
    sigma: dict = field(default_factory=lambda: dict(DEFAULT_SIGMA))
    post_factor: float = 0.5
    name: str = "default"

    def of_quantity(self, quantity: str) -> list:
        return [e for e in self.effects if e.quantity == quantity]

    def __len__(self) -> int:
        return len(self.effects)


def _err(msg, path, fld=None):
    return HfsmriError(msg, path=path, field=fld)


def load_effects(spec="default") -> EffectSet:
    """Load planted effects.

    Parameters
    ----------
    spec : "default" | "none" | path to a YAML file | dict | EffectSet
        "default" = the review's findings (``default_effects.yaml``), "none" = null study.

    Raises :class:`hfsmri.errors.HfsmriError` naming the file and field for invalid content.
    """
    if isinstance(spec, EffectSet):
        return spec
    if spec is None or (isinstance(spec, str) and spec.lower() in ("none", "null")):
        base = _read_yaml(DEFAULT_FILE)
        return EffectSet([], _sigma(base, DEFAULT_FILE), float(base.get("post_factor", 0.5)), "none")
    if isinstance(spec, dict):
        return _parse(copy.deepcopy(spec), "<effects dict>", "custom")
    if isinstance(spec, str) and spec.lower() == "default":
        return _parse(_read_yaml(DEFAULT_FILE), DEFAULT_FILE, "default")
    path = Path(spec)
    if not path.is_file():
        raise HfsmriError("effects file not found (use 'default', 'none' or a YAML file)", path=path)
    return _parse(_read_yaml(path), path, path.stem)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise HfsmriError(f"not valid YAML: {exc}", path=path) from None
    if data is None:
        data = {}
    if isinstance(data, list):
        data = {"effects": data}
    if not isinstance(data, dict):
        raise HfsmriError("an effects file must be a mapping with an 'effects' list", path=path)
    return data


def _sigma(data: dict, path) -> dict:
    sigma = dict(DEFAULT_SIGMA)
    raw = data.get("sigma") or {}
    if not isinstance(raw, dict):
        raise _err("must be a mapping quantity -> SD", path, "sigma")
    for k, v in raw.items():
        if k not in sigma:
            raise _err(f"unknown quantity {k!r}; choose from {sorted(sigma)}", path, f"sigma.{k}")
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise _err(f"must be a number, got {v!r}", path, f"sigma.{k}") from None
        if not (0 < v < 1):
            raise _err(f"must be in (0, 1), got {v}", path, f"sigma.{k}")
        sigma[k] = v
    return sigma


def _parse(data: dict, path, name: str) -> EffectSet:
    sigma = _sigma(data, path)
    try:
        post = float(data.get("post_factor", 0.5))
    except (TypeError, ValueError):
        raise _err("must be a number", path, "post_factor") from None
    if not (0 <= post <= 2):
        raise _err(f"must be between 0 and 2, got {post}", path, "post_factor")
    raw = data.get("effects") or []
    if not isinstance(raw, list):
        raise _err("must be a list of effects", path, "effects")
    effects, seen = [], set()
    for i, item in enumerate(raw):
        e = _parse_effect(item, path, f"effects[{i}]")
        if e.id in seen:
            raise _err(f"duplicate effect id {e.id!r}", path, f"effects[{i}].id")
        seen.add(e.id)
        effects.append(e)
    return EffectSet(effects, sigma, post, name)


def _parse_effect(item, path, where) -> Effect:
    if not isinstance(item, dict):
        raise _err("each effect must be a mapping", path, where)
    allowed = {"id", "metric", "direction", "cohens_d", "region", "hemisphere", "clinical", "seed",
               "seed_region", "tissue", "source", "analyses"}
    unknown = set(item) - allowed
    if unknown:
        raise _err(f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}", path, where)
    for key in ("id", "metric", "direction", "cohens_d", "region"):
        if key not in item:
            raise _err(f"missing required key {key!r}", path, where)
    eid = str(item["id"])
    if not _ID_RE.match(eid):
        raise _err(f"id must be letters, digits, '-', '_' or '.', got {eid!r}", path, f"{where}.id")
    metric = str(item["metric"]).lower()
    if metric not in METRIC_QUANTITY:
        raise _err(f"unknown metric {metric!r}; choose from {sorted(METRIC_QUANTITY)}", path, f"{where}.metric")
    try:
        direction = int(item["direction"])
    except (TypeError, ValueError):
        direction = 0
    if direction not in (-1, 1):
        raise _err(f"must be +1 or -1, got {item['direction']!r}", path, f"{where}.direction")
    try:
        d = float(item["cohens_d"])
    except (TypeError, ValueError):
        raise _err(f"must be a number, got {item['cohens_d']!r}", path, f"{where}.cohens_d") from None
    if not (0 <= d <= 10):
        raise _err(f"must be between 0 and 10, got {d}", path, f"{where}.cohens_d")
    hemi = str(item.get("hemisphere", "bilateral"))
    if hemi not in HEMISPHERES:
        raise _err(f"must be one of {sorted(HEMISPHERES)}, got {hemi!r}", path, f"{where}.hemisphere")
    score, r = None, 0.0
    clin = item.get("clinical")
    if clin is not None:
        if not isinstance(clin, dict) or "score" not in clin or "r" not in clin:
            raise _err("must be a mapping {score: NAME, r: VALUE}", path, f"{where}.clinical")
        score = str(clin["score"])
        if score not in CLINICAL_SCORES:
            raise _err(f"unknown score {score!r}; choose from {sorted(CLINICAL_SCORES)}", path,
                       f"{where}.clinical.score")
        try:
            r = float(clin["r"])
        except (TypeError, ValueError):
            raise _err("must be a number", path, f"{where}.clinical.r") from None
        if not (-0.99 <= r <= 0.99):
            raise _err(f"must be between -0.99 and 0.99, got {r}", path, f"{where}.clinical.r")
    seed, seed_region = item.get("seed"), item.get("seed_region")
    if metric == "fc":
        if not seed or not seed_region:
            raise _err("fc effects need 'seed' (name, e.g. amygdalaR) and 'seed_region'", path, where)
        if not _SEED_RE.match(str(seed)):
            raise _err(f"seed name must be alphanumeric, got {seed!r}", path, f"{where}.seed")
        _check_region(seed_region, path, f"{where}.seed_region")
    tissue = item.get("tissue")
    if tissue is not None and tissue not in ("gm", "wm"):
        raise _err(f"must be gm or wm, got {tissue!r}", path, f"{where}.tissue")
    _check_region(item["region"], path, f"{where}.region")
    analyses = item.get("analyses")
    if analyses is not None:
        if not isinstance(analyses, list) or not all(isinstance(a, str) and a.count("/") == 1 for a in analyses):
            raise _err("must be a list of 'analysis/metric' strings", path, f"{where}.analyses")
    return Effect(eid, metric, direction, d, item["region"], hemi, score, r,
                  None if seed is None else str(seed), seed_region, tissue, str(item.get("source", "")), analyses)


def _check_region(spec, path, where):
    if isinstance(spec, str):
        if ":" not in spec:
            raise _err(f"region {spec!r} must look like 'aal:Thalamus_L' or 'ho:Left_Amygdala'", path, where)
        return
    if isinstance(spec, list):
        if not spec:
            raise _err("empty region list", path, where)
        for k, s in enumerate(spec):
            _check_region(s, path, f"{where}[{k}]")
        return
    if isinstance(spec, dict):
        keys = set(spec)
        ok = {"sphere", "radius", "box", "within", "tissue", "not"}
        if keys - ok:
            raise _err(f"unknown region keys {sorted(keys - ok)}; allowed {sorted(ok)}", path, where)
        if not keys & {"sphere", "box", "within"}:
            raise _err("a region mapping needs 'sphere', 'box' or 'within'", path, where)
        if "box" in spec:
            b = np.asarray(spec["box"], dtype=float) if _is_num_list(spec["box"]) else None
            if b is None or b.shape != (3, 2):
                raise _err("box must be [[x0, x1], [y0, y1], [z0, z1]] in MNI mm", path, where)
        if "sphere" in spec and (not _is_num_list(spec["sphere"]) or len(spec["sphere"]) != 3):
            raise _err("sphere must be [x, y, z] in MNI mm", path, where)
        for key in ("within", "not"):
            if key in spec:
                _check_region(spec[key], path, f"{where}.{key}")
        return
    raise _err(f"region must be a label spec, a list or a mapping, got {spec!r}", path, where)


def _is_num_list(v) -> bool:
    try:
        np.asarray(v, dtype=float)
        return True
    except (TypeError, ValueError):
        return False


def region_to_str(spec) -> str:
    return spec if isinstance(spec, str) else json.dumps(spec, separators=(",", ":"))


# --------------------------------------------------------------------------- region masks
def resolve_region(spec, ref_img) -> np.ndarray:
    """Boolean mask of a region spec on ``ref_img``'s MNI grid.

    Forms: atlas label spec (``"aal:Thalamus_L"``, ``+`` unions, ``/regex/``) or sphere dict as in
    :func:`hfsmri.spatial.atlas.region_mask`; a list (union); or a mapping with any of ``box``
    ``[[x0,x1],[y0,y1],[z0,z1]]`` (mm), ``sphere``/``radius``, ``within`` (intersect with another
    spec), ``not`` (subtract), ``tissue`` (gm|wm: template probability >= 0.3).
    """
    from hfsmri.spatial.atlas import region_mask

    shape = ref_img.shape[:3]
    if isinstance(spec, str):
        try:
            return region_mask(spec, ref_img)
        except ValueError as exc:
            raise HfsmriError(str(exc), field="effects.region") from None
    if isinstance(spec, list):
        out = np.zeros(shape, bool)
        for s in spec:
            out |= resolve_region(s, ref_img)
        return out
    out = np.ones(shape, bool)
    if "sphere" in spec:
        out &= region_mask({"sphere": spec["sphere"], "radius": spec.get("radius", 5.0)}, ref_img)
    if "box" in spec:
        b = np.asarray(spec["box"], float)
        ijk = np.indices(shape).reshape(3, -1)
        xyz = ref_img.affine[:3, :3] @ ijk + ref_img.affine[:3, 3:4]
        inside = np.all((xyz >= b[:, :1]) & (xyz <= b[:, 1:]), axis=0).reshape(shape)
        out &= inside
    if "within" in spec:
        out &= resolve_region(spec["within"], ref_img)
    if "not" in spec:
        out &= ~resolve_region(spec["not"], ref_img)
    if "tissue" in spec:
        out &= tissue_mask(spec["tissue"], ref_img)
    return out


def tissue_mask(tissue: str, ref_img, threshold: float = 0.3) -> np.ndarray:
    from hfsmri.spatial.templates import load_template

    res = float(abs(ref_img.affine[0, 0]))
    img = load_template(tissue.upper(), res)
    if img.shape[:3] != ref_img.shape[:3]:
        from nilearn import image

        img = image.resample_to_img(img, ref_img, interpolation="linear", force_resample=True,
                                    copy_header=True)
    return np.asarray(img.dataobj) >= threshold


def effect_mask(effect: Effect, ref_img) -> np.ndarray:
    """Binary mask of an effect as planted for a patient affected on the right (see ipsi/contra)."""
    m = resolve_region(effect.region, ref_img)
    if effect.tissue:
        m &= tissue_mask(effect.tissue, ref_img)
    if not m.any():
        raise HfsmriError(f"region {region_to_str(effect.region)} is empty", field=f"effects[{effect.id}].region")
    return m


# --------------------------------------------------------------------------- ground-truth rows
def _dti_metrics(l1, lp):
    l2 = l3 = lp
    md = (l1 + l2 + l3) / 3.0
    fa = np.sqrt(1.5 * ((l1 - md) ** 2 + (l2 - md) ** 2 + (l3 - md) ** 2) / (l1 ** 2 + l2 ** 2 + l3 ** 2))
    return {"fa": fa, "md": md, "ad": l1, "rd": (l2 + l3) / 2.0}


@lru_cache(maxsize=64)
def dti_metric_d(quantity: str, q_d: float, sigma_perp: float, sigma_par: float, n: int = 20000):
    """Cohen's d (signed, patients − controls) of FA/MD/AD/RD for a planted shift of ``q_d`` SD
    of λ⊥ (``quantity='lperp'``) or λ∥ (``'lpar'``) at a typical coherent tract voxel (λ∥ 1.7e-3,
    λ⊥ 0.35e-3 mm²/s), with the between-subject variability of both diffusivities. Monte Carlo
    with a fixed seed; also the correlation sign factor of each metric with the quantity."""
    rng = np.random.default_rng(12345)
    z1, z2 = rng.standard_normal((2, n))
    out = {}
    for g, shift in (("c", 0.0), ("p", q_d)):
        s_perp = shift if quantity == "lperp" else 0.0
        s_par = shift if quantity == "lpar" else 0.0
        out[g] = _dti_metrics(TRACT_L1 * (1 + sigma_par * (z1 + s_par)), TRACT_LPERP * (1 + sigma_perp * (z2 + s_perp)))
    res = {}
    for m in ("fa", "md", "ad", "rd"):
        c, p = out["c"][m], out["p"][m]
        sd = np.sqrt((c.var() + p.var()) / 2)
        res[m] = float((p.mean() - c.mean()) / sd)
    return res


def quantity_shift(effect: Effect, sigma: dict) -> float:
    """Shift (in SD units of the planted quantity) that gives the effect's own metric its
    ``cohens_d``: ``cohens_d`` for GM; for BOLD quantities ``cohens_d * bold_gain(quantity, sigma)``
    (the measured metric's SD includes the measurement noise of a 4-minute run, see
    :data:`BOLD_MEASUREMENT_SD`); for DTI metrics planted through λ⊥/λ∥ the Monte Carlo shift."""
    if effect.quantity in BOLD_MEASUREMENT_SD:
        return float(effect.cohens_d) * bold_gain(effect.quantity, sigma)
    if effect.quantity not in ("lperp", "lpar") or effect.cohens_d == 0:
        return float(effect.cohens_d)
    target = effect.cohens_d
    lo, hi = 0.0, 4.0 * target + 1.0
    for _ in range(40):  # bisection on the monotone Monte Carlo d(shift)
        mid = 0.5 * (lo + hi)
        got = abs(dti_metric_d(effect.quantity, round(effect.q_direction * mid, 6), sigma["lperp"], sigma["lpar"])[effect.metric])
        lo, hi = (mid, hi) if got < target else (lo, mid)
    return round(0.5 * (lo + hi), 4)


def ground_truth_rows(effects: EffectSet, mask_paths: dict, post_factor: float | None = None) -> list[dict]:
    """Rows of ``effects.tsv`` (contract columns + extras), one per effect and analysis/metric."""
    rows = []
    pf = effects.post_factor if post_factor is None else post_factor
    for e in effects.effects:
        base = {"effect_id": e.id, "region": region_to_str(e.region), "hemisphere": e.hemisphere,
                "clinical_score": e.clinical_score or "n/a", "mask": mask_paths.get(e.id, "n/a"),
                "source": e.source, "modality": e.modality, "planted_metric": e.metric,
                "seed": e.seed or "n/a", "post_factor": pf,
                "mask_unaligned": mask_paths.get(e.id + "__lr", mask_paths.get(e.id, "n/a"))}
        entries = []  # (analysis, metric, direction, d, r)
        if e.quantity in ("lperp", "lpar"):
            shift = quantity_shift(e, effects.sigma)
            ds = dti_metric_d(e.quantity, e.q_direction * shift, effects.sigma["lperp"], effects.sigma["lpar"])
            ds1 = dti_metric_d(e.quantity, 1.0, effects.sigma["lperp"], effects.sigma["lpar"])
            metrics = ("fa", "rd", "md") if e.quantity == "lperp" else ("ad", "md", "fa")
            for a in (e.analyses and sorted({x.split("/")[0] for x in e.analyses}) or DTI_ANALYSES):
                for m in metrics:
                    sign = int(np.sign(ds1[m]))
                    entries.append((a, m, sign * e.q_direction, abs(ds[m]), e.q_clinical_r * sign))
        elif e.quantity == "fc":
            for a in (e.analyses or [seed_metric(e.seed)]):
                an, m = a.split("/")
                entries.append((an, m, e.direction, e.cohens_d, e.clinical_r))
        else:
            for a in (e.analyses or measuring(e.quantity)):
                an, m = a.split("/")
                entries.append((an, m, e.direction, e.cohens_d, e.clinical_r))
        for an, m, dirn, d, r in entries:
            row = dict(base)
            row.update({"analysis": an, "metric": m, "direction": int(dirn), "cohens_d": round(float(d), 3),
                        "clinical_r": round(float(r), 3) if e.clinical_score else 0.0})
            rows.append(row)
    return rows


GT_COLUMNS = ["effect_id", "analysis", "metric", "region", "hemisphere", "direction", "cohens_d",
              "clinical_score", "clinical_r", "mask", "mask_unaligned", "seed", "modality",
              "planted_metric", "post_factor", "source"]


# --------------------------------------------------------------------------- effect sizes that survive
#: measured by ``benchmarks/bench_sensitivity.py --store``: per setting (demo, default) and planted test,
#: the effect size in the participant-level values after the pipeline (docs/simulator.md, "Sensitivity")
OBSERVED_FILE = Path(__file__).with_name("observed_effects.tsv")
OBSERVED_COLUMNS = ["setting", "n_per_group_measured", "n_studies", "effect_id", "analysis", "metric", "modality",
                    "planted_d", "observed_d", "ci_lo", "ci_hi", "observed_d_voxel_median", "control_cv_roi",
                    "planted_r", "observed_r"]
#: floor of a surviving d (a reversed or vanished effect): keeps the test planted, with power ~ 0
MIN_SURVIVING_D = 1e-3


def observed_effect_sizes(setting: str = "demo", path=None):
    """The measured effect sizes of the default effects after the pipeline (a DataFrame with
    :data:`OBSERVED_COLUMNS`; empty when nothing was measured for ``setting``)."""
    import pandas as pd

    p = Path(path) if path is not None else OBSERVED_FILE
    if not p.is_file():
        return pd.DataFrame(columns=OBSERVED_COLUMNS)
    t = pd.read_csv(p, sep="\t")
    missing = set(OBSERVED_COLUMNS) - set(t.columns)
    if missing:
        raise HfsmriError(f"observed effect sizes table lacks columns {sorted(missing)}", path=p)
    return t[t["setting"] == setting].reset_index(drop=True)


def surviving_effect_sizes(rows, setting: str = "demo", path=None):
    """Replace the planted ``cohens_d``/``clinical_r`` of test rows (columns ``effect_id, analysis,
    metric, cohens_d, clinical_r``) by the effect sizes measured after the pipeline for ``setting``.

    An effect whose measured difference is zero or points the other way gets
    :data:`MIN_SURVIVING_D` (its power is then ~0, and it stays a planted test of the power table). Voxel-wise analyses use the median voxel-wise d over the effect's mask,
    ROI tables the ROI value's d (see :data:`VOXELWISE_ANALYSES`); tbss/dwi_rois without a measurement
    of their own use dti's (:data:`SAME_MAPS_AS`). Rows without a measurement keep the planted size. Returns ``(rows, source)`` with ``source`` a Series "observed"/"planted".
    """
    import pandas as pd

    rows = rows.copy()
    obs = observed_effect_sizes(setting, path)
    source = pd.Series("planted", index=rows.index)
    if obs.empty:
        return rows, source
    key = obs.set_index(["effect_id", "analysis", "metric"])
    for i, r in rows.iterrows():
        k = (r["effect_id"], r["analysis"], r["metric"])
        if k not in key.index:
            k = (r["effect_id"], SAME_MAPS_AS.get(r["analysis"], r["analysis"]), r["metric"])
            if k not in key.index:
                continue
        o = key.loc[k]
        o = o.iloc[0] if isinstance(o, pd.DataFrame) else o
        d = o["observed_d_voxel_median"] if r["analysis"] in VOXELWISE_ANALYSES else o["observed_d"]
        if not np.isfinite(d):
            d = o["observed_d"]
        if not np.isfinite(d):
            continue
        rows.at[i, "cohens_d"] = max(float(d), MIN_SURVIVING_D)
        if float(r.get("clinical_r", 0.0) or 0.0) != 0.0 and np.isfinite(o.get("observed_r", np.nan)):
            rows.at[i, "clinical_r"] = float(np.clip(o["observed_r"], -0.99, 0.99))
        source[i] = "observed"
    return rows, source
