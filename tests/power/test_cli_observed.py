"""``hfsmri power`` command line (issue 23 item 4): both engines reachable, every option documented
with its default, ``--n 10 20 30`` == ``--n 10,20,30``; and the effect sizes that survive the
pipeline (``--effect-sizes observed``) replacing the planted ones."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from hfsmri.cli import main, power_parser
from hfsmri.errors import HfsmriError
from hfsmri.power import POWER_DEFAULTS, parse_group_sizes, power_tests, ttest_power


def test_group_sizes_one_parser_every_form():
    for form in ([10, 20, 30], "10,20,30", ["10", "20", "30"], ["10,20", "30"], ["30", "10, 20", "20"], "10;20;30"):
        assert parse_group_sizes(form) == [10, 20, 30]
    for bad, token in (("10,x", "'x'"), (["2"], "'2'"), ("10.5", "'10.5'"), (["10", "-4"], "'-4'")):
        with pytest.raises(HfsmriError, match=token):
            parse_group_sizes(bad)
    with pytest.raises(HfsmriError, match="at least one"):
        parse_group_sizes(",")


def test_help_documents_every_option_with_its_default(capsys):
    p = power_parser()
    flags = set()
    for a in p._actions:
        if not a.option_strings or a.dest in ("help", "verbose", "debug", "quiet"):
            continue
        flags.update(a.option_strings)
        assert a.help and "default" in a.help, f"{a.option_strings} has no documented default"
    assert {"--engine", "--n", "--effect-sizes", "--n-perm", "--test", "--reliability", "--analyses"} <= flags
    assert main(["power", "--help"]) == 0
    out = capsys.readouterr().out
    assert "(default: roi)" in out and "(default: 10 20 30 50)" in out and "image" in out
    # the documented defaults are the API's (one owner)
    args = p.parse_args([])
    assert args.n == list(POWER_DEFAULTS["ns"]) and args.engine == POWER_DEFAULTS["engine"]
    assert args.n_sim == POWER_DEFAULTS["n_sim"] and args.effect_sizes == POWER_DEFAULTS["effect_sizes"]


def test_n_forms_give_identical_results_and_bad_n_is_a_usage_error(tmp_path, capsys):
    spec = tmp_path / "e.yaml"
    spec.write_text(yaml.safe_dump([{"id": "a", "cohens_d": 0.9}]))
    base = ["power", "--effects", str(spec), "--n-sim", "30", "--n-null", "3"]
    assert main([*base, "--n", "6", "12", "--output", str(tmp_path / "a")]) == 0
    assert main([*base, "--n", "12,6", "--output", str(tmp_path / "b")]) == 0
    a = pd.read_csv(tmp_path / "a" / "power.tsv", sep="\t")
    b = pd.read_csv(tmp_path / "b" / "power.tsv", sep="\t")
    pd.testing.assert_frame_equal(a, b)
    assert list(a["n_per_group"]) == [6, 12]
    capsys.readouterr()
    assert main([*base, "--n", "6,abc", "--output", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "'abc'" in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


def test_image_engine_reachable_from_the_command_line(tmp_path, monkeypatch):
    """--engine image routes the image-engine options to the engine (the engine itself, minutes per
    study, is exercised by benchmarks/bench_sensitivity.py; its scoring by test_power.py)."""
    import hfsmri.power as power

    seen = {}

    def fake_image_power(effects, ns, n_sim, seed, work_dir, **kw):
        seen.update(effects=effects, ns=ns, n_sim=n_sim, seed=seed, work_dir=work_dir, **kw)
        raise HfsmriError("stop here")

    monkeypatch.setattr(power, "image_power", fake_image_power)
    code = main(["power", "--engine", "image", "--n", "8", "12", "--n-sim", "2", "--n-perm", "99", "--analyses",
                 "vbm", "reho", "--nprocs", "1", "--keep", "--seed", "5", "--output", str(tmp_path / "o")])
    assert code == 1
    assert seen["ns"] == [8, 12] and seen["n_sim"] == 2 and seen["seed"] == 5 and seen["n_perm"] == 99
    assert seen["analyses"] == ["vbm", "reho"] and seen["nprocs"] == 1 and seen["keep"] is True
    assert seen["work_dir"] == tmp_path / "o" / "work"


def _observed_table(path, rows):
    from hfsmri.simulate.effects import OBSERVED_COLUMNS

    t = pd.DataFrame(rows)
    for c in OBSERVED_COLUMNS:
        if c not in t:
            t[c] = np.nan
    t[OBSERVED_COLUMNS].to_csv(path, sep="\t", index=False)


def test_surviving_effect_sizes_replace_planted(tmp_path):
    from hfsmri.simulate.effects import MIN_SURVIVING_D, surviving_effect_sizes

    tests = power_tests("default")
    ids = tests.set_index(["effect_id", "analysis", "metric"])
    assert ("gm-thalamus", "vbm", "gm") in ids.index and ("gm-thalamus", "roi_volumes", "volume") in ids.index
    path = tmp_path / "obs.tsv"
    _observed_table(path, [
        {"setting": "demo", "effect_id": "gm-thalamus", "analysis": "vbm", "metric": "gm", "observed_d": 1.5,
         "observed_d_voxel_median": 0.7},
        {"setting": "demo", "effect_id": "gm-thalamus", "analysis": "roi_volumes", "metric": "volume",
         "observed_d": 0.9, "observed_d_voxel_median": np.nan},
        {"setting": "demo", "effect_id": "gm-putamen", "analysis": "vbm", "metric": "gm", "observed_d": -0.2,
         "observed_d_voxel_median": -0.1},
        {"setting": "default", "effect_id": "gm-thalamus", "analysis": "vbm", "metric": "gm", "observed_d": 9,
         "observed_d_voxel_median": 9},
        {"setting": "demo", "effect_id": "wm-slf", "analysis": "dti", "metric": "fa", "observed_d": 1.1,
         "observed_d_voxel_median": 0.7}])
    rows, src = surviving_effect_sizes(tests, "demo", path)
    got = rows.set_index(["effect_id", "analysis", "metric"])["cohens_d"]
    assert got[("gm-thalamus", "vbm", "gm")] == 0.7          # voxel-wise analysis: per-voxel d
    assert got[("gm-thalamus", "roi_volumes", "volume")] == 0.9   # ROI table: the ROI value's d
    assert got[("gm-putamen", "vbm", "gm")] == MIN_SURVIVING_D    # reversed: kept as a planted test, power ~ 0
    assert got[("gm-pallidum", "vbm", "gm")] == ids.loc[("gm-pallidum", "vbm", "gm"), "cohens_d"]  # unmeasured
    # tbss (voxel-wise) and dwi_rois (ROI table) read dti's maps: dti's measurement, per-voxel / ROI d
    assert got[("wm-slf", "dti", "fa")] == 0.7 and got[("wm-slf", "tbss", "fa")] == 0.7
    assert got[("wm-slf", "dwi_rois", "fa")] == 1.1
    assert got[("wm-slf", "tbss", "rd")] == ids.loc[("wm-slf", "tbss", "rd"), "cohens_d"]
    assert (src == "observed").sum() == 6


def test_power_with_observed_sizes_matches_analytic_at_the_observed_d(tmp_path, monkeypatch):
    import hfsmri.simulate.effects as eff

    path = tmp_path / "obs.tsv"
    _observed_table(path, [{"setting": "demo", "effect_id": "gm-thalamus", "analysis": "vbm", "metric": "gm",
                            "observed_d": 1.2, "observed_d_voxel_median": 0.8}])
    monkeypatch.setattr(eff, "OBSERVED_FILE", path)
    from hfsmri.power import run_power

    run_power(tmp_path / "o", "default", [12], n_sim=600, seed=7, n_null=2)
    p = pd.read_csv(tmp_path / "o" / "power.tsv", sep="\t")
    row = p[(p["effect_id"] == "gm-thalamus") & (p["analysis"] == "vbm") & (p["contrast"] == "patient-vs-control")].iloc[0]
    assert row["effect_size_source"] == "observed-demo"
    assert row["effect_size"] == pytest.approx(0.8) and row["planted_effect_size"] == pytest.approx(1.8)
    assert row["analytic_uncorrected"] == pytest.approx(ttest_power(0.8, 12, 12), abs=1e-9)
    assert abs(row["power_uncorrected"] - ttest_power(0.8, 12, 12)) < 4 * row["mc_se"] + 0.01
    other = p[(p["effect_id"] == "gm-putamen") & (p["analysis"] == "vbm")].iloc[0]
    assert other["effect_size_source"] == "planted" and other["effect_size"] == pytest.approx(1.8)
    run_power(tmp_path / "q", "default", [12], n_sim=50, seed=7, n_null=2, effect_sizes="planted")
    q = pd.read_csv(tmp_path / "q" / "power.tsv", sep="\t")
    assert (q["effect_size_source"] == "planted").all()
