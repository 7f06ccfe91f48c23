"""The pipeline's Python API: one level of a BIDS-App run, as the command line runs it.

>>> from hfsmri.api import run_participant, run_group
>>> run_participant("bids", "out", "study.yaml", nprocs=4)                # doctest: +SKIP
>>> run_group("bids", "out", "study.yaml")                                # doctest: +SKIP

``hfsmri BIDS_DIR OUTPUT_DIR participant|group`` (:mod:`hfsmri.cli`), ``hfsmri demo`` and the
image engine of ``hfsmri power`` all call :func:`run_level`; a fault is one
:class:`~hfsmri.errors.HfsmriError` (the command line turns it into exit code 1). Subjects run in
spawned worker processes, so a script calling these needs the usual ``if __name__ == "__main__":``
guard.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .errors import HfsmriError

log = logging.getLogger("hfsmri")


def check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and write (then delete) a small probe file in it, so that a
    read-only, full or forbidden folder is one clear :class:`~hfsmri.errors.StorageError` before
    any job starts (``os.access`` misses read-only mounts and full disks)."""
    import contextlib
    import errno
    import os
    import tempfile

    from .derivatives import _host_tag
    from .errors import STORAGE_ERRNOS, StorageError

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".hfsmri_write_probe.{_host_tag()}-{os.getpid()}-", suffix=".tmp",
                                     dir=folder)
        try:
            os.write(fd, b"\0" * 65536)
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)
    except OSError as exc:
        reason = STORAGE_ERRNOS[exc.errno][0] if exc.errno in STORAGE_ERRNOS else (exc.strerror or str(exc))
        hint = "free some space or choose another folder" if exc.errno == errno.ENOSPC else \
            "choose a folder you can write to"
        raise StorageError(f"{what} is not writable ({reason}); {hint}", path=folder, errno_=exc.errno) from None


def _clean_leftovers(bids_dir: Path, out_dir: Path, work: Path) -> None:
    """Remove what killed runs left: our atomic-write temporaries in OUTPUT_DIR and the work
    directory, and dead jobs' private temporary folders (never those of a job still running)."""
    from .derivatives import remove_stale_temporaries
    from .scratch import remove_stale_scratch, scratch_root

    bids = bids_dir.resolve()
    files = remove_stale_temporaries(out_dir, exclude=[bids, work])
    files += remove_stale_temporaries(work, exclude=[bids, scratch_root(work)])
    dirs = remove_stale_scratch(scratch_root(work))
    if files or dirs:
        log.info("removed %d temporary file(s) and %d temporary folder(s) left by interrupted runs",
                 len(files), len(dirs))


def _run_info(level, bids_dir: Path, output_dir: Path, study_path, st, dataset, options, participant_label,
              session_label, skipped: dict, considered: list, work: Path) -> dict:
    """What a run record holds besides the bookkeeping of :class:`hfsmri.runlog.RunRecord`."""
    inputs = dataset.table()
    return {"bids_dir": str(bids_dir.resolve()), "output_dir": str(output_dir.resolve()),
            "work_dir": str(work.resolve()), "study": str(study_path) if study_path else None,
            "excluded": dict(st.excluded), "flip_to": st.flip_to,
            "flipped": [f"sub-{s}" for s in st.labels if st.flipped(s)],
            "participant_label": participant_label, "session_label": session_label,
            "skip": list(options.skip), "considered": considered, "skipped_subjects": skipped,
            "inputs": inputs.astype(object).where(inputs.notna(), None).to_dict(orient="records"),
            "random_seed": int(st.stats["random_seed"]), "nprocs": options.nprocs,
            "omp_nthreads": options.omp_nthreads, "scheduler": options.scheduler}


def _write_tables(level, st, dataset, out) -> None:
    """participants.tsv (included participants) and logs/inputs.tsv (inputs per subject; at the
    group level merged over every participant run)."""
    import pandas as pd

    from .derivatives import save_tsv_atomic
    from .runlog import merged_participant_runs

    save_tsv_atomic(st.participants.copy(), out.root / "participants.tsv")
    table = dataset.table()
    if level == "group":
        _, rows = merged_participant_runs(out.logs_dir)
        if rows:
            table = pd.DataFrame(rows)
    save_tsv_atomic(table, out.logs_dir / "inputs.tsv")


def run_level(level: str, bids_dir, output_dir, study=None, *, participant_label=None, session_label=None,
              derivatives=None, skip=(), nprocs=None, omp_nthreads=None, mem_mb=None, scheduler=None,
              random_seed=None, stop_on_first_crash=False, work_dir=None, on_bad_input="error",
              report: bool = True, log_level: int = logging.INFO):
    """Run the ``"participant"`` or ``"group"`` level (arguments: the command line's options).

    ``study``: study.yaml path or dict (required for the group level). Returns the participant
    job results, or the group summary. The group level builds ``report.html`` unless ``report`` is
    false (or every group stage was up to date and a report exists). Each run leaves a run record
    in ``OUTPUT_DIR/logs`` (:class:`hfsmri.runlog.RunRecord`: ok / failed / stopped).
    """
    import contextlib

    from .bids import discover
    from .derivatives import Derivatives
    from .parallel import JobFailed
    from .pipeline import (RunOptions, check_dataset, require_participant_outputs, resolve_seed, run_group_level,
                           run_participant_level, work_root)
    from .runlog import RunRecord, merged_participant_runs
    from .study import Study

    if level not in ("participant", "group"):
        raise HfsmriError(f"the analysis level must be 'participant' or 'group', got {level!r}")
    if level == "group" and study is None:
        raise HfsmriError("the group level needs --study study.yaml (groups, covariates, clinical scores)")
    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    st = Study.from_bids(bids_dir, study, level=level)  # group sizes: group level only
    if level == "group":  # before anything is written: a mistyped OUTPUT_DIR is not created
        require_participant_outputs(output_dir)
    dataset = discover(bids_dir, participant_label, session_label, derivatives)
    if participant_label:
        wanted = {s.replace("sub-", "") for s in participant_label}
        missing = sorted(wanted - set(st.participants.index) - set(st.excluded))
        if missing:
            raise HfsmriError(f"participant(s) {', '.join('sub-' + m for m in missing)} are in BIDS_DIR but not in "
                              "participants.tsv", path=bids_dir / "participants.tsv")
    options = RunOptions(nprocs=nprocs, omp_nthreads=omp_nthreads, mem_mb=mem_mb, scheduler=scheduler,
                         random_seed=random_seed, stop_on_first_crash=stop_on_first_crash, skip=tuple(skip),
                         work_dir=work_dir, log_level=log_level, on_bad_input=on_bad_input)
    # the seed actually used, everywhere: random_seed overrides study.yaml (run records,
    # study.resolved.yaml, the group statistics and their sidecars, the methods text)
    st.stats["random_seed"] = resolve_seed(st, options)
    considered = sorted(si.key for si in dataset.inputs.values() if si.subject in st.participants.index)
    skipped = check_dataset(st, dataset, options) if level == "participant" else {}
    work = work_root(output_dir, work_dir)
    check_writable(output_dir, "OUTPUT_DIR")
    check_writable(work, "the work directory" + (" (-w)" if work_dir else " (OUTPUT_DIR/work)"))
    _clean_leftovers(bids_dir, output_dir, work)
    out = Derivatives(output_dir, source_datasets=[{"URL": f"file://{bids_dir.resolve()}"}])
    st.write_resolved(output_dir)
    info = _run_info(level, bids_dir, output_dir, study if isinstance(study, (str, Path)) else None, st, dataset,
                     options, participant_label, session_label, skipped, considered, work)
    if level == "group":  # what every participant run left out, and why
        info["skipped_subjects"] = merged_participant_runs(out.logs_dir)[0]
        info.pop("considered")
    _write_tables(level, st, dataset, out)
    record = RunRecord(out.logs_dir, level, info)
    record.write()
    log.info("study: %d patients, %d controls; analyses: %s; random seed %d", len(st.subjects_in("patient")),
             len(st.subjects_in("control")), ", ".join(a for a in st.analyses if a not in skip),
             st.stats["random_seed"])
    from .progress import flush_repeats

    try:
        if level == "participant":
            try:
                results = run_participant_level(st, dataset, out, options)
            except JobFailed as exc:
                r = exc.result
                if r.fatal:  # full disk / quota / read-only: one line, the run stops
                    raise HfsmriError(f"{r.name}: {r.error}") from None
                raise HfsmriError(f"stopped at the first crash: {r.name}: {r.error} (log: {r.log_file})") from None
            flush_repeats()  # one line per repeated message held back
            failed = [r for r in results if not r.ok]
            for r in results:
                log.info("%s: %s in %.1f s%s", r.name, "ok" if r.ok else "FAILED", r.seconds,
                         f" (peak {r.peak_mb:.0f} MB)" if r.peak_mb else "")
            if failed:
                for r in failed:
                    log.error("%s failed: %s (log: %s)", r.name, r.error, r.log_file)
                record.finish("failed", results)
                raise HfsmriError(f"{len(failed)} of {len(results)} participant job(s) failed (logs in "
                                  f"{out.logs_dir}):\n  " + "\n  ".join(f"{r.name}: {r.error}" for r in failed))
            record.finish("ok", results)
            return results
        summary = run_group_level(st, out, options)
        flush_repeats()
        html = output_dir / "report.html"
        if report and getattr(options, "group_reused", False) and html.exists():
            log.info("report: %s is up to date (every group stage reused); `hfsmri report` rebuilds it", html)
        elif report:
            from .report import build_report

            log.info("report: %s", build_report(output_dir, n_jobs=options.nprocs))
        record.finish("ok")
        return summary
    except BaseException as exc:
        if record.data["status"] == "running":
            with contextlib.suppress(Exception):  # the record must not hide the error (e.g. disk full)
                record.finish("stopped" if isinstance(exc, KeyboardInterrupt) else "failed",
                              error=str(exc) if isinstance(exc, HfsmriError) else f"{type(exc).__name__}: {exc}")
        raise


def run_participant(bids_dir, output_dir, study=None, **options):
    """The participant level (:func:`run_level`): per-subject derivatives; returns the job results."""
    return run_level("participant", bids_dir, output_dir, study, **options)


def run_group(bids_dir, output_dir, study, **options):
    """The group level (:func:`run_level`): statistics and (unless ``report=False``) the report."""
    return run_level("group", bids_dir, output_dir, study, **options)
