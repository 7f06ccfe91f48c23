"""TIV of the standard (default) structural profile within 3 % of the simulator's truth on deformed
whole-head subjects at 2 mm (issue 9), for the two subjects of this cohort the earlier brain masks
got most wrong (docs/anatomy.md table: affine mask 0.972 / 0.964, full-transform mask 0.948 /
0.941; the union mask 0.980 / 0.974)."""
from __future__ import annotations

import logging

import pandas as pd
import pytest

from hfsmri.bids import discover
from hfsmri.derivatives import Derivatives
from hfsmri.pipeline import ParticipantContext
from hfsmri.simulate import simulate_study

pytestmark = pytest.mark.slow  # ~2 min on 2 cores


def test_standard_profile_tiv_within_3_percent(tmp_path):
    from hfsmri.anat import participant as P

    root = simulate_study(tmp_path / "bids", 2, 2, seed=5, modalities=("anat",), deform=True, resolution=2.0,
                          n_jobs=2)
    gt = pd.read_csv(root / "derivatives/ground_truth/subjects.tsv", sep="\t").set_index("participant_id")
    ds = discover(root)
    pre = {"anat": {"template_resolution": 2, "registration": "SyN", "profile": "standard"}}
    found = {}
    for (sub, _), si in sorted(ds.inputs.items()):
        if sub not in ("03", "04"):
            continue
        ctx = ParticipantContext(subject=si.subject, session=si.session, inputs=si, out=Derivatives(tmp_path / "out"),
                                 work_dir=tmp_path / "work" / si.key, analyses={"vbm": {"resolution": 2}},
                                 preprocessing=pre, flip=False, omp_nthreads=2, log=logging.getLogger("test-tiv"))
        summary = P.run(ctx)
        found[sub] = summary["tiv_ml"] / gt.loc[f"sub-{sub}", "tiv_ml"]
        assert 0.8 < summary["bet_affine_vs_final_volume_ratio"] < 1.05
    assert all(abs(r - 1) < 0.03 for r in found.values()), found
