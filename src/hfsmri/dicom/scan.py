"""Scanning a DICOM folder: read every file's header, group the images into series, and check
what can be checked before conversion (one subject, complete series, readable files).

Reading is header-only (pydicom, ``stop_before_pixels``); the pixel data are read by dcm2niix.
What is read per file: identifiers (PatientID, StudyInstanceUID, SeriesInstanceUID,
SOPInstanceUID), InstanceNumber, ImagePositionPatient (per frame for enhanced multi-frame files),
echo, image size, b-value (standard, Siemens, GE, Philips tags), acquisition date/time, and where
the pixel data start (to catch files whose pixel data are missing or cut short).

Units: times in seconds since the epoch (only used to order series), positions in mm (DICOM
patient coordinates, LPS), b-values in s/mm².
"""
from __future__ import annotations

import datetime as _dt
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputDataError

#: file extensions that promise a DICOM file: such a file that cannot be read is an error (other
#: files that are not DICOM, e.g. README.txt or screenshots, are ignored and counted)
DICOM_EXTENSIONS = (".dcm", ".ima", ".dicom", ".dic")
#: SOP classes that are not images (DICOMDIR, structured reports, presentation states, raw data)
_NON_IMAGE_SOP_PREFIXES = ("1.2.840.10008.1.3.10", "1.2.840.10008.5.1.4.1.1.88", "1.2.840.10008.5.1.4.1.1.11",
                           "1.2.840.10008.5.1.4.1.1.66", "1.2.840.10008.5.1.4.1.1.104")
#: positions are compared after rounding to this many decimals (mm)
_POS_DECIMALS = 2
_ENCAPSULATED = 0xFFFFFFFF


class DicomFolderError(InputDataError):
    """A DICOM folder cannot be imported as it is (empty, mixed subjects, incomplete series, ...)."""


@dataclass
class DicomFile:
    """What one DICOM file contributes to its series."""

    path: Path
    sop_uid: str
    patient_id: str
    study_uid: str
    instance: int | None
    positions: list            # one rounded ImagePositionPatient per frame (None when absent)
    echo: float | None         # EchoTime (ms) or EchoNumbers, to count echoes
    size: tuple                # (Rows, Columns)
    image_type: tuple
    b_value: float | None
    time: float | None         # acquisition date+time, seconds since the epoch
    pixel_problem: str | None  # why the pixel data are unusable, or None


@dataclass
class Series:
    """The files of one SeriesInstanceUID, with the header of its first file (by InstanceNumber)."""

    uid: str
    files: list
    header: object             # pydicom Dataset of the first file (no pixel data)
    duplicates: int = 0        # files dropped because their SOPInstanceUID was seen before
    order: int = 0             # 1-based acquisition order within the folder (set by scan_folder)

    # ---------------------------------------------------------------- descriptive fields
    @property
    def number(self) -> int | None:
        return _as_int(self.header.get("SeriesNumber"))

    @property
    def description(self) -> str:
        return str(self.header.get("SeriesDescription", "") or self.header.get("ProtocolName", "") or "")

    @property
    def n_files(self) -> int:
        return len(self.files)

    @property
    def mosaic(self) -> bool:
        return any(str(t).upper() == "MOSAIC" for t in self.files[0].image_type)

    @property
    def multiframe(self) -> bool:
        return any(len(f.positions) > 1 for f in self.files)

    @property
    def n_frames(self) -> int:
        return sum(len(f.positions) for f in self.files)

    @property
    def n_positions(self) -> int:
        return len({p for f in self.files for p in f.positions})

    @property
    def n_echoes(self) -> int:
        return max(1, len({f.echo for f in self.files if f.echo is not None}))

    @property
    def n_slices(self) -> int:
        """Slices per volume: the mosaic tile count for Siemens mosaics, else distinct positions."""
        if self.mosaic:
            n = _mosaic_count(self.header)
            if n:
                return n
        return max(1, self.n_positions)

    @property
    def n_volumes(self) -> int:
        """Volumes (time points / diffusion directions): frames per slice position, per echo (a
        Siemens mosaic file holds one whole volume)."""
        if self.mosaic:
            return max(1, int(round(self.n_files / self.n_echoes)))
        per_position = self.n_frames / max(1, self.n_positions)
        return max(1, int(round(per_position / self.n_echoes)))

    @property
    def b_max(self) -> float | None:
        vals = [f.b_value for f in self.files if f.b_value is not None]
        return max(vals) if vals else None

    @property
    def time(self) -> float | None:
        times = [f.time for f in self.files if f.time is not None]
        return min(times) if times else None

    @property
    def dims(self) -> str:
        """``columns x rows x slices x volumes`` as dcm2niix prints it (mosaics: tile size)."""
        rows, cols = self.files[0].size
        if self.mosaic:
            n = self.n_slices
            import math

            tiles = math.ceil(math.sqrt(n)) if n else 1
            rows, cols = rows // tiles, cols // tiles
        text = f"{cols}x{rows}x{self.n_slices}"
        return text + (f"x{self.n_volumes}" if self.n_volumes > 1 else "")

    @property
    def image_type(self) -> tuple:
        return self.files[0].image_type

    @property
    def derived(self) -> bool:
        return any(str(t).upper() in ("DERIVED", "SECONDARY") for t in self.image_type)

    def field(self, name: str):
        """Value of a heuristic field: a computed one (see :data:`COMPUTED_FIELDS`) or a DICOM
        keyword of the first file (for enhanced multi-frame files, also searched in the shared and
        first per-frame functional groups). Missing -> None."""
        if name in COMPUTED_FIELDS:
            return COMPUTED_FIELDS[name][0](self)
        return header_value(self.header, name)


def _names(s: Series) -> str:
    parts = [header_value(s.header, k) for k in ("SeriesDescription", "ProtocolName", "SequenceName")]
    return " | ".join(str(p) for p in parts if p not in (None, ""))


#: fields computed from the whole series (name -> (function, description)); usable in heuristics
COMPUTED_FIELDS = {
    "names": (_names, "SeriesDescription | ProtocolName | SequenceName, joined (text)"),
    "n_files": (lambda s: s.n_files, "number of DICOM files of the series"),
    "n_slices": (lambda s: s.n_slices, "slices per volume (mosaic tiles for Siemens mosaics)"),
    "n_volumes": (lambda s: s.n_volumes, "volumes: time points or diffusion directions"),
    "n_echoes": (lambda s: s.n_echoes, "number of distinct echo times"),
    "b_max": (lambda s: s.b_max, "largest b-value in the headers (s/mm²), absent when none"),
    "mosaic": (lambda s: s.mosaic, "Siemens mosaic (true/false)"),
    "multiframe": (lambda s: s.multiframe, "enhanced multi-frame DICOM (true/false)"),
}

#: enhanced multi-frame files keep some classic attributes under another name
_ENHANCED_ALIASES = {"EchoTime": "EffectiveEchoTime", "SequenceName": "PulseSequenceName"}


def header_value(ds, keyword: str):
    """A DICOM attribute as a plain Python value (str, float, int, list), or None when absent."""
    value = _plain(ds.get(keyword)) if keyword in ds else None
    if value in (None, "") and "SharedFunctionalGroupsSequence" in ds:
        value = _from_groups(ds, _ENHANCED_ALIASES.get(keyword, keyword))
        if value in (None, "") and keyword in _ENHANCED_ALIASES:
            value = _from_groups(ds, keyword)
    if value in (None, "") and keyword in _ENHANCED_ALIASES and _ENHANCED_ALIASES[keyword] in ds:
        value = _plain(ds.get(_ENHANCED_ALIASES[keyword]))
    return None if value == "" else value


def _from_groups(ds, keyword: str):
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = ds.get(group)
        if not seq:
            continue
        for elem in seq[0]:
            if elem.VR == "SQ" and len(elem.value) and keyword in elem.value[0]:
                return _plain(elem.value[0].get(keyword))
    return None


def _plain(value):
    from pydicom.multival import MultiValue
    from pydicom.valuerep import DSfloat, IS, PersonName

    if value is None:
        return None
    if hasattr(value, "value") and hasattr(value, "VR"):  # a DataElement
        value = value.value
    if isinstance(value, (MultiValue, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (DSfloat, float)):
        return float(value)
    if isinstance(value, (IS, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, bytes):
        return None
    if isinstance(value, str):
        return value.strip()
    return value if isinstance(value, (bool, int, float)) else None


def _as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _mosaic_count(ds) -> int | None:
    """Siemens NumberOfImagesInMosaic: private tag (0019,100A), else the CSA image header."""
    elem = ds.get((0x0019, 0x100A))
    n = _as_int(elem.value) if elem is not None and not isinstance(elem.value, bytes) else None
    if elem is not None and isinstance(elem.value, bytes) and len(elem.value) >= 2:
        n = struct.unpack("<H", elem.value[:2])[0]
    if n:
        return n
    try:
        import warnings

        with warnings.catch_warnings():  # nibabel warns that its DICOM readers are experimental
            warnings.simplefilter("ignore")
            from nibabel.nicom import csareader

            return csareader.get_n_mosaic(csareader.get_csa_header(ds, "image"))
    except Exception:
        return None


# ---------------------------------------------------------------- per-file reading
def _b_value(ds) -> float | None:
    """b-value (s/mm²) from the standard tag or the Siemens, GE or Philips private tags."""
    v = ds.get("DiffusionBValue")
    if v is not None:
        return _as_float(v)
    manu = str(ds.get("Manufacturer", "")).upper()
    tags = []
    if "SIEMENS" in manu:
        tags = [(0x0019, 0x100C)]
    elif "GE" in manu:
        tags = [(0x0043, 0x1039)]
    elif "PHILIPS" in manu:
        tags = [(0x2001, 0x1003)]
    for tag in tags:
        elem = ds.get(tag)
        if elem is None:
            continue
        val = elem.value
        if isinstance(val, bytes):
            try:
                val = val.decode("ascii", "ignore").strip("\x00 ").split("\\")
            except Exception:
                continue
        if isinstance(val, (list, tuple)) or type(val).__name__ == "MultiValue":
            val = val[0] if len(val) else None
        b = _as_float(val)
        if b is not None and "GE" in manu and b >= 1e9:   # GE adds 1e9 offsets to flag values
            b = b % 1e9
        return b
    pf = ds.get("PerFrameFunctionalGroupsSequence")
    if pf:
        vals = []
        for item in pf:
            seq = item.get("MRDiffusionSequence")
            if seq and "DiffusionBValue" in seq[0]:
                vals.append(float(seq[0].DiffusionBValue))
        return max(vals) if vals else None
    return None


def _datetime(date, time) -> float | None:
    if not time:
        return None
    t = str(time).strip()
    d = str(date).strip() if date else "19700101"
    try:
        hh, mm = int(t[0:2]), int(t[2:4]) if len(t) >= 4 else 0
        ss = float(t[4:]) if len(t) > 4 else 0.0
        day = _dt.datetime.strptime(d[:8], "%Y%m%d")
    except ValueError:
        return None
    return day.replace(tzinfo=_dt.timezone.utc).timestamp() + hh * 3600 + mm * 60 + ss


def _file_time(ds) -> float | None:
    adt = ds.get("AcquisitionDateTime")
    if adt:
        s = str(adt)
        return _datetime(s[:8], s[8:])
    date = ds.get("AcquisitionDate") or ds.get("SeriesDate") or ds.get("StudyDate")
    time = ds.get("AcquisitionTime") or ds.get("SeriesTime") or ds.get("ContentTime")
    t = _datetime(date, time)
    if t is None and "PerFrameFunctionalGroupsSequence" in ds:
        try:
            s = str(ds.PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0].FrameAcquisitionDateTime)
            t = _datetime(s[:8], s[8:])
        except (AttributeError, IndexError):
            pass
    return t


def _round_pos(value):
    try:
        return tuple(round(float(x), _POS_DECIMALS) for x in value)
    except (TypeError, ValueError):
        return None


def _positions(ds) -> list:
    pf = ds.get("PerFrameFunctionalGroupsSequence")
    if pf:
        out = []
        for item in pf:
            try:
                out.append(_round_pos(item.PlanePositionSequence[0].ImagePositionPatient))
            except (AttributeError, IndexError):
                out.append(None)
        return out
    return [_round_pos(ds.get("ImagePositionPatient"))]


def _echo(ds):
    te = ds.get("EchoTime")
    if te not in (None, ""):
        return _as_float(te)
    pf = ds.get("PerFrameFunctionalGroupsSequence")
    if pf:
        try:
            return _as_float(pf[0].MREchoSequence[0].EffectiveEchoTime)
        except (AttributeError, IndexError):
            return None
    en = ds.get("EchoNumbers")
    return _as_float(en) if en is not None and not isinstance(en, (list, bytes)) else None


def _pixel_problem(fh, ds, pos: int, size: int) -> str | None:
    """Check that the pixel data element exists and is as long as the image needs (uncompressed)."""
    rows, cols = _as_int(ds.get("Rows")), _as_int(ds.get("Columns"))
    tsuid = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "1.2.840.10008.1.2")
    if tsuid == "1.2.840.10008.1.2.1.99":  # deflated: positions are not file offsets
        return None
    fh.seek(pos)
    head = fh.read(12)
    big = tsuid == "1.2.840.10008.1.2.2"
    if len(head) < 8:
        return "no pixel data (header-only file)"
    group, elem = struct.unpack(">HH" if big else "<HH", head[:4])
    if (group, elem) != (0x7FE0, 0x0010):
        if (group, elem) in ((0x7FE0, 0x0008), (0x7FE0, 0x0009)):
            return None  # float / double float pixel data
        return "no pixel data (header-only file)"
    implicit = tsuid == "1.2.840.10008.1.2"
    if implicit:
        length, start = struct.unpack("<I", head[4:8])[0], pos + 8
    else:
        if len(head) < 12:
            return "pixel data cut short (file truncated)"
        length, start = struct.unpack(">I" if big else "<I", head[8:12])[0], pos + 12
    if length == _ENCAPSULATED:
        return None  # compressed: dcm2niix checks the fragments
    if start + length > size:
        return f"pixel data cut short (file truncated: {size - start} of {length} bytes)"
    if rows and cols:
        frames = _as_int(ds.get("NumberOfFrames")) or 1
        need = rows * cols * (_as_int(ds.get("SamplesPerPixel")) or 1) * ((_as_int(ds.get("BitsAllocated")) or 16) // 8) * frames
        if length < need:
            return f"pixel data hold {length} bytes, the image needs {need}"
    return None


def _is_image_class(sop_class: str) -> bool:
    from pydicom.uid import UID

    return "Image Storage" in UID(sop_class).name


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return path.suffix.lower() in DICOM_EXTENSIONS
    if head[128:132] == b"DICM":
        return True
    # files without the 128-byte preamble (old exports) start with group 0002 or 0008
    return head[:2] in (b"\x02\x00", b"\x08\x00") or path.suffix.lower() in DICOM_EXTENSIONS


def read_file(path: Path):
    """(DicomFile, header Dataset) for an image file; (None, reason) for a DICOM that is not an
    image (DICOMDIR, report, presentation state). Raises DicomFolderError when it cannot be read."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            try:
                ds = pydicom.dcmread(fh, stop_before_pixels=True)
            except InvalidDicomError:
                fh.seek(0)
                ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
            pos = fh.tell()
            sop_class = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None),
                                                                   "MediaStorageSOPClassUID", "") or "")
            if not sop_class:
                raise DicomFolderError("cannot read the DICOM header (no SOP class: truncated, corrupt or not "
                                       "DICOM)", path=path)
            if "Rows" not in ds or "Columns" not in ds:
                if _is_image_class(sop_class):  # pydicom reads a cut-off header without complaint
                    raise DicomFolderError("DICOM image header is incomplete (no Rows/Columns): truncated or "
                                           "corrupt file", path=path)
                return None, "not an image (DICOMDIR, report, raw data or other non-image object)"
            if sop_class.startswith(_NON_IMAGE_SOP_PREFIXES):
                return None, "not an image"
            if "SeriesInstanceUID" not in ds:
                raise DicomFolderError("DICOM image without SeriesInstanceUID", path=path)
            problem = _pixel_problem(fh, ds, pos, size)
        it = _plain(ds.get("ImageType")) or []
        if isinstance(it, str):
            it = it.split("\\")
        f = DicomFile(path=path, sop_uid=str(ds.get("SOPInstanceUID", "") or path),
                      patient_id=str(ds.get("PatientID", "") or ""),
                      study_uid=str(ds.get("StudyInstanceUID", "") or ""),
                      instance=_as_int(ds.get("InstanceNumber")), positions=_positions(ds), echo=_echo(ds),
                      size=(_as_int(ds.get("Rows")), _as_int(ds.get("Columns"))),
                      image_type=tuple(str(x).strip().upper() for x in it),
                      b_value=_b_value(ds), time=_file_time(ds), pixel_problem=problem)
    except DicomFolderError:
        raise
    except Exception as exc:  # pydicom raises many types for corrupt files
        raise DicomFolderError(f"cannot read the DICOM header ({type(exc).__name__}: {exc})", path=path) from None
    return f, ds


@dataclass
class ScanResult:
    """Everything found under a DICOM folder."""

    root: Path
    series: list                                 # Series, in acquisition order
    ignored: list = field(default_factory=list)  # files that are not DICOM
    non_image: int = 0                           # DICOM objects that are not images
    n_files: int = 0                             # every file looked at



def list_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` (recursively, sorted; hidden files and folders skipped)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                out.append(Path(dirpath) / name)
    return out


def scan_folder(root: str | Path) -> ScanResult:
    """Read every DICOM header under ``root`` and group the images into series.

    Raises :class:`DicomFolderError` when the folder does not exist, is empty, holds no DICOM
    image, holds a file that claims to be DICOM but cannot be read, or mixes subjects/visits.
    """
    root = Path(root)
    if not root.exists():
        raise DicomFolderError("DICOM folder does not exist", path=root)
    if not root.is_dir():
        raise DicomFolderError("not a folder (give the folder that holds the subject's DICOM files)", path=root)
    files = list_files(root)
    if not files:
        raise DicomFolderError("DICOM folder is empty", path=root)
    by_uid: dict[str, list] = {}
    first: dict[str, tuple] = {}  # uid -> (sort key, header): only the first file's header is kept
    ignored, non_image = [], 0
    for path in files:
        if not _looks_like_dicom(path):
            ignored.append(path)
            continue
        f, ds = read_file(path)
        if f is None:
            non_image += 1
            continue
        uid = str(ds.SeriesInstanceUID)
        by_uid.setdefault(uid, []).append(f)
        key = _file_key(f)
        if uid not in first or key < first[uid][0]:
            first[uid] = (key, ds)
    if not by_uid:
        examples = ", ".join(p.name for p in ignored[:3])
        what = f"{len(files)} file(s) ({examples}{', ...' if len(ignored) > 3 else ''})" if ignored else \
            f"{len(files)} file(s)"
        raise DicomFolderError(f"no DICOM images found among {what}", path=root)
    series = []
    for uid, items in by_uid.items():
        items.sort(key=_file_key)
        seen, kept = set(), []
        for f in items:
            if f.sop_uid not in seen:
                seen.add(f.sop_uid)
                kept.append(f)
        series.append(Series(uid=uid, files=kept, header=first[uid][1], duplicates=len(items) - len(kept)))
    _check_one_subject(root, [f for s in series for f in s.files])
    series = order_series(series)
    return ScanResult(root=root, series=series, ignored=ignored, non_image=non_image, n_files=len(files))


def _file_key(f: DicomFile):
    return (f.instance if f.instance is not None else 1 << 30, str(f.path))


def order_series(series: list) -> list:
    """Acquisition order: by first acquisition time when every series has one, else by
    SeriesNumber (then UID, for a stable order). Sets ``Series.order`` (1-based)."""
    have_time = all(s.time is not None for s in series)

    def key(s):
        num = s.number if s.number is not None else 1 << 30
        return ((s.time, num, s.uid) if have_time else (num, s.uid))

    out = sorted(series, key=key)
    for i, s in enumerate(out, 1):
        s.order = i
    return out


def _check_one_subject(root: Path, files: list) -> None:
    """One DICOM folder = one subject's one visit: a single PatientID and StudyInstanceUID."""
    for attr, keyword, what in (("patient_id", "PatientID", "patients"),
                                ("study_uid", "StudyInstanceUID", "studies (scanner visits)")):
        found: dict[str, list] = {}
        for f in files:
            found.setdefault(getattr(f, attr), []).append(f.path)
        if len(found) > 1:
            parts = []
            for val, paths in sorted(found.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:4]:
                shown = repr(val)
                parts.append(f"{keyword} {shown} in {len(paths)} file(s), e.g. {paths[0].relative_to(root)}")
            raise DicomFolderError(
                f"files of {len(found)} different {what}: " + "; ".join(parts)
                + ". Import one subject's visit at a time (one folder per subject and session)", path=root)


# ---------------------------------------------------------------- completeness of one series
def check_complete(s: Series) -> None:
    """Raise :class:`DicomFolderError` naming the series when its files are unusable or incomplete:
    unreadable pixel data, images of different sizes, gaps in InstanceNumber, slice positions with
    fewer images than the others, or fewer files than ImagesInAcquisition says were made."""
    name = series_label(s)
    folder = _common_folder([f.path for f in s.files])
    bad = [f for f in s.files if f.pixel_problem]
    if bad:
        eg = "; ".join(f"{f.path.name}: {f.pixel_problem}" for f in bad[:3])
        raise DicomFolderError(f"{name}: {len(bad)} of {s.n_files} file(s) have unusable pixel data ({eg})",
                               path=folder)
    sizes = Counter(f.size for f in s.files)
    if len(sizes) > 1:
        desc = ", ".join(f"{c}x{r} in {n} file(s)" for (r, c), n in sizes.most_common())
        raise DicomFolderError(f"{name}: images of different sizes in one series ({desc})", path=folder)
    inst = sorted({f.instance for f in s.files if f.instance is not None})
    if len(inst) == s.n_files and inst:
        missing = sorted(set(range(inst[0], inst[-1] + 1)) - set(inst))
        if missing:
            eg = ", ".join(str(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise DicomFolderError(f"{name}: missing slices: InstanceNumber runs {inst[0]}..{inst[-1]} but "
                                   f"{len(missing)} are absent ({eg})", path=folder)
    counts = Counter(p for f in s.files for p in f.positions if p is not None)
    if counts and not s.mosaic and len(set(counts.values())) > 1:
        full = max(counts.values())
        short = [p for p, c in counts.items() if c < full]
        raise DicomFolderError(f"{name}: missing slices: {len(short)} of {len(counts)} slice positions have fewer "
                               f"images than the others ({min(counts.values())} instead of {full}), e.g. the "
                               f"slice at {list(short[0])} mm", path=folder)
    n_acq = _as_int(s.header.get("ImagesInAcquisition"))
    if n_acq and not s.mosaic and not s.multiframe and s.n_files < n_acq:
        raise DicomFolderError(f"{name}: missing slices: {s.n_files} file(s) but ImagesInAcquisition is "
                               f"{n_acq}", path=folder)


def series_label(s: Series) -> str:
    num = s.number
    return f"series {num if num is not None else '?'} ({s.description or 'no description'})"


def _common_folder(paths) -> Path:
    try:
        return Path(os.path.commonpath([str(p.parent) for p in paths]))
    except ValueError:
        return paths[0].parent
