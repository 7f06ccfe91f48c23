"""Planted effects -> the list of tests a study runs on them.

Two input forms:

* the simulator's effects (``"default"``, an :class:`hfsmri.simulate.EffectSet`, or a YAML/dict
  whose effects all have ``region``): read with :func:`hfsmri.simulate.load_effects` and
  expanded exactly as the simulator's ground truth (:func:`hfsmri.simulate.effects.ground_truth_rows`):
  one row per effect and analysis/metric, DTI rows with the Cohen's d of that metric derived from
  the planted diffusivity;
* a simple list (no regions), for quick what-ifs::

      effects:
        - {id: thal, cohens_d: 0.8, direction: -1}                      # analysis/metric "roi/roi"
        - {id: amy, cohens_d: 0.6, analyses: [vbm/gm], clinical: {score: severity, r: 0.4}}
"""
from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import yaml

from ..errors import HfsmriError

__all__ = ["power_tests", "TEST_COLUMNS"]

TEST_COLUMNS = ["effect_id", "analysis", "metric", "family", "direction", "cohens_d", "clinical_score",
                "clinical_r", "primary"]


def _raw(spec):
    if isinstance(spec, dict):
        return copy.deepcopy(spec), "<effects dict>"
    path = Path(spec)
    if not path.is_file():
        raise HfsmriError("effects file not found (use 'default' or a YAML file)", path=path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise HfsmriError(f"not valid YAML: {exc}", path=path) from None
    if isinstance(data, list):
        data = {"effects": data}
    if not isinstance(data, dict) or not isinstance(data.get("effects"), list):
        raise HfsmriError("an effects file must be a mapping with an 'effects' list", path=path)
    return data, path


def _simple(data: dict, where) -> pd.DataFrame:
    rows, seen = [], set()
    for i, e in enumerate(data["effects"]):
        fld = f"effects[{i}]"
        if not isinstance(e, dict) or "id" not in e or "cohens_d" not in e:
            raise HfsmriError("each effect needs at least 'id' and 'cohens_d'", path=where, field=fld)
        eid = str(e["id"])
        if eid in seen:
            raise HfsmriError(f"duplicate effect id {eid!r}", path=where, field=f"{fld}.id")
        seen.add(eid)
        try:
            d = float(e["cohens_d"])
            direction = int(e.get("direction", 1))
        except (TypeError, ValueError):
            raise HfsmriError("cohens_d must be a number and direction +1/-1", path=where, field=fld) from None
        if direction not in (-1, 1) or not (0 <= d <= 10):
            raise HfsmriError("direction must be +1 or -1 and cohens_d between 0 and 10", path=where, field=fld)
        score, r = None, 0.0
        clin = e.get("clinical")
        if clin is not None:
            if not isinstance(clin, dict) or "score" not in clin or "r" not in clin:
                raise HfsmriError("must be a mapping {score: NAME, r: VALUE}", path=where, field=f"{fld}.clinical")
            score, r = str(clin["score"]), float(clin["r"])
            if not (-0.99 <= r <= 0.99):
                raise HfsmriError("r must be between -0.99 and 0.99", path=where, field=f"{fld}.clinical.r")
        analyses = e.get("analyses") or [f"roi/{e.get('metric', 'roi')}"]
        for k, a in enumerate(analyses):
            if not isinstance(a, str) or a.count("/") != 1:
                raise HfsmriError("analyses must be 'analysis/metric' strings", path=where, field=f"{fld}.analyses")
            an, m = a.split("/")
            rows.append({"effect_id": eid, "analysis": an, "metric": m, "direction": direction, "cohens_d": d,
                         "clinical_score": score, "clinical_r": r if score else 0.0, "primary": k == 0})
    return pd.DataFrame(rows)


def _from_simulator(spec) -> pd.DataFrame:
    from ..simulate.effects import ground_truth_rows, load_effects

    eff = load_effects(spec)
    rows = pd.DataFrame(ground_truth_rows(eff, {}))
    if rows.empty:
        return rows
    rows["clinical_score"] = rows["clinical_score"].where(rows["clinical_score"] != "n/a", None)
    # primary row of an effect: its planted metric in the first analysis listing it, else its first row
    primary = pd.Series(False, index=rows.index)
    for _, g in rows.groupby("effect_id", sort=False):
        own = g.index[g["metric"] == g["planted_metric"]]
        primary[own[0] if len(own) else g.index[0]] = True
    rows["primary"] = primary
    return rows


def power_tests(effects="default") -> pd.DataFrame:
    """One row per (effect, analysis/metric) with :data:`TEST_COLUMNS`.

    ``family`` is ``"<analysis>/<metric>"``: the set of ROIs corrected together (as one
    ``rois.tsv`` of the pipeline).
    """
    if isinstance(effects, str) and effects.lower() in ("none", "null"):
        raise HfsmriError("power needs planted effects; use 'default' or an effects YAML file", field="effects")
    if isinstance(effects, str) and effects.lower() == "default":
        rows = _from_simulator("default")
    elif not isinstance(effects, (str, Path, dict)):
        rows = _from_simulator(effects)           # an EffectSet
    else:
        data, where = _raw(effects)
        full = all(isinstance(e, dict) and "region" in e for e in data["effects"])
        rows = _from_simulator(data if isinstance(effects, dict) else effects) if full else _simple(data, where)
    if rows.empty:
        raise HfsmriError("the effects list is empty; nothing to estimate power for", field="effects")
    rows = rows.copy()
    rows["family"] = rows["analysis"] + "/" + rows["metric"]
    rows["direction"] = rows["direction"].astype(int)
    rows["cohens_d"] = rows["cohens_d"].astype(float)
    rows["clinical_r"] = rows["clinical_r"].astype(float)
    return rows[TEST_COLUMNS].reset_index(drop=True)
