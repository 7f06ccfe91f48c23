"""Which series become which BIDS file: an ordered list of rules, in YAML.

The default rules ship as ``default_heuristic.yaml`` next to this module (documented in
``docs/conventions.md``); a user heuristic has the same format::

    extends: default          # default (these rules first, then hfsmri's) | none (only these)
    rules:
      - name: t1_site                      # letters, digits, '_' and '-'; unique
        match:                             # every field must match (AND)
          SeriesDescription: 'T1_3D_SAG'   # text: regular expression, case-insensitive, searched
          ImageType: [ORIGINAL]            # list: any of these values (an element of list fields)
          n_volumes: {max: 1}              # mapping: regex / values / min / max / exists
        unless: {SeriesDescription: 'post'}   # optional: the rule does not apply when this matches
        datatype: anat                     # anat | func | dwi | fmap | perf
        suffix: T1w
        entities: {acq: site}              # optional: task, acq, ce, rec, dir (func needs task)
      - name: swi
        match: {SeriesDescription: 'swi'}
        skip: susceptibility-weighted, not analysed   # skip: the reason printed and recorded

Fields are DICOM keywords of the series' first file (``SeriesDescription``, ``ProtocolName``,
``ImageType``, ``SequenceName``, ``ScanningSequence``, ``MRAcquisitionType``, ``RepetitionTime``
in ms, ...) or computed ones (:data:`hfsmri.dicom.scan.COMPUTED_FIELDS`: ``names``, ``n_volumes``,
``n_slices``, ``b_max``, ...). A ``match`` may also hold ``any: [{...}, {...}]``: at least one of
these sub-mappings must match. The first rule whose ``match`` holds (and ``unless`` does not)
decides; a series no rule matches is skipped ("no rule matched").
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HfsmriError
from .scan import COMPUTED_FIELDS, Series

DEFAULT_HEURISTIC = Path(__file__).with_name("default_heuristic.yaml")
DATATYPES = ("anat", "func", "dwi", "fmap", "perf")
#: entities a rule may set (run and echo are assigned by the importer)
RULE_ENTITIES = ("task", "acq", "ce", "rec", "dir")
_TOP_KEYS = ("extends", "rules")
_RULE_KEYS = ("name", "match", "unless", "skip", "datatype", "suffix", "entities")
_COND_KEYS = ("regex", "values", "min", "max", "exists")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_ALNUM = re.compile(r"^[A-Za-z0-9]+$")


class HeuristicError(HfsmriError):
    """A heuristic file is not valid (the message names the file, the rule and the key)."""


@dataclass(frozen=True)
class Condition:
    """One field test. ``regex``: searched in the text (lists joined by ``\\``); ``values``: the
    value (or, for a list, any element) equals one of them (text case-insensitive, numbers as
    numbers); ``min``/``max``: inclusive numeric bounds; ``exists``: present or absent."""

    field: str
    regex: re.Pattern | None = None
    values: tuple | None = None
    min: float | None = None
    max: float | None = None
    exists: bool | None = None

    def test(self, value) -> bool:
        if self.exists is not None and (value is not None) != self.exists:
            return False
        if value is None:
            return self.exists is False
        if self.regex is not None:
            text = "\\".join(str(v) for v in value) if isinstance(value, list) else str(value)
            if not self.regex.search(text):
                return False
        if self.values is not None:
            items = value if isinstance(value, list) else [value]
            wanted = {_norm(v) for v in self.values}
            if not any(_norm(v) in wanted for v in items):
                return False
        if self.min is not None or self.max is not None:
            try:
                num = float(value)
            except (TypeError, ValueError):
                return False
            if self.min is not None and num < self.min:
                return False
            if self.max is not None and num > self.max:
                return False
        return True


def _norm(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    text = str(v).strip()
    try:
        return float(text)
    except ValueError:
        return text.upper()


@dataclass(frozen=True)
class Match:
    """All ``conditions`` hold and, when ``any_of`` is given, at least one of those matches."""

    conditions: tuple = ()
    any_of: tuple = ()

    def test(self, s: Series) -> bool:
        if not all(c.test(s.field(c.field)) for c in self.conditions):
            return False
        return not self.any_of or any(m.test(s) for m in self.any_of)


@dataclass(frozen=True)
class Decision:
    """What happens to one series: kept as ``datatype/suffix`` with ``entities``, or skipped."""

    rule: str | None
    skip: str | None = None
    datatype: str | None = None
    suffix: str | None = None
    entities: tuple = ()          # ((key, value), ...) in the rule's order

    @property
    def kept(self) -> bool:
        return self.skip is None

    def describe(self) -> str:
        if not self.kept:
            return f"skipped: {self.skip}"
        ents = "_".join(f"{k}-{v}" for k, v in self.entities)
        return f"{self.datatype}/{ents + '_' if ents else ''}{self.suffix}"


@dataclass(frozen=True)
class Rule:
    name: str
    match: Match
    unless: Match | None
    decision: Decision
    raw: dict = field(compare=False, default_factory=dict)

    def applies(self, s: Series) -> bool:
        return self.match.test(s) and not (self.unless is not None and self.unless.test(s))


@dataclass
class Heuristic:
    """An ordered rule list; :meth:`classify` returns the first matching rule's decision."""

    rules: list
    source: str

    def classify(self, s: Series) -> Decision:
        for rule in self.rules:
            if rule.applies(s):
                return rule.decision
        return Decision(rule=None, skip="no rule matched (not T1w, DWI or resting BOLD by the heuristic)")

    def to_yaml(self) -> str:
        """The effective rules (user rules followed by the default ones) as a stand-alone file."""
        import yaml

        head = f"# effective hfsmri import heuristic ({self.source})\n"
        return head + yaml.safe_dump({"extends": "none", "rules": [r.raw for r in self.rules]},
                                     sort_keys=False, allow_unicode=True, width=120)


# ---------------------------------------------------------------- loading and validation
def _known_field(name: str) -> bool:
    from pydicom.datadict import keyword_dict

    return name in COMPUTED_FIELDS or name in keyword_dict


def _field_hint(name: str) -> str:
    from pydicom.datadict import keyword_dict

    close = difflib.get_close_matches(name, list(COMPUTED_FIELDS) + list(keyword_dict), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _condition(fname: str, spec, err) -> Condition:
    if not isinstance(fname, str) or not _known_field(fname):
        raise err(f"unknown field {fname!r}{_field_hint(str(fname))}; use a DICOM keyword (e.g. SeriesDescription, "
                  f"ImageType) or one of {', '.join(COMPUTED_FIELDS)}", fname)
    if isinstance(spec, str):
        spec = {"regex": spec}
    elif isinstance(spec, (list, tuple)):
        spec = {"values": list(spec)}
    elif isinstance(spec, (bool, int, float)):
        spec = {"values": [spec]}
    elif not isinstance(spec, dict):
        raise err(f"must be a regular expression (text), a list of values or a mapping with "
                  f"{'/'.join(_COND_KEYS)}, got {type(spec).__name__}", fname)
    unknown = [k for k in spec if k not in _COND_KEYS]
    if unknown:
        raise err(f"unknown condition key {unknown[0]!r}; allowed: {', '.join(_COND_KEYS)}", fname)
    if not spec:
        raise err("empty condition", fname)
    kw = {}
    if "regex" in spec:
        if not isinstance(spec["regex"], str):
            raise err(f"regex must be text, got {spec['regex']!r}", fname)
        try:
            kw["regex"] = re.compile(spec["regex"], re.IGNORECASE)
        except re.error as exc:
            raise err(f"invalid regular expression {spec['regex']!r}: {exc}", fname) from None
    if "values" in spec:
        vals = spec["values"] if isinstance(spec["values"], list) else [spec["values"]]
        if not vals or not all(isinstance(v, (str, int, float, bool)) for v in vals):
            raise err(f"values must be a non-empty list of text or numbers, got {spec['values']!r}", fname)
        kw["values"] = tuple(vals)
    for bound in ("min", "max"):
        if bound in spec:
            v = spec[bound]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise err(f"{bound} must be a number, got {v!r}", fname)
            kw[bound] = float(v)
    if "min" in kw and "max" in kw and kw["min"] > kw["max"]:
        raise err(f"min {kw['min']:g} is larger than max {kw['max']:g}", fname)
    if "exists" in spec:
        if not isinstance(spec["exists"], bool):
            raise err(f"exists must be true or false, got {spec['exists']!r}", fname)
        kw["exists"] = spec["exists"]
    return Condition(field=fname, **kw)


def _match(spec, err, where: str) -> Match:
    if spec is None:
        return Match()
    if not isinstance(spec, dict):
        raise err(f"must be a mapping of field: condition, got {type(spec).__name__}", where)
    conds, any_of = [], ()
    for fname, cond in spec.items():
        if fname == "any":
            if not isinstance(cond, list) or not cond:
                raise err("'any' must be a non-empty list of field mappings", f"{where}.any")
            any_of = tuple(_match(m, err, f"{where}.any[{i}]") for i, m in enumerate(cond))
            continue
        conds.append(_condition(fname, cond, lambda msg, f, w=where: err(msg, f"{w}.{f}")))
    return Match(conditions=tuple(conds), any_of=any_of)


def _rule(i: int, spec, path: str, names: set) -> Rule:
    def err(msg, key=None, name=None):
        label = f"rules[{i}]" + (f" ({name or spec.get('name')})" if isinstance(spec, dict) and (name or spec.get("name")) else "")
        return HeuristicError(msg, path=path, field=f"{label}{'.' + key if key else ''}")

    if not isinstance(spec, dict):
        raise err(f"a rule must be a mapping (name, match, then skip or datatype/suffix), got {type(spec).__name__}")
    unknown = [k for k in spec if k not in _RULE_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), _RULE_KEYS, n=1)
        raise err(f"unknown key {unknown[0]!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                  f"allowed: {', '.join(_RULE_KEYS)}")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise err(f"every rule needs a name of letters, digits, '_' or '-', got {name!r}", "name")
    if name in names:
        raise err(f"duplicate rule name {name!r}", "name")
    names.add(name)
    match = _match(spec.get("match"), err, "match")
    unless = _match(spec["unless"], err, "unless") if "unless" in spec else None
    keeps = any(k in spec for k in ("datatype", "suffix", "entities"))
    if "skip" in spec:
        if keeps:
            raise err("a rule either skips (skip: reason) or keeps (datatype, suffix), not both", "skip")
        if not isinstance(spec["skip"], str) or not spec["skip"].strip():
            raise err("skip must be the reason, as text", "skip")
        decision = Decision(rule=name, skip=spec["skip"].strip())
    else:
        datatype, suffix = spec.get("datatype"), spec.get("suffix")
        if datatype not in DATATYPES:
            raise err(f"datatype must be one of {', '.join(DATATYPES)}, got {datatype!r} "
                      "(or give 'skip: reason')", "datatype")
        if not isinstance(suffix, str) or not _ALNUM.match(suffix):
            raise err(f"suffix must be letters and digits (e.g. T1w, dwi, bold), got {suffix!r}", "suffix")
        ents = spec.get("entities") or {}
        if not isinstance(ents, dict):
            raise err("entities must be a mapping, e.g. {task: rest}", "entities")
        for k, v in ents.items():
            if k not in RULE_ENTITIES:
                raise err(f"entity {k!r} cannot be set by a rule; allowed: {', '.join(RULE_ENTITIES)} "
                          "(run and echo are numbered automatically)", f"entities.{k}")
            if not _ALNUM.match(str(v)):
                raise err(f"entity values must be letters and digits, got {v!r}", f"entities.{k}")
        if datatype == "func" and "task" not in ents:
            raise err("a func rule needs a task entity, e.g. entities: {task: rest}", "entities")
        order = {k: i for i, k in enumerate(RULE_ENTITIES)}
        decision = Decision(rule=name, datatype=datatype, suffix=suffix,
                            entities=tuple(sorted(((k, str(v)) for k, v in ents.items()), key=lambda kv: order[kv[0]])))
    return Rule(name=name, match=match, unless=unless, decision=decision, raw=dict(spec))


def parse_heuristic(obj, path: str) -> tuple[list, str]:
    """(rules, extends) of a parsed heuristic document; raises HeuristicError naming the fault."""
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise HeuristicError("a heuristic must be a YAML mapping with 'rules' (and optionally 'extends')", path=path)
    unknown = [k for k in obj if k not in _TOP_KEYS]
    if unknown:
        raise HeuristicError(f"unknown key {unknown[0]!r}; allowed: {', '.join(_TOP_KEYS)}", path=path,
                             field=str(unknown[0]))
    extends = obj.get("extends", "default")
    if extends not in ("default", "none"):
        raise HeuristicError(f"extends must be 'default' or 'none', got {extends!r}", path=path, field="extends")
    rules = obj.get("rules")
    if not isinstance(rules, list) or not rules:
        raise HeuristicError("'rules' must be a non-empty list of rules", path=path, field="rules")
    names: set = set()
    return [_rule(i, r, path, names) for i, r in enumerate(rules)], extends


def _read_yaml(path: Path):
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HeuristicError("heuristic file does not exist", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HeuristicError(f"cannot read heuristic file: {exc}", path=path) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HeuristicError(f"invalid YAML{where}: {problem}", path=path) from None


def default_heuristic() -> Heuristic:
    rules, _ = parse_heuristic(_read_yaml(DEFAULT_HEURISTIC), str(DEFAULT_HEURISTIC))
    return Heuristic(rules=rules, source="hfsmri default heuristic")


def load_heuristic(path: str | Path | None = None) -> Heuristic:
    """The default heuristic (``path`` None) or a user's file (its rules first, then the default
    rules unless it says ``extends: none``). Raises :class:`HeuristicError` on any fault."""
    if path is None:
        return default_heuristic()
    path = Path(path)
    if path.is_dir():
        raise HeuristicError("heuristic must be a YAML file, got a folder", path=path)
    rules, extends = parse_heuristic(_read_yaml(path), str(path))
    if extends == "default":
        default = default_heuristic()
        clash = {r.name for r in rules} & {r.name for r in default.rules}
        if clash:
            raise HeuristicError(f"rule name(s) {', '.join(sorted(clash))} are also default rule names; rename them "
                                 "(your rules come first anyway) or use 'extends: none'", path=path, field="rules")
        return Heuristic(rules=rules + default.rules, source=f"{path.name}, then the hfsmri default heuristic")
    return Heuristic(rules=rules, source=path.name)
