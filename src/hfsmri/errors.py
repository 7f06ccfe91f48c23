"""Error types. Anything a user can cause raises :class:`HfsmriError` (or a subclass).

The command line turns these into one line on stderr and exit code 1; any other exception is a
bug in hfsmri and is shown with a traceback.
"""
from __future__ import annotations

from pathlib import Path


class HfsmriError(Exception):
    """A user-facing error: bad input, bad configuration, bad command line.

    Parameters
    ----------
    message : str
        What is wrong, phrased for the user.
    path : path-like, optional
        The file or directory at fault; prefixed to the message.
    field : str, optional
        The field / column / key at fault (e.g. ``study.yaml: covariates``).
    """

    def __init__(self, message: str, path: str | Path | None = None, field: str | None = None):
        self.path = None if path is None else Path(path)
        self.field = field
        self.message = message
        parts = []
        if self.path is not None:
            parts.append(str(self.path))
        if field:
            parts.append(field)
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class StudyError(HfsmriError):
    """participants.tsv / study.yaml do not define a valid study."""


class BidsError(HfsmriError):
    """The BIDS dataset is missing files or has invalid ones."""


class InputDataError(HfsmriError):
    """An input image or table is malformed (wrong dimensions, NaN, bad gradients, ...)."""


class DesignError(HfsmriError):
    """A statistical design cannot be estimated (rank deficiency, constant or missing column)."""
