"""Run plans for the participant and group levels, and the contexts handed to the stages.

Participant level: one job per subject (and session). A job runs the participant stages in
:data:`hfsmri.analyses.STAGE_ORDER` (anat -> dwi -> func -> conn); a stage runs when one of its
analyses is requested (or a later requested stage needs it) and the subject has its input. The
anatomical stage also runs whenever a T1w exists and any modality is requested, because the other
stages reuse its T1w -> MNI transform. A failing stage does not stop the other stages of that
subject; the job reports every failure at the end.

Group level: the group runner (:func:`hfsmri.group.run_stage`) runs the requested analyses of each
stage with one :class:`GroupContext`.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .analyses import STAGE_NEEDS, STAGE_OF, STAGE_ORDER
from .bids import Dataset, SubjectInputs
from .derivatives import Derivatives
from .errors import HfsmriError
from .parallel import Job, run_jobs
from .stage_outputs import AnatOutputs, DwiOutputs, FuncOutputs

log = logging.getLogger("hfsmri")


@dataclass
class ParticipantContext:
    """Everything a participant stage needs for one subject/session (see docs/architecture.md)."""

    subject: str
    session: str | None
    inputs: SubjectInputs
    out: Derivatives
    work_dir: Path
    analyses: dict
    preprocessing: dict = field(default_factory=dict)
    flip: bool = False
    flip_to: str | None = None   # the study's side of alignment (R/L), None when not flipping
    seed: int = 0
    omp_nthreads: int = 1
    log: Any = None
    anat: AnatOutputs = field(default_factory=AnatOutputs)
    func: FuncOutputs = field(default_factory=FuncOutputs)
    dwi: DwiOutputs = field(default_factory=DwiOutputs)

    def __post_init__(self):
        if self.log is None:
            self.log = logging.getLogger(f"hfsmri.sub-{self.subject}")
        self.work_dir = Path(self.work_dir)


@dataclass
class GroupContext:
    """Everything a group stage needs."""

    study: Any
    out: Derivatives
    analyses: dict
    stats: dict
    seed: int = 0
    nprocs: int = 1
    log: Any = None
    scheduler: str | None = None
    work_dir: Path | None = None
    participant_summaries: dict = field(default_factory=dict)
    client: Any = None   # dask.distributed client of --scheduler (permutation blocks), or None
    qc_decisions: Any = None  # hfsmri.qc.decisions.QcDecisions of the run: who each modality analyses
    tick: Any = None          # callable(): advance the group progress bar by one metric's contrast maps, or None

    def __post_init__(self):
        if self.log is None:
            self.log = logging.getLogger("hfsmri.group")


@dataclass
class RunOptions:
    """Command-line options that shape a run."""

    nprocs: int | None = None
    omp_nthreads: int | None = None
    mem_mb: float | None = None
    scheduler: str | None = None
    random_seed: int | None = None
    stop_on_first_crash: bool = False
    skip: tuple = ()
    work_dir: Path | None = None
    log_level: int = logging.INFO
    on_bad_input: str = "error"  # "error": stop before running; "skip": leave that subject out
    group_reused: bool = False   # set by run_group_level: every group stage was up to date


def stages_for(analyses, si: SubjectInputs) -> list[str]:
    """Participant stages to run for one subject, in order."""
    wanted = {STAGE_OF[a] for a in analyses}
    for st in list(wanted):
        wanted.update(STAGE_NEEDS.get(st, ()))
    if wanted and si.t1w is not None:
        wanted.add("anat")
    return [st for st in STAGE_ORDER if st in wanted and si.has(st)]


def _stage_module(stage: str, level: str):
    try:
        return importlib.import_module(f"hfsmri.{stage}.{level}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"hfsmri.{stage}"):
            raise HfsmriError(f"the {stage} {level} stage is not available in this version of hfsmri") from None
        raise


def run_participant_job(ctx: ParticipantContext, stages: list[str]) -> dict:
    """Run the stages of one subject; raises at the end if any stage failed.

    The subject's images are first read completely (truncated files, NaN, all-zero images are
    reported here, naming the file, before any output is written). Leftover temporaries of a
    killed earlier attempt at this subject are removed first (a job re-run by dask after its
    worker died). A full disk (or quota, read-only file system) ends the job at once with that
    one error.
    """
    from .validate import validate_inputs
    from .derivatives import remove_stale_temporaries
    from .errors import storage_error

    summary: dict = {"subject": ctx.subject, "session": ctx.session, "flipped": ctx.flip, "stages": {}}
    fpre = ctx.preprocessing.get("func", {})
    problems = validate_inputs(ctx.inputs, dummy_scans=int(fpre.get("dummy_scans", 5)), read_data=True,
                               slice_timing=fpre.get("slice_timing", "auto"))
    if problems:
        raise HfsmriError("; ".join(str(p) for p in problems))
    sub_dir = ctx.out.subject_dir(ctx.subject, ctx.session)
    for p in remove_stale_temporaries(sub_dir):
        ctx.log.info("removed a temporary file left by an interrupted run: %s", p.name)
    failures = []
    import time

    from .progress import stage_done

    label = f"sub-{ctx.subject}" + (f" ses-{ctx.session}" if ctx.session else "")
    for stage in stages:
        ctx.log.info("%s: %s stage", label, stage)
        t0 = time.perf_counter()
        ok = False
        try:
            mod = _stage_module(stage, "participant")
            from .spatial.registration import ants_seed  # every ANTs call of the job gets --random-seed

            with ants_seed(ctx.seed):
                summary["stages"][stage] = mod.run(ctx) or {}
            ok = True
        except Exception as exc:  # one stage failing must not hide the others' results
            fatal = storage_error(exc, where=f"OUTPUT_DIR {ctx.out.root} or the work directory {ctx.work_dir}")
            if fatal is not None and fatal.fatal:  # the other stages cannot write either
                raise fatal from None
            msg = str(exc) if isinstance(exc, HfsmriError) else f"{type(exc).__name__}: {exc}"
            ctx.log.error("%s stage failed: %s", stage, msg, exc_info=not isinstance(exc, HfsmriError))
            failures.append(f"{stage}: {msg}")
            summary["stages"][stage] = {"error": msg}
        finally:
            stage_done(label, stage, time.perf_counter() - t0, ok)
    path = sub_dir / (f"sub-{ctx.subject}" + (f"_ses-{ctx.session}" if ctx.session else "") + "_desc-hfsmri_summary.json")
    ctx.out.save_json(summary, path)
    if failures:
        raise HfsmriError("; ".join(failures))
    return summary


def estimate_job_mb(si: SubjectInputs) -> float:
    """Rough peak-memory estimate (MB) of one participant job from its input image sizes.

    Float64 copies of the largest 4D input dominate (about 6 copies during cleaning and
    registration), plus ~1.5 GB for ANTs registration and the Python/library baseline.
    """
    import nibabel as nib

    largest = 0
    for p in (si.bold, si.fmriprep_bold, si.dwi, si.qsiprep_dwi, si.t1w):
        if p is None:
            continue
        try:
            shape = nib.load(str(p)).shape
        except Exception:
            continue
        n = 1
        for s in shape:
            n *= int(s)
        largest = max(largest, n)
    return 1500.0 + 6 * 8 * largest / 1e6


def check_dataset(study, dataset: Dataset, options: RunOptions) -> dict:
    """Header-level validation of every selected subject's inputs.

    With ``options.on_bad_input == "error"`` any fault raises one error listing every fault (file and
    fault per line), before anything runs. With ``"skip"`` the faulty subjects are removed from
    ``dataset`` and returned as ``{"sub-X[_ses-Y]": reason}``.
    """
    from .validate import validate_inputs

    fpre = study.preprocessing.get("func", {})
    dummy = int(fpre.get("dummy_scans", 5))
    skipped, messages = {}, []
    for key, si in list(dataset.inputs.items()):
        if si.subject not in study.participants.index:
            continue
        problems = validate_inputs(si, dummy_scans=dummy, read_data=False,
                                   slice_timing=fpre.get("slice_timing", "auto"))
        if problems:
            reason = "; ".join(str(p) for p in problems)
            messages.extend(str(p) for p in problems)
            skipped[si.key] = reason
            if options.on_bad_input == "skip":
                log.warning("%s skipped: %s", si.key, reason)
                del dataset.inputs[key]
    if messages and options.on_bad_input != "skip":
        raise HfsmriError("invalid input(s) (use --on-bad-input skip to leave these subjects out):\n  "
                          + "\n  ".join(messages))
    return skipped


def resolve_seed(study, options: RunOptions) -> int:
    """The seed of a run: ``--random-seed`` when given, else study.yaml ``stats.random_seed``
    (the one rule; the command line writes it back into ``study.stats`` so that every record —
    run record, study.resolved.yaml, sidecars, methods text — shows the seed actually used)."""
    if options.random_seed is not None:
        return int(options.random_seed)
    return int(study.stats.get("random_seed", 0))


def work_root(output_dir: str | Path, work_dir: str | Path | None = None) -> Path:
    """The work directory: ``-w`` (``work_dir``) or ``OUTPUT_DIR/work``."""
    return Path(work_dir) if work_dir else Path(output_dir) / "work"


def plan_participant(study, dataset: Dataset, out: Derivatives, options: RunOptions) -> list[Job]:
    """One :class:`~hfsmri.parallel.Job` per subject/session that has something to run."""
    analyses = {k: v for k, v in study.analyses.items() if k not in set(options.skip)}
    seed = resolve_seed(study, options)
    root = work_root(out.root, options.work_dir)
    jobs = []
    for (sub, ses), si in sorted(dataset.inputs.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if sub not in study.participants.index:
            log.info("sub-%s: not in participants.tsv (or excluded): skipped", sub)
            continue
        stages = stages_for(analyses, si)
        if not stages:
            log.info("%s: no input for the requested analyses: skipped", si.key)
            continue
        ctx = ParticipantContext(
            subject=sub, session=ses, inputs=si, out=out,
            work_dir=root / si.key, analyses=analyses,
            preprocessing=study.preprocessing, flip=study.flipped(sub), flip_to=study.flip_to, seed=seed,
            omp_nthreads=options.omp_nthreads or 1)
        jobs.append(Job(name=si.key, fn=run_participant_job, args=(ctx, stages), mem_mb=estimate_job_mb(si)))
    return jobs


def run_participant_level(study, dataset: Dataset, out: Derivatives, options: RunOptions):
    jobs = plan_participant(study, dataset, out, options)
    log.info("participant level: %d job(s): %s", len(jobs), ", ".join(j.name for j in jobs) or "none")
    from .scratch import scratch_root  # each job's temporaries: a private folder in <WORK_DIR>/tmp

    results = run_jobs(jobs, nprocs=options.nprocs, omp_nthreads=options.omp_nthreads,
                       log_dir=out.logs_dir, stop_on_first_crash=options.stop_on_first_crash,
                       scheduler=options.scheduler, mem_mb=options.mem_mb, level=options.log_level,
                       scratch=scratch_root(work_root(out.root, options.work_dir)))
    return results


def group_stages(analyses) -> list[str]:
    wanted = {STAGE_OF[a] for a in analyses}
    return [st for st in STAGE_ORDER if st in wanted]


#: participant datatype folders each group stage reads
GROUP_INPUT_DATATYPES = {"anat": ("anat",), "dwi": ("dwi", "anat"), "func": ("func",), "conn": ("func",)}


def group_stage_key(study, out: Derivatives, stage: str, analyses: dict, stats: dict, seed: int) -> str:
    """Fingerprint of what a group stage depends on: the study (participants, groups, covariates,
    flipping, sessions, the stage's analyses and their parameters, statistics, seed) and every
    participant output it reads (relative path, size, modification time: derivatives are written
    atomically and never rewritten when up to date, so an unchanged file keeps its mtime)."""
    import hashlib

    from .derivatives import canonical_json

    files = []
    for dt in GROUP_INPUT_DATATYPES.get(stage, ()):
        for f in sorted(out.root.glob(f"sub-*/**/{dt}/*")):
            if f.is_file() and not f.name.startswith("."):
                st = f.stat()
                files.append([str(f.relative_to(out.root)), st.st_size, st.st_mtime_ns])
    mine = {k: v for k, v in analyses.items() if STAGE_OF.get(k) == stage}
    parts = study.participants.reset_index().astype(str).to_dict(orient="list")
    payload = {"stage": stage, "analyses": mine, "stats": stats, "seed": seed, "participants": parts,
               "groups": getattr(study, "groups", None), "covariates": getattr(study, "covariates", None),
               "clinical": getattr(study, "clinical", None), "flip_to": getattr(study, "flip_to", None),
               "sessions": getattr(study, "sessions", None), "site_column": getattr(study, "site_column", None),
               "harmonize": getattr(study, "harmonize", None),
               "excluded": sorted(map(str, (getattr(study, "excluded", None) or {}))),
               "preprocessing": getattr(study, "preprocessing", None), "files": files}
    from . import __version__

    payload["version"] = __version__
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:32]


def participant_output_files(root: Path, datatypes=None) -> list[Path]:
    """Participant-level outputs under ``root`` (``sub-*/[ses-*/]<datatype>/*``, no hidden files),
    optionally only those of the given datatype folders."""
    files = []
    for f in sorted(Path(root).glob("sub-*/**/*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        if datatypes is not None and f.parent.name not in datatypes:
            continue
        files.append(f)
    return files


def require_participant_outputs(root: Path) -> None:
    """The group level needs participant outputs: an OUTPUT_DIR without any (a typo, the wrong
    folder, the participant level not run yet) is an error naming the folder, not an empty report."""
    root = Path(root)
    if not root.is_dir():
        raise HfsmriError("OUTPUT_DIR does not exist: the group level reads the participant outputs written there "
                          "(run the participant level first, or check the path)", path=root)
    for d in root.glob("sub-*"):
        if d.is_dir() and any(f.is_file() and not f.name.startswith(".") for f in d.rglob("*")):
            return
    raise HfsmriError("OUTPUT_DIR has no participant outputs (no sub-*/ folder with results): run the participant "
                      "level first, or check the path", path=root)


def damaged_participant_outputs(out: Derivatives, stage: str) -> list[str]:
    """The participant outputs a group stage reads that are truncated or corrupt: checked against
    the size and SHA-256 recorded in their sidecars (``.gz`` files without a record must
    decompress; JSON files must parse). One line per damaged file."""
    import json

    from .derivatives import verify_output

    damaged = []
    for f in participant_output_files(out.root, GROUP_INPUT_DATATYPES.get(stage, ())):
        if f.suffix == ".json":
            try:
                json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                damaged.append(f"{f}: unreadable JSON ({type(exc).__name__})")
            continue
        problem = verify_output(f)
        if problem:
            damaged.append(f"{f}: {problem}")
    return damaged


def _subject_of(text: str) -> str:
    import re

    found = re.findall(r"(?:^|/)(sub-[A-Za-z0-9]+)/", text)  # the last one: OUTPUT_DIR/sub-X/...
    return found[-1] if found else "that subject"


def _read_marker(path: Path) -> dict:
    """A group stage's marker ``{"key", "results", "outputs"}``; empty when missing or unreadable."""
    import json

    try:
        marker = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def _marker_valid(marker: dict, key: str, out: Derivatives) -> bool:
    """The marker has this key and the group folders it lists (those the stage wrote) still exist
    and are not empty: deleting ``group/<analysis>/`` by hand makes the stage run again. A marker
    without the list (older version) is not valid."""
    names = marker.get("outputs")
    if marker.get("key") != key or names is None:
        return False
    return all(out.group_path(n, kind="folder").is_dir() and any(out.group_path(n, kind="folder").iterdir())
               for n in names)


def _ticking(stages, bar, units: dict):
    """The stages; when the loop moves past one, ``bar`` is set to the expected units of the stages
    done so far (``units``: analysis -> metrics x contrasts), so a stage that was reused, failed or
    derived more metrics than expected leaves the bar exact."""
    done = 0
    for stage in stages:
        yield stage
        done += sum(n for a, n in units.items() if STAGE_OF.get(a) == stage)
        if bar is not None:
            if bar.n > done:  # more metrics than expected (derived at run time): grow the total
                bar.total += bar.n - done
                done = bar.n
            bar.update(done - bar.n)


def run_group_level(study, out: Derivatives, options: RunOptions) -> dict:
    """Run the group stages. The seed actually used (:func:`resolve_seed`) is the ``random_seed``
    of the statistics every stage gets; a stage whose participant inputs are damaged
    (:func:`damaged_participant_outputs`) fails with the list of files instead of reading them."""
    from .scratch import job_tempdir, scratch_root

    require_participant_outputs(out.root)
    analyses = {k: v for k, v in study.analyses.items() if k not in set(options.skip)}
    seed = resolve_seed(study, options)
    stats = dict(study.stats)
    stats["random_seed"] = seed
    gctx = GroupContext(study=study, out=out, analyses=analyses, stats=stats, seed=seed,
                        nprocs=options.nprocs or 1, scheduler=options.scheduler,
                        work_dir=work_root(out.root, options.work_dir))
    results, failures, reused = {}, [], []
    from .group import run_stage
    from .parallel import client_for  # permutation blocks run as Dask tasks with --scheduler

    from .qc.decisions import STAGE_MODALITY, decide  # study.yaml qc: rules -> who each stage analyses
    from .progress import bar as progress_bar

    decisions = gctx.qc_decisions = decide(study, out)
    decisions.write(out.group_path(kind="folder"))
    log.info("group level: %s", decisions.sentence())
    from .group.runner import contrasts_per_metric, expected_maps

    per_metric = contrasts_per_metric(study)  # on a terminal: contrast maps (analyses x metrics x contrasts)
    units = expected_maps(study, analyses, per_metric)
    gbar = progress_bar(sum(units.values()), "group", "map")
    gctx.tick = partial(gbar.update, per_metric) if gbar is not None else None
    with client_for(options.scheduler) as gctx.client, job_tempdir(scratch_root(gctx.work_dir)), \
            (gbar if gbar is not None else contextlib.nullcontext()):
        for stage in _ticking(group_stages(analyses), gbar, units):
            # the fingerprint sees who the qc: rules leave out, so re-thresholding reruns the stage
            key = group_stage_key(decisions.restrict(study, STAGE_MODALITY[stage]), out, stage, analyses,
                                  gctx.stats, seed)
            marker = out.group_path(contrast=stage, kind="stage_marker")
            done = _read_marker(marker)
            if _marker_valid(done, key, out):
                log.info("group level: %s stage up to date (inputs and parameters unchanged), reused", stage)
                results[stage] = done.get("results") or {}
                reused.append(stage)
                continue
            log.info("group level: %s stage", stage)
            try:
                damaged = damaged_participant_outputs(out, stage)
                if len(damaged) == 1:
                    raise HfsmriError(f"participant output {damaged[0]}; run the participant level again for "
                                      f"{_subject_of(damaged[0])} (it recomputes the damaged output)")
                if damaged:
                    raise HfsmriError(f"{len(damaged)} participant outputs are truncated or corrupt; run the "
                                      "participant level again for these subjects (it recomputes them):\n    "
                                      + "\n    ".join(damaged))
                results[stage] = run_stage(gctx, stage)
                outputs = sorted(a for a in analyses if STAGE_OF.get(a) == stage
                                 and out.group_path(a, kind="folder").is_dir())
                out.save_json({"key": key, "results": results[stage], "outputs": outputs}, marker)
            except Exception as exc:
                from .errors import storage_error

                fatal = storage_error(exc)
                if fatal is not None and fatal.fatal:  # disk full / read-only: nothing further can be written
                    raise fatal from None
                msg = str(exc) if isinstance(exc, HfsmriError) else f"{type(exc).__name__}: {exc}"
                log.error("group %s stage failed: %s", stage, msg, exc_info=not isinstance(exc, HfsmriError))
                failures.append(f"{stage}: {msg}")
                results[stage] = {"error": msg}
                if options.stop_on_first_crash:
                    break
    if len(reused) < len(results) or not out.group_path(kind="group_summary").exists():
        out.save_json(results, out.group_path(kind="group_summary"))
    options.group_reused = bool(results) and len(reused) == len(results)
    if failures:
        raise HfsmriError("group level failed for " + "; ".join(failures))
    return results
