"""The analyses' registry (hfsmri.analyses) is the one place that names an analysis, declares its
participant inputs and validates its parameters."""
from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest

import hfsmri
from hfsmri.analyses import ANALYSES, COVARIATES, FUNC_BOLD, FUNC_MASK, SEED_MAP, SEED_RAW, STAGE_OF
from hfsmri.derivatives import Derivatives
from hfsmri.errors import StudyError

SRC = Path(hfsmri.__file__).parent

#: the same spelling meaning something else than the analysis (module relative to hfsmri/, literal): why
OTHER_MEANING = {
    ("conn/seeds.py", "dc"): "the dorsal-caudate seed of Di Martino 2008",
    ("func/reho.py", "reho"): "the kernel function's name (__all__)",
    ("func/vmhc.py", "vmhc"): "the kernel function's name (__all__)",
    **{(f"simulate/{m}", q): "a simulated quantity (MetricSpec.quantity maps it to the metrics)"
       for m in ("bold.py", "cohort.py", "dataset.py", "effects.py") for q in ("reho", "alff")},
}


def _names_an_analysis(value: str) -> bool:
    """What "names an analysis" means here: a string literal (docstrings excepted) equal to an
    analysis key (``"vbm"``), or a path or field starting with one (``"vbm/gm"``, ``"seed_fc.seeds"``,
    ``"analyses.vbm..."``)."""
    return any(value == k or value.startswith((f"{k}/", f"{k}.", f"analyses.{k}")) for k in ANALYSES)


def _literals(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value


def test_no_module_but_the_registry_and_the_participant_blocks_names_an_analysis():
    allowed = {"analyses.py"} | {f"{stage}/participant.py" for stage in set(STAGE_OF.values())}
    found = []
    for f in sorted(SRC.rglob("*.py")):
        rel = f.relative_to(SRC).as_posix()
        if rel in allowed:
            continue
        found += [f"{rel}:{line} {v!r}" for line, v in _literals(f)
                  if _names_an_analysis(v) and (rel, v) not in OTHER_MEANING]
    assert not found, "analysis names outside hfsmri.analyses:\n" + "\n".join(found)


def test_the_check_sees_a_name():   # the test above is not vacuous
    assert _names_an_analysis("vbm") and _names_an_analysis("alff/falff") and _names_an_analysis("seed_fc.seeds")
    assert not _names_an_analysis("vbm_ashburner") and not _names_an_analysis("group analysis of vbm")


def test_declared_inputs_are_the_participant_blocks_names(tmp_path):
    """Every participant input a spec declares is the file its participant stage writes (asked
    from the stage's own path helper)."""
    from hfsmri.anat.participant import _outputs
    from hfsmri.conn.participant import input_paths, seed_map_path
    from hfsmri.dwi.participant import map_path, mask_path, stats_path
    from hfsmri.func.participant import METRICS, metric_path, qc_path

    out = Derivatives(tmp_path)
    sub, ses, res = "01", "pre", 3
    ctx = SimpleNamespace(out=out, subject=sub, session=ses, flip=False,
                          analyses={a: {"resolution": res} for a in ("vbm", "thickness")} | {"roi_volumes": {}})
    anat = {k: v[0] for k, v in _outputs(ctx, {}, res, {}).items()}
    m = {n: s.metrics for n, s in ANALYSES.items()}
    assert m["vbm"][0].map.path(out, sub, ses, res) == anat["vbm_modulated"]
    assert m["thickness"][0].map.path(out, sub, ses, res) == anat["thickness_mni"]
    assert m["thickness"][0].table.path(out, sub, ses, res) == anat["thickness_table"]
    assert m["roi_volumes"][0].table.path(out, sub, ses, res) == anat["roi_volumes"]
    assert COVARIATES["TIV"].source.path(out, sub, ses) == anat["tissue"]
    for spec in (ANALYSES["dti"],):
        for metric in spec.metrics:
            assert metric.map.path(out, sub, ses, res) == map_path(out, sub, ses, metric.name, res)
    assert all(metric.table.path(out, sub, ses, res) == stats_path(out, sub, ses, res)
               for metric in ANALYSES["dwi_rois"].metrics)
    assert ANALYSES["dti"].mask.subject_masks.path(out, sub, ses, res) == mask_path(out, sub, ses, res)
    func = [mm for n in ("reho", "alff", "dc", "vmhc") for mm in ANALYSES[n].metrics]
    assert [mm.name for mm in func] == [s for n in ("reho", "alff", "dc", "vmhc") for s in METRICS[n]]
    for mm in func:
        assert mm.map.path(out, sub, ses, res) == metric_path(out, sub, ses, mm.name, res, "zsmooth")
    assert COVARIATES["mean_fd"].source.path(out, sub, ses) == qc_path(out, sub, ses)
    assert (FUNC_BOLD.path(out, sub, ses, res), FUNC_MASK.path(out, sub, ses, res)) == input_paths(out, sub, ses, res)
    assert SEED_MAP.path(out, sub, ses, res, seed="amygdalaR") == seed_map_path(out, sub, ses, res, "amygdalaR", True)
    assert SEED_RAW.path(out, sub, ses, res, seed="amygdalaR") == seed_map_path(out, sub, ses, res, "amygdalaR")


@pytest.mark.parametrize("params, field", [
    ({"vbm": {"fwhm": "8mm"}}, "analyses.vbm.fwhm"),                  # type
    ({"vbm": {"fwhm": -1}}, "analyses.vbm.fwhm"),                     # range
    ({"reho": {"neighborhood": 26}}, "analyses.reho.neighborhood"),   # choices
    ({"dti": {"motion_correction": "yes"}}, "analyses.dti.motion_correction"),
    ({"ica": {"n_components": 2.5}}, "analyses.ica.n_components"),    # an integer
    ({"alff": {"band": [0.08, 0.01]}}, "analyses.alff.band"),         # cross-parameter check
    ({"alff": {"band": [0.01]}}, "analyses.alff.band"),
    ({"graph": {"sparsity_min": 0.5, "sparsity_max": 0.2}}, "analyses.graph.sparsity_min"),
    ({"dti": {"denoise": "nlmeans"}}, "analyses.dti.denoise"),
])
def test_parameters_are_validated_once_when_the_study_is_built(tmp_path, params, field):
    from hfsmri.study import Study

    (tmp_path / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tHFS\nsub-02\tHFS\nsub-03\tHC\n"
                                               "sub-04\tHC\n")
    with pytest.raises(StudyError) as exc:
        Study.from_bids(tmp_path, {"group_column": "group", "analyses": params})
    assert exc.value.field == field, str(exc.value)
    ok = Study.from_bids(tmp_path, {"group_column": "group", "analyses": {"vbm": {"fwhm": 6}, "dti": {"denoise": None}}})
    assert ok.analyses["vbm"]["fwhm"] == 6 and ok.analyses["vbm"]["resolution"] == 2   # given value kept as written


def test_every_parameter_is_documented_and_its_default_valid():
    for name, spec in ANALYSES.items():
        assert spec.title and callable(spec.methods)
        for p, param in spec.params.items():
            assert param.doc, (name, p)
            param.check(param.default, f"analyses.{name}.{p}")
        spec.validate({})
