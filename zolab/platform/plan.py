"""The validated plan: pydantic models for the YAML format of DESIGN.md ("The plan format").

Every parser (YAML, AblationBench JSONL, planner markdown) produces plain data and hands it to
:func:`validate_plan`, which turns pydantic's errors into a :class:`~zolab.platform.errors.PlanError`
whose issues name the file, line, column and field (unknown keys get a did-you-mean).

The ``baseline`` model is generated from the runner's :class:`~zolab.runners.config.RunConfig`
dataclass, so every runner knob is accepted and the two can never drift apart; ranges that the
dataclass checks at run time are declared here as pydantic constraints so they fail at upload.

What the database and the runner cannot hold is refused here too, located: non-finite numbers
anywhere (``lr: .inf``, ``1e400``, ``NaN``), integers beyond the 32-bit columns they end up in (every
integer knob of the baseline, tuning steps), integers beyond 64 bits anywhere, and text with
bidirectional-override or zero-width characters (they make a name read differently from what it is).
Names and free text are NFKC-normalised (full-width and compatibility forms become plain characters,
so ``ｓｔｅｐｓ`` and ``steps`` are the same ablation name). A replacement written as one
comma-separated string (``"1e-3, 1e-4"``) stays one string here: the resolver reads it against each
knob's domain (two learning rates; but ``"ZO-Adam, beta1 = 0.8"`` is one compound value and
``"5,000 steps"`` one number), so the split is never blind.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import types
import typing
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from zolab.platform.errors import Issue, PlanError, did_you_mean, format_loc
from zolab.platform.metrics import DEFAULT_METRICS, METRICS, measured_metric, normalise_metric  # noqa: F401 - re-exported
from zolab.runners.config import (
    DISTRIBUTIONS,
    DTYPES,
    ESTIMATORS,
    KERNELS,
    LR_SCHEDULES,
    METHODS,
    OBJECTIVES,
    PEFT_KINDS,
    SIGN_RULES,
    SPARSITY_RULES,
    RunConfig,
)

#: loc tuple -> (line, column), 1-based; built by each parser
Locator = Callable[[tuple[Any, ...]], tuple[int, int] | None]

# --------------------------------------------------------------------------------------------
# metrics: read by meaning in zolab.platform.metrics; an unknown one is kept (and warned about)
# --------------------------------------------------------------------------------------------
Metric = Annotated[str, BeforeValidator(normalise_metric)]
#: the tuning objective must be something zolab measures
MeasuredMetric = Annotated[str, BeforeValidator(measured_metric)]


# --------------------------------------------------------------------------------------------
# base model
# --------------------------------------------------------------------------------------------
class StrictModel(BaseModel):
    """Unknown keys are errors (``validate_plan`` adds the did-you-mean); floats must be finite."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_default=True, allow_inf_nan=False)


#: the largest value of a 32-bit integer column (PostgreSQL ``integer``: seeds, steps, trial numbers)
INT32_MAX = 2**31 - 1
#: integers anywhere in a plan (free-form ``task_options``, tuning choices) must fit 64 bits (JSON on PostgreSQL)
INT64_MAX = 2**63 - 1


def nfkc(text: str) -> str:
    """Unicode NFKC: compatibility forms (full-width letters, ligatures, ...) become plain characters."""
    return unicodedata.normalize("NFKC", text)


class Action(str, enum.Enum):
    REPLACE = "REPLACE"
    REMOVE = "REMOVE"
    ADD = "ADD"


def _action(value: Any) -> Any:
    if isinstance(value, str):
        up = value.strip().upper()
        if up in Action.__members__:
            return up
        raise ValueError(f"action {value!r} is not one of REPLACE, REMOVE, ADD{did_you_mean(up, list(Action.__members__))}")
    return value


#: characters of one ablated part or replacement value: the resolver fuzzy-matches this text, and
#: its cost grows with the length (a 200 KB ablated part took ~17 s); real ones are a few words
MAX_TEXT = 1000


def _replacement_item(value: Any) -> list[str]:
    """Replacement values are free text for the resolver; numbers and dicts become text, a
    comma-separated string stays one string: the resolver splits it where the knob's domain says
    so (``"1e-3, 1e-4"`` is two learning rates, ``"ZO-Adam, beta1 = 0.8"`` one compound value)."""
    if value is None:
        return []
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, (int, float, str)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"a replacement value must be a finite number, got {value}")
        text = nfkc(str(value)).strip()
        if len(text) > MAX_TEXT:
            raise ValueError(f"a replacement value is {len(text):,} characters; at most {MAX_TEXT:,}")
        return [text] if text else []
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            if isinstance(v, (list, dict)):
                raise ValueError(f"replacement {k!r}: a value must be a single number or text")  # noqa: TRY004
            parts = _replacement_item(v)  # {lr: "1e-3, 1e-4"} -> "lr: 1e-3", "lr: 1e-4"
            out.extend([f"{k}: {part}" for part in parts] or [f"{k}:"])
        return out
    raise ValueError(f"replacement items must be text or numbers, got {type(value).__name__}")


def _replacement(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for item in value:
            if isinstance(item, (list, tuple)):
                raise ValueError("replacement items must be text or numbers, not nested lists")  # noqa: TRY004
            out.extend(_replacement_item(item))
        return out
    return _replacement_item(value)


# --------------------------------------------------------------------------------------------
# baseline: generated from RunConfig
# --------------------------------------------------------------------------------------------
#: RunConfig fields that a variant never sets (a job adds them)
PER_JOB_FIELDS = ("task", "seed")

_CHOICES: dict[str, tuple[str, ...]] = {
    "method": METHODS, "peft": PEFT_KINDS, "objective": OBJECTIVES, "dtype": DTYPES, "kernel": KERNELS,
    "sign_rule": SIGN_RULES, "distribution": DISTRIBUTIONS, "estimator": ESTIMATORS,
    "lr_schedule": LR_SCHEDULES, "sparsity_rule": SPARSITY_RULES,
}
_CONSTRAINTS: dict[str, dict[str, Any]] = {
    "lr": {"gt": 0}, "eps": {"gt": 0}, "steps": {"ge": 0}, "n_samples": {"ge": 1},
    "batch_size": {"ge": 1}, "eval_every": {"ge": 1}, "weight_decay": {"ge": 0},
    "momentum": {"ge": 0, "lt": 1}, "max_length": {"ge": 1}, "train_size": {"ge": 1},
    "dev_size": {"ge": 1}, "test_size": {"ge": 1}, "k_shot": {"ge": 1},
    "checkpoint_every": {"ge": 1}, "lora_r": {"ge": 1}, "lora_alpha": {"ge": 1}, "prefix_tokens": {"ge": 1},
    "model": {"min_length": 1}, "warmup_steps": {"ge": 0}, "sparsity": {"ge": 0, "lt": 1},
    "icl_demos": {"ge": 0},
    "device": {"pattern": r"^(auto|cpu|cuda(:\d{1,3})?)$"},
}
_BETA = Annotated[float, Field(ge=0, lt=1)]
_LAYER = Annotated[int, Field(ge=0, le=INT32_MAX)]


def _int_typed(typ: Any) -> bool:
    """``int`` or ``int | None`` (not bool)."""
    return typ is int or (typing.get_origin(typ) in (typing.Union, types.UnionType) and int in typing.get_args(typ))


def _baseline_fields() -> dict[str, Any]:
    hints = typing.get_type_hints(RunConfig)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(RunConfig):
        if f.name in PER_JOB_FIELDS:
            continue
        typ: Any = hints[f.name]
        if f.name in _CHOICES:
            typ = Literal[_CHOICES[f.name]]  # type: ignore[valid-type]
        elif f.name == "betas":
            typ = tuple[_BETA, _BETA]
        elif f.name == "perturb_layers":
            typ = list[_LAYER] | None
        default = f.default if f.default is not dataclasses.MISSING else dataclasses.MISSING
        kwargs = dict(_CONSTRAINTS.get(f.name, {}))
        if _int_typed(typ):  # every integer knob fits the 32-bit columns (steps -> jobs.progress_total, ...)
            kwargs.setdefault("le", INT32_MAX)
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            fields[f.name] = (typ, Field(default_factory=f.default_factory, **kwargs))  # type: ignore[misc]
        else:
            fields[f.name] = (typ, Field(default=default, **kwargs))
    return fields


class _BaselineBase(StrictModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=False, allow_inf_nan=False)

    @model_validator(mode="after")
    def _cross_checks(self) -> _BaselineBase:
        problems = self._problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _problems(self) -> list[str]:
        """Cross-field rules live in RunConfig (e.g. F1 objective needs a ZO method): reuse them."""
        try:
            RunConfig(**self.model_dump())
        except ValueError as exc:
            return [str(exc).removeprefix("invalid RunConfig: ")]
        return []


#: the method being ablated: every RunConfig knob except task and seed
Baseline = create_model("Baseline", __base__=_BaselineBase, **_baseline_fields())  # type: ignore[call-overload]
Baseline.__doc__ = "The method being ablated: a RunConfig without task and seed."


def baseline_field_names() -> list[str]:
    return list(Baseline.model_fields)


# --------------------------------------------------------------------------------------------
# ablation, tuning, budget, plan
# --------------------------------------------------------------------------------------------
class Ablation(StrictModel):
    """One ablation as a planner writes it; ``component`` overrides the resolver."""

    name: Annotated[str, Field(min_length=1, max_length=300)]
    ablated_part: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    action: Annotated[Action, BeforeValidator(_action)]
    replacement: Annotated[list[str], BeforeValidator(_replacement)] = Field(default_factory=list)
    metrics: list[Metric] | None = None
    component: str | None = None

    @field_validator("name", "ablated_part", mode="before")
    @classmethod
    def _normal(cls, v: Any) -> Any:
        return nfkc(v) if isinstance(v, str) else v  # before the length limits: NFKC can lengthen text

    @field_validator("name", "ablated_part")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("must not be empty")
        return v

    @field_validator("component")
    @classmethod
    def _known_component(cls, v: str | None) -> str | None:
        if v is None:
            return None
        from zolab.platform.components import canonical_component  # lazy: components imports this module

        return canonical_component(v)

    @model_validator(mode="after")
    def _replacement_for_replace(self) -> Ablation:
        if self.action is Action.REPLACE and not self.replacement:
            raise PydanticFieldError("replacement", "REPLACE needs a non-empty replacement (the value(s) to use instead)")
        return self


class PydanticFieldError(ValueError):
    """A model-level check that belongs to one field (``validate_plan`` moves the location there)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"@{field}@ {message}")


class ParamRange(StrictModel):
    """One tuned hyperparameter: a numeric range, or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamRange:
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices must not be empty")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give low and high (or choices)")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class Tuning(StrictModel):
    """Optuna search before the final seeds (see ``zolab.platform.tuning``)."""

    trials: Annotated[int, Field(ge=1, le=10000)] = 12
    sampler: Literal["tpe", "random", "cmaes", "grid"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    metric: MeasuredMetric = "accuracy"
    steps: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = None
    space: dict[str, ParamRange] = Field(default_factory=dict)

    @field_validator("space")
    @classmethod
    def _tunable(cls, v: dict[str, ParamRange]) -> dict[str, ParamRange]:
        known = baseline_field_names()
        for key in v:
            if key not in known:
                raise ValueError(f"cannot tune {key!r}: not a baseline field{did_you_mean(key, known)}")
        return v


class Budget(StrictModel):
    gpu_hours: Annotated[float, Field(gt=0)] | None = None


class Plan(StrictModel):
    """A whole ablation study: one baseline, tasks x seeds, and the ablations."""

    zolab: Literal[1] = 1
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str = ""
    baseline: Baseline = Field(default_factory=Baseline)  # type: ignore[valid-type]
    tasks: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    # seeds live in a 32-bit DB column and seed torch generators: keep them in [0, 2**31 - 1]
    seeds: Annotated[list[Annotated[int, Field(ge=0, le=2**31 - 1)]], Field(min_length=1)]
    metrics: list[Metric] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    zero_shot: bool = False
    tuning: Tuning | None = None
    budget: Budget | None = None
    ablations: Annotated[list[Ablation], Field(min_length=1)]

    _marks: dict[tuple[Any, ...], tuple[int, int]] = PrivateAttr(default_factory=dict)
    _source: str | None = PrivateAttr(default=None)

    @field_validator("description")
    @classmethod
    def _strip_description(cls, v: str) -> str:
        return v.strip()

    @field_validator("name", mode="before")
    @classmethod
    def _normal_name(cls, v: Any) -> Any:
        return nfkc(v).strip() if isinstance(v, str) else v  # before the length limit: NFKC can lengthen text

    @field_validator("tasks", mode="before")
    @classmethod
    def _normal_tasks(cls, v: Any) -> Any:
        return [nfkc(t).strip() if isinstance(t, str) else t for t in v] if isinstance(v, list) else v

    @field_validator("tasks", "seeds")
    @classmethod
    def _unique(cls, v: list[Any]) -> list[Any]:
        dupes = sorted({str(x) for x in v if v.count(x) > 1})
        if dupes:
            raise ValueError(f"duplicate entries: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _ablation_defaults(self) -> Plan:
        seen: dict[str, int] = {}
        for i, ab in enumerate(self.ablations):
            key = ab.name.casefold()
            if key in seen:
                raise PydanticFieldError(
                    f"ablations[{i}].name", f"duplicate ablation name {ab.name!r} (also ablations[{seen[key]}])"
                )
            seen[key] = i
            if ab.metrics is None:
                ab.metrics = list(self.metrics)
        return self

    def __eq__(self, other: object) -> bool:
        """Content equality: where a plan came from (file, line marks) does not matter."""
        return isinstance(other, Plan) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    # -- helpers -------------------------------------------------------------------------------
    def baseline_run_config(self, task: str, seed: int) -> RunConfig:
        """The runner config of the baseline for one task and seed."""
        return RunConfig(**self.baseline.model_dump(), task=task, seed=seed)

    def locate(self, loc: Sequence[Any]) -> Issue:
        """An issue skeleton pointing at ``loc`` in the source (for errors found after parsing)."""
        loc = tuple(loc)
        mark = None
        probe = loc
        while probe and mark is None:
            mark = self._marks.get(probe)
            probe = probe[:-1]
        line, col = mark if mark else (None, None)
        return Issue("", self._source, line, col, format_loc(loc))

    def canonical(self) -> dict[str, Any]:
        """Normalised JSON-able content (the upload hash covers exactly this)."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------------------------
# validation with located errors
# --------------------------------------------------------------------------------------------
def _model_for(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of ``loc`` (for did-you-mean on unknown keys)."""
    model: Any = Plan
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = _unwrap(info.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """First BaseModel inside Optional[...] / list[...] / dict[str, ...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def _issue_for(err: dict[str, Any], file: str | None, locator: Locator | None) -> Issue:
    loc = tuple(err["loc"])
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden" and loc:
        owner = _model_for(loc)
        choices = list(owner.model_fields) if owner else []
        msg = f"unknown key {loc[-1]!r}{did_you_mean(str(loc[-1]), choices)}"
        if owner:
            msg += f"; allowed: {', '.join(choices)}"
    elif err["type"] == "missing":
        msg = f"required field {loc[-1]!r} is missing"
    elif err["type"] == "literal_error":
        msg = f"{msg}, got {err.get('input')!r}"
    msg = msg.removeprefix("Value error, ")
    if msg.startswith("@") and "@ " in msg:  # PydanticFieldError: relocate to the named field
        field, _, msg = msg[1:].partition("@ ")
        loc = loc + tuple(_parse_field(field))
    # keep field paths readable: drop pydantic's union/function tags
    loc = tuple(p for p in loc if isinstance(p, int) or not str(p).startswith(("function-", "tuple[", "list[")))
    line = col = None
    if locator is not None:
        probe = loc
        while True:
            pos = locator(probe)
            if pos is not None or not probe:
                break
            probe = probe[:-1]
        if pos:
            line, col = pos
    return Issue(msg, file, line, col, format_loc(loc) or None)


def _parse_field(text: str) -> list[Any]:
    out: list[Any] = []
    for part in text.replace("]", "").replace("[", ".").split("."):
        if part:
            out.append(int(part) if part.isdigit() else part)
    return out


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0/C1 controls and DEL, not tab/newline/CR
#: bidirectional overrides, embeddings, isolates and marks, and zero-width characters: text that
#: reads differently from what it is ("Trojan Source"), refused wherever it appears
_INVISIBLE = re.compile("[\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_CONTROL_WHY = ("must not contain control characters (found U+{:04X}): plan text is shown in terminals and "
                "stored in PostgreSQL, which refuses NUL")
_INVISIBLE_WHY = ("must not contain bidirectional-override or zero-width characters (found U+{:04X}): they make "
                  "text read differently from what it is")


def _bad_values(data: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(where, why) for each string (key or value) with a control, bidi or zero-width character,
    each non-finite float and each integer beyond 64 bits, anywhere in the parsed data."""
    if isinstance(data, str):
        if found := _CONTROL.search(data):
            yield loc, "text " + _CONTROL_WHY.format(ord(found.group(0)))
        elif found := _INVISIBLE.search(data):
            yield loc, "text " + _INVISIBLE_WHY.format(ord(found.group(0)))
    elif isinstance(data, float):
        if not math.isfinite(data):
            yield loc, f"numbers must be finite, got {data}"
    elif isinstance(data, int) and not isinstance(data, bool):
        if abs(data) > INT64_MAX:
            yield loc, f"an integer of {len(str(abs(data)))} digits is out of range (at most {INT64_MAX:,} in magnitude)"
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _bad_values(key, loc + (key,))
            yield from _bad_values(value, loc + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _bad_values(value, loc + (i,))


def validate_plan(
    data: Any,
    *,
    file: str | None = None,
    locator: Locator | None = None,
    marks: dict[tuple[Any, ...], tuple[int, int]] | None = None,
) -> Plan:
    """Validate parsed data into a Plan; every problem becomes a located :class:`Issue`."""
    if not isinstance(data, dict):
        raise PlanError.single(
            f"a plan must be a mapping of keys (zolab, name, baseline, ...), got {type(data).__name__}",
            file=file, line=1, column=1,
        )
    bad = list(_bad_values(data))
    if bad:  # escapes such as "\u0000" / "\e" in JSON or double-quoted YAML, .inf, 1e400; refused here, located
        raise PlanError([
            Issue(why, file, *((locator and locator(loc)) or (None, None)), format_loc(loc) or None)
            for loc, why in bad
        ])
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError([_issue_for(e, file, locator) for e in exc.errors()]) from None
    plan._marks = dict(marks or {})
    plan._source = file
    return plan


#: used by JSONL and markdown when no ``--baseline`` file is given and ablations/baselines is absent
BUILTIN_DEFAULTS: dict[str, Any] = {
    "baseline": {
        "method": "mezo", "model": "facebook/opt-1.3b", "peft": "none", "objective": "ce", "prompt": True,
        "lr": 1.0e-6, "eps": 1.0e-3, "n_samples": 1, "steps": 20000, "batch_size": 16, "eval_every": 500,
        "k_shot": 16,
    },
    "tasks": ["sst2", "rte"],
    "seeds": [13, 21, 42, 87, 100],
    "metrics": list(DEFAULT_METRICS),
}
