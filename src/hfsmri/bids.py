"""Input discovery: each subject's (and session's) T1w, DWI and resting BOLD, raw or preprocessed.

A thin own discovery (glob over the BIDS folder layout) rather than pybids: it needs no database,
takes milliseconds on thousands of files, and gives us control over the messages. pybids is used
in the tests to check that what we find agrees with it.

Run selection rule (when a subject has several runs of one modality): the T1w with the lowest run
number; the DWI and the BOLD with the most volumes (ties: lowest run). Multi-echo BOLD (``echo-``
entity): one echo per run, the one whose ``EchoTime`` is closest to 30 ms (ties: lower echo
number; echoes are not combined). Every choice is recorded in ``SubjectInputs.notes`` (the
``notes`` column of ``logs/inputs.tsv``) and logged. Repetition time: ``RepetitionTime`` of the
JSON sidecar (inherited sidecars at the subject/dataset level are honoured), else the NIfTI
header's pixdim[4] (in ms when the header says so, or when its units are unknown and pixdim[4]/1000
is the sidecar's TR); when both exist they must agree within 1 %, and the TR must lie in
[``MIN_TR``, ``MAX_TR``] = [0.1, 20] s (2000 is milliseconds written as seconds).

Faults of one subject found while discovering (bad TR, multi-echo without EchoTime) do not stop
discovery: they are kept in ``SubjectInputs.problems`` and reported by :func:`hfsmri.validate.validate_inputs`
with the header-level checks, before any job starts (``--on-bad-input skip`` leaves the subject out).

Preprocessed inputs: fMRIPrep (``space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz``,
``desc-confounds_timeseries.tsv``, ``space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz``) and QSIPrep
(``space-ACPC_desc-preproc_dwi.nii.gz`` + ``.bval``/``.bvec``) found in ``--derivatives`` folders
or ``BIDS_DIR/derivatives/{fmriprep,qsiprep}``; when present they are used as they are.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from .analyses import STAGE_INPUT, STAGE_OF
from .errors import BidsError, HfsmriError
from .io import read_json

_ENT = re.compile(r"(?:^|_)([a-z]+)-([A-Za-z0-9]+)")
log = logging.getLogger("hfsmri")

#: accepted repetition times (s): below is not an fMRI TR, above is milliseconds written as seconds
MIN_TR, MAX_TR = 0.1, 20.0
#: multi-echo BOLD: the echo used is the one with EchoTime closest to this (s), as for single-echo BOLD at 3 T
TARGET_ECHO_TIME = 0.030
#: sidecar fields of the BOLD that preprocessing uses (kept in ``SubjectInputs.bold_meta``)
BOLD_META_FIELDS = ("RepetitionTime", "SliceTiming", "SliceEncodingDirection", "EchoTime")


def entities(path: str | Path) -> dict[str, str]:
    """BIDS entities of a file name (``sub``, ``ses``, ``task``, ``run``, ...)."""
    name = Path(path).name.split(".")[0]
    return dict(_ENT.findall(name))


@dataclass
class SubjectInputs:
    """What one subject (and session) has. Paths are ``None`` when absent."""

    subject: str
    session: str | None = None
    t1w: Path | None = None
    dwi: Path | None = None
    bval: Path | None = None
    bvec: Path | None = None
    dwi_json: Path | None = None
    bold: Path | None = None
    bold_json: Path | None = None
    tr: float | None = None
    fmriprep_bold: Path | None = None
    fmriprep_confounds: Path | None = None
    fmriprep_mask: Path | None = None
    qsiprep_dwi: Path | None = None
    qsiprep_bval: Path | None = None
    qsiprep_bvec: Path | None = None
    bold_meta: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")

    def has(self, stage: str) -> bool:
        """Whether the input a participant stage needs is present."""
        attr = STAGE_INPUT[stage]
        if attr == "bold":
            return self.bold is not None or self.fmriprep_bold is not None
        if attr == "dwi":
            return self.dwi is not None or self.qsiprep_dwi is not None
        return getattr(self, attr) is not None

    def available_analyses(self, analyses) -> list[str]:
        return [a for a in analyses if self.has(STAGE_OF[a])]

    def as_dict(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "problems":
                v = [str(p) for p in v]
            out[f.name] = str(v) if isinstance(v, Path) else v
        return out


@dataclass
class Dataset:
    """Discovered inputs: ``inputs[(subject, session)] -> SubjectInputs``."""

    root: Path
    inputs: dict
    subjects: list
    sessions: list

    def for_subject(self, subject: str) -> list[SubjectInputs]:
        return [v for (s, _), v in sorted(self.inputs.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
                if s == subject]

    def table(self):
        """One row per subject/session with what it has (for logs and the report)."""
        import pandas as pd

        rows = []
        for (sub, ses), si in sorted(self.inputs.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            rows.append({"participant_id": f"sub-{sub}", "session": ses or "n/a",
                         "t1w": si.t1w is not None, "dwi": si.has("dwi"), "bold": si.has("func"),
                         "tr": si.tr, "notes": "; ".join(si.notes)})
        return pd.DataFrame(rows)


def _nvols(path: Path) -> int:
    try:
        import nibabel as nib

        shape = nib.load(str(path)).shape
        return int(shape[3]) if len(shape) == 4 else 1
    except Exception:
        return 0


def _run_num(path: Path) -> int:
    try:
        return int(entities(path).get("run", 0))
    except ValueError:
        return 0


def _pick(files: list[Path], rule: str, what: str, notes: list) -> Path | None:
    if not files:
        return None
    files = sorted(files, key=lambda p: (_run_num(p), p.name))
    if len(files) == 1:
        return files[0]
    if rule == "first":
        chosen = files[0]
        why = "lowest run number"
    else:
        chosen = max(files, key=lambda p: (_nvols(p), -_run_num(p)))
        why = "most volumes"
    notes.append(f"{what}: {len(files)} runs found, used {chosen.name} ({why})")
    return chosen


def _sidecar_json(nifti: Path, root: Path) -> Path | None:
    """Nearest JSON sidecar (BIDS inheritance: same folder, then upwards to the dataset root)."""
    stem = nifti.name.split(".")[0]
    direct = nifti.with_name(stem + ".json")
    if direct.exists():
        return direct
    ents = entities(nifti)
    suffix = stem.split("_")[-1]
    folder = nifti.parent
    while True:
        for cand in sorted(folder.glob(f"*_{suffix}.json")):
            cents = entities(cand)
            if all(ents.get(k) == v for k, v in cents.items()):
                return cand
        if folder == root or root not in folder.parents:
            break
        folder = folder.parent
    return None


def check_repetition_time(tr: float, path, field: str = "RepetitionTime") -> float:
    """The TR (s) if it lies in [MIN_TR, MAX_TR], else a :class:`BidsError` naming file and field."""
    if not (MIN_TR <= tr <= MAX_TR):
        hint = " (milliseconds written as seconds?)" if tr > MAX_TR else ""
        raise BidsError(f"RepetitionTime {tr:g} s is outside [{MIN_TR:g}, {MAX_TR:g}] s{hint}", path=path,
                        field=field)
    return float(tr)


def _header_tr(bold: Path) -> tuple[float | None, str]:
    """(pixdim[4] in seconds or None, the header's time unit) of a 4D NIfTI."""
    try:
        import nibabel as nib

        img = nib.load(str(bold))
        if len(img.shape) != 4:
            return None, "sec"
        val = float(img.header.get_zooms()[3])
        units = img.header.get_xyzt_units()[1] if hasattr(img.header, "get_xyzt_units") else "sec"
    except Exception:
        return None, "sec"  # unreadable images are reported by the checks that load them
    scale = {"msec": 1e-3, "usec": 1e-6}.get(units, 1.0)
    return (val * scale if val > 0 else None), units


def _repetition_time(bold: Path, side: Path | None, meta: dict | None = None) -> float:
    tr_json = None
    if side is not None:
        meta = read_json(side, what="BOLD JSON sidecar") if meta is None else meta
        if "RepetitionTime" in meta:
            try:
                tr_json = float(meta["RepetitionTime"])
            except (TypeError, ValueError):
                raise BidsError(f"RepetitionTime must be a number, got {meta['RepetitionTime']!r}",
                                path=side, field="RepetitionTime") from None
            if not tr_json > 0:
                raise BidsError(f"RepetitionTime must be positive, got {tr_json}", path=side,
                                field="RepetitionTime")
            check_repetition_time(tr_json, side)
    tr_hdr, units = _header_tr(bold)
    if tr_json is not None and tr_hdr is not None and units == "unknown" \
            and abs(tr_json - tr_hdr / 1000) <= 0.01 * tr_json:
        tr_hdr = tr_hdr / 1000  # header time unit unset and pixdim[4] in ms: what the sidecar says
    if tr_json is not None and tr_hdr is not None and abs(tr_json - tr_hdr) > 0.01 * tr_json:
        raise BidsError(f"RepetitionTime {tr_json} s in {side.name} disagrees with the NIfTI header "
                        f"({tr_hdr:g} s)", path=bold, field="RepetitionTime")
    tr = tr_json if tr_json is not None else tr_hdr
    if tr is None:
        raise BidsError("no RepetitionTime: add it to the JSON sidecar (seconds)", path=bold,
                        field="RepetitionTime")
    if tr_json is None:
        check_repetition_time(tr, bold, "RepetitionTime (NIfTI header pixdim[4])")
    return tr


def _bold_meta(side: Path | None) -> dict:
    if side is None:
        return {}
    meta = read_json(side, what="BOLD JSON sidecar")
    return {k: meta[k] for k in BOLD_META_FIELDS if k in meta}


def _pick_echoes(bolds: list[Path], root: Path, notes: list, problems: list) -> list[Path]:
    """One file per multi-echo run: the echo with EchoTime closest to TARGET_ECHO_TIME."""
    groups: dict = {}
    for p in bolds:
        key = re.sub(r"_echo-[A-Za-z0-9]+", "", p.name)
        groups.setdefault(key, []).append(p)
    out = []
    for key, files in sorted(groups.items()):
        echoes = [p for p in files if "echo" in entities(p)]
        if not echoes:
            out.extend(files)
            continue
        tes = {}
        for p in echoes:
            side = _sidecar_json(p, root)
            te = (read_json(side, what="BOLD JSON sidecar") if side else {}).get("EchoTime")
            try:
                tes[p] = float(te)
            except (TypeError, ValueError):
                problems.append(BidsError("multi-echo BOLD without a numeric EchoTime in its sidecar (needed to "
                                          "choose the echo)", path=p, field="EchoTime"))
        if len(tes) < len(echoes):
            continue

        def echo_num(p):
            e = entities(p)["echo"]
            return int(e) if e.isdigit() else 0

        chosen = min(echoes, key=lambda p: (abs(tes[p] - TARGET_ECHO_TIME), echo_num(p)))
        listing = ", ".join(f"echo-{entities(p)['echo']} {1000 * tes[p]:g} ms"
                            for p in sorted(echoes, key=echo_num))
        if len(echoes) > 1:
            notes.append(f"BOLD: multi-echo run ({listing}); used {chosen.name} (EchoTime "
                         f"{1000 * tes[chosen]:g} ms, closest to {1000 * TARGET_ECHO_TIME:g} ms; echoes not combined)")
        out.append(chosen)
    return out


def _find(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if not p.name.startswith("."))


def _derivative_roots(bids_dir: Path, derivatives) -> list[Path]:
    roots = [Path(d) for d in (derivatives or [])]
    for name in ("fmriprep", "qsiprep"):
        cand = bids_dir / "derivatives" / name
        if cand.is_dir():
            roots.append(cand)
    for r in roots:
        if not r.is_dir():
            raise BidsError("derivatives folder does not exist", path=r)
    return roots


def discover(bids_dir: str | Path, participant_labels=None, session_labels=None,
             derivatives=None) -> Dataset:
    """Find every subject's inputs in a BIDS dataset.

    Parameters
    ----------
    bids_dir : raw BIDS root (needs ``dataset_description.json``)
    participant_labels : restrict to these labels (with or without ``sub-``); unknown labels are an error
    session_labels : restrict to these sessions; unknown ones are an error
    derivatives : extra folders with fMRIPrep/QSIPrep outputs
    """
    root = Path(bids_dir)
    if not root.is_dir():
        raise BidsError("BIDS directory does not exist", path=root)
    if not (root / "dataset_description.json").exists():
        raise BidsError("not a BIDS dataset: dataset_description.json is missing", path=root)
    all_subs = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())
    if not all_subs:
        raise BidsError("no sub-* folders found", path=root)
    subs = all_subs
    if participant_labels:
        wanted = [re.sub(r"^sub-", "", str(s)) for s in participant_labels]
        unknown = [w for w in wanted if w not in all_subs]
        if unknown:
            raise BidsError(f"participant label(s) not found: {', '.join('sub-' + u for u in unknown)}; "
                            f"available: {', '.join('sub-' + s for s in all_subs[:20])}"
                            + (" ..." if len(all_subs) > 20 else ""), path=root, field="--participant-label")
        subs = sorted(set(wanted))
    wanted_ses = [re.sub(r"^ses-", "", str(s)) for s in session_labels] if session_labels else None
    droots = _derivative_roots(root, derivatives)

    inputs: dict = {}
    seen_sessions: set = set()
    for sub in subs:
        sdir = root / f"sub-{sub}"
        ses_dirs = sorted(p for p in sdir.glob("ses-*") if p.is_dir())
        sessions = [p.name[4:] for p in ses_dirs] or [None]
        if wanted_ses:
            missing = [s for s in wanted_ses if s not in sessions]
            if missing and sessions != [None]:
                pass  # reported below if no subject has the session
            sessions = [s for s in sessions if s in wanted_ses]
        for ses in sessions:
            seen_sessions.add(ses)
            base = sdir / f"ses-{ses}" if ses else sdir
            si = SubjectInputs(subject=sub, session=ses)
            si.t1w = _pick(_find(base / "anat", "*_T1w.nii*"), "first", "T1w", si.notes)
            si.dwi = _pick(_find(base / "dwi", "*_dwi.nii*"), "most", "DWI", si.notes)
            if si.dwi is not None:
                stem = si.dwi.name.split(".")[0]
                si.bval = si.dwi.with_name(stem + ".bval")
                si.bvec = si.dwi.with_name(stem + ".bvec")
                for f, what in ((si.bval, ".bval"), (si.bvec, ".bvec")):
                    if not f.exists():
                        raise BidsError(f"DWI has no {what} file (expected {f.name})", path=si.dwi)
                si.dwi_json = _sidecar_json(si.dwi, root)
            bolds = [p for p in _find(base / "func", "*_bold.nii*") if entities(p).get("task", "").startswith("rest")]
            bolds = _pick_echoes(bolds, root, si.notes, si.problems)
            si.bold = _pick(bolds, "most", "BOLD", si.notes)
            if si.bold is not None:
                si.bold_json = _sidecar_json(si.bold, root)
                try:
                    si.bold_meta = _bold_meta(si.bold_json)
                    si.tr = _repetition_time(si.bold, si.bold_json, si.bold_meta)
                except HfsmriError as exc:  # reported by validate_inputs with the subject's other faults
                    si.problems.append(exc)
            _attach_derivatives(si, droots)
            for note in si.notes:
                log.info("%s: %s", si.key, note)
            inputs[(sub, ses)] = si
    if wanted_ses:
        unknown = [s for s in wanted_ses if s not in seen_sessions]
        if unknown:
            raise BidsError(f"session label(s) not found for the selected participants: "
                            f"{', '.join('ses-' + s for s in unknown)}", path=root, field="--session-label")
    return Dataset(root=root, inputs=inputs, subjects=subs,
                   sessions=sorted(s for s in seen_sessions if s))


def _attach_derivatives(si: SubjectInputs, droots: list[Path]) -> None:
    prefix = f"sub-{si.subject}" + (f"_ses-{si.session}" if si.session else "")
    rel = Path(f"sub-{si.subject}") / (f"ses-{si.session}" if si.session else "")
    for droot in droots:
        func = droot / rel / "func"
        if si.fmriprep_bold is None and func.is_dir():
            cands = [p for p in _find(func, f"{prefix}_*space-MNI152NLin2009cAsym_*desc-preproc_bold.nii*")
                     if entities(p).get("task", "").startswith("rest")]
            pick = _pick(cands, "most", "fMRIPrep BOLD", si.notes)
            if pick is not None:
                ents = entities(pick)
                run = f"_run-{ents['run']}" if "run" in ents else ""
                task = ents.get("task")
                conf = _find(func, f"{prefix}_task-{task}{run}_desc-confounds_timeseries.tsv")
                mask = _find(func, f"{prefix}_task-{task}{run}_space-MNI152NLin2009cAsym*_desc-brain_mask.nii*")
                if not conf:
                    raise BidsError("fMRIPrep BOLD found without its desc-confounds_timeseries.tsv", path=pick)
                si.fmriprep_bold, si.fmriprep_confounds = pick, conf[0]
                si.fmriprep_mask = mask[0] if mask else None
                side = _sidecar_json(pick, droot)
                if si.tr is None:
                    try:
                        si.tr = _repetition_time(pick, side)
                    except HfsmriError as exc:
                        si.problems.append(exc)
                si.notes.append(f"using fMRIPrep outputs from {droot}")
        dwi = droot / rel / "dwi"
        if si.qsiprep_dwi is None and dwi.is_dir():
            cands = _find(dwi, f"{prefix}_*space-ACPC_desc-preproc_dwi.nii*")
            pick = _pick(cands, "most", "QSIPrep DWI", si.notes)
            if pick is not None:
                stem = pick.name.split(".")[0]
                bval, bvec = pick.with_name(stem + ".bval"), pick.with_name(stem + ".bvec")
                if not (bval.exists() and bvec.exists()):
                    raise BidsError("QSIPrep DWI found without its .bval/.bvec", path=pick)
                si.qsiprep_dwi, si.qsiprep_bval, si.qsiprep_bvec = pick, bval, bvec
                si.notes.append(f"using QSIPrep outputs from {droot}")
