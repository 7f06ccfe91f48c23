"""The study model: participants.tsv + study.yaml -> a validated :class:`Study`.

study.yaml keys (all optional but ``group_column``; see the contract for the canonical example)::

    group_column: group
    groups: {patient: HFS, control: HC}
    covariates: [age, sex]              # nuisance regressors (types inferred; override below)
    covariate_types: {site: categorical}
    clinical: [severity, duration_months, hama, hamd]
    affected_side_column: affected_side # values L / R / B (patients); n/a for controls
    flip_to: R                          # mirror patients with the other side; null = off
    sessions: [pre, post]
    site_column: site
    harmonize: combat                   # combat | covariate | none (default combat with >= 2 sites)
    exclude: [sub-07]                   # participants left out of every analysis
    analyses: {vbm: {fwhm: 8}, reho: {}, ...}
    preprocessing: {func: {dummy_scans: 5}, ...}
    stats: {n_perm: 5000, tfce: true, alpha: 0.05, cluster_forming_p: 0.001, random_seed: 0}

Every fault is a :class:`~hfsmri.errors.StudyError` naming the file and field, and listing the
participants concerned.

Levels: the participant level runs on any number of participants (one subject, or a
participants.tsv whose groups are not yet complete). What only a group analysis needs — at least
two participants per group, covariates with a value for everyone and not constant, at least two
sites for harmonisation — is checked by :meth:`Study.check_group_level`, which
``Study.from_bids(..., level="group")`` (the default) runs and ``level="participant"`` skips.
Everything else (columns, group values, types, affected sides, study.yaml keys) is checked at
both levels.
"""
from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .analyses import ANALYSES, PREPROCESSING_DEFAULTS, STATS_DEFAULTS
from .errors import StudyError

TOP_LEVEL_KEYS = ("group_column", "groups", "covariates", "covariate_types", "clinical",
                  "affected_side_column", "flip_to", "sessions", "site_column", "harmonize", "exclude",
                  "analyses", "preprocessing", "stats", "qc")
SIDES = ("L", "R", "B")
_LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")
_MISSING = {"", "n/a", "na", "nan", "none", "null"}


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _read_participants(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise StudyError("participants.tsv not found (required at the BIDS root)", path=path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception as exc:
        raise StudyError(f"cannot read as a tab-separated table: {exc}", path=path) from None
    df.columns = [str(c).strip() for c in df.columns]
    if "participant_id" not in df.columns:
        raise StudyError("missing the required column 'participant_id'", path=path, field="participant_id")
    df = df.apply(lambda s: s.str.strip())
    ids = df["participant_id"]
    labels = ids.str.replace(r"^sub-", "", regex=True)
    bad = [i for i, lab in zip(ids, labels) if not _LABEL_RE.match(lab)]
    if bad:
        raise StudyError(f"participant_id values must be 'sub-<letters/digits>'; invalid: {bad[:10]}",
                         path=path, field="participant_id")
    dup = sorted(set(labels[labels.duplicated()]))
    if dup:
        raise StudyError(f"duplicated participant_id: {['sub-' + d for d in dup]}", path=path,
                         field="participant_id")
    df.index = pd.Index(labels, name="participant")
    # missing markers -> NaN, then numbers where the whole column is numeric
    df = df.mask(df.apply(lambda s: s.str.lower().isin(_MISSING)))
    for col in df.columns:
        if col == "participant_id":
            continue
        conv = pd.to_numeric(df[col], errors="coerce")
        if conv.notna().sum() == df[col].notna().sum() and df[col].notna().any():
            df[col] = conv
    return df


def _read_yaml(path: Path) -> dict:
    import yaml

    if not path.exists():
        raise StudyError("study file not found", path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"cannot read study file: {exc}", path=path) from None
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StudyError(f"invalid YAML{where}: {problem}", path=path) from None
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise StudyError("must be a YAML mapping of keys (group_column, groups, ...)", path=path)
    return obj


@dataclass
class Study:
    """A validated case-control study.

    Attributes
    ----------
    participants : DataFrame indexed by participant label (without ``sub-``) with every column of
        participants.tsv (numbers parsed), restricted to included participants.
    group_column, groups : the grouping column and ``{"patient": value, "control": value}``.
    covariates, covariate_types : nuisance regressors and their types
        (``"continuous"`` or ``"categorical"``).
    clinical : clinical scores (correlation targets within patients; usable as covariates).
    affected_side_column, flip_to : affected side (L/R/B) and the side to align to (or None).
    sessions : session labels for longitudinal studies, else None.
    site_column : site column for harmonisation / site covariate, or None.
    harmonize : how site differences are handled in group analyses: ``"combat"`` (ComBat on the
        data before the GLM, biology protected), ``"covariate"`` (site dummy-coded in the design)
        or ``"none"``. Default ``"combat"`` when ``site_column`` has >= 2 sites, else ``"none"``.
    analyses : analysis name -> resolved parameters (only analyses to run).
    preprocessing : modality -> resolved preprocessing parameters.
    stats : resolved statistics parameters.
    excluded : label -> reason for participants left out.
    qc : resolved QC rules (study.yaml ``qc:``; :mod:`hfsmri.qc.decisions`), applied at the group level.
    """

    participants: pd.DataFrame
    group_column: str = "group"
    groups: dict = field(default_factory=lambda: {"patient": "HFS", "control": "HC"})
    covariates: list = field(default_factory=list)
    covariate_types: dict = field(default_factory=dict)
    clinical: list = field(default_factory=list)
    affected_side_column: str | None = None
    flip_to: str | None = None
    sessions: list | None = None
    site_column: str | None = None
    harmonize: str = "none"
    analyses: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)
    stats: dict = field(default_factory=lambda: dict(STATS_DEFAULTS))
    excluded: dict = field(default_factory=dict)
    qc: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bids(cls, bids_dir: str | Path, study_yaml: str | Path | dict | None = None,
                  check_sessions: bool = True, level: str = "group") -> "Study":
        """Build the study from ``BIDS_DIR/participants.tsv`` and a study.yaml (path or dict).

        With ``study_yaml=None`` every default applies (group column ``group`` with values HFS/HC).
        ``level="participant"`` skips the checks only a group analysis needs
        (:meth:`check_group_level`); ``"group"`` (default) runs them.
        """
        if level not in ("participant", "group"):
            raise ValueError(f"level must be 'participant' or 'group', got {level!r}")
        bids_dir = Path(bids_dir)
        tsv = bids_dir / "participants.tsv"
        df = _read_participants(tsv)
        if isinstance(study_yaml, dict):
            cfg, ypath = copy.deepcopy(study_yaml), Path("study.yaml")
        elif study_yaml is None:
            cfg, ypath = {}, Path("study.yaml (defaults)")
        else:
            ypath = Path(study_yaml)
            cfg = _read_yaml(ypath)
        study = cls._from_config(df, cfg, tsv, ypath)
        if level == "group":
            study.check_group_level()
        if check_sessions and study.sessions:
            study._check_sessions_on_disk(bids_dir)
        return study

    def check_group_level(self) -> None:
        """What a group analysis needs of participants.tsv (a :class:`StudyError` otherwise): at least
        two participants per group, every covariate known for everyone and not constant, at least
        two sites when harmonising. The participant level does not need any of it."""
        tsv = Path(self.source.get("participants", "participants.tsv"))
        ypath = Path(self.source.get("study_yaml", "study.yaml"))
        df = self.participants
        gvals = df[self.group_column].astype("string")
        small = [f"group {role} ({value!r}) has {int((gvals == value).sum())} participant(s)"
                 for role, value in self.groups.items() if int((gvals == value).sum()) < 2]
        if small:
            raise StudyError("; ".join(small) + "; at least 2 per group are needed for the group level (the "
                             "participant level runs on any number)", path=tsv, field=self.group_column)
        for c in self.covariates:
            missing = df.index[df[c].isna()].tolist()
            if missing:
                raise StudyError(f"covariate {c!r} has missing values for: "
                                 + ", ".join(f"sub-{m}" for m in missing), path=tsv, field=c)
            if df[c].nunique(dropna=True) < 2:
                raise StudyError(f"covariate {c!r} is constant ({df[c].iloc[0]!r} for everyone); "
                                 "remove it from study.yaml covariates", path=tsv, field=c)
        if self.harmonize != "none":
            n_sites = int(df[self.site_column].astype(str).nunique()) if self.site_column is not None else 0
            if n_sites < 2:
                have = "no site_column" if self.site_column is None else f"{self.site_column!r} has {n_sites}"
                raise StudyError(f"harmonize: {self.harmonize} needs a site_column with at least 2 sites ({have})",
                                 path=ypath, field="harmonize")

    @classmethod
    def _from_config(cls, df: pd.DataFrame, cfg: dict, tsv: Path, ypath: Path) -> "Study":
        def err(msg, fld=None, path=ypath):
            return StudyError(msg, path=path, field=fld)

        unknown = [k for k in cfg if k not in TOP_LEVEL_KEYS]
        if unknown:
            k = unknown[0]
            raise err(f"unknown key {k!r}{_suggest(k, TOP_LEVEL_KEYS)}; allowed keys: {', '.join(TOP_LEVEL_KEYS)}", k)

        columns = [c for c in df.columns if c != "participant_id"]

        def need_column(name, key):
            if not isinstance(name, str):
                raise err(f"must be a column name (text), got {name!r}", key)
            if name not in df.columns:
                raise err(f"column {name!r} is not in participants.tsv{_suggest(name, columns)}; "
                          f"columns are: {', '.join(columns)}", key)
            return name

        def as_list(value, key):
            if value is None:
                return []
            if isinstance(value, str):
                return [value]
            if not isinstance(value, (list, tuple)):
                raise err(f"must be a list, got {type(value).__name__}", key)
            return list(value)

        group_column = need_column(cfg.get("group_column", "group"), "group_column")
        groups = cfg.get("groups", {"patient": "HFS", "control": "HC"})
        if not isinstance(groups, dict) or set(groups) != {"patient", "control"}:
            raise err("must map exactly 'patient' and 'control' to values of the group column, "
                      "e.g. {patient: HFS, control: HC}", "groups")
        groups = {k: str(v) for k, v in groups.items()}

        # exclusions
        excluded: dict[str, str] = {}
        for item in as_list(cfg.get("exclude"), "exclude"):
            lab = re.sub(r"^sub-", "", str(item))
            if lab not in df.index:
                raise err(f"excluded participant {item!r} is not in participants.tsv", "exclude")
            excluded[lab] = "excluded in study.yaml"
        df = df.drop(index=list(excluded))

        gvals = df[group_column].astype("string")
        known = set(groups.values())
        unmapped = gvals[~gvals.isin(known) | gvals.isna()]
        if len(unmapped):
            pairs = ", ".join(f"sub-{i}={v if pd.notna(v) else 'n/a'}" for i, v in unmapped.items())
            raise StudyError(f"group value(s) that map to neither patient ({groups['patient']!r}) nor "
                             f"control ({groups['control']!r}) in study.yaml 'groups': {pairs}",
                             path=tsv, field=group_column)

        # covariates
        covariates = [need_column(c, "covariates") for c in as_list(cfg.get("covariates"), "covariates")]
        ctypes_cfg = cfg.get("covariate_types") or {}
        if not isinstance(ctypes_cfg, dict):
            raise err("must map covariate names to 'continuous' or 'categorical'", "covariate_types")
        covariate_types = {}
        for c in covariates:
            if df[c].isna().all():
                raise StudyError(f"covariate {c!r} has no values (n/a for every participant)", path=tsv, field=c)
            t = ctypes_cfg.get(c)
            if t is None:
                t = "continuous" if pd.api.types.is_numeric_dtype(df[c]) else "categorical"
            if t not in ("continuous", "categorical"):
                raise err(f"type of {c!r} must be 'continuous' or 'categorical', got {t!r}", "covariate_types")
            if t == "continuous" and not pd.api.types.is_numeric_dtype(df[c]):
                bad = df[c][pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()]
                raise StudyError(f"covariate {c!r} is continuous but has non-numeric values: "
                                 + ", ".join(f"sub-{i}={v!r}" for i, v in bad.head(10).items()),
                                 path=tsv, field=c)
            covariate_types[c] = t  # missing / constant values: check_group_level
        for c in ctypes_cfg:
            if c not in covariates:
                raise err(f"{c!r} has a type but is not listed in covariates", "covariate_types")

        clinical = [need_column(c, "clinical") for c in as_list(cfg.get("clinical"), "clinical")]
        for c in clinical:
            if df[c].isna().all():
                raise StudyError(f"clinical score {c!r} has no values (n/a for every participant)", path=tsv, field=c)
            if df.loc[gvals == groups["patient"], c].isna().all():
                raise StudyError(f"clinical score {c!r} has no values for any patient (n/a for every "
                                 f"{groups['patient']!r} participant; clinical correlations are computed within "
                                 "patients)", path=tsv, field=c)
            if not pd.api.types.is_numeric_dtype(df[c]):
                bad = df[c][pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()]
                raise StudyError(f"clinical score {c!r} must be numeric; non-numeric values: "
                                 + ", ".join(f"sub-{i}={v!r}" for i, v in bad.head(10).items()),
                                 path=tsv, field=c)

        side_col = cfg.get("affected_side_column")
        if side_col is None and "affected_side" in df.columns:
            side_col = "affected_side"
        if side_col is not None:
            side_col = need_column(side_col, "affected_side_column")
            patients = df[gvals == groups["patient"]]
            sides = patients[side_col].astype("string").str.upper()
            bad = sides[~sides.isin(SIDES) | sides.isna()]
            if len(bad):
                raise StudyError(f"affected side must be L, R or B for every patient; invalid: "
                                 + ", ".join(f"sub-{i}={v if pd.notna(v) else 'n/a'}" for i, v in bad.items()),
                                 path=tsv, field=side_col)
            df.loc[patients.index, side_col] = sides
        flip_to = cfg.get("flip_to")
        if flip_to is not None:
            flip_to = str(flip_to).upper()
            if flip_to not in ("L", "R"):
                raise err(f"must be L, R or null, got {cfg.get('flip_to')!r}", "flip_to")
            if side_col is None:
                raise err("flipping needs an affected side column (affected_side_column)", "flip_to")

        sessions = cfg.get("sessions")
        if sessions is not None:
            sessions = [re.sub(r"^ses-", "", str(s)) for s in as_list(sessions, "sessions")]
            bad = [s for s in sessions if not _LABEL_RE.match(s)]
            if bad or not sessions:
                raise err(f"session labels must be letters/digits, got {bad or sessions}", "sessions")

        site_col = cfg.get("site_column")
        if site_col is not None:
            site_col = need_column(site_col, "site_column")
            missing = df.index[df[site_col].isna()].tolist()
            if missing:
                raise StudyError(f"site column {site_col!r} has missing values for: "
                                 + ", ".join(f"sub-{m}" for m in missing), path=tsv, field=site_col)
        n_sites = int(df[site_col].astype(str).nunique()) if site_col is not None else 0
        harmonize = cfg.get("harmonize")
        if harmonize is None:
            harmonize = "combat" if n_sites >= 2 else "none"
        harmonize = str(harmonize).lower()
        if harmonize not in ("combat", "covariate", "none"):
            raise err(f"must be 'combat', 'covariate' or 'none', got {cfg.get('harmonize')!r}", "harmonize")

        analyses = cls._resolve_analyses(cfg.get("analyses"), ypath)
        preprocessing = cls._resolve_section(cfg.get("preprocessing"), PREPROCESSING_DEFAULTS, ypath,
                                             "preprocessing")
        stats = dict(STATS_DEFAULTS)
        scfg = cfg.get("stats") or {}
        if not isinstance(scfg, dict):
            raise err("must be a mapping", "stats")
        for k, v in scfg.items():
            if k not in STATS_DEFAULTS:
                raise err(f"unknown key {k!r}{_suggest(k, STATS_DEFAULTS)}", f"stats.{k}")
            stats[k] = v
        cls._check_stats(stats, ypath)
        from .qc.decisions import resolve_qc

        qc = resolve_qc(cfg.get("qc"), preprocessing, df.index, err)

        return cls(participants=df, group_column=group_column, groups=groups, covariates=covariates,
                   covariate_types=covariate_types, clinical=clinical, affected_side_column=side_col,
                   flip_to=flip_to, sessions=sessions, site_column=site_col, harmonize=harmonize,
                   analyses=analyses,
                   preprocessing=preprocessing, stats=stats, excluded=excluded, qc=qc,
                   source={"participants": str(tsv), "study_yaml": str(ypath)})

    @staticmethod
    def _resolve_section(given, defaults: dict, ypath: Path, key: str) -> dict:
        given = given or {}
        if not isinstance(given, dict):
            raise StudyError("must be a mapping", path=ypath, field=key)
        out = copy.deepcopy(defaults)
        for name, params in given.items():
            if name not in defaults:
                raise StudyError(f"unknown entry {name!r}{_suggest(name, defaults)}; known: "
                                 f"{', '.join(defaults)}", path=ypath, field=key)
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise StudyError("parameters must be a mapping", path=ypath, field=f"{key}.{name}")
            for p, v in params.items():
                if p not in defaults[name]:
                    raise StudyError(f"unknown parameter {p!r}{_suggest(p, defaults[name])}; known: "
                                     f"{', '.join(defaults[name])}", path=ypath, field=f"{key}.{name}")
                out[name][p] = v
        return out

    @classmethod
    def _resolve_analyses(cls, given, ypath: Path) -> dict:
        """The requested analyses with their parameters, each value checked against its
        :class:`~hfsmri.analyses.Param` (type, range, choices) — the one place they are validated."""
        if given is None:
            given = {name: {} for name in ANALYSES}  # everything
        if isinstance(given, (list, tuple)):
            bad = [name for name in given if not isinstance(name, str)]
            if bad:
                raise StudyError(f"a list of analyses must hold analysis names, got {bad[0]!r}",
                                 path=ypath, field="analyses")
            given = {name: {} for name in given}
        if not isinstance(given, dict):
            raise StudyError(f"must be a mapping (analysis: parameters) or a list of analysis names, got {given!r}",
                             path=ypath, field="analyses")
        out = {}
        for name, params in given.items():
            if name not in ANALYSES:
                raise StudyError(f"unknown entry {name!r}{_suggest(name, ANALYSES)}; known: {', '.join(ANALYSES)}",
                                 path=ypath, field="analyses")
            if params is not None and not isinstance(params, dict):
                raise StudyError("parameters must be a mapping", path=ypath, field=f"analyses.{name}")
            out[name] = ANALYSES[name].validate(params or {}, path=ypath)
        return {k: out[k] for k in ANALYSES if k in out}

    @staticmethod
    def _check_stats(stats: dict, ypath: Path) -> None:
        def bad(k, msg):
            return StudyError(msg, path=ypath, field=f"stats.{k}")

        if not isinstance(stats["n_perm"], int) or isinstance(stats["n_perm"], bool) or stats["n_perm"] < 0:
            raise bad("n_perm", f"must be a non-negative integer, got {stats['n_perm']!r}")
        if not isinstance(stats["tfce"], bool):
            raise bad("tfce", f"must be true or false, got {stats['tfce']!r}")
        for k in ("alpha", "cluster_forming_p"):
            v = stats[k]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (0 < v < 1):
                raise bad(k, f"must be a number between 0 and 1, got {v!r}")
        if not isinstance(stats["random_seed"], int) or isinstance(stats["random_seed"], bool):
            raise bad("random_seed", f"must be an integer, got {stats['random_seed']!r}")
        from .analyses import FAMILYWISE_SCOPES

        if stats["familywise"] not in FAMILYWISE_SCOPES:
            raise bad("familywise", f"must be one of {', '.join(FAMILYWISE_SCOPES)}, got {stats['familywise']!r}")
        for k in ("min_cluster_voxels", "min_df_correlation", "roi_n_perm"):
            v = stats[k]
            if not isinstance(v, int) or isinstance(v, bool) or v < (1 if k == "min_cluster_voxels" else 0):
                raise bad(k, f"must be a {'positive' if k == 'min_cluster_voxels' else 'non-negative'} integer, "
                             f"got {v!r}")
        v = stats["variance_smoothing"]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (0 <= v < 50):
            raise bad("variance_smoothing", f"must be a FWHM in mm between 0 (off) and 50, got {v!r}")
        vc = stats["voxelwise_clinical"]
        if not (isinstance(vc, bool) or (isinstance(vc, list) and all(isinstance(x, str) for x in vc))):
            raise bad("voxelwise_clinical", f"must be true, false or a list of clinical scores, got {vc!r}")

    def _check_sessions_on_disk(self, bids_dir: Path) -> None:
        missing = []
        for lab in self.participants.index:
            for ses in self.sessions:
                if not (bids_dir / f"sub-{lab}" / f"ses-{ses}").is_dir():
                    missing.append(f"sub-{lab}/ses-{ses}")
        if missing:
            raise StudyError("sessions declared in study.yaml are missing on disk for: " + ", ".join(missing),
                             path=bids_dir, field="sessions")

    # ------------------------------------------------------------------ queries
    @property
    def labels(self) -> list[str]:
        return list(self.participants.index)

    def group_of(self, label: str) -> str:
        """``"patient"`` or ``"control"`` for a participant label (with or without ``sub-``)."""
        lab = re.sub(r"^sub-", "", label)
        value = str(self.participants.loc[lab, self.group_column])
        return "patient" if value == self.groups["patient"] else "control"

    def subjects_in(self, role: str) -> list[str]:
        return [lab for lab in self.labels if self.group_of(lab) == role]

    def affected_side(self, label: str) -> str | None:
        if not self.affected_side_column or self.group_of(label) != "patient":
            return None
        v = self.participants.loc[re.sub(r"^sub-", "", label), self.affected_side_column]
        return None if pd.isna(v) else str(v)

    def flipped(self, label: str) -> bool:
        """Whether this participant's images are mirrored (patient with one affected side that is
        not ``flip_to``). Controls and bilateral patients are never flipped."""
        side = self.affected_side(label)
        return bool(self.flip_to and side in ("L", "R") and side != self.flip_to)

    @property
    def bids_dir(self) -> Path | None:
        p = self.source.get("participants")
        return Path(p).parent if p else None

    def session_scores(self) -> pd.DataFrame:
        """Per-session clinical values from BIDS ``sub-X/sub-X_sessions.tsv`` files.

        Returns a DataFrame indexed by (participant label, session label) with the numeric columns
        of those files (e.g. ``severity`` after MVD); empty when the dataset has none. Scores absent
        from a sessions file fall back to participants.tsv for the first session only.
        """
        rows = []
        root = self.bids_dir
        for lab in self.labels:
            f = root / f"sub-{lab}" / f"sub-{lab}_sessions.tsv" if root else None
            if f is None or not f.exists():
                continue
            try:
                df = pd.read_csv(f, sep="\t", dtype=str, keep_default_na=False)
            except Exception as exc:
                raise StudyError(f"cannot read sessions table: {exc}", path=f) from None
            if "session_id" not in df.columns:
                raise StudyError("missing the required column 'session_id'", path=f, field="session_id")
            for _, r in df.iterrows():
                row = {"participant": lab, "session": re.sub(r"^ses-", "", r["session_id"])}
                for c in df.columns:
                    if c != "session_id":
                        v = r[c]
                        row[c] = pd.to_numeric(v, errors="coerce") if str(v).lower() not in _MISSING else float("nan")
                rows.append(row)
        if not rows:
            return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=["participant", "session"]))
        return pd.DataFrame(rows).set_index(["participant", "session"]).sort_index()

    def resolved(self) -> dict:
        """The study.yaml with every default filled in (what ``study.resolved.yaml`` contains)."""
        return {
            "group_column": self.group_column,
            "groups": dict(self.groups),
            "covariates": list(self.covariates),
            "covariate_types": dict(self.covariate_types),
            "clinical": list(self.clinical),
            "affected_side_column": self.affected_side_column,
            "flip_to": self.flip_to,
            "sessions": self.sessions,
            "site_column": self.site_column,
            "harmonize": self.harmonize,
            "exclude": [f"sub-{k}" for k in self.excluded],
            "analyses": copy.deepcopy(self.analyses),
            "preprocessing": copy.deepcopy(self.preprocessing),
            "stats": dict(self.stats),
            "qc": copy.deepcopy(self.qc),
        }

    def write_resolved(self, output_dir: str | Path) -> Path:
        """Write ``OUTPUT_DIR/study.resolved.yaml`` atomically."""
        import yaml

        from .derivatives import write_text_atomic

        text = ("# study.yaml with every default resolved by hfsmri\n"
                + yaml.safe_dump(self.resolved(), sort_keys=False, default_flow_style=None))
        return write_text_atomic(Path(output_dir) / "study.resolved.yaml", text)

    def summary(self) -> dict[str, Any]:
        return {"n_patients": len(self.subjects_in("patient")),
                "n_controls": len(self.subjects_in("control")),
                "analyses": list(self.analyses), "excluded": dict(self.excluded)}
