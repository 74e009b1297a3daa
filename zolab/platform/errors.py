"""Plan errors that point at the input: file, line, column and field.

Every parser and validator reports problems as :class:`Issue` objects collected in one
:class:`PlanError`, so a user sees all mistakes of a file at once, each with its place.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One problem in a plan file."""

    message: str
    file: str | None = None
    line: int | None = None      # 1-based
    column: int | None = None    # 1-based
    field: str | None = None     # dotted path, e.g. ``ablations[2].action``

    def __str__(self) -> str:
        where = self.file or "<plan>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        prefix = f"{where}: "
        if self.field:
            prefix += f"{self.field}: "
        return prefix + self.message

    def to_dict(self) -> dict[str, object]:
        return {"message": self.message, "file": self.file, "line": self.line,
                "column": self.column, "field": self.field}


class PlanError(Exception):
    """A plan that cannot be accepted, with every issue found."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: list[Issue] = list(issues)
        super().__init__(str(self))

    @classmethod
    def single(cls, message: str, *, file: str | None = None, line: int | None = None,
               column: int | None = None, field: str | None = None) -> PlanError:
        return cls([Issue(message, file, line, column, field)])

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues) or "invalid plan"

    # first issue's place, handy for tests and one-line messages
    @property
    def file(self) -> str | None:
        return self.issues[0].file if self.issues else None

    @property
    def line(self) -> int | None:
        return self.issues[0].line if self.issues else None

    @property
    def column(self) -> int | None:
        return self.issues[0].column if self.issues else None

    @property
    def field(self) -> str | None:
        return self.issues[0].field if self.issues else None


def format_loc(loc: Sequence[object]) -> str:
    """``("ablations", 2, "action")`` -> ``ablations[2].action``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'eps'?)`` or an empty string."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
