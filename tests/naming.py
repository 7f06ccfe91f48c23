"""Group result file names for tests, asked from the one namer (:func:`hfsmri.derivatives.group_file_name`)."""
from __future__ import annotations

from hfsmri.derivatives import group_file_name, sidecar_path


def gname(kind: str, contrast: str | None = None, metric: str | None = None, sidecar: bool = False) -> str:
    """File name of a group result of ``kind`` (its JSON sidecar's name with ``sidecar``)."""
    name = group_file_name(kind, contrast, metric)
    return sidecar_path(name).name if sidecar else name


# ----------------------------------------------------------------------------- BIDS filename rules
#: entities of BIDS extensions used in derivatives but absent from the core schema: ``contrast``/
#: ``stat`` (BIDS Stats Models outputs), ``model``/``param`` (BEP016 diffusion), ``meas`` (BEP017
#: connectivity), ``seed``/``roi`` (BEP012 functional derivatives)
EXTENSION_ENTITIES = {"contrast", "stat", "model", "param", "meas", "seed", "roi"}
SUFFIXES_EXT = (".nii.gz", ".nii", ".tsv", ".json", ".png", ".svg", ".html", ".npy", ".npz")


def _schema():
    from bidsschematools import schema

    s = schema.load_schema()
    order = [s.objects.entities[e].name for e in s.rules.entities]
    return order, s.objects.formats["label"].pattern


def bids_name_problems(name: str) -> list[str]:
    """What is wrong with a file name under the BIDS filename rules of the official schema
    (``bidsschematools``): ``key-value`` entities with alphanumeric values (``+`` allowed), known keys
    (schema or :data:`EXTENSION_ENTITIES`), schema entities in schema order, each at most once, then an
    alphanumeric suffix and a known extension. A name with no entity is a suffix only
    (``rois.tsv``, as ``participants.tsv``)."""
    import re

    order, label = _schema()
    ext = next((e for e in SUFFIXES_EXT if name.endswith(e)), None)
    if ext is None:
        return [f"{name}: unknown extension"]
    parts = name[: -len(ext)].split("_")
    *ents, suffix = parts
    problems = [] if re.fullmatch(r"[A-Za-z0-9]+", suffix) else [f"{name}: suffix {suffix!r} is not alphanumeric"]
    seen, last = set(), -1
    for e in ents:
        key, sep, value = e.partition("-")
        if not sep:
            problems.append(f"{name}: {e!r} is not a key-value entity")
            continue
        if not re.fullmatch(label, value):
            problems.append(f"{name}: value {value!r} of {key!r} is not a BIDS label (letters, digits, +)")
        if key in seen:
            problems.append(f"{name}: entity {key!r} repeated")
        seen.add(key)
        if key in order:
            if order.index(key) < last:
                problems.append(f"{name}: entity {key!r} out of BIDS order")
            last = order.index(key)
        elif key not in EXTENSION_ENTITIES:
            problems.append(f"{name}: unknown entity {key!r}")
    return problems
