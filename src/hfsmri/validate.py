"""Input validation of one subject's images before (header level) and inside (data level) its job.

Above the stages in the import order: it asks the diffusion stage's gradient reader
(:func:`hfsmri.dwi.gradients.read_gradients`) and the functional stage's slice-timing rules
(:mod:`hfsmri.func.slicetime`), so that :mod:`hfsmri.bids` (discovery) imports no stage.
"""
from __future__ import annotations

import logging

from .bids import SubjectInputs

log = logging.getLogger("hfsmri")


#: fewest BOLD volumes (after removing dummy scans) for resting-state metrics to mean anything
MIN_BOLD_VOLUMES = 30


def validate_inputs(si: SubjectInputs, dummy_scans: int = 5, read_data: bool = False,
                    slice_timing="auto") -> list:
    """Check one subject's inputs; returns a list of :class:`~hfsmri.errors.HfsmriError` (empty = fine).

    Header level (``read_data=False``, fast, done for every subject before any job starts): faults
    found during discovery (TR, EchoTime); every image's header dimensions agree with its data size
    and its affine is finite, non-degenerate and not sheared, with >= 2 voxels per spatial axis
    (:func:`hfsmri.io.load_image`); T1w is 3D, BOLD and DWI are 4D, BOLD has at least
    ``dummy_scans + MIN_BOLD_VOLUMES`` volumes and a valid ``SliceTiming`` when slice-timing
    correction will use it (``slice_timing``: auto/true/false, see :mod:`hfsmri.func.slicetime`);
    b-values/b-vectors match the DWI volume count, with no NaN or zero vector on a
    diffusion-weighted volume, no b >= 10 000, at least one b0 and one diffusion-weighted volume.
    qform/sform disagreements are not faults: they are added to ``si.notes``.
    Data level (``read_data=True``, done inside the subject's job): images decompress completely
    (not truncated), contain no NaN/inf and are not all zero.
    """
    from .errors import HfsmriError
    from .io import geometry_notes, load_image

    problems: list = list(si.problems)

    def check(fn):
        try:
            fn()
        except HfsmriError as exc:
            problems.append(exc)

    def image(path, ndim, what, min_volumes=None):
        img = load_image(path, ndim=ndim, what=what, min_volumes=min_volumes, check_finite=read_data)
        if not read_data:
            for note in geometry_notes(img, path, what):
                if note not in si.notes:
                    si.notes.append(note)
                    log.warning("%s: %s", si.key, note)
        return img

    if si.t1w is not None:
        check(lambda: image(si.t1w, 3, "T1w"))
    if si.bold is not None:
        check(lambda: _check_bold(image(si.bold, 4, "BOLD", dummy_scans + MIN_BOLD_VOLUMES), si, slice_timing))
    if si.fmriprep_bold is not None:
        check(lambda: image(si.fmriprep_bold, 4, "fMRIPrep BOLD", dummy_scans + MIN_BOLD_VOLUMES))
    if si.fmriprep_mask is not None:
        check(lambda: image(si.fmriprep_mask, 3, "fMRIPrep brain mask"))
    for dwi, bval, bvec, what in ((si.dwi, si.bval, si.bvec, "DWI"),
                                  (si.qsiprep_dwi, si.qsiprep_bval, si.qsiprep_bvec, "QSIPrep DWI")):
        if dwi is None:
            continue

        def dwi_check(dwi=dwi, bval=bval, bvec=bvec, what=what):
            img = image(dwi, 4, what)
            from .dwi.gradients import read_gradients
            from .errors import InputDataError

            g = read_gradients(bval, bvec, n_volumes=int(img.shape[3]))
            if g.n_b0 == 0:
                raise InputDataError(f"no b0 volume (b <= {g.b0_threshold:g} s/mm²): the mean b0 is needed for the "
                                     "brain mask and the registration", path=bval)

        check(dwi_check)
    return problems


def _check_bold(img, si: SubjectInputs, slice_timing) -> None:
    """SliceTiming of the raw BOLD, when slice-timing correction will use it."""
    from .errors import InputDataError
    from .func.slicetime import slice_axis, slice_timing_mode, validate_slice_timing

    mode = slice_timing_mode(slice_timing)
    times = si.bold_meta.get("SliceTiming")
    side = si.bold_json or si.bold
    if mode == "false" or si.tr is None or si.fmriprep_bold is not None:  # fMRIPrep outputs: its own STC
        return
    if times is None:
        if mode == "true":
            raise InputDataError("preprocessing.func.slice_timing is true but the sidecar has no SliceTiming",
                                 path=side, field="SliceTiming")
        return
    axis, _ = slice_axis(si.bold_meta.get("SliceEncodingDirection"), path=side)
    validate_slice_timing(times, si.tr, int(img.shape[axis]), path=side)
