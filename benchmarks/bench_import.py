"""Benchmark of ``hfsmri import`` against plain dcm2niix on a clinical-size DICOM export.

The export is written with pydicom (``tests/dicom/synth.py``): a localizer (3 files), a 3D T1w
(256 x 256 x 176, one file per slice) and a resting-state BOLD (64 x 64 x 36, 200 volumes, one
file per slice: 7200 files), classic single-frame MR storage as Siemens/GE/Philips classic
exports write them.

Printed: seconds for
  1. the reference: ``dcm2niix -b y -ba y -z y`` on the whole folder (what a user would run by hand);
  2. ``hfsmri import`` end to end, and its parts: header scan (pydicom), conversion (dcm2niix per
     series), the rest (naming, commit, participants.tsv, record);
and the ratio hfsmri / dcm2niix, in wall-clock and in CPU seconds (this process plus its
children: less sensitive to other load on a shared machine). Run it once.
Usage: python benchmarks/bench_import.py [--volumes 200] [--keep DIR]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_export(folder: Path, volumes: int) -> int:
    from tests.dicom import synth

    synth.write_localizer(folder / "S01")
    synth.write_t1w(folder / "S02", shape=(256, 256, 176), spacing=(1.0, 1.0, 1.0), series_number=2)
    synth.write_bold(folder / "S03", shape=(64, 64, 36), n_volumes=volumes, spacing=(3.0, 3.0, 3.5),
                     slice_times_ms=[(i * 2000.0 / 36) for i in range(36)], series_number=3)
    return sum(1 for p in folder.rglob("*.dcm"))


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=200)
    ap.add_argument("--keep", type=Path, help="write the export here and keep it")
    args = ap.parse_args(argv)

    from hfsmri.dicom import import_dicom
    from hfsmri.dicom.convert import dcm2niix_binary, dcm2niix_version
    from hfsmri.dicom.scan import scan_folder

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export = args.keep or tmp / "export"
        t = time.perf_counter()
        n = write_export(export, args.volumes)
        print(f"wrote {n} DICOM files in {time.perf_counter() - t:.1f} s ({export})")

        out = tmp / "dcm2niix_out"
        out.mkdir()
        t, c = time.perf_counter(), _cpu()
        subprocess.run([str(dcm2niix_binary()), "-b", "y", "-ba", "y", "-z", "y", "-o", str(out), str(export)],
                       check=True, capture_output=True)
        t_ref, c_ref = time.perf_counter() - t, _cpu() - c

        t, c = time.perf_counter(), _cpu()
        scan = scan_folder(export)
        t_scan, c_scan = time.perf_counter() - t, _cpu() - c

        t, c = time.perf_counter(), _cpu()
        res = import_dicom(export, tmp / "bids", "01", participant_info=["group=HFS"], printer=None)
        t_imp, c_imp = time.perf_counter() - t, _cpu() - c
        t_conv = sum(o.seconds for o in res.outcomes)

    print(f"dcm2niix {dcm2niix_version()}; {len(scan.series)} series, {scan.n_files} files")
    print(f"{'step':<44} {'wall s':>8} {'CPU s':>8}")
    print(f"{'reference: dcm2niix on the whole folder':<44} {t_ref:8.1f} {c_ref:8.1f}")
    print(f"{'hfsmri import (end to end)':<44} {t_imp:8.1f} {c_imp:8.1f}")
    print(f"{'  header scan alone (pydicom, separate run)':<44} {t_scan:8.1f} {c_scan:8.1f}"
          f"   ({scan.n_files / c_scan:.0f} files per CPU s)")
    print(f"{'  dcm2niix per kept series (wall)':<44} {t_conv:8.1f}")
    print(f"ratio hfsmri import / dcm2niix: wall {t_imp / t_ref:.2f}, CPU {c_imp / c_ref:.2f}")


if __name__ == "__main__":
    main()
