"""Regression guard of the group level: the same fabricated study gives the same group outputs.

Every map (decoded array + affine) and TSV under ``OUTPUT_DIR/group/`` of each variant of
:mod:`tests.group._fabricate` (cross-sectional, longitudinal pre/post, affected side flipped; all
13 analyses) must match ``checksums.json`` exactly, file for file. The participant outputs are
fabricated, so only the group level is under test. Regenerate the reference only for a deliberate
change of results (see ``regen_checksums.py``).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.naming import bids_name_problems

from ._fabricate import VARIANTS, checksums, run_variant

REFERENCE = Path(__file__).with_name("checksums.json")


@pytest.mark.parametrize("variant", VARIANTS)
def test_group_outputs_unchanged(tmp_path, variant):
    expected = json.loads(REFERENCE.read_text())[variant]
    out = run_variant(tmp_path, variant)
    got = checksums(out)
    names = {f.name for f in out.rglob("*") if f.is_file() and not f.name.startswith(".")}
    bad = [p for n in sorted(names) for p in bids_name_problems(n)]
    assert len(names) > 100 and not bad, bad[:10]     # every group output has a valid BIDS name
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    changed = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    assert not (missing or extra or changed), (
        f"{variant}: {len(missing)} missing, {len(extra)} new, {len(changed)} changed group output(s); "
        f"missing {missing[:10]}, new {extra[:10]}, changed {changed[:10]}")
