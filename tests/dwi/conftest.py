"""Shared fixtures for the dwi tests (tiny, deterministic)."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def small_64d():
    import nibabel as nib
    from dipy.data import get_fnames

    f, fbval, fbvec = get_fnames(name="small_64D")
    return np.asarray(nib.load(f).dataobj), fbval, fbvec
