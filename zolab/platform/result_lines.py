"""What ``zolab import`` accepts: one strict schema for a result line (``zolab run-one`` / batch output).

A result line comes from another machine, so it is input, not trusted data. Every field is checked
before anything is written, with the types the database columns have:

* ``job_id``, ``plan_id`` (both required) are integers, never booleans or strings or floats;
  ``config_hash`` (required) is a short string: the import compares all three with the database;
* metrics are finite numbers in their range: accuracy, F1, zero-shot and dev accuracy in [0, 1];
  times, GPU hours, memory and counts >= 0 and within the column's integer width;
* curve points are ``[step, name, value]`` with a finite value (accuracy/F1 curves in [0, 1]);
* strings fit their column and hold no NUL character (PostgreSQL refuses it mid-import);
* ``extra`` is plain JSON: no NaN / infinity, no NUL.

:func:`parse_line` returns a :class:`ParsedLine` or raises :class:`LineError` naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from zolab.runners.reporter import Result

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

Id = Annotated[int, Field(strict=True, ge=1, le=INT32_MAX)]
Unit = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0.0, le=1.0)]
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0.0)]
Count32 = Annotated[int, Field(strict=True, ge=0, le=INT32_MAX)]
Count64 = Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]
Hash = Annotated[str, Field(strict=True, min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")]
#: curve names whose values are fractions (the leaderboard and charts read them as such)
UNIT_CURVES = ("accuracy", "f1")


class LineError(ValueError):
    """A result line that cannot be imported; the message names the field and the problem."""


def _no_nul(value: Any, where: str = "") -> Any:
    """Strings anywhere in ``value`` without NUL; floats finite (plain JSON only)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where or 'a string'} contains a NUL character")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where or 'a number'} is {value} (only finite numbers)")
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_nul(k, f"key {k!r}")
            _no_nul(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _no_nul(v, f"{where}[{i}]")
    return value


#: a short string column (device, curve name): at most 64 characters, no NUL
Name64 = Annotated[str, Field(strict=True, min_length=1, max_length=64), AfterValidator(_no_nul)]


class ResultValues(BaseModel):
    """The numbers of one finished run, column by column (mirrors :class:`~zolab.runners.reporter.Result`)."""

    model_config = ConfigDict(extra="forbid")

    accuracy: Unit
    f1: Unit
    steps: Count32
    forward_passes: Count64
    wall_time_s: NonNegative
    gpu_hours: NonNegative
    peak_memory_allocated: Count64 | None = None
    peak_memory_reserved: Count64 | None = None
    peak_rss: Count64 | None = None
    final_loss: Finite | None = None
    zero_shot_accuracy: Unit | None = None
    convergence_step: Count32 | None = None
    loss_slope: Finite | None = None
    dev_accuracy: Unit | None = None
    device: Name64 = "cpu"
    diverged: Annotated[bool, Field(strict=True)] = False
    method_memory_bytes: Count64 | None = None
    extra: Annotated[dict[str, Any], AfterValidator(_no_nul)] = Field(default_factory=dict)


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: Count32
    name: Name64
    value: Finite


class Line(BaseModel):
    """One line of a results file. Other keys (``config``, ``config_file``) are ignored."""

    model_config = ConfigDict(extra="ignore")

    job_id: Id
    plan_id: Id
    config_hash: Hash
    status: Literal["succeeded", "failed"] | None = None
    error: Annotated[str, Field(strict=True)] | None = None
    result: ResultValues | None = None
    points: list[Any] | None = None


@dataclass
class ParsedLine:
    """A validated line: what the import writes (``result``/``points``) or reports (``error``)."""

    where: str
    job_id: int
    plan_id: int
    config_hash: str
    succeeded: bool
    result: dict[str, Any] | None = None
    points: list[tuple[int, str, float]] = dataclasses.field(default_factory=list)
    error: str | None = None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "line"
        msg = err["msg"]
        if err.get("type") not in ("missing", "extra_forbidden") and "input" in err:
            shown = repr(err["input"])
            msg += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def _curves(extra: dict[str, Any]) -> list[Any]:
    """Curve points from a result's own ``extra`` (``run-one`` lines carry no separate points)."""
    out: list[Any] = []
    for key, name in (("dev_curve", "dev_accuracy"), ("loss_curve", "train_loss")):
        curve = extra.get(key) or []
        if not isinstance(curve, list):
            raise LineError(f"result.extra.{key}: must be a list of [step, value] pairs")
        for i, pair in enumerate(curve):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise LineError(f"result.extra.{key}[{i}]: must be a [step, value] pair")
            out.append([pair[0], name, pair[1]])
    return out


def _points(raw: list[Any], label: str) -> list[tuple[int, str, float]]:
    points = []
    for i, item in enumerate(raw):
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise LineError(f"{label}[{i}]: must be a [step, name, value] triple")
        try:
            p = Point(step=item[0], name=item[1], value=item[2])
        except ValidationError as exc:
            raise LineError(f"{label}[{i}]: {_describe(exc)}") from None
        if any(word in p.name.lower() for word in UNIT_CURVES) and not 0.0 <= p.value <= 1.0:
            raise LineError(f"{label}[{i}]: {p.name} must be in [0, 1] (got {p.value!r})")
        points.append((p.step, p.name, p.value))
    return points


def parse_line(text: str, where: str) -> ParsedLine:
    """Validate one line of a results file (``where`` = "file: line N", used in every message)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise LineError("a result line must be a JSON object")
    try:
        line = Line.model_validate(raw)
    except ValidationError as exc:
        raise LineError(_describe(exc)) from None
    failed = line.error is not None or line.status == "failed"
    parsed = ParsedLine(where, line.job_id, line.plan_id, line.config_hash, not failed)
    if failed:
        parsed.error = _no_nul(line.error or "no reason given", "error")
        return parsed
    if line.result is None:
        raise LineError(f"job {line.job_id}: a succeeded line needs a 'result' object")
    parsed.result = Result(**line.result.model_dump()).to_dict()
    raw_points = line.points if line.points else _curves(line.result.extra)
    parsed.points = _points(raw_points, "points" if line.points else "result.extra curves")
    return parsed


__all__ = ["INT32_MAX", "INT64_MAX", "Line", "LineError", "ParsedLine", "ResultValues", "parse_line"]
