"""Running dcm2niix on one series.

The binary comes from the ``dcm2niix`` PyPI package (a dependency of hfsmri); it is looked up as
``$HFSMRI_DCM2NIIX`` (an explicit override), then the package's own ``dcm2niix.bin``, then
``dcm2niix`` next to the running Python (a virtualenv's ``bin/``), then ``PATH``.

Each series is converted alone: its files are linked into an empty folder and dcm2niix converts
that folder into another empty folder, so every output belongs to exactly one series. Options:
``-b y -ba y`` (BIDS sidecar, anonymised: no names, IDs or dates), ``-z y`` (gzip; deterministic
bytes), ``-f series`` (the output base name), ``-g i`` (ignore a user's ``~/.dcm2nii.ini``, so
results do not depend on who runs it).
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HfsmriError

BASENAME = "series"
_DCM2NIIX_ARGS = ("-b", "y", "-ba", "y", "-z", "y", "-g", "i", "-f", BASENAME)


@functools.lru_cache(maxsize=None)
def dcm2niix_binary() -> Path:
    """Path of the dcm2niix executable; raises HfsmriError with the install hint when absent."""
    env = os.environ.get("HFSMRI_DCM2NIIX")
    if env:
        if Path(env).is_file() and os.access(env, os.X_OK):
            return Path(env)
        raise HfsmriError(f"HFSMRI_DCM2NIIX={env} is not an executable file")
    cands = []
    try:
        import dcm2niix

        cands.append(Path(dcm2niix.bin))
    except (ImportError, AttributeError):
        pass
    cands.append(Path(sys.executable).parent / "dcm2niix")
    which = shutil.which("dcm2niix")
    if which:
        cands.append(Path(which))
    for c in cands:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise HfsmriError("dcm2niix not found: install the 'dcm2niix' package into this Python environment "
                      "(pip install dcm2niix; it ships the binary)")


@functools.lru_cache(maxsize=None)
def dcm2niix_version() -> str:
    """dcm2niix's version string, e.g. ``v1.0.20260724``."""
    res = subprocess.run([str(dcm2niix_binary()), "--version"], capture_output=True, text=True)
    m = re.search(r"v\d+\.\d+\.\d+\w*", res.stdout + res.stderr)
    return m.group(0) if m else "unknown"


@dataclass
class Conversion:
    """dcm2niix's outputs for one series (paths in ``out_dir``) and its messages."""

    images: list                    # .nii.gz files
    log: str                        # stdout + stderr
    returncode: int
    warnings: list = field(default_factory=list)

    def sidecar(self, image: Path, ext: str) -> Path:
        return image.with_name(image.name[: -len(".nii.gz")] + ext)


def link_files(files, folder: Path) -> None:
    """Make ``folder`` hold (links to) exactly these files: symlinks, else hard links, else copies."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(files):
        dst = folder / f"{i:06d}.dcm"
        src = Path(src).resolve()
        try:
            os.symlink(src, dst)
        except OSError:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def run_dcm2niix(dicom_folder: Path, out_dir: Path) -> Conversion:
    """Convert every DICOM in ``dicom_folder`` (one series) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(dcm2niix_binary()), *_DCM2NIIX_ARGS, "-o", str(out_dir), str(dicom_folder)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    except OSError as exc:
        raise HfsmriError(f"cannot run dcm2niix ({exc})", path=cmd[0]) from None
    log = res.stdout + (("\n" + res.stderr) if res.stderr else "")
    images = sorted(out_dir.glob("*.nii.gz"))
    warnings = [ln.strip() for ln in log.splitlines() if ln.strip().lower().startswith("warning")]
    return Conversion(images=images, log=log, returncode=res.returncode, warnings=warnings)


def error_lines(log: str, n: int = 3) -> str:
    """dcm2niix's error lines (or its last lines) for a message."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.lower().startswith("error")] or lines[-n:]
    return " | ".join(errs[:n])
