"""``hfsmri import``: one subject's (one session's) DICOM folder -> BIDS, with dcm2niix.

Steps (nothing is written to BIDS_DIR before step 5 succeeds for every series):

1. check the command (labels, participant info, heuristic file, what BIDS_DIR already holds);
2. scan the DICOM folder (:mod:`.scan`): one subject and visit, readable files;
3. classify every series with the heuristic (:mod:`.heuristic`) and check that every series to
   keep is complete (no missing slices, no truncated files);
4. convert each kept series alone with dcm2niix into ``BIDS_DIR/.hfsmri/tmp/`` and assemble the
   subject folder there under its BIDS names (:mod:`.bidsout`); sidecars are dcm2niix's (they keep
   RepetitionTime in s, SliceTiming, PhaseEncodingDirection, TotalReadoutTime, EchoTime) plus
   ``TaskName`` for BOLD;
5. commit: rename the folder into BIDS_DIR, create ``dataset_description.json`` if missing, add or
   update the participants.tsv row, write the record (``.hfsmri/import/<sub>[_<ses>]_series.tsv``,
   the dcm2niix log and the effective heuristic).

The table of what happened to each series is printed (kept as which file, or skipped and why).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HfsmriError
from . import bidsout
from .convert import BASENAME, dcm2niix_binary, dcm2niix_version, error_lines, link_files, run_dcm2niix
from .heuristic import Decision, load_heuristic
from .scan import DicomFolderError, Series, check_complete, scan_folder, series_label

log = logging.getLogger("hfsmri.import")

_ECHO_TAIL = re.compile(r"^_e(\d+)$")
_DROPPED_TAIL = re.compile(r"(_ph|_real|_imaginary|_phMag)$|^_e\d+_ph$", re.IGNORECASE)
_DERIVED_TAIL = re.compile(r"_(ADC|trace|TRACEW|FA)$", re.IGNORECASE)


@dataclass
class SeriesOutcome:
    """What happened to one series (the rows of the printed table and of the record)."""

    series: Series
    decision: Decision
    outputs: list = field(default_factory=list)   # paths relative to BIDS_DIR (.nii.gz)
    notes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)  # dcm2niix warnings
    seconds: float = 0.0
    images: list = field(default_factory=list, repr=False)  # [(dcm2niix image, echo or None)]
    conversion: object = field(default=None, repr=False)    # convert.Conversion

    def row(self) -> dict:
        s, d = self.series, self.decision
        h = s.field
        return {
            "order": s.order, "series_number": s.number if s.number is not None else "n/a",
            "series_description": h("SeriesDescription") or "n/a", "protocol_name": h("ProtocolName") or "n/a",
            "sequence_name": h("SequenceName") or "n/a",
            "image_type": "\\".join(s.image_type) or "n/a",
            "mr_acquisition_type": h("MRAcquisitionType") or "n/a", "dims": s.dims, "n_files": s.n_files,
            "n_volumes": s.n_volumes, "repetition_time_ms": _num(h("RepetitionTime")),
            "echo_time_ms": _num(h("EchoTime")), "b_max": _num(s.b_max),
            "acquisition_time": _time_of_day(h("AcquisitionTime") or h("SeriesTime")),
            "decision": "kept" if d.kept else "skipped", "rule": d.rule or "n/a",
            "reason": d.skip if not d.kept else "n/a",
            "outputs": ",".join(self.outputs) or "n/a", "notes": "; ".join(self.notes) or "n/a",
            "dcm2niix_warnings": len(self.warnings),
        }


@dataclass
class ImportResult:
    subject: str
    session: str | None
    bids_dir: Path
    outcomes: list
    dry_run: bool = False
    record: Path | None = None
    participants: str | None = None          # added / updated / unchanged
    created_description: bool = False

    @property
    def kept(self) -> list:
        return [o for o in self.outcomes if o.decision.kept]


def _num(v):
    if v is None:
        return "n/a"
    try:
        return f"{float(v):g}"
    except (TypeError, ValueError):
        return "n/a"


def _time_of_day(t) -> str:
    text = str(t or "").strip()
    if len(text) >= 6 and text[:6].isdigit():
        return f"{text[0:2]}:{text[2:4]}:{text[4:6]}"
    return "n/a"


def _inside(child: Path, parent: Path) -> bool:
    c, p = child.resolve(), parent.resolve()
    return c == p or p in c.parents


# ---------------------------------------------------------------- conversion of one series
def _pick_outputs(s: Series, conv, folder: Path) -> tuple[list, list]:
    """[(image, echo index or None)] to keep, and notes on what dcm2niix wrote besides."""
    name = series_label(s)
    if not conv.images:
        raise DicomFolderError(f"{name}: dcm2niix converted nothing (exit code {conv.returncode}: "
                               f"{error_lines(conv.log)})", path=folder)
    main, echoes, notes, odd = None, {}, [], []
    for img in conv.images:
        tail = img.name[len(BASENAME): -len(".nii.gz")]
        m = _ECHO_TAIL.match(tail)
        if tail == "":
            main = img
        elif m:
            echoes[int(m.group(1))] = img
        elif _DROPPED_TAIL.search(tail):
            notes.append(f"phase/complex image {img.name} not kept")
        elif _DERIVED_TAIL.search(tail):
            notes.append(f"derived image {img.name} not kept")
        else:
            odd.append(img.name)
    if odd:
        hint = ("unequal slice spacing: missing slices?" if any("_Eq" in n for n in odd) else
                "images of different geometry or timing in one series: missing or extra files?")
        raise DicomFolderError(f"{name}: dcm2niix split the series into {len(conv.images)} images "
                               f"({', '.join(i.name for i in conv.images)}; {hint}); check the export, or skip "
                               "the series with a heuristic rule", path=folder)
    if echoes:
        if main is not None:  # dcm2niix leaves the first echo without a suffix
            first = 1 if 1 not in echoes else min(echoes) - 1
            echoes[first] = main
        if len(echoes) == 1:
            return [(next(iter(echoes.values())), None)], notes
        return [(img, k) for k, img in sorted(echoes.items())], notes
    if main is None:  # pragma: no cover - only phase/derived images came out
        raise DicomFolderError(f"{name}: dcm2niix wrote only {', '.join(i.name for i in conv.images)}", path=folder)
    return [(main, None)], notes


def _stage(conv, image: Path, dest_dir: Path, stem: str, decision: Decision, notes: list) -> list:
    """Move one dcm2niix image and its sidecars to ``dest_dir/stem.*``; returns the files."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = []
    side = conv.sidecar(image, ".json")
    meta = json.loads(side.read_text(encoding="utf-8")) if side.exists() else {}
    meta.pop("BidsGuess", None)  # dcm2niix's own naming guess; the file name is the answer
    if decision.datatype == "func":
        meta["TaskName"] = dict(decision.entities).get("task", "rest")
        if "RepetitionTime" not in meta:
            notes.append("no RepetitionTime in the DICOM headers")
        if "SliceTiming" not in meta:
            notes.append("no SliceTiming in the DICOM headers (slice-timing correction not possible)")
    os.replace(image, dest_dir / f"{stem}.nii.gz")
    out.append(dest_dir / f"{stem}.nii.gz")
    (dest_dir / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    out.append(dest_dir / f"{stem}.json")
    if decision.datatype == "dwi":
        for ext in (".bval", ".bvec"):
            os.replace(conv.sidecar(image, ext), dest_dir / f"{stem}{ext}")
            out.append(dest_dir / f"{stem}{ext}")
    return out


# ---------------------------------------------------------------- printing
def format_table(result: ImportResult, scan=None) -> str:
    lines = []
    who = f"sub-{result.subject}" + (f" ses-{result.session}" if result.session else "")
    if scan is not None:
        extra = []
        if scan.ignored:
            extra.append(f"{len(scan.ignored)} non-DICOM file(s) ignored, e.g. {scan.ignored[0].name}")
        if scan.non_image:
            extra.append(f"{scan.non_image} non-image DICOM object(s) ignored")
        lines.append(f"{who}: {len(scan.series)} series in {scan.root} ({scan.n_files} files"
                     + (f"; {'; '.join(extra)}" if extra else "") + ")")
    lines.append(f"  {'#':>2} {'series':>6}  {'description':<30} {'files':>5}  {'dims':<16} result")
    for o in result.outcomes:
        s, d = o.series, o.decision
        desc = s.description if len(s.description) <= 30 else s.description[:29] + "…"
        if d.kept and o.outputs:
            what = ", ".join(Path(p).name for p in o.outputs)
            what = f"{Path(o.outputs[0]).parent.name}/{what}"
        elif d.kept:
            what = f"-> {d.describe()}"
        else:
            what = f"skipped: {d.skip}"
        rule = f" [{d.rule}]" if d.rule else ""
        lines.append(f"  {s.order:>2} {s.number if s.number is not None else '?':>6}  {desc:<30} {s.n_files:>5}  "
                     f"{s.dims:<16} {what}{rule}")
        for n in o.notes:
            lines.append(f"  {'':>2} {'':>6}  note: {n}")
    return "\n".join(lines)


# ---------------------------------------------------------------- the command
def import_dicom(dicom_dir, bids_dir, subject: str, session: str | None = None, heuristic=None,
                 participant_info=None, overwrite: bool = False, dry_run: bool = False,
                 printer=print) -> ImportResult:
    """Convert one subject's (session's) DICOM folder into ``bids_dir``.

    Parameters
    ----------
    dicom_dir : folder with the DICOM files of one subject's one scanner visit (any layout)
    bids_dir : raw BIDS dataset to add the subject to (created if missing)
    subject, session : BIDS labels (``01`` or ``sub-01``; ``pre`` or ``ses-pre``)
    heuristic : path of a YAML heuristic (``None``: the default heuristic)
    participant_info : ``["group=HFS", "age=54", ...]`` or a mapping: participants.tsv columns
    overwrite : replace an already imported subject/session (and differing participant values)
    dry_run : scan and classify only; print what would be done, write nothing
    printer : callable that prints the result table (``print``; ``None`` for silence)

    Raises
    ------
    HfsmriError (one message naming the folder/series/file and the fault); BIDS_DIR is unchanged.
    """
    say = printer or (lambda *_: None)
    dicom_dir, bids_dir = Path(dicom_dir), Path(bids_dir)
    subject = bidsout.label(subject, "sub")
    session = bidsout.label(session, "ses") if session else None
    info = bidsout.parse_participant_info(participant_info)
    if dicom_dir.exists() and _inside(bids_dir, dicom_dir):
        raise HfsmriError("BIDS_DIR is inside DICOM_DIR; choose a BIDS folder outside the DICOM export",
                          path=bids_dir)
    heur = load_heuristic(heuristic)
    if not dry_run:
        bidsout.check_target(bids_dir, subject, session, overwrite)
        bidsout.plan_participants(bids_dir, subject, info, overwrite)
        dcm2niix_binary()  # fail before the scan when the converter is missing

    t0 = time.perf_counter()
    scan = scan_folder(dicom_dir)
    log.info("scanned %d files in %.1f s: %d series", scan.n_files, time.perf_counter() - t0, len(scan.series))
    outcomes = [SeriesOutcome(series=s, decision=heur.classify(s)) for s in scan.series]
    problems = []
    for o in outcomes:
        if o.decision.kept:
            try:
                check_complete(o.series)
            except HfsmriError as exc:
                problems.append(exc)
                o.notes.append(f"NOT IMPORTABLE: {exc.message}")
    result = ImportResult(subject=subject, session=session, bids_dir=bids_dir, outcomes=outcomes, dry_run=dry_run)
    if dry_run:
        say(format_table(result, scan))
        say("dry run: nothing written" + (f"; {len(problems)} series cannot be imported as they are" if problems else ""))
        return result
    if problems:
        say(format_table(result, scan))
        if len(problems) == 1:
            raise problems[0]
        raise DicomFolderError(f"{len(problems)} series cannot be imported: "
                               + " | ".join(p.message for p in problems), path=dicom_dir)
    if not result.kept:
        say(format_table(result, scan))
        raise DicomFolderError("no series to import: the heuristic skipped every series (see the table above; "
                               "`--heuristic FILE` adds rules)", path=dicom_dir)

    existed = bids_dir.exists()
    tmp_root = bids_dir / bidsout.STATE_DIR / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"import-{subject}-", dir=tmp_root))
    try:
        logs = _convert_all(result, work)
        if not result.kept:  # e.g. the only DWI had no gradients
            say(format_table(result, scan))
            raise DicomFolderError("no series to import after conversion (see the table above)", path=dicom_dir)
        _assemble(result, work)
        with bidsout.bids_lock(bids_dir):
            bidsout.check_target(bids_dir, subject, session, overwrite)
            table, action = bidsout.plan_participants(bids_dir, subject, info, overwrite)
            bidsout.commit(work / "bids", bids_dir, subject, session, trash=work, overwrite=overwrite)
            result.created_description = bidsout.ensure_dataset_description(bids_dir, dcm2niix_version())
            bidsout.save_tsv_atomic(table, bids_dir / "participants.tsv")
            result.participants = action
            import pandas as pd

            stem = f"sub-{subject}" + (f"_ses-{session}" if session else "")
            result.record = bidsout.write_record(bids_dir, stem, pd.DataFrame([o.row() for o in outcomes]),
                                                 logs, heur.to_yaml())
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        # leave no trace of a failed import: only folders this import created and left empty go
        _remove_empty([tmp_root, tmp_root.parent] + ([] if existed else [bids_dir]))
        raise
    shutil.rmtree(work, ignore_errors=True)
    _remove_empty([tmp_root])
    say(format_table(result, scan))
    n_warn = sum(len(o.warnings) for o in outcomes)
    rel = result.record.relative_to(bids_dir) if result.record else None
    say(f"imported {len(result.kept)} of {len(outcomes)} series into {bids_dir}; participants.tsv row "
        f"{result.participants}; record: {rel}"
        + (f"; dcm2niix printed {n_warn} warning(s) (see {rel.name.replace('_series.tsv', '_dcm2niix.log')})"
           if n_warn and rel else ""))
    return result


def _remove_empty(folders) -> None:
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            pass


def _convert_all(result: ImportResult, work: Path) -> str:
    """Run dcm2niix on every kept series; fills outcome notes/warnings, returns the joined log."""
    logs = [f"dcm2niix {dcm2niix_version()} ({dcm2niix_binary()})"]
    for o in result.kept:
        s = o.series
        t = time.perf_counter()
        src, dst = work / "dicom" / f"{s.order:03d}", work / "nii" / f"{s.order:03d}"
        link_files([f.path for f in s.files], src)
        conv = run_dcm2niix(src, dst)
        o.seconds = time.perf_counter() - t
        o.warnings = conv.warnings
        logs.append(f"\n===== {series_label(s)}: {s.n_files} files, {o.seconds:.1f} s\n{conv.log.strip()}")
        log.info("converted %s (%d files) in %.1f s", series_label(s), s.n_files, o.seconds)
        folder = Path(os.path.commonpath([str(f.path.parent) for f in s.files]))
        o.images, notes = _pick_outputs(s, conv, folder)
        o.conversion = conv
        o.notes.extend(notes)
        if o.decision.datatype == "dwi":
            missing = [ext for ext in (".bval", ".bvec") for img, _ in o.images
                       if not conv.sidecar(img, ext).exists()]
            if missing:
                o.decision = Decision(rule=o.decision.rule, skip="dcm2niix found no diffusion gradients "
                                      "(.bval/.bvec) in the headers")
    return "\n".join(logs) + "\n"


def _assemble(result: ImportResult, work: Path) -> None:
    """Name the kept images (runs in acquisition order) and move them into ``work/bids``."""
    kept = [o for o in result.outcomes if o.decision.kept]
    runs = bidsout.assign_runs([(id(o), o.decision) for o in kept])
    staged_root = work / "bids"
    sdir = bidsout.subject_dir(staged_root, result.subject, result.session)
    for o in kept:
        d = o.decision
        for img, echo in o.images:
            ents = runs[id(o)] + ((("echo", str(echo)),) if echo is not None else ())
            stem = bidsout.bids_name(result.subject, result.session, ents, d.suffix, ext="")
            files = _stage(o.conversion, img, sdir / d.datatype, stem, d, o.notes)
            rel_root = Path(f"sub-{result.subject}") / (f"ses-{result.session}" if result.session else "")
            o.outputs.append(str(rel_root / d.datatype / files[0].name))
