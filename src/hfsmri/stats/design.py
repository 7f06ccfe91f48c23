"""Design matrices from the study: group comparison and clinical correlations.

Coding (documented choices):

* group comparison: cell-means coding, columns ``patient`` and ``control`` (indicators, no separate
  intercept), contrasts ``patient-gt-control = [1, -1, 0, ...]`` and ``patient-lt-control``;
* continuous covariates are demeaned over the subjects in the design (so the cell-mean betas are
  group means at the average covariate value); categorical ones are dummy-coded against their
  first level in sorted order (column ``sex[M]``); the site (``site_column``) is a categorical
  covariate when ``study.harmonize == "covariate"`` (with ``"combat"`` it is left out of the design
  and the sites are recorded in ``Design.info["harmonize"]`` for
  :func:`hfsmri.harmonize.harmonize_for_design`; objects without a ``harmonize`` attribute keep the
  site covariate); extra covariates (e.g. TIV for VBM, mean FD) are demeaned continuous columns;
* optional group x covariate interactions: a column ``group:<cov>`` = (+1 patient / -1 control) x
  demeaned covariate, contrasts ``interaction-<cov>-pos/neg``;
* clinical designs (patients only): ``intercept``, the demeaned score, the covariates; contrasts
  ``corr-<score>-pos = [0, 1, 0, ...]`` and ``corr-<score>-neg``. Patients without the score are
  left out of that score's design (listed in ``Design.dropped``).

Faults raise :class:`~hfsmri.errors.DesignError` naming the column: missing values (with the
participants), constant covariates, rank deficiency, too few subjects.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DesignError
from .glm import check_rank


@dataclass
class Design:
    """A GLM design.

    Attributes
    ----------
    X : float array (n_subjects, k)
    columns : column names (k)
    subjects : participant labels (without ``sub-``), row order of X
    contrasts : name -> contrast vector (k,)
    roles : "patient"/"control" per subject (None for designs that do not use groups)
    flipped : labels of subjects whose images are mirrored left-right (affected-side alignment)
    dropped : label -> reason, subjects left out of this design
    blocks : exchangeability block per subject or None
    info : free-form description recorded in sidecars
    """

    X: np.ndarray
    columns: list
    subjects: list
    contrasts: dict
    roles: list | None = None
    flipped: list = field(default_factory=list)
    dropped: dict = field(default_factory=dict)
    blocks: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def contrast(self, c) -> np.ndarray:
        """Contrast vector from a name or a vector."""
        if isinstance(c, str):
            if c not in self.contrasts:
                raise DesignError(f"unknown contrast {c!r}; available {sorted(self.contrasts)}", field="contrast")
            return np.asarray(self.contrasts[c], dtype=float)
        v = np.asarray(c, dtype=float)
        if v.shape != (len(self.columns),):
            raise DesignError(f"contrast must have {len(self.columns)} entries ({self.columns})", field="contrast")
        return v

    def as_dataframe(self) -> pd.DataFrame:
        return pd.DataFrame(self.X, index=pd.Index(self.subjects, name="participant"), columns=self.columns)

    def to_dict(self) -> dict:
        return {"columns": list(self.columns), "subjects": list(self.subjects),
                "contrasts": {k: [float(x) for x in v] for k, v in self.contrasts.items()},
                "flipped": list(self.flipped), "dropped": dict(self.dropped), **self.info}


def _labels(subjects) -> list[str]:
    return [re.sub(r"^sub-", "", str(s)) for s in subjects]


def _covariate_type(study, name: str, series: pd.Series) -> str:
    types = getattr(study, "covariate_types", None) or {}
    if name in types:
        return types[name]
    return "continuous" if pd.api.types.is_numeric_dtype(series) else "categorical"


def flipped_subjects(study, subjects) -> list[str]:
    """Labels of ``subjects`` whose images are mirrored x -> -x (patients whose affected side is
    not ``study.flip_to``); empty when flipping is off."""
    if not getattr(study, "flip_to", None):
        return []
    return [s for s in _labels(subjects) if study.flipped(s)]


def _covariate_columns(study, df: pd.DataFrame, names: list[str], where: str):
    """Build covariate columns (name list, array list) from participants rows ``df``."""
    cols, arrs = [], []
    for name in names:
        if name not in df.columns:
            raise DesignError(f"covariate {name!r} is not a column of participants.tsv "
                              f"(columns: {[c for c in df.columns if c != 'participant_id']})", field=name)
        s = df[name]
        miss = s.isna()
        if miss.any():
            raise DesignError(f"covariate {name!r} is missing for participant(s) "
                              f"{['sub-' + i for i in s.index[miss]]} ({where})", field=name)
        kind = _covariate_type(study, name, s)
        if kind == "continuous":
            try:
                v = pd.to_numeric(s).to_numpy(dtype=float)
            except (TypeError, ValueError):
                raise DesignError(f"covariate {name!r} is declared continuous but has non-numeric values "
                                  f"{sorted(set(map(str, s)))[:5]}", field=name) from None
            if np.ptp(v) == 0:
                raise DesignError(f"covariate {name!r} is constant ({v[0]:g}) among the {len(v)} subjects "
                                  f"({where}); remove it from the covariates", field=name)
            cols.append(name)
            arrs.append(v - v.mean())
        else:
            levels = sorted(set(map(str, s)))
            if len(levels) < 2:
                raise DesignError(f"covariate {name!r} is constant ({levels[0]!r}) among the {len(s)} subjects "
                                  f"({where}); remove it from the covariates", field=name)
            for lev in levels[1:]:
                cols.append(f"{name}[{lev}]")
                arrs.append((s.astype(str) == lev).to_numpy(dtype=float))
    return cols, arrs


def _extra_columns(extra: pd.DataFrame | None, labels: list[str], where: str):
    if extra is None:
        return [], []
    ex = extra.copy()
    ex.index = _labels(ex.index)
    missing = [s for s in labels if s not in ex.index]
    if missing:
        raise DesignError(f"extra covariates have no row for participant(s) {['sub-' + m for m in missing]}",
                          field=",".join(map(str, ex.columns)))
    ex = ex.loc[labels]
    cols, arrs = [], []
    for name in ex.columns:
        v = pd.to_numeric(ex[name], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(v)
        if bad.any():
            raise DesignError(f"extra covariate {name!r} is missing/non-numeric for participant(s) "
                              f"{['sub-' + labels[i] for i in np.flatnonzero(bad)]}", field=str(name))
        if np.ptp(v) == 0:
            raise DesignError(f"extra covariate {name!r} is constant among the {len(v)} subjects ({where})",
                              field=str(name))
        cols.append(str(name))
        arrs.append(v - v.mean())
    return cols, arrs


def harmonize_mode(study) -> str:
    """``"combat"``, ``"covariate"`` or ``"none"``: how the designs handle ``site_column``.

    ``study.harmonize`` when the study has it (resolved by :class:`hfsmri.study.Study`); otherwise
    ``"covariate"`` when a site column is set (site dummy-coded in the design), else ``"none"``.
    """
    mode = getattr(study, "harmonize", None)
    if mode is None:
        return "covariate" if getattr(study, "site_column", None) else "none"
    return str(mode)


def _harmonize_info(study, labels: list[str]) -> dict:
    """``Design.info`` entry describing the site handling of a design over ``labels``."""
    site = getattr(study, "site_column", None)
    mode = harmonize_mode(study)
    if not site or mode == "none":
        return {}
    info = {"method": mode, "site_column": site}
    if mode == "combat":
        info["sites"] = [str(v) for v in study.participants.loc[labels, site]]
    return {"harmonize": info}


def _nuisance_names(study) -> list[str]:
    names = list(getattr(study, "covariates", None) or [])
    site = getattr(study, "site_column", None)
    if site and site not in names and harmonize_mode(study) == "covariate":
        df = study.participants
        if site in df.columns and df[site].dropna().astype(str).nunique() > 1:
            names.append(site)
    return names


class _StudyView:
    """Study proxy forcing the site column to be categorical."""

    def __init__(self, study):
        self._s = study
        types = dict(getattr(study, "covariate_types", None) or {})
        site = getattr(study, "site_column", None)
        if site:
            types[site] = "categorical"
        self.covariate_types = types

    def __getattr__(self, item):
        return getattr(self._s, item)


def _rows(study, subjects) -> pd.DataFrame:
    labels = _labels(subjects)
    df = study.participants
    missing = [s for s in labels if s not in df.index]
    if missing:
        raise DesignError(f"participant(s) {['sub-' + m for m in missing]} are not in participants.tsv",
                          field="participant_id")
    if len(set(labels)) != len(labels):
        raise DesignError("duplicated subjects in the design", field="participant_id")
    return df.loc[labels]


def design_from_study(study, subjects, extra_covariates: pd.DataFrame | None = None,
                      interactions: list[str] | None = None) -> Design:
    """Two-group design (patients vs controls) for ``subjects`` (rows in that order).

    Parameters
    ----------
    study : :class:`hfsmri.study.Study` (or any object with ``participants``, ``group_column``,
        ``groups``, ``covariates``, ``covariate_types``, ``site_column``, ``flip_to``, ``flipped``)
    subjects : participant labels (with or without ``sub-``)
    extra_covariates : DataFrame indexed by participant with extra continuous covariates (TIV, ...)
    interactions : covariate names to interact with group
    """
    labels = _labels(subjects)
    df = _rows(study, subjects)
    gcol = study.group_column
    vals = df[gcol].astype(str)
    pv, cv = str(study.groups["patient"]), str(study.groups["control"])
    other = sorted(set(vals) - {pv, cv})
    if other:
        raise DesignError(f"group column {gcol!r} has values {other} that are neither the patient value {pv!r} "
                          f"nor the control value {cv!r}", field=gcol)
    is_p = (vals == pv).to_numpy(dtype=float)
    is_c = (vals == cv).to_numpy(dtype=float)
    if is_p.sum() < 2 or is_c.sum() < 2:
        raise DesignError(f"need at least 2 patients and 2 controls, got {int(is_p.sum())} and {int(is_c.sum())}",
                          field=gcol)
    view = _StudyView(study)
    names = _nuisance_names(study)
    where = "group design"
    ccols, carrs = _covariate_columns(view, df, names, where)
    ecols, earrs = _extra_columns(extra_covariates, labels, where)
    columns = ["patient", "control"] + ccols + ecols
    arrays = [is_p, is_c] + carrs + earrs
    for cov in interactions or []:
        if cov not in columns:
            raise DesignError(f"interaction covariate {cov!r} is not a continuous covariate of the design "
                              f"({columns[2:]})", field="interactions")
        v = arrays[columns.index(cov)]
        columns.append(f"group:{cov}")
        arrays.append((is_p - is_c) * v)
    X = np.column_stack(arrays)
    check_rank(X, columns)
    k = len(columns)
    con = {"patient-gt-control": np.r_[1.0, -1.0, np.zeros(k - 2)],
           "patient-lt-control": np.r_[-1.0, 1.0, np.zeros(k - 2)]}
    for cov in interactions or []:
        v = np.zeros(k)
        v[columns.index(f"group:{cov}")] = 1.0
        con[f"interaction-{cov}-pos"] = v
        con[f"interaction-{cov}-neg"] = -v
    roles = ["patient" if p else "control" for p in is_p]
    return Design(X=X, columns=columns, subjects=labels, contrasts=con, roles=roles,
                  flipped=flipped_subjects(study, labels),
                  info={"kind": "group", "n_patient": int(is_p.sum()), "n_control": int(is_c.sum()),
                        "covariates": names, "extra_covariates": ecols,
                        "coding": "cell means; continuous covariates demeaned; categorical dummy-coded",
                        **_harmonize_info(study, labels)})


def clinical_designs(study, subjects, extra_covariates: pd.DataFrame | None = None) -> dict[str, Design]:
    """One design per clinical score (``study.clinical``), patients only.

    Columns: ``intercept``, the demeaned score, the covariates (demeaned within the patients kept).
    Contrasts ``corr-<score>-pos`` / ``corr-<score>-neg`` test the score's slope. A score missing for
    some patients drops them from that design (``Design.dropped``); fewer than
    ``k + 2`` patients left, or a constant score, raise :class:`DesignError`.
    """
    labels = _labels(subjects)
    df = _rows(study, subjects)
    gcol = study.group_column
    patients = [s for s, v in zip(labels, df[gcol].astype(str)) if v == str(study.groups["patient"])]
    out = {}
    view = _StudyView(study)
    names = _nuisance_names(study)
    for score in list(getattr(study, "clinical", None) or []):
        if score not in study.participants.columns:
            raise DesignError(f"clinical score {score!r} is not a column of participants.tsv", field=score)
        s = pd.to_numeric(study.participants.loc[patients, score], errors="coerce")
        keep = [p for p in patients if np.isfinite(s.loc[p])]
        dropped = {f"{p}": f"no value for {score}" for p in patients if p not in keep}
        where = f"patients with {score}"
        sub = study.participants.loc[keep]
        v = s.loc[keep].to_numpy(dtype=float)
        if len(keep) < 3:
            raise DesignError(f"clinical score {score!r}: only {len(keep)} patients have a value", field=score)
        if np.ptp(v) == 0:
            raise DesignError(f"clinical score {score!r} is constant ({v[0]:g}) among the {len(v)} patients; "
                              "no correlation can be estimated", field=score)
        # site may be constant within patients: keep only if it varies
        nn = [c for c in names if not (c == getattr(study, "site_column", None)
                                        and sub[c].astype(str).nunique() < 2)]
        nn = [c for c in nn if c != score]
        ccols, carrs = _covariate_columns(view, sub, nn, where)
        ecols, earrs = _extra_columns(extra_covariates, keep, where)
        columns = ["intercept", score] + ccols + ecols
        X = np.column_stack([np.ones(len(keep)), v - v.mean()] + carrs + earrs)
        check_rank(X, columns)
        if X.shape[0] < X.shape[1] + 2:
            raise DesignError(f"clinical score {score!r}: {X.shape[0]} patients for {X.shape[1]} design columns",
                              field=score)
        k = X.shape[1]
        vec = np.zeros(k)
        vec[1] = 1.0
        out[score] = Design(X=X, columns=columns, subjects=keep,
                            contrasts={f"corr-{score}-pos": vec, f"corr-{score}-neg": -vec},
                            roles=["patient"] * len(keep), flipped=flipped_subjects(study, keep),
                            dropped=dropped,
                            info={"kind": "clinical", "score": score, "n_patient": len(keep),
                                  "covariates": nn, "extra_covariates": ecols,
                                  **_harmonize_info(study, keep)})
    return out


def one_sample_design(subjects, covariates: pd.DataFrame | None = None, name: str = "mean") -> Design:
    """Intercept-only design (plus demeaned covariates) for one-sample / paired-difference tests
    (sign flipping); contrasts ``<name>-pos`` / ``<name>-neg``."""
    labels = _labels(subjects)
    cols, arrs = _extra_columns(covariates, labels, "one-sample design")
    X = np.column_stack([np.ones(len(labels))] + arrs)
    columns = ["intercept"] + cols
    check_rank(X, columns)
    v = np.zeros(X.shape[1])
    v[0] = 1.0
    return Design(X=X, columns=columns, subjects=labels, contrasts={f"{name}-pos": v, f"{name}-neg": -v},
                  info={"kind": "one-sample"})
