"""Runs every generated fault case of :mod:`tests.robustness.fault_cases` (issue 20), and checks that
``docs/scaling.md`` lists each of them."""
from __future__ import annotations

from pathlib import Path

import pytest

from .fault_cases import CASES, Skip


class _Env:
    def __init__(self, tmp: Path, request):
        self.tmp, self._request = tmp, request

    def fixture(self, name: str):
        return self._request.getfixturevalue(name)


def _params():
    for name in sorted(CASES, key=lambda n: (CASES[n].item, n)):
        marks = [pytest.mark.slow] if CASES[name].slow else []
        yield pytest.param(name, id=f"item{CASES[name].item}-{name}", marks=marks)


@pytest.mark.parametrize("name", _params())
def test_fault_case(name, tmp_path, request):
    try:
        CASES[name].check(_Env(tmp_path, request))
    except Skip as exc:
        pytest.skip(str(exc))


def test_every_case_is_documented():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "scaling.md").read_text()
    missing = [n for n in CASES if f"`{n}`" not in doc]
    assert not missing, f"docs/scaling.md does not list the fault case(s) {missing} (python tests/robustness/fault_cases.py)"
    assert {c.item for c in CASES.values()} == set(range(1, 12))  # every item of issue 20 has a case
