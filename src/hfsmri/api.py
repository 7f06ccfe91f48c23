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


def _write_run_info(level, bids_dir, study_path, participant_label, skip, random_seed, study, dataset, out,
                    skipped: dict) -> None:
    """Bookkeeping for the report: included participants, inputs per subject, run settings."""
    from .derivatives import save_tsv_atomic, write_json_atomic

    save_tsv_atomic(study.participants.copy(), out.root / "participants.tsv")
    save_tsv_atomic(dataset.table(), out.logs_dir / "inputs.tsv")
    info = {"bids_dir": str(Path(bids_dir).resolve()), "study": str(study_path) if study_path else None,
            "excluded": dict(study.excluded), "flip_to": study.flip_to,
            "flipped": [f"sub-{s}" for s in study.labels if study.flipped(s)],
            "participant_label": participant_label, "skip": list(skip), "skipped_subjects": skipped,
            "random_seed": random_seed if random_seed is not None else study.stats["random_seed"]}
    if level == "group":  # keep what the participant level recorded
        prev = out.logs_dir / "run_info_participant.json"
        if prev.exists():
            import json

            info["skipped_subjects"] = json.loads(prev.read_text()).get("skipped_subjects", {})
    write_json_atomic(out.logs_dir / f"run_info_{level}.json", info)
    write_json_atomic(out.logs_dir / "run_info.json", info)


def run_level(level: str, bids_dir, output_dir, study=None, *, participant_label=None, session_label=None,
              derivatives=None, skip=(), nprocs=None, omp_nthreads=None, mem_mb=None, scheduler=None,
              random_seed=None, stop_on_first_crash=False, work_dir=None, on_bad_input="error",
              report: bool = True, log_level: int = logging.INFO):
    """Run the ``"participant"`` or ``"group"`` level (arguments: the command line's options).

    ``study``: study.yaml path or dict (required for the group level). Returns the participant
    job results, or the group summary. The group level builds ``report.html`` unless ``report`` is
    false (or every group stage was up to date and a report exists).
    """
    from .bids import discover
    from .derivatives import Derivatives
    from .pipeline import RunOptions, check_dataset, run_group_level, run_participant_level
    from .study import Study

    if level not in ("participant", "group"):
        raise HfsmriError(f"the analysis level must be 'participant' or 'group', got {level!r}")
    if level == "group" and study is None:
        raise HfsmriError("the group level needs --study study.yaml (groups, covariates, clinical scores)")
    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    st = Study.from_bids(bids_dir, study)
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
    skipped = check_dataset(st, dataset, options) if level == "participant" else {}
    out = Derivatives(output_dir, source_datasets=[{"URL": f"file://{bids_dir.resolve()}"}])
    st.write_resolved(output_dir)
    _write_run_info(level, bids_dir, study if isinstance(study, (str, Path)) else None, participant_label, skip,
                    random_seed, st, dataset, out, skipped)
    log.info("study: %d patients, %d controls; analyses: %s", len(st.subjects_in("patient")),
             len(st.subjects_in("control")), ", ".join(a for a in st.analyses if a not in skip))
    if level == "participant":
        from .parallel import JobFailed

        try:
            results = run_participant_level(st, dataset, out, options)
        except JobFailed as exc:
            raise HfsmriError(f"stopped at the first crash: {exc.result.name}: {exc.result.error} "
                              f"(log: {exc.result.log_file})") from None
        failed = [r for r in results if not r.ok]
        for r in results:
            log.info("%s: %s in %.1f s%s", r.name, "ok" if r.ok else "FAILED", r.seconds,
                     f" (peak {r.peak_mb:.0f} MB)" if r.peak_mb else "")
        if failed:
            for r in failed:
                log.error("%s failed: %s (log: %s)", r.name, r.error, r.log_file)
            raise HfsmriError(f"{len(failed)} of {len(results)} participant job(s) failed (logs in "
                              f"{out.logs_dir}):\n  " + "\n  ".join(f"{r.name}: {r.error}" for r in failed))
        return results
    summary = run_group_level(st, out, options)
    html = output_dir / "report.html"
    if report and options.group_reused and html.exists():
        log.info("report: %s is up to date (every group stage reused); `hfsmri report` rebuilds it", html)
    elif report:
        from .report import build_report

        log.info("report: %s", build_report(output_dir, n_jobs=options.nprocs))
    return summary


def run_participant(bids_dir, output_dir, study=None, **options):
    """The participant level (:func:`run_level`): per-subject derivatives; returns the job results."""
    return run_level("participant", bids_dir, output_dir, study, **options)


def run_group(bids_dir, output_dir, study, **options):
    """The group level (:func:`run_level`): statistics and (unless ``report=False``) the report."""
    return run_level("group", bids_dir, output_dir, study, **options)
