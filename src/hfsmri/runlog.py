"""One record per run of ``hfsmri BIDS_DIR OUTPUT_DIR participant|group`` in ``OUTPUT_DIR/logs/``.

``logs/run-<UTC time>-<id>_<level>.json`` (e.g. ``run-20261125T061700Z-3fa2c1d0_participant.json``),
written when the run starts and rewritten when it ends. Array jobs (one ``--participant-label``
each) writing into the same OUTPUT_DIR each get their own record, as fMRIPrep keeps one
``log/<time>_<uuid>/`` folder per run. A record holds: the command line, host, pid, version, start
and end time, status (``running``, ``ok``, ``failed``, ``stopped``), the settings (seed actually
used, labels, skipped analyses, work directory), the study's exclusions and flipped patients, the
subjects/sessions the run considered, those it left out (``--on-bad-input skip``) and why, their
inputs, and per job: ok, seconds, peak memory, error.

``logs/run_info.json`` (read by the report) and ``logs/run_info_<level>.json`` are the latest
run's record; at the group level their ``skipped_subjects`` and ``logs/inputs.tsv`` are merged over
every participant run (:func:`merged_participant_runs`: for each subject the latest run that
considered it counts).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

from .derivatives import write_json_atomic

RECORD_GLOB = "run-*_*.json"


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class RunRecord:
    """The record of this run (see the module docstring)."""

    def __init__(self, logs_dir: str | Path, level: str, info: dict, argv: list[str] | None = None):
        self.t0 = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.t0))
        self.id = uuid.uuid4().hex[:8]
        self.logs_dir = Path(logs_dir)
        self.path = self.logs_dir / f"run-{stamp}-{self.id}_{level}.json"
        self.data = {"run_id": f"{stamp}-{self.id}", "level": level, "status": "running",
                     "started": _utc(self.t0), "started_epoch": self.t0, "finished": None,
                     "argv": list(sys.argv if argv is None else argv), "host": socket.gethostname(),
                     "pid": os.getpid(), **info}
        from . import __version__

        self.data["hfsmri_version"] = __version__

    def write(self) -> Path:
        write_json_atomic(self.path, self.data)
        for name in ("run_info.json", f"run_info_{self.data['level']}.json"):
            write_json_atomic(self.logs_dir / name, self.data)
        return self.path

    def finish(self, status: str, results=None, error: str | None = None) -> Path:
        """Rewrite the record with the outcome (``results``: :class:`hfsmri.parallel.JobResult` list)."""
        self.data.update(status=status, finished=_utc(time.time()), seconds=round(time.time() - self.t0, 1))
        if error:
            self.data["error"] = error
        if results is not None:
            self.data["jobs"] = [{"name": r.name, "ok": r.ok, "seconds": round(r.seconds, 1),
                                  "peak_mb": None if r.peak_mb is None else round(r.peak_mb),
                                  "error": r.error} for r in results]
        return self.write()


def run_records(logs_dir: str | Path, level: str | None = None) -> list[dict]:
    """Every run record in ``logs_dir`` (oldest first: by the precise start time, so two runs started in
    the same second, as array jobs are, keep their order), optionally of one level; unreadable ones
    skipped."""
    out = []
    for p in sorted(Path(logs_dir).glob(RECORD_GLOB)):
        if level is not None and not p.name.endswith(f"_{level}.json"):
            continue
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return sorted(out, key=lambda r: float(r.get("started_epoch") or 0.0))  # stable: file-name order on ties


def merged_participant_runs(logs_dir: str | Path) -> tuple[dict, list[dict]]:
    """``(skipped_subjects, inputs rows)`` over every participant run: for each subject/session the
    latest run that considered it decides (a subject skipped once and processed later is not
    skipped). Falls back to ``run_info_participant.json`` of versions without run records."""
    records = run_records(logs_dir, "participant")
    if not records:
        legacy = Path(logs_dir) / "run_info_participant.json"
        try:
            rec = json.loads(legacy.read_text(encoding="utf-8")) if legacy.is_file() else {}
        except (OSError, ValueError):
            rec = {}
        return dict(rec.get("skipped_subjects") or {}), []
    skipped: dict = {}
    inputs: dict = {}
    for rec in records:
        for key in rec.get("considered") or []:
            skipped.pop(key, None)
        skipped.update(rec.get("skipped_subjects") or {})
        for row in rec.get("inputs") or []:
            inputs[(row.get("participant_id"), row.get("session"))] = row
    return skipped, [inputs[k] for k in sorted(inputs, key=lambda k: (str(k[0]), str(k[1])))]
