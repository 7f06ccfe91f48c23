"""Fixtures of the DICOM import tests: real DICOM files from nibabel's test data, and series
written with pydicom (``synth.py``)."""
from __future__ import annotations

import gzip
import shutil
import warnings
from pathlib import Path

import pytest

from tests.realdata import nibabel_dicom

with warnings.catch_warnings():  # nibabel warns once, on import, that its DICOM readers are experimental
    warnings.simplefilter("ignore")
    import nibabel.nicom.tests  # noqa: F401

from . import synth


def copy_real(name: str, dest: Path) -> Path:
    """Copy (and un-gzip) one of nibabel's real DICOM files into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    src = nibabel_dicom(name)
    out = dest / (name[:-3] if name.endswith(".gz") else name)
    if name.endswith(".gz"):
        with gzip.open(src, "rb") as fi, open(out, "wb") as fo:
            shutil.copyfileobj(fi, fo)
    else:
        shutil.copy(src, out)
    return out


def pydicom_test_file(name: str) -> Path:
    """A file of pydicom's bundled test data (``MR_small.dcm``, ``dicomdirtests/...``), as installed."""
    import pydicom.data

    path = Path(pydicom.data.__file__).parent / "test_files" / name
    if not path.exists():
        pytest.fail(f"pydicom's bundled test file is missing: {path}")
    return path


@pytest.fixture
def siemens_dwi(tmp_path) -> Path:
    """The real Siemens TrioTim DTI mosaics (b=0 and b=1000) of nibabel's test data."""
    d = tmp_path / "dicom_dwi"
    copy_real("siemens_dwi_0.dcm.gz", d)
    copy_real("siemens_dwi_1000.dcm.gz", d)
    return d


@pytest.fixture
def philips_t1(tmp_path) -> Path:
    """The real Philips Achieva enhanced multi-frame MPRAGE (phantom, 176 frames)."""
    d = tmp_path / "dicom_philips"
    copy_real("philips_mprage.dcm.gz", d)
    return d


@pytest.fixture
def session_dicom(tmp_path):
    """A scanner export of one visit: localizer, T1w, its MPR reformat and phase image, a BOLD with
    its SBRef; sub-folders as a PACS export writes them, plus a README that is not DICOM."""
    root = tmp_path / "dicom_session"
    specs = {
        "localizer": synth.write_localizer(root / "S01"),
        "t1w": synth.write_t1w(root / "S03"),
        "mpr": synth.write_t1w(root / "S04", description="t1_mprage_sag_p2_iso_MPR_tra", series_number=4,
                               image_type=("DERIVED", "PRIMARY", "MPR", "NORM"), start_s=10 * 3600 + 300),
        "phase": synth.write_t1w(root / "S06", description="t1_fl3d_sag", series_number=6,
                                 image_type=("ORIGINAL", "PRIMARY", "P", "ND"), start_s=10 * 3600 + 500),
        "sbref": synth.write_bold(root / "S07", description="ep2d_bold_rest_SBRef", n_volumes=1, series_number=7,
                                  start_s=10 * 3600 + 590),
        "bold": synth.write_bold(root / "S08", series_number=8),
    }
    (root / "README.txt").write_text("exported by the PACS\n")
    return root, specs
