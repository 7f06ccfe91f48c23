"""``hfsmri`` command line (BIDS-App conventions, as fMRIPrep/QSIPrep).

Exit codes: 0 success, 1 user error (one clear message naming the file/field and the fault; a
traceback only with ``--debug``), 2 usage error.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .analyses import ANALYSES
from .errors import HfsmriError

SUBCOMMANDS = ("simulate", "demo", "report", "power", "import")

DESCRIPTION = f"""\
hfsmri {__version__}: every MRI analysis of a clinical case-control study, from BIDS to report.

usage:
  hfsmri BIDS_DIR OUTPUT_DIR participant [options]   participant level (per-subject derivatives)
  hfsmri BIDS_DIR OUTPUT_DIR group --study study.yaml [options]
                                                     group level (statistics) and report
  hfsmri simulate OUTPUT_BIDS_DIR [options]          simulate a virtual HFS cohort with ground truth
  hfsmri demo [OUTPUT_DIR]                           simulate + participant + group + report
  hfsmri report OUTPUT_DIR                           (re)build the HTML report
  hfsmri power [options]                             power analysis by simulation
  hfsmri import DICOM_DIR BIDS_DIR --subject 01 [--session pre] [--heuristic FILE]
                                                     DICOM -> BIDS (dcm2niix), one subject at a time
  hfsmri --version | --help

Run "hfsmri <sub-command> --help" for the options of simulate, demo, report, power and import.
"""

ANALYSIS_NAMES = tuple(ANALYSES)   # --skip choices: the analyses' registry


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors exit with code 2 and a one-line hint."""

    def error(self, message):  # pragma: no cover - exercised through main()
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("logging")
    g.add_argument("-v", "--verbose", action="store_true", help="more detail (DEBUG level)")
    g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bar")
    g.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def bids_app_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hfsmri", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                usage=argparse.SUPPRESS)
    p.add_argument("bids_dir", metavar="BIDS_DIR", type=Path, help="raw BIDS dataset (with participants.tsv)")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", type=Path,
                   help="where derivatives, group results and report.html go (not inside BIDS_DIR)")
    p.add_argument("analysis_level", metavar="{participant,group}", choices=("participant", "group"),
                   help="participant: per-subject maps; group: statistics and report")
    p.add_argument("--version", action="version", version=f"hfsmri {__version__}")
    g = p.add_argument_group("selection")
    g.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                   help="participants to process (with or without 'sub-'); default all")
    g.add_argument("--session-label", nargs="+", metavar="LABEL", help="sessions to process; default all")
    g.add_argument("--study", type=Path, metavar="study.yaml",
                   help="study definition (groups, covariates, clinical scores, analyses, stats); "
                        "required for the group level")
    g.add_argument("--skip", nargs="+", metavar="ANALYSIS", default=[], choices=ANALYSIS_NAMES,
                   help=f"analyses to leave out: {', '.join(ANALYSIS_NAMES)}")
    g.add_argument("--derivatives", nargs="+", type=Path, metavar="DIR",
                   help="folders with fMRIPrep / QSIPrep outputs to use as inputs")
    r = p.add_argument_group("resources")
    r.add_argument("-w", "--work-dir", type=Path, metavar="WORK_DIR",
                   help="scratch folder (default OUTPUT_DIR/work); keep it to resume")
    r.add_argument("--nprocs", "--n-cpus", type=int, metavar="N", help="parallel subject jobs (default: all cores)")
    r.add_argument("--omp-nthreads", type=int, metavar="N", help="threads per job (default 1, so that results do not depend on --nprocs; raise it when running few subjects on many cores)")
    r.add_argument("--mem-mb", type=float, metavar="MB", help="memory limit; bounds the number of parallel jobs")
    r.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address (e.g. tcp://host:8786)")
    r.add_argument("--random-seed", type=int, metavar="N", help="seed for every random step (overrides study.yaml)")
    r.add_argument("--stop-on-first-crash", action="store_true", help="stop at the first failing subject")
    r.add_argument("--on-bad-input", choices=("error", "skip"), default="error",
                   help="a subject with invalid input files: stop with one error listing every fault "
                        "(default), or leave that subject out and record why in the report")
    r.add_argument("--no-report", action="store_true", help="group level: do not build report.html")
    _add_common(p)
    return p


def simulate_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hfsmri simulate", description="Simulate a virtual HFS cohort (raw BIDS) with the "
                "review's findings planted and ground truth under derivatives/ground_truth/.")
    p.add_argument("output_bids_dir", metavar="OUTPUT_BIDS_DIR", type=Path)
    p.add_argument("--n-patients", type=int, default=15, metavar="N")
    p.add_argument("--n-controls", type=int, default=15, metavar="N")
    p.add_argument("--sessions", metavar="LIST", help="comma-separated sessions, e.g. pre,post")
    p.add_argument("--effects", default="default", metavar="default|none|FILE.yaml")
    p.add_argument("--resolution", type=float, metavar="MM", help="isotropic voxel size of every modality")
    p.add_argument("--seed", type=int, default=0, metavar="N")
    p.add_argument("--n-dirs", type=int, default=30, metavar="N", help="diffusion directions (25, 30, 64, ...)")
    p.add_argument("--n-volumes", type=int, metavar="N", help="BOLD volumes at TR 2 s (default 240 = 8 min; the demo uses 120)")
    p.add_argument("--no-deform", action="store_true", help="no per-subject nonlinear deformation (fast tests)")
    p.add_argument("--n-sites", type=int, default=1, metavar="N")
    p.add_argument("--site-effects", action="store_true", help="add scanner offsets/scaling per site")
    from .simulate.scanner import SLICE_ORDERS, T1W_DTYPES, USER_PRESET

    g = p.add_argument_group("scanner", "how images are acquired and stored (docs/simulator.md); a preset, "
                             "then single options that override it")
    g.add_argument("--scanner", choices=("ideal", "realistic"), default=USER_PRESET,
                   help="realistic (default): full head with face and neck, tilted head in the coil, oblique "
                        "headers, mixed storage / voxel sizes / data types, bias field, slice timing; ideal: "
                        "axis-aligned brain-and-skull images in MNI position (unit tests)")
    g.add_argument("--full-head", action=argparse.BooleanOptionalAction, default=None,
                   help="T1w with face, neck and shoulders in a 256 mm field of view")
    g.add_argument("--head-pose", choices=("ideal", "realistic"), help="head position in the coil")
    g.add_argument("--oblique-deg", type=float, metavar="DEG", help="largest header rotation (0 = axis-aligned)")
    g.add_argument("--anisotropy", metavar="none|mixed|I,J,K",
                   help="voxel size along the stored axes relative to --resolution, e.g. 1,1,1.2")
    g.add_argument("--t1w-orientation", metavar="mixed|CODE", help="T1w voxel order, e.g. PIR (sagittal), LPS, RAS")
    g.add_argument("--epi-orientation", metavar="legacy|mixed|CODE", help="DWI/BOLD voxel order, e.g. LAS, LPS")
    g.add_argument("--t1w-dtype", choices=(*T1W_DTYPES, "mixed"), help="T1w data type (mixed: also a random scale)")
    g.add_argument("--bias", metavar="legacy|FRACTION", help="T1w bias field half-range, e.g. 0.2 (= ±20 %%)")
    g.add_argument("--slice-timing", choices=("none", *SLICE_ORDERS, "mixed"), help="BOLD slice acquisition order")
    _add_common(p)
    return p


def scanner_from_args(args) -> dict:
    """The ``scanner`` argument of ``simulate_study`` from the simulate options (preset + overrides)."""
    spec = {"preset": args.scanner}
    for key in ("full_head", "head_pose", "oblique_deg", "anisotropy", "t1w_orientation", "epi_orientation",
                "t1w_dtype", "slice_timing"):
        value = getattr(args, key)
        if value is not None:
            spec[key] = value
    if args.bias is not None:
        spec["bias"] = args.bias
    return spec


def demo_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hfsmri demo", description="Simulate a small HFS study and run every analysis "
                "(participant + group) and the report, in one go. A second run reuses finished work.")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", nargs="?", type=Path, default=Path("hfsmri_demo"))
    p.add_argument("--n-patients", type=int, default=10, metavar="N")
    p.add_argument("--n-controls", type=int, default=10, metavar="N")
    p.add_argument("--n-perm", type=int, default=None, metavar="N", help="permutations (demo default is small)")
    p.add_argument("--nprocs", type=int, metavar="N")
    p.add_argument("--seed", type=int, default=1, metavar="N")
    p.add_argument("--quick", action="store_true", help="tiny demo for tests (fewer subjects/volumes)")
    _add_common(p)
    return p


def report_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hfsmri report", description="(Re)build OUTPUT_DIR/report.html from existing derivatives.")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", type=Path)
    _add_common(p)
    return p


class _GroupSizes(argparse.Action):
    """``--n 10 20 30`` and ``--n 10,20,30`` (and mixtures): one parser,
    :func:`hfsmri.power.sizes.parse_group_sizes`; a bad value is a usage error (exit 2)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .power.sizes import parse_group_sizes

        try:
            setattr(namespace, self.dest, parse_group_sizes(values))
        except HfsmriError as exc:
            parser.error(exc.message)


def power_parser() -> argparse.ArgumentParser:
    from .power import ENGINE_DOC, POWER_DEFAULTS as D

    import textwrap

    def fill(text, indent=""):
        return textwrap.fill(text, 100, initial_indent=indent, subsequent_indent=" " * len(indent))

    desc = "\n".join([fill(
        "Power analysis by simulation of whole studies: for each group size, simulate studies with the planted "
        "effects, test them as the group level does, and report the share detected (power) and the "
        "false-positive rate. Writes power.html, power.tsv, false_positives.tsv, power_curve.png and "
        "power_settings.json into --output (docs/power.md)."), "", "engines:",
        fill(ENGINE_DOC["roi"], "  roi    "), fill(ENGINE_DOC["image"], "  image  ")])
    p = _Parser(prog="hfsmri power", formatter_class=argparse.RawDescriptionHelpFormatter, description=desc)
    p.add_argument("--engine", choices=("roi", "image"), default=D["engine"],
                   help="roi: fast ROI-value simulation (seconds); image: whole simulated studies through the "
                        "participant and group pipeline (minutes per study) (default: %(default)s)")
    p.add_argument("--effects", default=D["effects"], metavar="default|FILE.yaml",
                   help="planted effects: the simulator's review-based set or a YAML file (default: %(default)s)")
    p.add_argument("--effect-sizes", choices=("observed", "planted"), default=D["effect_sizes"],
                   help="roi engine: 'observed' uses the effect sizes measured in participant-level values "
                        "after the pipeline (stored with the simulator's effect set, benchmarks/"
                        "bench_sensitivity.py), 'planted' the simulator's latent Cohen's d (an upper bound) "
                        "(default: %(default)s)")
    p.add_argument("--n", nargs="+", action=_GroupSizes, default=list(D["ns"]), metavar="N",
                   help="subjects per group, as --n 10 20 30 or --n 10,20,30 (default: %s)"
                        % " ".join(str(n) for n in D["ns"]))
    p.add_argument("--n-sim", type=int, default=D["n_sim"], metavar="N",
                   help="simulated studies per group size (default: %(default)s)")
    p.add_argument("--output", type=Path, default=Path("hfsmri_power"), metavar="DIR",
                   help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=D["seed"], metavar="N",
                   help="base random seed; results are a deterministic function of all options "
                        "(default: %(default)s)")
    p.add_argument("--alpha", type=float, default=D["alpha"], metavar="P",
                   help="significance level of the corrected p-values (default: %(default)s)")
    p.add_argument("--correction", choices=("fwe", "fdr", "uncorrected"), default=D["correction"],
                   help="correction shown in the headline table and plot; power.tsv has all three "
                        "(default: %(default)s)")
    p.add_argument("--n-perm", type=int, default=D["n_perm"], metavar="N",
                   help="permutations: roi engine with --test permutation, and stats.n_perm of the image "
                        "engine's group level (default: %(default)s)")
    r = p.add_argument_group("roi engine")
    r.add_argument("--test", choices=("parametric", "permutation"), default=D["test"],
                   help="parametric: t distribution, Holm FWE; permutation: max-statistic over label "
                        "permutations, as the pipeline's ROI tables (default: %(default)s)")
    r.add_argument("--n-null", type=int, default=D["n_null"], metavar="N",
                   help="null ROIs per analysis/metric, for the false-positive estimate (default: %(default)s)")
    r.add_argument("--reliability", type=float, default=D["reliability"], metavar="R",
                   help="share of the between-subject variance of a measured value that is signal "
                        "(observed d = sqrt(R) x d), on top of --effect-sizes (default: %(default)s)")
    g = p.add_argument_group("image engine")
    g.add_argument("--analyses", nargs="+", choices=ANALYSIS_NAMES, metavar="ANALYSIS",
                   help="analyses to run per simulated study (default: every analysis)")
    g.add_argument("--nprocs", type=int, metavar="N", help="parallel subject jobs (default: all cores)")
    g.add_argument("--keep", action="store_true",
                   help="keep each simulated study's images (default: delete them once scored)")
    _add_common(p)
    return p


def import_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hfsmri import", description="Convert one subject's DICOM folder (one scanner visit) into a "
                "BIDS dataset with dcm2niix: T1w, DWI (+ bval/bvec) and resting-state BOLD by a heuristic; "
                "prints what happened to each series. See docs/import.md.")
    p.add_argument("dicom_dir", metavar="DICOM_DIR", type=Path, help="folder with the subject's DICOM files (any layout)")
    p.add_argument("bids_dir", metavar="BIDS_DIR", type=Path, help="BIDS dataset to add the subject to (created if missing)")
    p.add_argument("--subject", required=True, metavar="LABEL", help="participant label, e.g. 01 (or sub-01)")
    p.add_argument("--session", metavar="LABEL", help="session label, e.g. pre (or ses-pre)")
    p.add_argument("--heuristic", type=Path, metavar="FILE", help="YAML rules that map series to BIDS names "
                   "(default: hfsmri's; see docs/import.md)")
    p.add_argument("--participant-info", nargs="+", metavar="KEY=VALUE", default=[],
                   help="participants.tsv columns for this subject, e.g. group=HFS age=54 affected_side=L")
    p.add_argument("--overwrite", action="store_true", help="replace an already imported subject/session "
                   "(and participant values that differ)")
    p.add_argument("--dry-run", action="store_true", help="scan and classify only: print what would be done")
    _add_common(p)
    return p


def run_import(args) -> int:
    from .dicom import import_dicom

    setup_logging(args.verbose, args.debug, args.quiet)
    import_dicom(args.dicom_dir, args.bids_dir, args.subject, session=args.session, heuristic=args.heuristic,
                 participant_info=args.participant_info, overwrite=args.overwrite, dry_run=args.dry_run)
    return 0


def setup_logging(verbose: bool = False, debug: bool = False, quiet: bool = False) -> int:
    """The console handler of the ``hfsmri`` logger (:class:`hfsmri.progress.ConsoleHandler`):
    INFO, DEBUG with ``-v``/``--debug``, WARNING with ``--quiet`` (and no progress bar). Returns the
    level the jobs log at (their log files keep INFO even with ``--quiet``)."""
    from .progress import ConsoleHandler, set_quiet

    level = logging.DEBUG if (verbose or debug) else logging.INFO
    quiet = bool(quiet) and not (verbose or debug)
    set_quiet(quiet)
    logger = logging.getLogger("hfsmri")
    logger.setLevel(level)
    for h in [h for h in logger.handlers if getattr(h, "_hfsmri", False) and not isinstance(h, ConsoleHandler)]:
        logger.removeHandler(h)  # an older plain handler (same process, e.g. tests)
    ours = [h for h in logger.handlers if isinstance(h, ConsoleHandler)]
    for h in ours:  # sys.stderr may have been replaced since (tests, notebooks): follow it
        h.stream = sys.stderr
        h.reset()
    if not ours:
        h = ConsoleHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
        logger.addHandler(h)
        ours = [h]
    for h in ours:
        h.setLevel(logging.WARNING if quiet else logging.NOTSET)
    logger.propagate = False
    return level


def _is_inside(child: Path, parent: Path) -> bool:
    c, p = child.resolve(), parent.resolve()
    return c == p or p in c.parents


def validate_bids_app_args(args) -> None:
    """Checks that need no data loading and write nothing; each raises HfsmriError naming the
    thing at fault. Nothing is ever written inside BIDS_DIR: OUTPUT_DIR and the work directory
    must lie outside it."""
    bids = args.bids_dir
    if not bids.exists():
        raise HfsmriError("BIDS_DIR does not exist", path=bids)
    if not bids.is_dir():
        raise HfsmriError("BIDS_DIR is not a directory", path=bids)
    if _is_inside(args.output_dir, bids):
        raise HfsmriError(f"OUTPUT_DIR {args.output_dir} is inside BIDS_DIR; choose a folder outside the raw "
                          "dataset (e.g. next to it)", path=bids)
    if args.work_dir is not None and _is_inside(args.work_dir, bids):
        raise HfsmriError(f"the work directory (-w) {args.work_dir} is inside BIDS_DIR; choose a folder outside the "
                          "raw dataset (nothing is ever written inside BIDS_DIR)", path=bids)
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise HfsmriError("OUTPUT_DIR exists and is not a directory", path=args.output_dir)
    if args.work_dir is not None and args.work_dir.exists() and not args.work_dir.is_dir():
        raise HfsmriError("the work directory (-w) exists and is not a directory", path=args.work_dir)
    if args.study is not None:
        if not args.study.exists():
            raise HfsmriError("study file does not exist", path=args.study)
        if not os.access(args.study, os.R_OK) or args.study.is_dir():
            raise HfsmriError("study file is not readable", path=args.study)
    for opt in ("nprocs", "omp_nthreads"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise HfsmriError(f"--{opt.replace('_', '-')} must be at least 1, got {v}")
    if args.mem_mb is not None and args.mem_mb <= 0:
        raise HfsmriError(f"--mem-mb must be positive, got {args.mem_mb}")
    if args.analysis_level == "group" and args.study is None:
        raise HfsmriError("the group level needs --study study.yaml (groups, covariates, clinical scores)")


def run_bids_app(args) -> int:
    """``hfsmri BIDS_DIR OUTPUT_DIR participant|group``: :func:`hfsmri.api.run_level` with the options."""
    from .api import run_level

    level = setup_logging(args.verbose, args.debug, args.quiet)
    validate_bids_app_args(args)
    run_level(args.analysis_level, args.bids_dir, args.output_dir, args.study,
              participant_label=args.participant_label, session_label=args.session_label,
              derivatives=args.derivatives, skip=tuple(args.skip), nprocs=args.nprocs,
              omp_nthreads=args.omp_nthreads, mem_mb=args.mem_mb, scheduler=args.scheduler,
              random_seed=args.random_seed, stop_on_first_crash=args.stop_on_first_crash, work_dir=args.work_dir,
              on_bad_input=args.on_bad_input, report=not args.no_report, log_level=level)
    return 0


def run_simulate(args) -> int:
    from .simulate import simulate_study

    setup_logging(args.verbose, args.debug, args.quiet)
    if args.n_patients < 0 or args.n_controls < 0:
        raise HfsmriError("--n-patients and --n-controls must be non-negative")
    sessions = [s.strip() for s in args.sessions.split(",") if s.strip()] if args.sessions else None
    path = simulate_study(args.output_bids_dir, n_patients=args.n_patients, n_controls=args.n_controls,
                          seed=args.seed, sessions=sessions, effects=args.effects, resolution=args.resolution,
                          n_dirs=args.n_dirs, n_volumes=args.n_volumes, deform=not args.no_deform,
                          n_sites=args.n_sites, site_effects=args.site_effects, scanner=scanner_from_args(args))
    print(path)
    return 0


def run_demo(args) -> int:
    from .demo import run_demo as _run

    setup_logging(args.verbose, args.debug, args.quiet)
    report = _run(args.output_dir, n_patients=args.n_patients, n_controls=args.n_controls, n_perm=args.n_perm,
                  nprocs=args.nprocs, seed=args.seed, quick=args.quick)
    print(f"report: {report}")
    return 0


def run_report(args) -> int:
    from .report import build_report

    setup_logging(args.verbose, args.debug, args.quiet)
    if not args.output_dir.is_dir():
        raise HfsmriError("OUTPUT_DIR does not exist", path=args.output_dir)
    print(build_report(args.output_dir))
    return 0


def run_power(args) -> int:
    from .power import run_power as _run

    setup_logging(args.verbose, args.debug, args.quiet)
    print(_run(args.output, effects=args.effects, ns=args.n, n_sim=args.n_sim, seed=args.seed, engine=args.engine,
               test=args.test, n_perm=args.n_perm, alpha=args.alpha, n_null=args.n_null,
               reliability=args.reliability, correction=args.correction, analyses=args.analyses,
               nprocs=args.nprocs, keep=args.keep, effect_sizes=args.effect_sizes))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        bids_app_parser().print_help()
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"hfsmri {__version__}")
        return 0
    debug = "--debug" in argv
    try:
        if argv[0] in SUBCOMMANDS:
            parser = {"simulate": simulate_parser, "demo": demo_parser, "report": report_parser,
                      "power": power_parser, "import": import_parser}[argv[0]]()
            args = parser.parse_args(argv[1:])
            runner = {"simulate": run_simulate, "demo": run_demo, "report": run_report, "power": run_power,
                      "import": run_import}[argv[0]]
        else:
            args = bids_app_parser().parse_args(argv)
            runner = run_bids_app
        return runner(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    except HfsmriError as exc:
        if debug:
            raise
        print(f"hfsmri: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, quota or read-only folder is the user's to fix, not a bug
        from .errors import storage_error

        err = storage_error(exc)
        if err is None or debug:
            raise
        print(f"hfsmri: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hfsmri: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
