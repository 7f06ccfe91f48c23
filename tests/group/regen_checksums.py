"""Regenerate ``checksums.json``, the reference of the group-level regression guard.

Usage (from the repository root)::

    PYTHONPATH=src python tests/group/regen_checksums.py

Runs every variant of :mod:`tests.group._fabricate` (fabricated participant outputs, group level
only) and writes the digest of every map and TSV under ``OUTPUT_DIR/group/``.

When regenerating is legitimate: only for a *deliberate* change of group results (a new or
corrected statistic, a changed default, a fixed bug in what the group level computes), made in
its own commit whose message says what changed and why, with the regenerated file in that same
commit. A refactoring, a renaming of code or a move between modules must leave the checksums as
they are: if ``test_regression_guard.py`` fails after such a change, the change is wrong, not the
reference. Changes of participant-level algorithms never require it (the guard does not run them).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from tests.group._fabricate import VARIANTS, checksums, run_variant  # noqa: E402

REFERENCE = HERE / "checksums.json"


def main() -> int:
    result = {}
    with tempfile.TemporaryDirectory(prefix="hfsmri-guard-") as tmp:
        for variant in VARIANTS:
            result[variant] = checksums(run_variant(Path(tmp) / variant, variant))
            print(f"{variant}: {len(result[variant])} files", file=sys.stderr)
    REFERENCE.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(REFERENCE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
