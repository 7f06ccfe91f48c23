"""DICOM series written with pydicom for the import tests (classic single-frame MR Image Storage).

Pixel values encode the voxel: value = 1 + volume * (rows*cols*slices) + slice * (rows*cols)
+ row * cols + column, so a test can map every NIfTI voxel back to the DICOM pixel it came from and
check the geometry against the ImagePositionPatient / ImageOrientationPatient / PixelSpacing written
here. Slices of 2D acquisitions get AcquisitionTime = series start + volume * TR + slice time, as a
Siemens scanner writes them (dcm2niix derives SliceTiming from these for non-mosaic Siemens data).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class SeriesSpec:
    """What was written (the truth the tests compare dcm2niix's outputs with)."""

    folder: Path
    series_uid: str
    rows: int
    cols: int
    n_slices: int
    n_volumes: int
    iop: tuple
    ipp0: tuple
    spacing: tuple          # (row spacing, column spacing, slice spacing) in mm
    tr_ms: float
    te_ms: float
    slice_times_ms: list | None
    files: list

    def dicom_world_ras(self, vol: int, k: int, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """RAS+ world mm of pixel (row r, column c) of slice k (DICOM geometry, LPS -> RAS)."""
        row_dir, col_dir = np.array(self.iop[:3]), np.array(self.iop[3:])
        normal = np.cross(row_dir, col_dir)
        ipp = np.array(self.ipp0) + k * self.spacing[2] * normal
        lps = ipp[None, :] + np.outer(c, row_dir) * self.spacing[1] + np.outer(r, col_dir) * self.spacing[0]
        return lps * np.array([-1.0, -1.0, 1.0])

    def decode(self, values: np.ndarray):
        """(volume, slice, row, column) of pixel values written by :func:`write_series`."""
        v = values.astype(np.int64) - 1
        per_vol = self.rows * self.cols * self.n_slices
        vol, rest = np.divmod(v, per_vol)
        k, rest = np.divmod(rest, self.rows * self.cols)
        r, c = np.divmod(rest, self.cols)
        return vol, k, r, c


def _time(seconds: float) -> str:
    hh, rem = divmod(seconds, 3600)
    mm, ss = divmod(rem, 60)
    return f"{int(hh):02d}{int(mm):02d}{ss:09.6f}"


def write_series(folder, shape=(16, 20, 12), n_volumes=1, description="t1_mprage_sag_p2_iso",
                 protocol=None, sequence="*tfl3d1_16ns", scanning="GR\\IR", acq3d=True, tr_ms=2300.0,
                 te_ms=2.98, iop=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), ipp0=(-90.0, -120.0, -60.0),
                 spacing=(1.0, 1.0, 1.0), slice_times_ms=None, manufacturer="SIEMENS",
                 image_type=("ORIGINAL", "PRIMARY", "M", "ND"), patient_id="HFS001", study_uid=None,
                 series_number=2, start_s=10 * 3600.0, images_in_acquisition=None, skip_instances=(),
                 file_prefix="IM") -> SeriesSpec:
    """Write one classic MR series (``shape`` = rows, columns, slices) and return what was written."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, cols, nsl = shape
    study_uid = study_uid or "1.2.826.0.1.3680043.8.498.1"
    series_uid = generate_uid()
    row_dir, col_dir = np.array(iop[:3], float), np.array(iop[3:], float)
    normal = np.cross(row_dir, col_dir)
    files, inst = [], 0
    for v in range(n_volumes):
        for k in range(nsl):
            inst += 1
            if inst in skip_instances:
                continue
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.Manufacturer = "MR", manufacturer
            ds.PatientID, ds.PatientName, ds.PatientPosition = patient_id, "Anon^Test", "HFS"
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber = study_uid, series_uid, series_number
            ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20240301"
            ds.SeriesTime = _time(start_s)
            offset = (slice_times_ms[k] / 1000.0) if slice_times_ms is not None else 0.0
            ds.AcquisitionTime = _time(start_s + v * tr_ms / 1000.0 + offset)
            ds.AcquisitionNumber, ds.InstanceNumber = v + 1, inst
            ds.SeriesDescription, ds.ProtocolName = description, protocol or description
            ds.ImageType = list(image_type)
            ds.MRAcquisitionType = "3D" if acq3d else "2D"
            ds.ScanningSequence, ds.SequenceVariant, ds.SequenceName = scanning, "SK\\SP", sequence
            ds.RepetitionTime, ds.EchoTime, ds.FlipAngle = tr_ms, te_ms, 9.0
            ds.MagneticFieldStrength = 3.0
            ds.SliceThickness = ds.SpacingBetweenSlices = spacing[2]
            ds.PixelSpacing = [spacing[0], spacing[1]]
            pos = np.array(ipp0, float) + k * spacing[2] * normal
            ds.ImagePositionPatient = [float(x) for x in pos]
            ds.ImageOrientationPatient = [float(x) for x in iop]
            ds.SliceLocation = float(pos @ normal)
            if images_in_acquisition is not None:
                ds.ImagesInAcquisition = images_in_acquisition
            ds.Rows, ds.Columns = rows, cols
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.InPlanePhaseEncodingDirection = "COL"
            base = 1 + v * rows * cols * nsl + k * rows * cols
            arr = (base + np.arange(rows * cols).reshape(rows, cols)).astype(np.uint16)
            ds.PixelData = arr.tobytes()
            path = folder / f"{file_prefix}{series_number:03d}_{inst:05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
    return SeriesSpec(folder=folder, series_uid=series_uid, rows=rows, cols=cols, n_slices=nsl,
                      n_volumes=n_volumes, iop=tuple(iop), ipp0=tuple(ipp0), spacing=tuple(spacing), tr_ms=tr_ms,
                      te_ms=te_ms, slice_times_ms=list(slice_times_ms) if slice_times_ms is not None else None,
                      files=files)


#: interleaved slice order (odd slices first, as Siemens for an even slice count), 8 slices, TR 2 s
BOLD_SLICE_TIMES_MS = [1000.0, 0.0, 1250.0, 250.0, 1500.0, 500.0, 1750.0, 750.0]


def oblique_iop(degrees: float = 12.0) -> tuple:
    """A sagittal-ish oblique orientation (rows along anterior->posterior tilted by ``degrees``)."""
    a = np.deg2rad(degrees)
    row = (0.0, np.cos(a), -np.sin(a))
    col = (0.0, np.sin(a), np.cos(a))
    col = tuple(-x for x in col)  # rows go down (inferior), as a sagittal acquisition
    return tuple(float(x) for x in row + col)


def write_t1w(folder, **kw) -> SeriesSpec:
    """A small oblique sagittal 3D T1w (MPRAGE-like) series."""
    args = dict(shape=(16, 20, 12), description="t1_mprage_sag_p2_iso", iop=oblique_iop(12.0),
                ipp0=(-40.0, -100.0, 60.0), spacing=(1.1, 1.2, 1.3), series_number=3, start_s=10 * 3600 + 60)
    args.update(kw)
    return write_series(folder, **args)


def write_bold(folder, **kw) -> SeriesSpec:
    """A small axial 2D resting-state BOLD series (12 volumes, interleaved slice times, TR 2 s)."""
    args = dict(shape=(10, 12, 8), n_volumes=12, description="ep2d_bold_rest", sequence="epfid2d1_64",
                scanning="EP", acq3d=False, tr_ms=2000.0, te_ms=30.0, spacing=(3.0, 3.0, 3.5),
                slice_times_ms=BOLD_SLICE_TIMES_MS, series_number=5, start_s=10 * 3600 + 600,
                image_type=("ORIGINAL", "PRIMARY", "M", "ND"))
    args.update(kw)
    return write_series(folder, **args)


def write_localizer(folder, **kw) -> SeriesSpec:
    args = dict(shape=(8, 8, 3), description="AAHScout", sequence="*fl2d1", acq3d=False, tr_ms=8.6, te_ms=4.0,
                series_number=1, start_s=10 * 3600.0)
    args.update(kw)
    return write_series(folder, **args)
