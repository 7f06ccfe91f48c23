"""The one cache folder of hfsmri: derived, re-creatable files shared by all runs of a user.

Location (first that applies), as templateflow / nilearn / fMRIPrep do:

1. ``$HFSMRI_CACHE`` (documented since the first version; set it on clusters whose home
   directory is small or not shared, e.g. to a project folder);
2. ``$XDG_CACHE_HOME/hfsmri``;
3. ``~/.cache/hfsmri``.

What lives there (everything can be deleted at any time; it is re-created when missing):

* ``numba/`` — numba's compiled-kernel cache (``NUMBA_CACHE_DIR``; the ``cache=True`` kernels
  would otherwise write ``__pycache__/*.nbi/*.nbc`` files into the installed package tree);
* ``<atlas>_maxprob-thr25_v1.nii.gz`` — max-probability atlases (:mod:`hfsmri.spatial.atlas`).

:func:`configure_numba` runs when :mod:`hfsmri` is imported, i.e. before any hfsmri kernel is
compiled. A ``NUMBA_CACHE_DIR`` set by the user is respected.
"""
from __future__ import annotations

import os
from pathlib import Path

#: environment variable that overrides the cache location
CACHE_ENV = "HFSMRI_CACHE"


def cache_root() -> Path:
    """The cache folder (not created)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "hfsmri"
    return Path.home() / ".cache" / "hfsmri"


def cache_dir(sub: str | None = None) -> Path:
    """The cache folder (or its sub-folder ``sub``), created if missing."""
    d = cache_root() / sub if sub else cache_root()
    d.mkdir(parents=True, exist_ok=True)
    return d


def numba_cache_dir() -> Path:
    return cache_root() / "numba"


def configure_numba() -> str | None:
    """Point numba's cache at :func:`numba_cache_dir` unless ``NUMBA_CACHE_DIR`` is already set.

    Returns the cache folder numba uses (None when the folder cannot be created: numba then
    falls back to its own user-wide cache). Numba reads ``NUMBA_CACHE_DIR`` at import and again
    before every compilation (``numba.core.config.reload_config``); if numba is already imported,
    its config attribute is updated as well so that kernels decorated from now on use it.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    try:  # no home directory (container user without passwd entry), read-only home on compute nodes
        d = numba_cache_dir()
        d.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError, KeyError):
        return None
    os.environ["NUMBA_CACHE_DIR"] = str(d)
    import sys

    cfg = sys.modules.get("numba.core.config")
    if cfg is not None:
        cfg.CACHE_DIR = str(d)
    return str(d)
