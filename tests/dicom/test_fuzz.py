"""Fuzzing the DICOM reader and the heuristic loader (hypothesis): whatever the bytes, a corrupted
real DICOM file is read, ignored as a non-image object, or refused with our own error naming the
file; a heuristic document is loaded or refused with a HeuristicError — never a raw pydicom, struct
or yaml exception."""
from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hfsmri.dicom.heuristic import HeuristicError, load_heuristic
from hfsmri.dicom.scan import DicomFolderError, Series, check_complete, read_file

from .conftest import copy_real

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def real_bytes(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("real")
    return copy_real("siemens_dwi_1000.dcm.gz", d).read_bytes()[:200_000]  # header + start of pixels


@SETTINGS
@given(cut=st.integers(0, 200_000), flips=st.lists(st.tuples(st.integers(0, 200_000), st.integers(0, 255)), max_size=12))
def test_corrupted_real_dicom_gives_a_result_or_our_error(real_bytes, cut, flips):
    data = bytearray(real_bytes[:cut])
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    d = Path(tempfile.mkdtemp(prefix="hfsmri_fuzz_dcm_"))
    try:
        p = d / "x.dcm"
        p.write_bytes(bytes(data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                f, ds = read_file(p)
            except DicomFolderError as exc:
                assert str(exc).startswith(str(p))
                return
            if f is not None:
                s = Series(uid="u", files=[f], header=ds)
                _ = (s.n_slices, s.n_volumes, s.dims, s.field("names"), s.field("RepetitionTime"), s.b_max)
                try:
                    check_complete(s)
                except DicomFolderError:
                    pass
    finally:
        shutil.rmtree(d, ignore_errors=True)


_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=6),
                    st.sampled_from(["anat", "func", "T1w", "bold", "(", "[a-", "rest", "SeriesDescription"]))
_COND = st.one_of(_SCALAR, st.lists(_SCALAR, max_size=3),
                  st.dictionaries(st.sampled_from(["regex", "values", "min", "max", "exists", "bad"]), _SCALAR, max_size=3))
_MATCH = st.one_of(_SCALAR, st.dictionaries(st.sampled_from(["SeriesDescription", "ImageType", "n_volumes", "any",
                                                             "NoSuchField", "b_max"]), _COND, max_size=3))
_RULE = st.one_of(_SCALAR, st.fixed_dictionaries({}, optional={
    "name": st.one_of(_SCALAR, st.sampled_from(["r1", "r2", "localizer"])), "match": _MATCH, "unless": _MATCH,
    "skip": _SCALAR, "datatype": _SCALAR, "suffix": _SCALAR,
    "entities": st.one_of(_SCALAR, st.dictionaries(st.sampled_from(["task", "acq", "run", "x"]), _SCALAR, max_size=2))}))
_DOC = st.one_of(_SCALAR, st.fixed_dictionaries({}, optional={
    "extends": st.one_of(_SCALAR, st.sampled_from(["default", "none"])), "rules": st.one_of(_SCALAR, st.lists(_RULE, max_size=3)),
    "other": _SCALAR}))


@SETTINGS
@given(doc=_DOC)
def test_any_heuristic_document_loads_or_gives_our_error(tmp_path, doc):
    p = tmp_path / "h.yaml"
    p.write_text(yaml.safe_dump(doc))
    try:
        load_heuristic(p)
    except HeuristicError as exc:
        assert str(exc).startswith(str(p))
