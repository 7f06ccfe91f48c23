"""Run records (one per run, merged at the group level) and the hfsmri cache folder."""
from __future__ import annotations

import json
import time
from pathlib import Path

from hfsmri.runlog import RunRecord, merged_participant_runs, run_records


def _run(logs: Path, level: str, considered, skipped, rows=()):
    r = RunRecord(logs, level, {"considered": list(considered), "skipped_subjects": dict(skipped),
                                "inputs": [dict(x) for x in rows]}, argv=["hfsmri", level])
    r.write()
    return r


def test_one_record_per_run_and_latest_copy(tmp_path):
    a = _run(tmp_path, "participant", ["sub-01"], {})
    b = _run(tmp_path, "participant", ["sub-02"], {"sub-02": "BOLD has 10 volumes"})
    b.finish("failed", error="boom")
    recs = run_records(tmp_path, "participant")
    assert len(recs) == 2 and {r["run_id"] for r in recs} == {a.data["run_id"], b.data["run_id"]}
    latest = json.loads((tmp_path / "run_info.json").read_text())
    assert latest["run_id"] == b.data["run_id"] and latest["status"] == "failed" and latest["error"] == "boom"
    assert json.loads((tmp_path / "run_info_participant.json").read_text())["run_id"] == b.data["run_id"]


def test_merge_latest_run_per_subject_wins(tmp_path):
    row = lambda s, n: {"participant_id": s, "session": "n/a", "notes": n}  # noqa: E731
    _run(tmp_path, "participant", ["sub-01", "sub-02"], {"sub-02": "bad BOLD"}, [row("sub-01", "a"), row("sub-02", "a")])
    time.sleep(1.1)  # record names sort by their start time (1 s resolution)
    _run(tmp_path, "participant", ["sub-03"], {"sub-03": "bad T1w"}, [row("sub-03", "b")])
    time.sleep(1.1)
    _run(tmp_path, "participant", ["sub-02"], {}, [row("sub-02", "fixed")])  # sub-02 fixed and re-run
    _run(tmp_path, "group", [], {})
    skipped, rows = merged_participant_runs(tmp_path)
    assert skipped == {"sub-03": "bad T1w"}
    assert [(r["participant_id"], r["notes"]) for r in rows] == [("sub-01", "a"), ("sub-02", "fixed"), ("sub-03", "b")]


def test_merge_falls_back_to_legacy_record(tmp_path):
    (tmp_path / "run_info_participant.json").write_text(json.dumps({"skipped_subjects": {"sub-05": "x"}}))
    assert merged_participant_runs(tmp_path) == ({"sub-05": "x"}, [])


def test_cache_folder_precedence(tmp_path, monkeypatch):
    from hfsmri import cache

    monkeypatch.delenv("HFSMRI_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "xdg" / "hfsmri"
    monkeypatch.setenv("HFSMRI_CACHE", str(tmp_path / "mine"))
    assert cache.cache_root() == tmp_path / "mine"
    assert cache.cache_dir("numba") == tmp_path / "mine" / "numba" and (tmp_path / "mine" / "numba").is_dir()
    monkeypatch.delenv("HFSMRI_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "hfsmri"
    # a NUMBA_CACHE_DIR set by the user is respected
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "own"))
    assert cache.configure_numba() == str(tmp_path / "own")
