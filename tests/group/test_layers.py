"""No import runs back up (issue 21 item 4), checked on the source: every ``import`` statement of a
module, at module level or inside a function, is read with ``ast``."""
from __future__ import annotations

import ast
from pathlib import Path

import hfsmri

SRC = Path(hfsmri.__file__).parent
STAGES = ("anat", "func", "dwi", "conn")


def _imports(rel: str) -> set[str]:
    """Absolute ``hfsmri.*`` module names imported anywhere in ``hfsmri/<rel>``."""
    path = SRC / rel
    package = ["hfsmri", *Path(rel).with_suffix("").parts[:-1]]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("hfsmri")}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            if mod.startswith("hfsmri"):
                found.add(mod)
                found |= {f"{mod}.{a.name}" for a in node.names}
    return found


def _touches(imports: set[str], packages) -> list[str]:
    return sorted(m for m in imports for p in packages if m == f"hfsmri.{p}" or m.startswith(f"hfsmri.{p}."))


def test_bids_imports_no_stage():
    assert _touches(_imports("bids.py"), STAGES) == []


def test_stats_gets_executor_and_harmoniser_injected():
    bad = {f.relative_to(SRC).as_posix(): _touches(_imports(f.relative_to(SRC).as_posix()),
                                                   ("harmonize", "parallel", "derivatives", "cli", "api"))
           for f in (SRC / "stats").glob("*.py")}
    assert {k: v for k, v in bad.items() if v} == {}


def test_power_and_demo_call_the_python_api_not_the_command_line():
    users = ["demo.py", *(f.relative_to(SRC).as_posix() for f in (SRC / "power").glob("*.py"))]
    assert {u: _touches(_imports(u), ("cli",)) for u in users if _touches(_imports(u), ("cli",))} == {}
    assert any("hfsmri.api.run_level" in _imports(u) for u in users if u.startswith("power/"))
    assert "hfsmri.api.run_level" in _imports("demo.py")


def test_no_module_level_dask_client():
    """No module keeps a Dask client (or anything named ``*client*``) in a module-level variable."""
    found = []
    for f in SRC.rglob("*.py"):
        for node in ast.parse(f.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
            found += [f"{f.relative_to(SRC)}:{t.id}" for t in targets
                      if isinstance(t, ast.Name) and "client" in t.id.lower()]
        found += [f"{f.relative_to(SRC)}: global {n}" for node in ast.walk(ast.parse(f.read_text(encoding="utf-8")))
                  if isinstance(node, ast.Global) for n in node.names if "client" in n.lower()]
    assert found == []


def test_the_import_reader_sees_an_import(tmp_path):   # the checks above are not vacuous
    assert "hfsmri.dwi.gradients" in _imports("validate.py")
    assert "hfsmri.func.slicetime" in _imports("validate.py")
    assert _touches({"hfsmri.dwi.gradients"}, STAGES) == ["hfsmri.dwi.gradients"]
