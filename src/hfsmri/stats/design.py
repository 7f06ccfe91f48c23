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


# ----------------------------------------------------------------------------- contrast names
# The one place that names contrasts (files are named from these by Derivatives.group_path).
def group_contrast(direction) -> str:
    """``patient-gt-control`` (direction > 0) or ``patient-lt-control``."""
    return "patient-gt-control" if float(direction) > 0 else "patient-lt-control"


def clinical_contrast(score: str, positive=True, delta: bool = False) -> str:
    """``corr-<score>-pos/neg``; ``delta``: the change-vs-change contrast ``corr-delta<score>-...``
    (score stripped to letters and digits)."""
    name = f"delta{re.sub('[^A-Za-z0-9]', '', score)}" if delta else score
    return f"corr-{name}-{'pos' if positive else 'neg'}"


def paired_contrast(role: str, pre: str, post: str, up=True) -> str:
    """Paired change within a group: ``<role>-<post>-gt-<pre>`` (up) or ``-lt-``."""
    return f"{role}-{post}-{'gt' if up else 'lt'}-{pre}"


def change_contrast(up=True) -> str:
    """Group x time interaction: ``change-patient-gt-control`` / ``-lt-``."""
    return "change-" + group_contrast(1 if up else -1)


def opposite_contrast(c: str) -> str:
    """The contrast testing the other direction (the negative tail of ``c``)."""
    if c.endswith(("-pos", "-neg")):
        return c[:-4] + ("-neg" if c.endswith("-pos") else "-pos")
    i = max(c.rfind("-gt-"), c.rfind("-lt-"))
    return c if i < 0 else c[:i] + ("-lt-" if c[i:i + 4] == "-gt-" else "-gt-") + c[i + 4:]


def clinical_score_of(contrast: str) -> str | None:
    """The clinical score a correlation contrast tests (``corr-<score>-pos/neg``; the longitudinal
    ``corr-delta<score>-...`` gives the score), else None."""
    if contrast.startswith("corr-") and contrast.endswith(("-pos", "-neg")):
        score = contrast[len("corr-"):-len("-pos")]
        return score[len("delta"):] if score.startswith("delta") else score
    return None


def describe_contrast(name: str) -> str:
    """Human text of a contrast name (the ``description`` column of ``contrasts.tsv``)."""
    if name.startswith("corr-") and name.endswith(("-pos", "-neg")):
        score = name[len("corr-"):-len("-pos")]
        sign = "positive" if name.endswith("-pos") else "negative"
        if score.startswith("delta"):
            return (f"{sign} correlation of the change of the map with the change of {score[len('delta'):]} "
                    "(patients)")
        return f"{sign} correlation with {score} (patients)"
    if name.startswith("change-"):
        return f"group x time: change in {describe_contrast(name[len('change-'):])}"
    i = max(name.rfind("-gt-"), name.rfind("-lt-"))
    if i < 0:
        return name
    left, op, right = name[:i], (">" if name[i:i + 4] == "-gt-" else "<"), name[i + 4:]
    if left in ("patient", "control") and right in ("patient", "control"):
        return f"{left}s {op} {right}s"
    role, _, post = left.partition("-")
    if post:
        return f"{role}s: {post} {op} {right} (paired)"
    return f"{left} {op} {right}"


def contrast_names(clinical=(), sessions=None) -> list[str]:
    """Every contrast the group analyses can write for a study with these clinical scores and
    sessions (what a reader looks up with :meth:`hfsmri.derivatives.Derivatives.group_path`)."""
    names = [group_contrast(1), group_contrast(-1)]
    for score in clinical or ():
        names += [clinical_contrast(score, True), clinical_contrast(score, False)]
    sessions = [str(x) for x in (sessions or [])]
    if len(sessions) >= 2:
        pre, post = sessions[0], sessions[-1]
        for role in ("patient", "control"):
            names += [paired_contrast(role, pre, post, True), paired_contrast(role, pre, post, False)]
        names += [change_contrast(True), change_contrast(False)]
        for score in clinical or ():
            names += [clinical_contrast(score, True, delta=True), clinical_contrast(score, False, delta=True)]
    return names


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
    con = {group_contrast(1): np.r_[1.0, -1.0, np.zeros(k - 2)],
           group_contrast(-1): np.r_[-1.0, 1.0, np.zeros(k - 2)]}
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
                            contrasts={clinical_contrast(score, True): vec, clinical_contrast(score, False): -vec},
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


def session_pair(study) -> tuple[str, str]:
    """(baseline, follow-up): the first and last of ``study.sessions``."""
    if not study.sessions or len(study.sessions) < 2:
        raise DesignError("longitudinal analysis needs at least two sessions in study.yaml", field="sessions")
    return study.sessions[0], study.sessions[-1]


def is_longitudinal(study) -> bool:
    """True when study.yaml lists at least two sessions."""
    return len(getattr(study, "sessions", None) or []) >= 2


def longitudinal_designs(study, subjects: list[str], min_per_group: int = 2) -> dict:
    """Designs for the per-subject changes follow-up − baseline of ``subjects`` (each has both
    sessions): ``paired-<role>`` (one-sample, sign flipping; per group with >= 2 subjects),
    ``interaction`` (group x time: patients' change vs controls', study covariates) and
    ``delta-<score>`` (within patients, change regressed on the change of the score from
    ``sub-X_sessions.tsv``; >= 4 patients with both values)."""
    pre, post = session_pair(study)
    designs = {}
    for role in ("patient", "control"):
        subs = [s for s in subjects if study.group_of(s) == role]
        if len(subs) >= max(min_per_group, 2):
            designs[f"paired-{role}"] = Design(
                X=np.ones((len(subs), 1)), columns=["intercept"], subjects=subs,
                contrasts={paired_contrast(role, pre, post, True): np.array([1.0]),
                           paired_contrast(role, pre, post, False): np.array([-1.0])},
                roles=[role] * len(subs), info={"kind": "paired", "sessions": [pre, post], "group": role})
    roles = [study.group_of(s) for s in subjects]
    if roles.count("patient") >= 2 and roles.count("control") >= 2:
        d = design_from_study(study, subjects)
        d.contrasts = {change_contrast(k == group_contrast(1)): v for k, v in d.contrasts.items()
                       if k in (group_contrast(1), group_contrast(-1))}
        d.info = {**d.info, "kind": "group-by-time", "sessions": [pre, post]}
        designs["interaction"] = d
    scores = study.session_scores()
    patients = [s for s in subjects if study.group_of(s) == "patient"]
    for score in study.clinical:
        if score not in scores.columns or len(patients) < 4:
            continue
        delta = {}
        for s in patients:
            try:
                a, b = scores.loc[(s, pre), score], scores.loc[(s, post), score]
            except KeyError:
                continue
            if np.isfinite(a) and np.isfinite(b):
                delta[s] = b - a
        subs = [s for s in patients if s in delta]
        dv = np.array([delta[s] for s in subs], dtype=float)
        if len(subs) < 4 or np.ptp(dv) == 0:
            continue
        designs[f"delta-{score}"] = Design(
            X=np.column_stack([np.ones(len(subs)), dv - dv.mean()]), columns=["intercept", f"delta_{score}"],
            subjects=subs, contrasts={clinical_contrast(score, True, delta=True): np.array([0.0, 1.0]),
                                      clinical_contrast(score, False, delta=True): np.array([0.0, -1.0])},
            roles=["patient"] * len(subs), info={"kind": "change-vs-change", "score": score})
    return designs


def designs_for(study, subjects, extra: pd.DataFrame | None = None, *, longitudinal: bool = False):
    """Every design of one group analysis over ``subjects`` (rows in that order).

    Cross-sectional: ``{"group": patients vs controls, <score>: clinical design, ...}`` with the
    extra covariates; longitudinal (``subjects`` have both sessions; the data are their changes):
    :func:`longitudinal_designs`. Returns ``(designs, note)``: ``note`` says why the clinical
    designs were left out (e.g. too few patients for the score and covariates), else None; a fault
    of the group design raises :class:`~hfsmri.errors.DesignError`.
    """
    if longitudinal:
        return longitudinal_designs(study, subjects), None
    designs = {"group": design_from_study(study, subjects, extra)}
    try:
        designs.update(clinical_designs(study, subjects, extra))
    except DesignError as exc:
        return designs, str(exc)
    return designs, None
