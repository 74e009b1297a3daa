"""Paths from plans stay inside the configured roots (stdlib only: the runner checks them too).

A plan is input from whoever uploads it, but its paths are opened by the workers: ``task_options.path``
(a data file), ``task_options.checkpoint_dir`` (where first-order checkpoints are written),
``task_options.cache_dir`` (the HF datasets cache) and a local ``model`` folder. Each must resolve,
after symlinks, to a place under one of :func:`zolab.config.data_roots` (``ZOLAB_DATA_ROOTS``,
default: the working directory and zolab's cache), so ``/etc/passwd``, ``../../secret`` and a
symlink that points out are refused. Checked at upload (:mod:`zolab.platform.intake_checks`) and
again by the runner before it opens anything (:func:`check_run_paths`): a job file run with
``zolab run-one`` or the batch runner never went through an upload.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: the task_options keys that name a file or folder
PATH_OPTIONS = ("path", "checkpoint_dir", "cache_dir")
#: a model hub id: ``org/name``, each part starting with a letter or digit (the hub's own rule)
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:", re.ASCII)


class PathNotAllowed(ValueError):
    """A path from a plan that points outside the allowed roots (or is no path at all)."""


def _roots(roots: Sequence[Path] | None) -> list[Path]:
    if roots is not None:
        return [Path(r).resolve() for r in roots]
    from zolab.config import data_roots  # stdlib-only settings module

    return data_roots()


def confined(raw: Any, what: str, roots: Sequence[Path] | None = None) -> Path:
    """``raw`` resolved (symlinks followed, ``..`` collapsed) when it lies under a root, else
    :class:`PathNotAllowed` naming ``what`` and the roots. The path need not exist yet."""
    if not isinstance(raw, str) or not raw.strip():
        raise PathNotAllowed(f"{what} must be a path (text), got {raw!r}")
    if "\x00" in raw:
        raise PathNotAllowed(f"{what} must not contain NUL")
    if _URL.match(raw) and not Path(raw).exists():
        raise PathNotAllowed(f"{what} {raw!r} is a URL; only local paths are allowed")
    allowed = _roots(roots)
    try:
        resolved = Path(raw).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable component
        raise PathNotAllowed(f"{what} {raw!r} cannot be resolved ({exc.__class__.__name__})") from None
    if any(resolved == root or resolved.is_relative_to(root) for root in allowed):
        return resolved
    raise PathNotAllowed(
        f"{what} {raw!r} resolves to {resolved}, outside the allowed folders "
        f"({', '.join(str(r) for r in allowed)}); set ZOLAB_DATA_ROOTS to allow another folder")


def path_problems(options: Mapping[str, Any], roots: Sequence[Path] | None = None) -> list[tuple[str, str]]:
    """(task_options key, why) for every path option that is not confined."""
    out = []
    for key in PATH_OPTIONS:
        if options.get(key) is None:
            continue
        try:
            confined(options[key], f"task_options.{key}", roots)
        except PathNotAllowed as exc:
            out.append((key, str(exc)))
    return out


def model_problem(model: str, is_named: Callable[[str], bool], roots: Sequence[Path] | None = None) -> str | None:
    """Why ``model`` may not be loaded (None when it may): it must be a name the runner knows
    (``is_named``: tiny configs, cache aliases), a hub id ``org/name``, or an existing local model
    folder under the roots. URLs, ``..``, files and folders outside the roots are refused."""
    if is_named(model):
        return None
    if "\x00" in model or "\\" in model:
        return f"model {model!r}: NUL and backslashes are not allowed"
    if _URL.match(model) or "//" in model:
        return f"model {model!r} is a URL; give a hub id (org/name), a known alias or a local folder"
    if ".." in model:
        return f"model {model!r}: '..' is not allowed (no path traversal)"
    local = Path(model).expanduser()
    if local.is_dir():  # transformers loads a local folder before it asks the hub
        try:
            confined(model, "model", roots)
        except PathNotAllowed as exc:
            return str(exc)
        return None
    if local.exists():
        return f"model {model!r} is a file, not a model folder"
    if HUB_ID.match(model):
        return None
    if model.startswith(("/", ".", "~")):
        return f"model {model!r}: no such local folder"
    return f"model {model!r} is not a known alias, a hub id (org/name) or an existing local folder"


def check_run_paths(config: Any, is_named: Callable[[str], bool]) -> None:
    """The runner's check before it opens anything: path options and a local model folder."""
    problems = [why for _, why in path_problems(config.task_options)]
    local = Path(config.model).expanduser()
    if not is_named(config.model) and (local.exists() or config.model.startswith(("/", ".", "~"))):
        why = model_problem(config.model, is_named)
        if why:
            problems.append(why)
    if problems:
        raise PathNotAllowed("; ".join(problems))
