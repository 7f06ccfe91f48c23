"""BIDS-Derivatives output: the one place that builds output names, writes files and provenance.

* Names: ``sub-X/[ses-Y/]<datatype>/sub-X_[ses-Y_]<entities>_<suffix><ext>`` with entities in
  BIDS order (:data:`ENTITY_ORDER`), values restricted to letters and digits (so that no
  participant id or parameter can write outside OUTPUT_DIR).
* Atomic writes: every file is written to a hidden temporary name in its final folder and
  renamed with :func:`os.replace`; a crash leaves no partial output under the final name.
  Temporary names carry the writer's host and pid (``.<name>.<host>-<pid>-<random>.tmp<ext>``):
  :func:`remove_stale_temporaries` deletes those of dead processes (and any older than
  :data:`STALE_TEMP_SECONDS`) at the next start, never those of a job still writing.
* Provenance: every image/table gets a JSON sidecar with the software version, the parameters,
  the input files with their SHA-256, a ``ProvenanceHash`` over (parameters, input hashes,
  hfsmri major.minor) and the output's own size and SHA-256 (``Integrity``).
  :meth:`Derivatives.is_done` compares the hash and checks the output against its recorded size
  and checksum, so a re-run skips finished work, a changed parameter or input re-creates exactly
  the outputs that depend on it, and a truncated or corrupt output is re-created.
* Reading participant outputs back (group level): :func:`read_derivative` reads an image or table
  completely, checks it against its recorded size/checksum and names the file when it cannot.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import __version__
from .errors import HfsmriError, InputDataError, storage_error
from .spatial.templates import TEMPLATE_SPACE

PIPELINE_NAME = "hfsmri"
DEFAULT_SPACE = TEMPLATE_SPACE
ENTITY_ORDER = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "hemi",
                "space", "cohort", "res", "den", "atlas", "roi", "label", "seed", "model",
                "param", "stat", "contrast", "meas", "desc")
_VALUE_RE = re.compile(r"^[A-Za-z0-9]+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _check_value(key: str, value: Any) -> str:
    text = str(value)
    if not _VALUE_RE.match(text):
        raise HfsmriError(f"BIDS entity value {text!r} for '{key}' must contain only letters and digits",
                          field=key)
    return text


def _check_name(kind: str, value: str) -> str:
    if not _NAME_RE.match(str(value)) or ".." in str(value):
        raise HfsmriError(f"{kind} name {value!r} may only contain letters, digits, '_', '-', '.', '+'",
                          field=kind)
    return str(value)


def _jsonable(obj):
    """Convert numpy scalars/arrays and paths into JSON types (stable)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        seq = sorted(obj, key=str) if isinstance(obj, set) else obj
        return [_jsonable(v) for v in seq]
    if isinstance(obj, Path):
        return str(obj)
    if np is not None:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    return obj


def canonical_json(obj) -> str:
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), default=str)


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's content (memoised on path, size and mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def provenance_hash(inputs: Iterable[str | Path] = (), params: Mapping | None = None) -> str:
    """Hash of (hfsmri major.minor, parameters, input file contents). Input order does not matter."""
    major_minor = ".".join(__version__.split(".")[:2])
    digests = sorted(f"{Path(p).name}:{file_sha256(p)}" for p in inputs)
    payload = canonical_json({"v": major_minor, "params": params or {}, "inputs": digests})
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname().split(".")[0])[:40] or "host"


#: temporaries of :func:`atomic_path`: ``.<final name>.<host>-<pid>-<random>.tmp[<ext>]`` (the
#: host-pid part is absent in names written by hfsmri before 2026-11-25)
TEMP_RE = re.compile(r"^\.(?P<final>.+)\.(?:(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-)?[A-Za-z0-9_]{8}\.tmp(?:\.[A-Za-z0-9.]+)?$")
#: a temporary of a live process on this host is never removed; any other is removed after this
#: many seconds without modification (an atomic write takes seconds; other hosts' pids cannot be checked)
STALE_TEMP_SECONDS = 3600.0


@contextlib.contextmanager
def atomic_path(final: str | Path):
    """Yield a temporary path in ``final``'s folder; rename it to ``final`` on success only.

    The temporary name keeps the final suffixes (``.nii.gz``, ``.tsv``) so writers that look at the
    extension work, and carries this process's host and pid (see :data:`TEMP_RE`). On any exception
    the temporary file is removed and nothing appears at ``final``; a full disk, an exceeded quota
    or a read-only file system raises :class:`~hfsmri.errors.StorageError` naming ``final``.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(final.suffixes[-2:]) if final.name.endswith(".nii.gz") else final.suffix
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.{_host_tag()}-{os.getpid()}-", suffix=f".tmp{suffix}",
                                   dir=final.parent)
    except OSError as exc:
        err = storage_error(exc, final)
        if err is None:
            raise
        raise err from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        yield tmp
        os.replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        err = storage_error(exc, final) if isinstance(exc, OSError) else None
        if err is None or not err.fatal:  # EACCES etc. may concern a file the writer reads: not ours to name
            raise
        raise err from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _is_stale(path: Path, host: str | None, pid: str | None, now: float, max_age: float) -> bool:
    """A temporary is stale when its writer (same host) is dead, or it was not modified for
    ``max_age`` seconds (other hosts, names without an owner)."""
    if host is not None and host == _host_tag() and pid is not None:
        if int(pid) == os.getpid():
            return False
        if not _pid_alive(int(pid)):
            return True
    try:
        return now - path.lstat().st_mtime > max_age
    except FileNotFoundError:
        return False


def remove_stale_temporaries(root: str | Path, exclude: Iterable[str | Path] = (),
                             max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete the leftover temporaries of :func:`atomic_path` under ``root`` (a killed or failed
    run's partial files); returns the removed paths.

    Only names matching :data:`TEMP_RE` are touched, and of those only the ones whose writing
    process is dead (same host) or that were not modified for ``max_age`` seconds, so temporaries
    of a job writing concurrently (e.g. another array job into the same OUTPUT_DIR) are kept.
    Folders in ``exclude`` (e.g. BIDS_DIR when it lies inside ``root``) are not entered.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    skip = {os.path.realpath(p) for p in exclude}
    removed, now = [], time.time()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.realpath(os.path.join(dirpath, d)) not in skip]
        for name in filenames:
            if not name.startswith(".") or ".tmp" not in name:
                continue
            m = TEMP_RE.match(name)
            if m is None:
                continue
            p = Path(dirpath) / name
            if _is_stale(p, m.group("host"), m.group("pid"), now, max_age):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, obj) -> Path:
    return write_text_atomic(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True, default=str) + "\n")


#: gzip level of written .nii.gz files: 1 (nibabel's own default); measured on 47 demo maps
#: (357 MB raw): 1.6x faster than level 6 for files 5 % larger (54.0 vs 51.6 MB)
GZIP_LEVEL = 1


def save_nifti_atomic(img, path: str | Path) -> Path:
    """Save a nibabel image atomically; gzip header mtime fixed to 0 for byte-identical reruns."""
    import nibabel as nib

    path = Path(path)
    with atomic_path(path) as tmp:
        if path.name.endswith(".gz"):
            raw = tmp.with_name(tmp.name[:-3])
            try:  # the uncompressed temporary is removed whatever fails (nib.save itself included)
                nib.save(img, raw)
                with open(raw, "rb") as src, open(tmp, "wb") as dst:
                    with gzip.GzipFile(filename="", mode="wb", fileobj=dst, mtime=0, compresslevel=GZIP_LEVEL) as gz:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            gz.write(block)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    raw.unlink()
        else:
            nib.save(img, tmp)
    return path


def save_tsv_atomic(df, path: str | Path, index: bool = False) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=index, na_rep="n/a", float_format="%.10g", lineterminator="\n")
    return Path(path)


#: the statistic and −log10 p maps of one contrast: kind -> entities and suffix after
#: ``space-<template>_contrast-<label>_``. ``fwecontrasts`` / ``fwemetrics``: family-wise FWE p over
#: all contrasts of the metric / over all contrasts of every metric of the analysis' family
#: (:mod:`hfsmri.stats.family`), written beside the per-contrast ``fwe`` map.
CONTRAST_MAPS = {"t": "stat-t_statmap", "tfce": "stat-tfce_statmap", "fwe": "desc-fwe_logp",
                 "voxelfwe": "desc-voxelfwe_logp", "clusterfwe": "desc-clusterfwe_logp",
                 "uncorrected": "desc-uncorrected_logp", "fdr": "desc-fdr_logp",
                 "fwecontrasts": "desc-fwecontrasts_logp", "fwemetrics": "desc-fwemetrics_logp"}
#: group result files: kind -> name in ``group/[<analysis>/[<metric>/]]`` (``{S}``: the template
#: space, ``{c}``: the contrast's BIDS label (:func:`contrast_label`), ``{m}``: the metric).
#: :func:`group_path` is the one place group files are named; every name is a valid
#: BIDS-Derivatives name (alphanumeric labels, entities in BIDS order, a suffix).
GROUP_FILES = {
    **{k: f"space-{{S}}_contrast-{{c}}_{v}.nii.gz" for k, v in CONTRAST_MAPS.items()},
    "clusters": "space-{S}_contrast-{c}_clusters.tsv",
    "edges": "contrast-{c}_edges.tsv",                                             # graph/edges, graph/nbs
    "components": "contrast-{c}_components.tsv",                                   # graph/nbs
    "contrasts": "contrasts.tsv",                                                  # label -> contrast, text
    "mask": "space-{S}_desc-analysis_mask.nii.gz",
    "mask_longitudinal": "space-{S}_desc-longitudinal_mask.nii.gz",
    "rois": "rois.tsv", "correlations": "correlations.tsv",                        # contract names
    "values": "desc-roimeans_stats.tsv", "rois_longitudinal": "desc-longitudinal_rois.tsv",
    "summary": "summary.json", "summary_longitudinal": "desc-longitudinal_summary.json",
    "skeletonised": "space-{S}_model-tensor_param-{m}_desc-skeletonised_dwimap.nii.gz",   # tbss/<metric>/
    "mean_fa": "space-{S}_model-tensor_param-fa_desc-mean_dwimap.nii.gz",                 # tbss/
    "skeleton": "space-{S}_desc-skeleton_mask.nii.gz",                                    # tbss/
    "ica_maps": "space-{S}_desc-ica_components.nii.gz",                                   # ica/
    "ica_labels": "components.tsv", "func_qc": "desc-func_qc.tsv",                  # ica/, group/
    "qc_decisions": "desc-decisions_qc.tsv",                                        # group/
    "group_summary": "desc-group_summary.json", "stage_marker": ".{c}_done.json",        # group/ (c = the stage)
    "folder": "",                                                                   # the folder itself
}
_CONTRAST_WORDS = {"gt": "GT", "lt": "LT"}


def contrast_label(name: str) -> str:
    """The BIDS label (letters and digits only) of a design's contrast name.

    Words split at any non-alphanumeric character; the first word is kept, ``gt``/``lt`` become
    ``GT``/``LT`` and the word after them stays lower case, every other word is capitalised:
    ``patient-gt-control`` -> ``patientGTcontrol``, ``corr-severity-pos`` -> ``corrSeverityPos``,
    ``corr-duration_months-neg`` -> ``corrDurationMonthsNeg``, ``patient-post-gt-pre`` ->
    ``patientPostGTpre``, ``change-patient-gt-control`` -> ``changePatientGTcontrol``. A name
    that is already a label is returned unchanged.
    """
    words = [w for w in re.split(r"[^A-Za-z0-9]+", str(name)) if w]
    if not words:
        raise HfsmriError(f"contrast name {name!r} has no letters or digits", field="contrast")
    out, prev = [words[0]], words[0]
    for w in words[1:]:
        if w.lower() in _CONTRAST_WORDS:
            out.append(_CONTRAST_WORDS[w.lower()])
        elif prev.lower() in _CONTRAST_WORDS:
            out.append(w.lower())
        else:
            out.append(w[:1].upper() + w[1:])
        prev = w
    return "".join(out)


def group_file_name(kind: str, contrast: str | None = None, metric: str | None = None) -> str:
    """The file name (no folder) of a group result of ``kind`` (see :func:`group_path`)."""
    if kind not in GROUP_FILES:
        raise HfsmriError(f"unknown group file kind {kind!r}; known: {', '.join(GROUP_FILES)}", field="kind")
    pattern = GROUP_FILES[kind]
    if "{c}" in pattern and not contrast:
        raise HfsmriError(f"group file kind {kind!r} needs a contrast", field="contrast")
    c = contrast if kind == "stage_marker" else (contrast_label(contrast) if contrast else None)
    m = _check_value("param", str(metric or "").lower()) if "{m}" in pattern else None
    return pattern.format(S=TEMPLATE_SPACE, c=c, m=m)


def group_path(root: str | Path, analysis: str | None = None, metric: str | None = None,
               contrast: str | None = None, kind: str = "fwe") -> Path:
    """``OUTPUT_DIR/group/[<analysis>/[<metric>/]]<file>`` of a group result (nothing is created).

    ``kind``: a key of :data:`GROUP_FILES`; ``contrast``: the design's contrast name (e.g.
    ``patient-gt-control``; written as its BIDS label ``patientGTcontrol``, :func:`contrast_label`)
    for the per-contrast kinds. Every writer and reader of group results goes through this
    function, so that renaming a group file means changing it here only.
    """
    name = group_file_name(kind, contrast, metric)
    d = Path(root) / "group"
    if analysis:
        d = d / _check_name("analysis", analysis)
        if metric:
            d = d / _check_name("metric", metric)
    return d / name


#: sidecar key holding the output file's own size (bytes) and SHA-256, written with the file
INTEGRITY_KEY = "Integrity"

_log = logging.getLogger("hfsmri")


def integrity_record(path: str | Path) -> dict:
    """``{"size": bytes, "sha256": hex}`` of a file (recorded in its sidecar under :data:`INTEGRITY_KEY`)."""
    p = Path(path)
    return {"size": p.stat().st_size, "sha256": file_sha256(p)}


def _gzip_intact(path: Path) -> str | None:
    """Decompress a gzip file completely (the trailer's CRC-32 and length are checked)."""
    import zlib

    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        return f"truncated or corrupt ({type(exc).__name__}: {exc})"
    return None


def verify_output(path: str | Path, meta: Mapping | None = None) -> str | None:
    """Why the derivative at ``path`` is damaged, or None when it is intact.

    With an :data:`INTEGRITY_KEY` record in its sidecar (``meta``, read from the sidecar when
    None): the size and the SHA-256 must match. Without one (outputs of older versions, or no
    sidecar): a ``.gz`` file must decompress completely (gzip CRC); other files are accepted.
    """
    p = Path(path)
    if not p.is_file():
        return "missing"
    if meta is None:
        side = sidecar_path(p)
        try:
            meta = json.loads(side.read_text()) if side.is_file() else {}
        except (OSError, ValueError):
            meta = {}
    rec = meta.get(INTEGRITY_KEY) if isinstance(meta, Mapping) else None
    if isinstance(rec, Mapping) and "size" in rec and "sha256" in rec:
        size = p.stat().st_size
        if size != int(rec["size"]):
            return (f"truncated or damaged: {size} bytes, {int(rec['size'])} recorded when it was written")
        if file_sha256(p) != rec["sha256"]:
            return "damaged: its SHA-256 differs from the one recorded when it was written"
        return None
    if p.name.endswith(".gz"):
        return _gzip_intact(p)
    return None


def _subject_hint(path: Path) -> str:
    sub = next((part for part in path.parts if part.startswith("sub-")), None)
    return (f"run the participant level again for {sub} (the damaged output is recomputed)" if sub
            else "re-create it")


def read_derivative(path: str | Path, **read_csv_kwargs):
    """Read a participant-level output completely, for the group level: a NIfTI image (returned
    as a nibabel image whose data are in memory, same dtype/scaling as ``nib.load``), a ``.tsv``
    table (``pandas.read_csv(path, sep="\t", **read_csv_kwargs)``) or a ``.json`` object.

    The file is checked against the size/SHA-256 recorded in its sidecar. A missing, truncated or
    corrupt file raises :class:`~hfsmri.errors.InputDataError` naming it (never a bare EOFError
    from deep in gzip/nibabel/pandas).
    """
    p = Path(path)
    if not p.is_file():
        raise InputDataError(f"participant output does not exist; {_subject_hint(p)}", path=p)
    problem = verify_output(p) if not p.name.endswith(".gz") else None
    if problem:
        raise InputDataError(f"participant output is {problem}; {_subject_hint(p)}", path=p)
    try:
        if p.name.endswith((".nii", ".nii.gz")):
            return _read_nifti_in_memory(p)
        if p.suffix == ".tsv":
            import pandas as pd

            return pd.read_csv(p, sep="\t", **read_csv_kwargs)
        if p.suffix == ".json":
            return json.loads(p.read_text(encoding="utf-8"))
        return p.read_bytes()
    except InputDataError:
        raise
    except Exception as exc:  # EOFError, zlib.error, nibabel/pandas parse errors, ...
        raise InputDataError(f"cannot read this participant output ({type(exc).__name__}: {exc}); it is "
                             f"truncated or corrupt: {_subject_hint(p)}", path=p) from None


def _read_nifti_in_memory(p: Path):
    import nibabel as nib
    import numpy as np

    raw = p.read_bytes()
    side = sidecar_path(p)
    rec = None
    if side.is_file():
        try:
            rec = json.loads(side.read_text()).get(INTEGRITY_KEY)
        except (OSError, ValueError, AttributeError):
            rec = None
    if isinstance(rec, Mapping) and "size" in rec and "sha256" in rec:
        if len(raw) != int(rec["size"]):
            raise InputDataError(f"participant output is truncated or damaged: {len(raw)} bytes, {int(rec['size'])} "
                                 f"recorded when it was written; {_subject_hint(p)}", path=p)
        if hashlib.sha256(raw).hexdigest() != rec["sha256"]:
            raise InputDataError("participant output is damaged: its SHA-256 differs from the one recorded when it "
                                 f"was written; {_subject_hint(p)}", path=p)
    data = gzip.decompress(raw) if p.name.endswith(".gz") else raw  # checks the gzip CRC
    del raw
    try:
        img = nib.Nifti1Image.from_bytes(data)
    except Exception:
        img = nib.Nifti2Image.from_bytes(data)
    hdr = img.header
    need = int(hdr.get_data_offset()) + int(np.prod(img.shape)) * np.dtype(hdr.get_data_dtype()).itemsize
    if len(data) < need:
        raise InputDataError(f"participant output is truncated: {len(data)} bytes of image data, {need} expected; "
                             f"{_subject_hint(p)}", path=p)
    return img


def sidecar_path(path: str | Path) -> Path:
    p = Path(path)
    name = p.name
    for ext in (".nii.gz", ".nii", ".tsv", ".png", ".svg", ".html", ".npz", ".mat", ".h5"):
        if name.endswith(ext):
            return p.with_name(name[: -len(ext)] + ".json")
    return p.with_name(name + ".json")


class Derivatives:
    """Writer for one BIDS-Derivatives dataset (``OUTPUT_DIR``).

    Parameters
    ----------
    root : path of OUTPUT_DIR (created if missing; ``dataset_description.json`` written once).
    source_datasets : optional list of dicts (BIDS ``SourceDatasets``), e.g. the raw BIDS dir.
    """

    def __init__(self, root: str | Path, source_datasets: list | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        desc = self.root / "dataset_description.json"
        if not desc.exists():
            content = {
                "Name": "hfsmri derivatives",
                "BIDSVersion": "1.9.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": PIPELINE_NAME, "Version": __version__,
                                 "Description": "MRI analyses of a clinical case-control study"}],
            }
            if source_datasets:
                content["SourceDatasets"] = source_datasets
            write_json_atomic(desc, content)

    # ------------------------------------------------------------------ names
    def filename(self, sub: str, ses: str | None, suffix: str, space: str | None = DEFAULT_SPACE,
                 res: int | float | str | None = None, entities: Mapping | None = None,
                 ext: str = ".nii.gz") -> str:
        """File name (no folder) with entities in BIDS order; ``space=None`` for native space."""
        ents: dict[str, str] = {"sub": _check_value("sub", sub)}
        if ses:
            ents["ses"] = _check_value("ses", ses)
        if space:
            ents["space"] = _check_value("space", space)
        if res is not None:
            r = float(res)
            ents["res"] = _check_value("res", int(r) if r.is_integer() else str(r).replace(".", "p"))
        for k, v in (entities or {}).items():
            if v is None:
                continue
            if not re.match(r"^[a-z]+$", k):
                raise HfsmriError(f"BIDS entity key {k!r} must be lower-case letters", field=k)
            ents[k] = _check_value(k, v)
        order = {k: i for i, k in enumerate(ENTITY_ORDER)}
        keys = sorted(ents, key=lambda k: (order.get(k, len(order) - 1.5), k))
        if "desc" in keys:  # desc always last, as BIDS
            keys.remove("desc")
            keys.append("desc")
        if not re.match(r"^[A-Za-z0-9]+$", suffix):
            raise HfsmriError(f"BIDS suffix {suffix!r} must contain only letters and digits", field="suffix")
        return "_".join(f"{k}-{ents[k]}" for k in keys) + f"_{suffix}{ext}"

    def subject_dir(self, sub: str, ses: str | None = None, datatype: str | None = None) -> Path:
        d = self.root / f"sub-{_check_value('sub', sub)}"
        if ses:
            d = d / f"ses-{_check_value('ses', ses)}"
        if datatype:
            d = d / _check_name("datatype", datatype)
        return d

    def path(self, sub: str, ses: str | None, datatype: str, suffix: str,
             space: str | None = DEFAULT_SPACE, res=None, entities: Mapping | None = None,
             ext: str = ".nii.gz") -> Path:
        """Full path of a participant-level derivative (folder created lazily on write)."""
        return self.subject_dir(sub, ses, datatype) / self.filename(sub, ses, suffix, space, res, entities, ext)

    def group_path(self, analysis: str | None = None, metric: str | None = None, contrast: str | None = None,
                   kind: str = "fwe") -> Path:
        """Path of a group result file (:func:`group_path`; the folder is created on write)."""
        return group_path(self.root, analysis, metric, contrast, kind)

    def group_dir(self, analysis: str, metric: str | None = None) -> Path:
        """``OUTPUT_DIR/group/<analysis>/<metric>/`` (created)."""
        d = self.root / "group" / _check_name("analysis", analysis)
        if metric:
            d = d / _check_name("metric", metric)
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def logs_dir(self) -> Path:
        d = self.root / "logs"
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ------------------------------------------------------------------ provenance
    def _sidecar(self, sidecar: Mapping | None, inputs: Iterable, params: Mapping | None,
                 output: Path | None = None) -> dict:
        inputs = [Path(p) for p in inputs]
        content = dict(sidecar or {})
        content.setdefault("GeneratedBy", {"Name": PIPELINE_NAME, "Version": __version__})
        if params is not None:
            content.setdefault("Parameters", _jsonable(params))
        if inputs:
            content["Sources"] = [{"path": self._rel(p), "sha256": file_sha256(p)} for p in inputs]
        content["ProvenanceHash"] = provenance_hash(inputs, params)
        if output is not None:
            content[INTEGRITY_KEY] = integrity_record(output)
        return content

    def _rel(self, p: Path) -> str:
        try:
            return os.path.relpath(p, self.root)
        except ValueError:  # pragma: no cover (different drive)
            return str(p)

    def is_done(self, path: str | Path, inputs: Iterable = (), params: Mapping | None = None) -> bool:
        """True when ``path`` and its sidecar exist, the sidecar's ProvenanceHash matches and the
        file is intact (:func:`verify_output`: recorded size and SHA-256). A damaged output is
        logged as a warning and reported as not done, so the stage re-creates it."""
        path = Path(path)
        side = sidecar_path(path)
        if not (path.exists() and side.exists()):
            return False
        try:
            meta = json.loads(side.read_text())
            if meta.get("ProvenanceHash") != provenance_hash([Path(p) for p in inputs], params):
                return False
        except (OSError, ValueError, AttributeError):
            return False
        problem = verify_output(path, meta)
        if problem:
            _log.warning("%s: %s; it is recomputed", self._rel(path), problem)
            return False
        return True

    # ------------------------------------------------------------------ writers
    def save_nifti(self, img, path: str | Path, sidecar: Mapping | None = None, inputs: Iterable = (),
                   params: Mapping | None = None) -> Path:
        """Write a NIfTI image and its JSON sidecar atomically (image first, sidecar = done marker)."""
        inputs = list(inputs)
        path = Path(path)
        side = sidecar_path(path)
        with contextlib.suppress(FileNotFoundError):
            side.unlink()  # an old sidecar must not mark a half-replaced output as done
        save_nifti_atomic(img, path)
        write_json_atomic(side, self._sidecar(sidecar, inputs, params, output=path))
        return path

    def save_tsv(self, df, path: str | Path, sidecar: Mapping | None = None, inputs: Iterable = (),
                 params: Mapping | None = None, index: bool = False) -> Path:
        inputs = list(inputs)
        path = Path(path)
        side = sidecar_path(path)
        with contextlib.suppress(FileNotFoundError):
            side.unlink()
        save_tsv_atomic(df, path, index=index)
        write_json_atomic(side, self._sidecar(sidecar, inputs, params, output=path))
        return path

    def save_json(self, obj, path: str | Path) -> Path:
        return write_json_atomic(path, obj)
