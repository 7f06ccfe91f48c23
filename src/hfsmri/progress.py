"""What a user sees while hfsmri runs: progress bars, one line per finished stage, quiet repeats.

* Bars (tqdm) only on a terminal and not with ``--quiet``: one per level (participant: subjects
  done / total with elapsed time and ETA; group: analyses done / total). Off a terminal (CI, a log
  file) there is no bar and no control character: plain lines only.
* One line per participant stage as it ends, ``sub-03 anat 58 s ✓`` (``✗`` when it failed; ``ok``
  / ``FAILED`` when the stream cannot encode the marks), logged on :data:`LOGGER` the moment the
  stage ends: in the main process directly, from local worker processes through a
  multiprocessing queue (:func:`relay_handler` in the worker, :func:`listen` in the main process),
  from dask workers as dask events (``log_event`` / ``subscribe_topic``, topic :data:`TOPIC`).
* Repeats: after :data:`REPEAT_LIMIT` console lines with the same message template from the same
  logger (information and warnings; errors and stage lines are always shown), further ones are held
  back and counted (the job logs keep them all);
  :func:`flush_repeats` prints one summary line per template (``... 63 more like: ...``).
* ``--quiet``: warnings and errors only, no bar; ``-v``: debug.
"""
from __future__ import annotations

import logging
import sys
import threading

LOGGER = "hfsmri.progress"
TOPIC = "hfsmri-progress"
REPEAT_LIMIT = 3

_state = {"quiet": False}
_relay = {"queue": None}  # set in local pool workers by hfsmri.parallel._worker_init


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = bool(quiet)


def bars_enabled(stream=None) -> bool:
    """Progress bars: on a terminal and without ``--quiet``."""
    stream = stream or sys.stderr
    return not _state["quiet"] and bool(getattr(stream, "isatty", lambda: False)())


def _marks_ok(stream) -> bool:
    enc = getattr(stream, "encoding", None) or "ascii"
    try:
        "✓✗".encode(enc)
        return True
    except (LookupError, UnicodeEncodeError):
        return False


def stage_done(label: str, stage: str, seconds: float, ok: bool) -> None:
    """Log the end of one participant stage (module doc)."""
    logging.getLogger(LOGGER).info("%s %s %.0f s %s", label, stage, seconds, "✓" if ok else "✗")


class ConsoleHandler(logging.StreamHandler):
    """hfsmri's console handler: writes around live tqdm bars, renders the stage marks for the
    stream's encoding, and holds back repeated messages (module doc)."""

    _hfsmri = True

    def __init__(self, stream=None):
        super().__init__(stream or sys.stderr)
        self.counts: dict[tuple, int] = {}
        self.examples: dict[tuple, str] = {}
        self.lock_r = threading.Lock()

    def format(self, record):
        text = super().format(record)
        if record.name == LOGGER and not _marks_ok(self.stream):
            text = text.replace("✓", "ok").replace("✗", "FAILED")
        return text

    def emit(self, record):
        if record.levelno < logging.ERROR and record.name != LOGGER:
            key = (record.name, str(record.msg))
            with self.lock_r:
                n = self.counts[key] = self.counts.get(key, 0) + 1
                if n > REPEAT_LIMIT:
                    self.examples[key] = record.getMessage()
                    return
        try:
            msg = self.format(record)
            if bars_enabled(self.stream):
                from tqdm import tqdm

                tqdm.write(msg, file=self.stream)
            else:
                self.stream.write(msg + self.terminator)
            self.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)

    def held_back(self) -> list[tuple[int, str]]:
        """``(count, last message)`` of every template held back since the last flush."""
        return [(self.counts[k] - REPEAT_LIMIT, m) for k, m in self.examples.items()]

    def reset(self) -> None:
        self.counts.clear()
        self.examples.clear()


def console_handler() -> ConsoleHandler | None:
    for h in logging.getLogger("hfsmri").handlers:
        if isinstance(h, ConsoleHandler):
            return h
    return None


def flush_repeats() -> None:
    """One summary line per held-back message template, then start counting afresh."""
    h = console_handler()
    if h is None:
        return
    held = h.held_back()
    h.reset()
    for n, last in held:
        rec = logging.LogRecord("hfsmri", logging.INFO, __file__, 0,
                                "... %d more like: %s (every line is in the logs)", (n, last), None)
        h.handle(rec)


def bar(total: int, desc: str, unit: str):
    """A tqdm bar on a terminal (elapsed and ETA), else None."""
    if not bars_enabled() or total <= 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


# ----------------------------------------------------------------------------- relays
class _QueueRelay(logging.Handler):
    def __init__(self, put):
        super().__init__(logging.INFO)
        self.put = put

    def emit(self, record):
        try:
            self.put((record.name, record.levelno, record.getMessage()))
        except Exception:  # noqa: BLE001 - progress must never fail a job
            pass


def relay_handler() -> logging.Handler | None:
    """The handler a job attaches to :data:`LOGGER` outside the main process: a local pool
    worker's queue, or dask events on a dask worker; None in the main process."""
    q = _relay["queue"]
    if q is not None:
        return _QueueRelay(q.put)
    if "distributed" in sys.modules:
        try:
            from distributed import get_worker

            w = get_worker()
        except (ImportError, ValueError):
            return None
        return _QueueRelay(lambda item: w.log_event(TOPIC, list(item)))
    return None


def relog(item) -> None:
    """Log a relayed ``(name, level, message)`` in this (the main) process."""
    name, level, msg = item
    logging.getLogger(name).log(int(level), "%s", msg)


def listen(queue) -> threading.Thread:
    """Main process: a thread re-logging what pool workers put on ``queue`` until it gets None."""
    def run():
        while True:
            item = queue.get()
            if item is None:
                return
            relog(item)

    t = threading.Thread(target=run, name="hfsmri-progress", daemon=True)
    t.start()
    return t


def dask_listener(event) -> None:
    """``client.subscribe_topic(TOPIC, dask_listener)``: events are ``(time, [name, level, msg])``."""
    relog(event[1])
