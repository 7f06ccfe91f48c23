"""ComBat for a :class:`hfsmri.study.Study`: site labels from ``site_column``, protected
biological covariates = group + the study's covariates (as in the group design).

Clinical scores are not protected: they exist for patients only. Their variance is kept in so far
as it is not confounded with site (ComBat only removes per-site location and scale).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..errors import StudyError
from .combat import ComBat

__all__ = ["study_sites_covariates", "harmonize_for_study"]


def _labels(subjects) -> list[str]:
    return [re.sub(r"^sub-", "", str(s)) for s in subjects]


def study_sites_covariates(study, subjects, extra_covariates: pd.DataFrame | None = None):
    """Site labels and protected covariates of ``subjects`` (labels with or without ``sub-``).

    Returns ``(sites: Series, covars: DataFrame, categorical: list)``; ``covars`` holds
    ``group`` ("patient"/"control", categorical) and every ``study.covariates`` column (types from
    ``study.covariate_types``), plus ``extra_covariates`` columns (e.g. TIV; continuous unless
    non-numeric) indexed like ``subjects``.
    """
    if not getattr(study, "site_column", None):
        raise StudyError("harmonisation needs `site_column` (the participants.tsv column naming each "
                         "subject's scanner/site)", field="site_column")
    labels = _labels(subjects)
    parts = study.participants
    missing = [lab for lab in labels if lab not in parts.index]
    if missing:
        raise StudyError(f"participant(s) {missing[:5]} not in participants.tsv", field="participants")
    if study.site_column not in parts.columns:
        raise StudyError(f"column {study.site_column!r} not in participants.tsv", field="site_column")
    sites = parts.loc[labels, study.site_column]
    if sites.isna().any():
        bad = list(sites.index[sites.isna()])[:5]
        raise StudyError(f"no site for participant(s) {bad}", field=f"participants.tsv: {study.site_column}")
    covars = pd.DataFrame({"group": [study.group_of(lab) for lab in labels]}, index=labels)
    categorical = ["group"]
    types = getattr(study, "covariate_types", {}) or {}
    for name in study.covariates:
        covars[name] = parts.loc[labels, name].to_numpy()
        if types.get(name) == "categorical":
            categorical.append(name)
    if extra_covariates is not None:
        extra = extra_covariates.copy()
        extra.index = _labels(extra.index)
        for name in extra.columns:
            covars[name] = extra.loc[labels, name].to_numpy()
            if not pd.api.types.is_numeric_dtype(extra[name]):
                categorical.append(name)
    if covars["group"].nunique() < 2:
        covars = covars.drop(columns="group")
        categorical.remove("group")
    sites.index = labels
    return sites.astype(str), covars, categorical


def harmonize_for_study(data, study, subjects, extra_covariates: pd.DataFrame | None = None, **combat_kwargs):
    """ComBat-harmonise ``data`` (subjects x features: ROI table or voxels in a mask) across the
    study's sites, protecting group and covariates.

    ``data`` rows follow ``subjects``. Returns ``(harmonised, model)`` where ``harmonised`` has the
    type and shape of ``data`` and ``model`` is the fitted :class:`ComBat` (``model.site_effects()``
    for the report).
    """
    sites, covars, categorical = study_sites_covariates(study, subjects, extra_covariates)
    model = ComBat(covariates=list(covars.columns), categorical=categorical, **combat_kwargs)
    if isinstance(data, pd.DataFrame):
        frame = data.copy()
        frame.index = _labels(frame.index)
        out = model.fit_transform(frame, sites.to_numpy(), covars.reset_index(drop=True))
        out.index = data.index
        return out, model
    arr = np.asarray(data)
    return model.fit_transform(arr, sites.to_numpy(), covars.reset_index(drop=True)), model
