"""Writing the imported subject into a raw BIDS dataset: names, runs, participants.tsv,
dataset_description.json, the import record, and the one-rename commit.

* Names: ``sub-X[_ses-Y][_task-..][_acq-..]..[_run-N][_echo-K]_<suffix>.nii.gz`` with entities in
  BIDS order (:data:`hfsmri.derivatives.ENTITY_ORDER`, values letters and digits). Several series
  with the same datatype, suffix and entities get ``run-1``, ``run-2``, ... in acquisition order;
  a single one gets no run entity (as HeuDiConv and dcm2bids do).
* Commit: the subject (or session) folder is assembled in ``BIDS_DIR/.hfsmri/tmp/`` and renamed
  into place in one step, so BIDS_DIR never holds a half-imported subject. Concurrent imports into
  one BIDS_DIR serialise their commits on ``BIDS_DIR/.hfsmri/import.lock``.
* Re-import: a subject/session folder that already exists is refused unless ``overwrite``; then
  the old folder is replaced as a whole (moved aside, the new one renamed in, the old one deleted).
* participants.tsv: one row per subject; columns from ``--participant-info key=value``; other
  rows get ``n/a`` in new columns; a value that differs from the one already recorded is refused
  unless ``overwrite``.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

from .. import __version__
from ..derivatives import ENTITY_ORDER, _check_value, save_tsv_atomic, write_json_atomic, write_text_atomic
from ..errors import HfsmriError

#: hidden folder of hfsmri's import bookkeeping inside BIDS_DIR (as HeuDiConv's ``.heudiconv/``;
#: the BIDS validator ignores dot-folders)
STATE_DIR = ".hfsmri"
RECORD_DIR = f"{STATE_DIR}/import"
BIDS_VERSION = "1.9.0"
_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_MISSING = {"", "n/a", "na", "nan", "none", "null"}


class BidsImportError(HfsmriError):
    """The BIDS side of an import is not possible (existing subject, conflicting participant info)."""


def label(value: str, what: str) -> str:
    """A subject/session label without its ``sub-``/``ses-`` prefix, checked (letters and digits)."""
    text = re.sub(rf"^{what}-", "", str(value).strip())
    if not re.match(r"^[A-Za-z0-9]+$", text):
        raise BidsImportError(f"{'--subject' if what == 'sub' else '--session'} must be letters and digits "
                           f"(BIDS label), got {value!r}", field="--subject" if what == "sub" else "--session")
    return text


def bids_name(subject: str, session: str | None, entities, suffix: str, ext: str = ".nii.gz") -> str:
    ents = {"sub": _check_value("sub", subject)}
    if session:
        ents["ses"] = _check_value("ses", session)
    for k, v in entities:
        ents[k] = _check_value(k, v)
    order = {k: i for i, k in enumerate(ENTITY_ORDER)}
    keys = sorted(ents, key=lambda k: order.get(k, len(order)))
    return "_".join(f"{k}-{ents[k]}" for k in keys) + f"_{suffix}{ext}"


def assign_runs(items) -> dict:
    """``items``: [(key, decision)] in acquisition order -> {key: entities with run added when
    several items share datatype, suffix and entities}."""
    groups: dict = {}
    for key, d in items:
        groups.setdefault((d.datatype, d.suffix, d.entities), []).append(key)
    out = {}
    for (_, _, ents), keys in groups.items():
        for i, key in enumerate(keys, 1):
            out[key] = tuple(ents) + ((("run", str(i)),) if len(keys) > 1 else ())
    return out


def subject_dir(bids_dir: Path, subject: str, session: str | None) -> Path:
    d = bids_dir / f"sub-{subject}"
    return d / f"ses-{session}" if session else d


def _has_content(folder: Path) -> bool:
    return folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir())


def check_target(bids_dir: Path, subject: str, session: str | None, overwrite: bool) -> None:
    """Refuse an import that would duplicate or mix: an existing subject/session folder (unless
    ``overwrite``), a session import into a subject without sessions, or the reverse."""
    if bids_dir.exists() and not bids_dir.is_dir():
        raise BidsImportError("BIDS_DIR exists and is not a folder", path=bids_dir)
    desc = bids_dir / "dataset_description.json"
    if desc.exists():
        try:
            meta = json.loads(desc.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BidsImportError(f"cannot read dataset_description.json: {exc}", path=desc) from None
        if isinstance(meta, dict) and str(meta.get("DatasetType", "raw")).lower() == "derivative":
            raise BidsImportError("this is a derivatives dataset (DatasetType 'derivative'); import into the raw "
                               "BIDS folder", path=bids_dir)
    sub = bids_dir / f"sub-{subject}"
    if not sub.is_dir():
        return
    ses_dirs = sorted(p.name for p in sub.glob("ses-*") if p.is_dir())
    datatype_dirs = sorted(p.name for p in sub.iterdir() if p.is_dir() and not p.name.startswith(("ses-", ".")))
    if session and datatype_dirs and not ses_dirs:
        raise BidsImportError(f"sub-{subject} already has data without sessions ({', '.join(datatype_dirs)}); a "
                           "subject's data are either all in session folders or none are (BIDS). Import without "
                           "--session, or re-import the earlier data with a --session", path=sub)
    if not session and ses_dirs:
        raise BidsImportError(f"sub-{subject} has session folders ({', '.join(ses_dirs)}); give --session", path=sub)
    target = subject_dir(bids_dir, subject, session)
    if _has_content(target) and not overwrite:
        raise BidsImportError(f"{target.relative_to(bids_dir)} already exists; hfsmri import does not add to or "
                           "duplicate an imported subject. Pass --overwrite to replace it with this import",
                           path=bids_dir)


# ---------------------------------------------------------------- participants.tsv
def parse_participant_info(items) -> dict:
    """``["group=HFS", "age=54"]`` (or a mapping) -> ordered {column: value}, validated."""
    if items is None:
        return {}
    pairs = list(items.items()) if isinstance(items, dict) else []
    if not isinstance(items, dict):
        for it in items:
            if "=" not in str(it):
                raise BidsImportError(f"--participant-info takes key=value pairs (e.g. group=HFS age=54), got {it!r}",
                                   field="--participant-info")
            k, v = str(it).split("=", 1)
            pairs.append((k.strip(), v.strip()))
    out: dict = {}
    for k, v in pairs:
        if not _KEY_RE.match(k):
            raise BidsImportError(f"column name {k!r} must start with a letter and hold only letters, digits and '_'",
                               field="--participant-info")
        if k == "participant_id":
            raise BidsImportError("participant_id is set from --subject; do not give it in --participant-info",
                               field="--participant-info")
        v = str(v)
        if any(c in v for c in "\t\r\n"):
            raise BidsImportError(f"value of {k!r} contains a tab or line break", field="--participant-info")
        if k in out and out[k] != v:
            raise BidsImportError(f"{k!r} given twice with different values ({out[k]!r}, {v!r})",
                               field="--participant-info")
        out[k] = v if v.strip() else "n/a"
    return out


def _read_participants(path: Path):
    import pandas as pd

    if not path.exists():
        return pd.DataFrame(columns=["participant_id"], dtype=str)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except Exception as exc:
        raise BidsImportError(f"cannot read as a tab-separated table: {exc}", path=path) from None
    df.columns = [str(c).strip() for c in df.columns]
    if "participant_id" not in df.columns:
        raise BidsImportError("missing the required column 'participant_id'", path=path, field="participant_id")
    return df


def plan_participants(bids_dir: Path, subject: str, info: dict, overwrite: bool):
    """The new participants table and what changed (``added``, ``updated``, ``unchanged``);
    raises when ``info`` contradicts the recorded row and ``overwrite`` is off."""
    path = bids_dir / "participants.tsv"
    df = _read_participants(path)
    pid = f"sub-{subject}"
    ids = df["participant_id"].astype(str).str.strip()
    if ids.duplicated().any():
        raise BidsImportError(f"duplicated participant_id: {sorted(set(ids[ids.duplicated()]))}", path=path,
                           field="participant_id")
    df = df.copy()
    for col in info:
        if col not in df.columns:
            df[col] = "n/a"
    if (ids == pid).any():
        i = df.index[ids == pid][0]
        conflicts = {c: (df.at[i, c], v) for c, v in info.items()
                     if str(df.at[i, c]).strip().lower() not in _MISSING and str(df.at[i, c]).strip() != v}
        if conflicts and not overwrite:
            desc = ", ".join(f"{c}={old!r} (given {new!r})" for c, (old, new) in conflicts.items())
            raise BidsImportError(f"{pid} already has {desc}; pass --overwrite to replace these values", path=path)
        changed = any(str(df.at[i, c]).strip() != v for c, v in info.items())
        for c, v in info.items():
            df.at[i, c] = v
        action = "updated" if changed else "unchanged"
    else:
        row = {c: "n/a" for c in df.columns}
        row.update(info)
        row["participant_id"] = pid
        import pandas as pd

        df = pd.concat([df, pd.DataFrame([row], columns=df.columns)], ignore_index=True)
        action = "added"
    df = df.fillna("n/a").replace({"": "n/a"})
    return df, action


# ---------------------------------------------------------------- dataset-level files
def ensure_dataset_description(bids_dir: Path, dcm2niix_version: str) -> bool:
    path = bids_dir / "dataset_description.json"
    if path.exists():
        return False
    write_json_atomic(path, {
        "Name": bids_dir.resolve().name,
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "raw",
        "GeneratedBy": [{"Name": "hfsmri", "Version": __version__,
                         "Description": f"hfsmri import: DICOM to BIDS with dcm2niix {dcm2niix_version}"}],
    })
    return True


@contextlib.contextmanager
def bids_lock(bids_dir: Path):
    """Exclusive lock on ``BIDS_DIR/.hfsmri/import.lock`` (POSIX; a no-op where fcntl is missing)."""
    lock = bids_dir / STATE_DIR / "import.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def commit(staged_root: Path, bids_dir: Path, subject: str, session: str | None, trash: Path,
           overwrite: bool) -> None:
    """Rename the staged ``sub-X[/ses-Y]`` folder into ``bids_dir`` (one rename; an existing
    folder is moved to ``trash`` first when ``overwrite``, and deleted afterwards)."""
    target = subject_dir(bids_dir, subject, session)
    staged = subject_dir(staged_root, subject, session)
    if session and not (bids_dir / f"sub-{subject}").exists():
        target, staged = bids_dir / f"sub-{subject}", staged_root / f"sub-{subject}"
    old = None
    if target.exists():
        if _has_content(target) and not overwrite:  # another import got here first
            raise BidsImportError(f"{target.relative_to(bids_dir)} appeared while converting; not replaced",
                               path=bids_dir)
        old = trash / "old"
        os.replace(target, old)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staged, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_record(bids_dir: Path, stem: str, table, log_text: str, heuristic_yaml: str) -> Path:
    """``BIDS_DIR/.hfsmri/import/<stem>_series.tsv`` (+ ``_dcm2niix.log``, ``_heuristic.yaml``)."""
    folder = bids_dir / RECORD_DIR
    tsv = save_tsv_atomic(table, folder / f"{stem}_series.tsv")
    write_text_atomic(folder / f"{stem}_dcm2niix.log", log_text)
    write_text_atomic(folder / f"{stem}_heuristic.yaml", heuristic_yaml)
    return tsv
