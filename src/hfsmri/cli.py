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

SUBCOMMANDS = ("simulate", "demo", "report", "power")

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
  hfsmri --version | --help

Run "hfsmri <sub-command> --help" for the options of simulate, demo, report and power.
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
    _add_common(p)
    return p


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


def power_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hfsmri power", description="Power analysis by simulation of whole studies.")
    p.add_argument("--effects", default="default", metavar="default|FILE.yaml")
    p.add_argument("--n", default="10,20,30,50", metavar="LIST", help="group sizes (per group)")
    p.add_argument("--n-sim", type=int, default=100, metavar="N")
    p.add_argument("--output", type=Path, default=Path("hfsmri_power"), metavar="DIR")
    p.add_argument("--seed", type=int, default=0, metavar="N")
    _add_common(p)
    return p


def setup_logging(verbose: bool = False, debug: bool = False) -> int:
    level = logging.DEBUG if (verbose or debug) else logging.INFO
    logger = logging.getLogger("hfsmri")
    logger.setLevel(level)
    ours = [h for h in logger.handlers if getattr(h, "_hfsmri", False)]
    for h in ours:  # sys.stderr may have been replaced since (tests, notebooks): follow it
        h.stream = sys.stderr
    if not ours:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
        h._hfsmri = True
        logger.addHandler(h)
    logger.propagate = False
    return level


def _is_inside(child: Path, parent: Path) -> bool:
    c, p = child.resolve(), parent.resolve()
    return c == p or p in c.parents


def validate_bids_app_args(args) -> None:
    """Checks that need no data loading; each raises HfsmriError naming the thing at fault."""
    bids = args.bids_dir
    if not bids.exists():
        raise HfsmriError("BIDS_DIR does not exist", path=bids)
    if not bids.is_dir():
        raise HfsmriError("BIDS_DIR is not a directory", path=bids)
    if _is_inside(args.output_dir, bids):
        raise HfsmriError(f"OUTPUT_DIR {args.output_dir} is inside BIDS_DIR; choose a folder outside the raw "
                          "dataset (e.g. next to it)", path=bids)
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise HfsmriError("OUTPUT_DIR exists and is not a directory", path=args.output_dir)
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


def run_bids_app(args) -> int:
    """``hfsmri BIDS_DIR OUTPUT_DIR participant|group``: :func:`hfsmri.api.run_level` with the options."""
    from .api import run_level

    level = setup_logging(args.verbose, args.debug)
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

    setup_logging(args.verbose, args.debug)
    if args.n_patients < 0 or args.n_controls < 0:
        raise HfsmriError("--n-patients and --n-controls must be non-negative")
    sessions = [s.strip() for s in args.sessions.split(",") if s.strip()] if args.sessions else None
    path = simulate_study(args.output_bids_dir, n_patients=args.n_patients, n_controls=args.n_controls,
                          seed=args.seed, sessions=sessions, effects=args.effects, resolution=args.resolution,
                          n_dirs=args.n_dirs, n_volumes=args.n_volumes, deform=not args.no_deform,
                          n_sites=args.n_sites, site_effects=args.site_effects)
    print(path)
    return 0


def run_demo(args) -> int:
    from .demo import run_demo as _run

    setup_logging(args.verbose, args.debug)
    report = _run(args.output_dir, n_patients=args.n_patients, n_controls=args.n_controls, n_perm=args.n_perm,
                  nprocs=args.nprocs, seed=args.seed, quick=args.quick)
    print(f"report: {report}")
    return 0


def run_report(args) -> int:
    from .report import build_report

    setup_logging(args.verbose, args.debug)
    if not args.output_dir.is_dir():
        raise HfsmriError("OUTPUT_DIR does not exist", path=args.output_dir)
    print(build_report(args.output_dir))
    return 0


def run_power(args) -> int:
    from .power import run_power as _run

    setup_logging(args.verbose, args.debug)
    try:
        ns = [int(x) for x in str(args.n).split(",") if x.strip()]
    except ValueError:
        raise HfsmriError(f"--n must be comma-separated integers, got {args.n!r}") from None
    print(_run(args.output, effects=args.effects, ns=ns, n_sim=args.n_sim, seed=args.seed))
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
                      "power": power_parser}[argv[0]]()
            args = parser.parse_args(argv[1:])
            runner = {"simulate": run_simulate, "demo": run_demo, "report": run_report, "power": run_power}[argv[0]]
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
    except KeyboardInterrupt:
        print("hfsmri: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
