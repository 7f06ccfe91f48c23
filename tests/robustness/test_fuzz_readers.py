"""Fuzzing the user-facing readers (hypothesis): participants.tsv, study.yaml, .bval/.bvec.

Whatever the bytes, a reader either returns or raises our own clear error type
(:class:`hfsmri.errors.HfsmriError`, which names the file) — never a raw pandas/numpy/yaml error.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hfsmri.errors import HfsmriError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# text built from the characters these files are made of, plus some noise
_TSV_ALPHABET = st.sampled_from(list("sub-0123456789\t\n HFSCabcLRB.n/a,;\"'#:-_") + ["\r", "é", "\x00"])
_TSV_LINE = st.lists(st.text(_TSV_ALPHABET, max_size=12), min_size=0, max_size=6).map("\t".join)
_TSV = st.one_of(st.lists(_TSV_LINE, max_size=6).map("\n".join),
                 st.lists(_TSV_LINE, max_size=4).map(lambda rows: "participant_id\tgroup\tage\n" + "\n".join(rows)))
_YAML_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True),
                         st.text(max_size=8), st.sampled_from(["group", "HFS", "HC", "R", "L", "age", "../x"]))
_YAML_KEYS = st.sampled_from(["group_column", "groups", "covariates", "clinical", "affected_side_column",
                              "flip_to", "sessions", "site_column", "analyses", "stats", "harmonize",
                              "preprocessing", "unknown_key"])
_YAML_VALUE = st.recursive(_YAML_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                   st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=6)
_STUDY = st.dictionaries(_YAML_KEYS, _YAML_VALUE, max_size=6)
_NUM_ALPHABET = st.sampled_from(list("0123456789 .-e+\t\nnaNinf,") + ["\r"])


def _tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="hfsmri_fuzz_"))


def _bids_with(participants: str) -> Path:
    root = _tmpdir()
    (root / "participants.tsv").write_text(participants, encoding="utf-8", errors="surrogatepass")
    (root / "dataset_description.json").write_text('{"Name": "fuzz", "BIDSVersion": "1.8.0"}')
    return root


def _read_study(participants: str, cfg=None, yaml_text: str | None = None) -> None:
    """``Study.from_bids`` on a BIDS root with this participants.tsv and either the study mapping
    ``cfg`` or ``yaml_text`` written to study.yaml; our own error type is the only one allowed."""
    from hfsmri.study import Study

    root = _bids_with(participants)
    try:
        if yaml_text is not None:
            cfg = root / "study.yaml"
            cfg.write_text(yaml_text, encoding="utf-8", errors="surrogatepass")
        Study.from_bids(root, cfg, check_sessions=False)
    except HfsmriError:
        pass
    finally:
        shutil.rmtree(root, ignore_errors=True)


@SETTINGS
@given(_TSV)
def test_participants_tsv_fuzz(text):
    _read_study(text, {"group_column": "group"})


VALID_PARTICIPANTS = ("participant_id\tgroup\tage\tsex\taffected_side\tseverity\n"
                      "sub-01\tHFS\t50\tF\tL\t2\nsub-02\tHFS\t55\tM\tR\t3\n"
                      "sub-03\tHC\t52\tF\tn/a\t0\nsub-04\tHC\t49\tM\tn/a\t0\n")


@SETTINGS
@given(_STUDY)
def test_study_yaml_fuzz_as_mapping(cfg):
    _read_study(VALID_PARTICIPANTS, cfg)


@SETTINGS
@given(st.text(max_size=200))
def test_study_yaml_fuzz_as_text(text):
    _read_study(VALID_PARTICIPANTS, yaml_text=text)


@SETTINGS
@given(st.text(_NUM_ALPHABET, max_size=120), st.text(_NUM_ALPHABET, max_size=240),
       st.one_of(st.none(), st.integers(0, 12)))
def test_bval_bvec_fuzz(bval, bvec, n_volumes):
    from hfsmri.dwi.gradients import read_gradients

    root = _tmpdir()
    try:
        (root / "dwi.bval").write_text(bval)
        (root / "dwi.bvec").write_text(bvec)
        read_gradients(root / "dwi.bval", root / "dwi.bvec", n_volumes=n_volumes)
    except HfsmriError:
        pass
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_fuzz_found_nothing_on_a_known_bad_case():
    """Sanity check of the harness: a clearly broken bvec raises our error type, naming the file."""
    from hfsmri.dwi.gradients import read_gradients

    root = _tmpdir()
    try:
        (root / "dwi.bval").write_text("0 1000 1000\n")
        (root / "dwi.bvec").write_text("1 0\n0 1\n")
        with pytest.raises(HfsmriError) as exc:
            read_gradients(root / "dwi.bval", root / "dwi.bvec", n_volumes=3)
        assert "dwi.bvec" in str(exc.value) or "dwi.bval" in str(exc.value)
    finally:
        shutil.rmtree(root, ignore_errors=True)
