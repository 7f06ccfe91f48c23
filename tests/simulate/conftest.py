"""Shared simulated datasets for the simulator tests (small, coarse, written once per session).

Every dataset uses ``deform=False`` unless stated, so native scanner mm == MNI mm and a test can
read ground-truth MNI masks directly onto the native grids with nilearn.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from hfsmri.simulate import simulate_study

from ._helpers import BOLD_EFFECTS, MAIN, SESSION_EFFECTS


@pytest.fixture(scope="session")
def main_study(tmp_path_factory) -> Path:
    """5 HFS + 5 HC, default (review) effects, all modalities, 4 mm, 12 directions, 60 volumes."""
    return simulate_study(tmp_path_factory.mktemp("sim") / "main", n_jobs=2, **MAIN)


@pytest.fixture(scope="session")
def null_study(tmp_path_factory) -> Path:
    """Same arguments and seed as ``main_study`` but ``effects='none'`` (anat only)."""
    kw = dict(MAIN, effects="none", modalities=("anat",))
    return simulate_study(tmp_path_factory.mktemp("sim") / "null", n_jobs=2, **kw)


@pytest.fixture(scope="session")
def session_study(tmp_path_factory) -> Path:
    """7 + 2 subjects, sessions pre/post, ``SESSION_EFFECTS`` (anat only)."""
    return simulate_study(tmp_path_factory.mktemp("sim") / "sessions", n_patients=7, n_controls=2, seed=5,
                          sessions=["pre", "post"], effects=SESSION_EFFECTS, resolution=4.0, deform=False,
                          modalities=("anat",), n_jobs=2)


@pytest.fixture(scope="session")
def bold_study(tmp_path_factory) -> Path:
    """3 + 3 subjects, ``BOLD_EFFECTS``, BOLD only, 4 mm, 100 volumes."""
    return simulate_study(tmp_path_factory.mktemp("sim") / "bold", n_patients=3, n_controls=3, seed=4,
                          effects=BOLD_EFFECTS, resolution=4.0, n_volumes=100, deform=False,
                          modalities=("func",), n_jobs=2)


@pytest.fixture(scope="session")
def site_study(tmp_path_factory) -> Path:
    """2 + 2 subjects on two sites with scanner differences, no planted effects (anat + dwi)."""
    return simulate_study(tmp_path_factory.mktemp("sim") / "sites", n_patients=2, n_controls=2, seed=8,
                          effects="none", resolution=4.0, n_dirs=12, deform=False, modalities=("anat", "dwi"),
                          n_sites=2, site_effects=True, n_jobs=2)
