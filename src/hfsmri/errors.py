"""Error types. Anything a user can cause raises :class:`HfsmriError` (or a subclass).

The command line turns these into one line on stderr and exit code 1; any other exception is a
bug in hfsmri and is shown with a traceback.
"""
from __future__ import annotations

import errno
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


class StorageError(HfsmriError):
    """A file or folder cannot be written: disk full, quota exceeded, read-only file system, no
    permission. ``fatal`` is True when no further job can succeed either (the run stops)."""

    def __init__(self, message: str, path: str | Path | None = None, errno_: int | None = None,
                 fatal: bool = True):
        super().__init__(message, path=path)
        self.errno = errno_
        self.fatal = fatal


def _storage_errnos() -> dict:
    e = errno
    out = {e.ENOSPC: ("no space left on device", True), e.EROFS: ("read-only file system", True),
           e.EACCES: ("permission denied", False), e.EPERM: ("operation not permitted", False)}
    if hasattr(e, "EDQUOT"):
        out[e.EDQUOT] = ("disk quota exceeded", True)
    return out


#: errno -> (what it means, whether the whole run must stop)
STORAGE_ERRNOS = _storage_errnos()


def storage_error(exc: BaseException, path: str | Path | None = None, where: str | None = None) -> StorageError | None:
    """The :class:`StorageError` for an ``OSError`` caused by the storage (full disk, quota,
    read-only file system, permissions), naming ``path`` (else the file in the exception; else
    the folders described by ``where``, e.g. "OUTPUT_DIR /x or the work directory /y": a failed
    ``write()`` does not say which file). None for any other exception. A StorageError naming a
    file is returned unchanged."""
    if isinstance(exc, StorageError):
        if exc.path is None and where:
            return StorageError(exc.message.replace("cannot write:", f"cannot write in {where}:", 1),
                                errno_=exc.errno, fatal=exc.fatal)
        return exc
    if not isinstance(exc, OSError) or exc.errno not in STORAGE_ERRNOS:
        return None
    what, fatal = STORAGE_ERRNOS[exc.errno]
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        hint = "free some space (or point OUTPUT_DIR / -w elsewhere) and run the same command again: finished work is kept"
    else:
        hint = "choose a folder you can write to"
    target = path if path is not None else (exc.filename or None)
    place = f" in {where}" if target is None and where else ""
    return StorageError(f"cannot write{place}: {what}; {hint}", path=target, errno_=exc.errno, fatal=fatal)
