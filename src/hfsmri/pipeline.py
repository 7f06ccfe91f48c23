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

import importlib
import logging
from dataclasses import dataclass, field
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
    reported here, naming the file, before any output is written).
    """
    from .bids import validate_inputs

    summary: dict = {"subject": ctx.subject, "session": ctx.session, "flipped": ctx.flip, "stages": {}}
    dummy = int(ctx.preprocessing.get("func", {}).get("dummy_scans", 5))
    problems = validate_inputs(ctx.inputs, dummy_scans=dummy, read_data=True)
    if problems:
        raise HfsmriError("; ".join(str(p) for p in problems))
    failures = []
    for stage in stages:
        ctx.log.info("sub-%s%s: %s stage", ctx.subject, f" ses-{ctx.session}" if ctx.session else "", stage)
        try:
            mod = _stage_module(stage, "participant")
            from .spatial.registration import ants_seed  # every ANTs call of the job gets --random-seed

            with ants_seed(ctx.seed):
                summary["stages"][stage] = mod.run(ctx) or {}
        except Exception as exc:  # one stage failing must not hide the others' results
            from .errors import HfsmriError as _E

            msg = str(exc) if isinstance(exc, _E) else f"{type(exc).__name__}: {exc}"
            ctx.log.error("%s stage failed: %s", stage, msg, exc_info=not isinstance(exc, _E))
            failures.append(f"{stage}: {msg}")
            summary["stages"][stage] = {"error": msg}
    path = ctx.out.subject_dir(ctx.subject, ctx.session) / (
        f"sub-{ctx.subject}" + (f"_ses-{ctx.session}" if ctx.session else "") + "_desc-hfsmri_summary.json")
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
    from .bids import validate_inputs

    dummy = int(study.preprocessing.get("func", {}).get("dummy_scans", 5))
    skipped, messages = {}, []
    for key, si in list(dataset.inputs.items()):
        if si.subject not in study.participants.index:
            continue
        problems = validate_inputs(si, dummy_scans=dummy, read_data=False)
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


def plan_participant(study, dataset: Dataset, out: Derivatives, options: RunOptions) -> list[Job]:
    """One :class:`~hfsmri.parallel.Job` per subject/session that has something to run."""
    analyses = {k: v for k, v in study.analyses.items() if k not in set(options.skip)}
    seed = options.random_seed if options.random_seed is not None else int(study.stats.get("random_seed", 0))
    work_root = Path(options.work_dir) if options.work_dir else out.root / "work"
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
            work_dir=work_root / si.key, analyses=analyses,
            preprocessing=study.preprocessing, flip=study.flipped(sub), flip_to=study.flip_to, seed=seed,
            omp_nthreads=options.omp_nthreads or 1)
        jobs.append(Job(name=si.key, fn=run_participant_job, args=(ctx, stages), mem_mb=estimate_job_mb(si)))
    return jobs


def run_participant_level(study, dataset: Dataset, out: Derivatives, options: RunOptions):
    jobs = plan_participant(study, dataset, out, options)
    log.info("participant level: %d job(s): %s", len(jobs), ", ".join(j.name for j in jobs) or "none")
    results = run_jobs(jobs, nprocs=options.nprocs, omp_nthreads=options.omp_nthreads,
                       log_dir=out.logs_dir, stop_on_first_crash=options.stop_on_first_crash,
                       scheduler=options.scheduler, mem_mb=options.mem_mb, level=options.log_level)
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


def run_group_level(study, out: Derivatives, options: RunOptions) -> dict:
    analyses = {k: v for k, v in study.analyses.items() if k not in set(options.skip)}
    seed = options.random_seed if options.random_seed is not None else int(study.stats.get("random_seed", 0))
    gctx = GroupContext(study=study, out=out, analyses=analyses, stats=dict(study.stats), seed=seed,
                        nprocs=options.nprocs or 1, scheduler=options.scheduler,
                        work_dir=Path(options.work_dir) if options.work_dir else out.root / "work")
    results, failures, reused = {}, [], []
    from .group import run_stage
    from .parallel import client_for  # permutation blocks run as Dask tasks with --scheduler

    with client_for(options.scheduler) as gctx.client:
        for stage in group_stages(analyses):
            key = group_stage_key(study, out, stage, analyses, gctx.stats, seed)
            marker = out.group_path(contrast=stage, kind="stage_marker")
            done = _read_marker(marker)
            if _marker_valid(done, key, out):
                log.info("group level: %s stage up to date (inputs and parameters unchanged), reused", stage)
                results[stage] = done.get("results") or {}
                reused.append(stage)
                continue
            log.info("group level: %s stage", stage)
            try:
                results[stage] = run_stage(gctx, stage)
                outputs = sorted(a for a in analyses if STAGE_OF.get(a) == stage
                                 and out.group_path(a, kind="folder").is_dir())
                out.save_json({"key": key, "results": results[stage], "outputs": outputs}, marker)
            except Exception as exc:
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
