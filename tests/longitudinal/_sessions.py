"""Small two-session studies for the longitudinal group-stage tests (no pipeline run).

The study has BIDS ``ses-pre`` / ``ses-post`` folders (so ``Study.from_bids`` accepts the
sessions), no covariates by default (the group × time contrast is then exactly the pooled
two-sample t of the changes, scipy's ``ttest_ind``) and optionally per-session clinical scores in
``sub-X_sessions.tsv`` (for the change-vs-change design).
"""
from __future__ import annotations

import logging
from types import SimpleNamespace

from hfsmri.derivatives import Derivatives
from hfsmri.study import Study

SESSIONS = ("pre", "post")


def make_study(root, sides, n_controls, *, flip_to="R", severity=None, preprocessing=None) -> Study:
    """A study of ``len(sides)`` patients (``sides``: affected side per patient, L/R) then
    ``n_controls`` controls, labelled 01, 02, ...; ``severity``: optional
    {label: (pre, post)} written to ``sub-X_sessions.tsv`` (and listed as clinical score)."""
    bids = root / "bids"
    bids.mkdir(parents=True, exist_ok=True)
    rows = ["participant_id\tgroup\tage\taffected_side\tseverity"]
    n = len(sides) + n_controls
    for i in range(n):
        lab = f"{i + 1:02d}"
        pat = i < len(sides)
        sev = severity[lab][0] if severity and lab in severity else "n/a"
        rows.append(f"sub-{lab}\t{'HFS' if pat else 'HC'}\t{40 + 2 * i}\t{sides[i] if pat else 'n/a'}\t{sev}")
        for ses in SESSIONS:
            (bids / f"sub-{lab}" / f"ses-{ses}").mkdir(parents=True, exist_ok=True)
        if severity and lab in severity:
            a, b = severity[lab]
            (bids / f"sub-{lab}" / f"sub-{lab}_sessions.tsv").write_text(
                f"session_id\tseverity\nses-pre\t{a}\nses-post\t{b}\n")
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")
    cfg = {"group_column": "group", "covariates": [], "flip_to": flip_to, "sessions": list(SESSIONS),
           "affected_side_column": "affected_side"}
    if severity:
        cfg["clinical"] = ["severity"]
    if preprocessing:
        cfg["preprocessing"] = preprocessing
    return Study.from_bids(bids, cfg)


def make_gctx(root, study, analyses, n_perm=64, tfce=True):
    """Group-stage context as the pipeline builds it (only what the stages read)."""
    stats = {"n_perm": n_perm, "tfce": tfce, "alpha": 0.05, "cluster_forming_p": 0.01, "random_seed": 0}
    return SimpleNamespace(study=study, out=Derivatives(root / "out"), analyses=analyses, stats=stats, seed=0,
                           nprocs=1, log=logging.getLogger("test.longitudinal"), work_dir=None)
