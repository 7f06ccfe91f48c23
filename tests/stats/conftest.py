"""Fixtures for the statistics tests: a duck-typed Study and small smooth images."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage


class FakeStudy:
    """Has the attributes of hfsmri.study.Study that the stats engine uses."""

    def __init__(self, participants: pd.DataFrame, covariates=("age", "sex"), clinical=("severity",),
                 site_column=None, flip_to=None, covariate_types=None):
        self.participants = participants
        self.group_column = "group"
        self.groups = {"patient": "HFS", "control": "HC"}
        self.covariates = list(covariates)
        self.covariate_types = dict(covariate_types or {})
        self.clinical = list(clinical)
        self.site_column = site_column
        self.affected_side_column = "affected_side"
        self.flip_to = flip_to
        self.stats = {"n_perm": 99, "tfce": True, "alpha": 0.05, "cluster_forming_p": 0.01, "random_seed": 0}

    def group_of(self, label):
        return "patient" if self.participants.loc[label, "group"] == "HFS" else "control"

    def flipped(self, label):
        side = self.participants.loc[label, "affected_side"]
        return bool(self.flip_to and self.group_of(label) == "patient" and side in ("L", "R")
                    and side != self.flip_to)


def make_participants(n_pat=10, n_con=10, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_pat + n_con
    labels = [f"{i + 1:02d}" for i in range(n)]
    df = pd.DataFrame({
        "participant_id": [f"sub-{s}" for s in labels],
        "group": ["HFS"] * n_pat + ["HC"] * n_con,
        "age": rng.normal(50, 10, n).round(1),
        "sex": rng.choice(["F", "M"], n),
        "affected_side": [("L" if i % 3 else "R") for i in range(n_pat)] + [np.nan] * n_con,
        "severity": list(rng.integers(1, 5, n_pat).astype(float)) + [np.nan] * n_con,
        "site": ["A", "B"] * (n // 2) + ["A"] * (n % 2),
    }, index=pd.Index(labels, name="participant"))
    # make sure both sexes occur in each group
    df.iloc[0, df.columns.get_loc("sex")] = "F"
    df.iloc[1, df.columns.get_loc("sex")] = "M"
    df.iloc[n_pat, df.columns.get_loc("sex")] = "F"
    df.iloc[n_pat + 1, df.columns.get_loc("sex")] = "M"
    return df


@pytest.fixture
def participants():
    return make_participants()


@pytest.fixture
def fake_study(participants):
    return FakeStudy(participants)


def smooth_maps(n, shape, fwhm_vox=2.0, seed=0):
    """n smooth unit-variance noise maps (n, *shape)."""
    rng = np.random.default_rng(seed)
    sigma = fwhm_vox / 2.3548
    out = np.empty((n,) + tuple(shape))
    for i in range(n):
        m = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
        out[i] = m / m.std()
    return out
