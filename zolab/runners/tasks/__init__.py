"""Task registry: each task is a loader, a prompt template with label words, and its metrics.

See :mod:`zolab.runners.tasks.base` for the contract. Built-in tasks register on import of
:mod:`zolab.runners.tasks.builtin`; offline real-data tasks in :mod:`zolab.runners.tasks.offline`.
:func:`get_task` imports both (the offline module only when it exists) and applies per-run
overrides from ``task_options`` (``template``, ``label_words``, ``raw_template``).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from zolab.runners.tasks.base import TASKS, Example, Splits, Task

_OVERRIDABLE = ("template", "label_words", "raw_template")


def _load_registrations() -> None:
    importlib.import_module("zolab.runners.tasks.builtin")
    try:
        importlib.import_module("zolab.runners.tasks.offline")
    except ModuleNotFoundError as exc:
        if exc.name != "zolab.runners.tasks.offline":
            raise


def get_task(name: str, options: dict[str, Any] | None = None) -> Task:
    """The registered task, with ``template``/``label_words``/``raw_template`` overridden by ``options``."""
    _load_registrations()
    task = TASKS.get(name)
    changes = {k: options[k] for k in _OVERRIDABLE if options and k in options}
    if "label_words" in changes and (not isinstance(changes["label_words"], list) or len(changes["label_words"]) < 2):
        raise ValueError(f"task_options.label_words must be a list of at least 2 words, got {changes['label_words']!r}")
    return dataclasses.replace(task, **changes) if changes else task


def task_names() -> list[str]:
    _load_registrations()
    return TASKS.names()


__all__ = ["TASKS", "Example", "Splits", "Task", "get_task", "task_names"]
