"""Settings: where the database and the cache live. Environment first, then defaults.

* ``ZOLAB_DB``: a SQLAlchemy URL (``postgresql+psycopg://...``) or a file path; default ``./zolab.db`` (SQLite).
* ``ZOLAB_CACHE``: model/data cache; default ``~/.cache/zolab``.
* ``ZOLAB_HOME``: working folder for checkpoints and exports; default ``./.zolab``.
* ``ZOLAB_DATA_ROOTS``: the folders (``os.pathsep``-separated) that paths from plans may point into:
  data files (``task_options.path``), checkpoint and dataset cache folders, local model folders;
  default: the working directory and the cache. Checked after symlinks are resolved
  (:mod:`zolab.runners.confine`); unset or empty means the default.
"""

from __future__ import annotations

import os
from pathlib import Path


def db_url(value: str | None = None) -> str:
    """The database URL from ``value``, ``ZOLAB_DB`` or the default SQLite file."""
    raw = value or os.environ.get("ZOLAB_DB") or "zolab.db"
    if "://" in raw:
        return raw
    return f"sqlite:///{Path(raw).expanduser().resolve()}"


def cache_dir() -> Path:
    path = Path(os.environ.get("ZOLAB_CACHE") or Path.home() / ".cache" / "zolab").expanduser()
    return path


def home_dir() -> Path:
    return Path(os.environ.get("ZOLAB_HOME") or ".zolab").expanduser().resolve()


DATA_ROOTS_ENV = "ZOLAB_DATA_ROOTS"


def data_roots() -> list[Path]:
    """The resolved folders plan paths must lie under: ``ZOLAB_DATA_ROOTS`` or (cwd, cache)."""
    raw = os.environ.get(DATA_ROOTS_ENV) or ""
    roots = [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()] or [Path.cwd(), cache_dir()]
    return [r.resolve() for r in roots]


#: repository root (for the shipped ablations/ folder when running from a checkout)
REPO_ROOT = Path(__file__).resolve().parent.parent
ABLATIONS_DIR = REPO_ROOT / "ablations"
