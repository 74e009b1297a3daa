"""The task contract and its registry.

A :class:`Task` turns raw labelled text into prompted examples: ``template`` formats the input
(``{text}`` and any other field), ``label_words`` are the verbalizer tokens scored by the LM
(the prediction is the label word with the highest length-normalised log-likelihood).
With ``prompt: false`` the runner uses ``raw_template`` (``"{text}"``) and the same label words,
i.e. no task-aligning prompt.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Example:
    """One labelled input. ``fields`` holds the template's named fields (``text`` at least)."""

    fields: dict[str, str]
    label: int


@dataclass
class Splits:
    train: list[Example]
    dev: list[Example]
    test: list[Example]


# loader(options, seed) -> list of examples (the whole pool; sampling is the runner's)
Loader = Callable[[dict[str, Any], int], Sequence[Example]]


@dataclass
class Task:
    name: str
    loader: Loader
    template: str                      # e.g. "{text} It was"
    label_words: list[str]             # e.g. [" terrible", " great"] (leading space matters for BPE)
    raw_template: str = "{text}"       # used when prompt=False
    metrics: tuple[str, ...] = ("accuracy", "f1")
    description: str = ""
    synthetic: bool = False            # generated data (tests), documented as such
    options: dict[str, Any] = field(default_factory=dict)  # default loader options (paths, fields)

    @property
    def num_labels(self) -> int:
        return len(self.label_words)


class TaskRegistry:
    """Name -> Task (or lazy ``"module:attr"`` string). Refuses duplicates; unknown names get a did-you-mean."""

    def __init__(self) -> None:
        self._items: dict[str, Task | str] = {}

    def register(self, task: Task | str, name: str | None = None, *, replace: bool = False) -> None:
        key = name or (task.name if isinstance(task, Task) else None)
        if not key:
            raise ValueError("a lazy task entry needs an explicit name")
        if isinstance(task, str) and ":" not in task:
            raise TypeError(f"lazy task entry {task!r} must look like 'module:attr'")
        if not isinstance(task, (Task, str)):
            raise TypeError(f"expected Task or 'module:attr', got {type(task).__name__}")
        if key in self._items and not replace:
            raise ValueError(f"task {key!r} is already registered")
        self._items[key] = task

    def get(self, name: str) -> Task:
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise KeyError(f"unknown task {name!r}{hint}; known: {', '.join(sorted(self._items))}")
        item = self._items[name]
        if isinstance(item, str):
            import importlib

            module, attr = item.split(":", 1)
            item = getattr(importlib.import_module(module), attr)
            if not isinstance(item, Task):
                raise TypeError(f"{name!r} -> {module}:{attr} is not a Task")
            self._items[name] = item
        return item

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items


TASKS = TaskRegistry()
