"""Value domains: how each component reads one replacement value, and how well it fits.

``read(text, ctx)`` returns a :class:`Value` (the RunConfig changes and a *fit*) or a
:class:`Misfit` (why the text is not a value of this domain). The fit is the evidence the value
gives for the component: 1.0 for a vocabulary word or a number with its unit ("4 directions",
"16-shot"), 0.8 for a fuzzy vocabulary match, 0.5 for a bare number in the knob's plausible range.
A number outside the range is a misfit ("5 is outside eps's plausible range"), never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz

from zolab.platform.resolver.text import Number, factor_of, is_multiplier, normalise, numbers, tokens


@dataclass(frozen=True)
class Context:
    """What a domain may look at besides the value: the ablation text and the baseline."""

    part: str = ""            # ablated part + title, as written ("part | title")
    base: Mapping[str, Any] = field(default_factory=dict)

    @property
    def words(self) -> set[str]:
        return set(tokens(self.part))

    @property
    def ablated(self) -> str:
        """The ablated part alone (the title says less about a value's unit or direction)."""
        return self.part.split(" | ", 1)[0]

    @property
    def title(self) -> str:
        return self.part.split(" | ", 1)[1] if " | " in self.part else ""


@dataclass(frozen=True)
class Value:
    """A value read: the changes, the fit, and for vocabulary words the alias length (``span``);
    ``attributes``: the other components whose settings the value also gave ("LoRA with r=16":
    lora_r), read by :mod:`zolab.platform.resolver.compound`."""

    changes: dict[str, Any]
    fit: float
    note: str = ""
    span: int = 0
    attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Misfit:
    reason: str


Reading = Value | Misfit


def _fmt(x: float) -> str:
    return f"{x:g}"


def contains(words: list[str], alias: tuple[str, ...], gap: int = 1) -> bool:
    """Whether the alias tokens occur in order in ``words`` with at most ``gap`` words between."""
    if not alias:
        return False
    for start, w in enumerate(words):
        if w != alias[0]:
            continue
        pos, ok = start, True
        for a in alias[1:]:
            window = words[pos + 1: pos + 2 + gap]
            if a not in window:
                ok = False
                break
            pos = pos + 1 + window.index(a)
        if ok:
            return True
    return False


#: one-word vocabulary aliases that are also ordinary words: in a longer value they are weak evidence
_COMMON = frozenset(tokens("half full none normal linear constant fixed flat random uniform symmetric scalar "
                           "forward stored store on off yes no true false template prompt sign magnitude"))


class Domain:
    """Base class: ``knob`` is the RunConfig field; ``split`` says a comma list is several values;
    ``joins`` says several items may be one list value ([0, 1, 2] written out as items);
    ``describe`` says in words what the domain holds (for "is not ..." messages)."""

    knob: str
    split: bool
    describe: str
    joins: bool = False

    def read(self, text: str, ctx: Context) -> Reading:  # pragma: no cover - interface
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------------

#: the stemmed unit words of every number domain ("step", "direction", "token"): a number written
#: with one of them names that knob, so it is never another knob's bare number
UNIT_WORDS: set[str] = set()


def _numeric(word: str) -> bool:
    """Part of a number as :func:`tokens` splits it ("1e" and "7" of "1e-7", "50k")."""
    return any(ch.isdigit() for ch in word)


@dataclass
class NumberDomain(Domain):
    """A float or int knob with a plausible range and unit words ("steps", "directions")."""

    knob: str
    lo: float
    hi: float
    integer: bool = False
    units: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()      # "q", "n", "eps": ``q = 4`` names the knob
    percent_ok: bool = False
    zero_words: tuple[str, ...] = ()   # words that mean 0 ("zero-shot" for steps)
    split: bool = True
    of_steps: bool = False             # a percentage is a share of the baseline's steps (warmup)

    def __post_init__(self) -> None:
        UNIT_WORDS.update(t for u in self.units for t in tokens(u)[:1])
        UNIT_WORDS.update(self.symbols)

    def _relative(self, text: str, ctx: Context) -> Reading:
        """"10x larger", "half", "twice": that factor of the baseline's value, checked like any value."""
        factor, base = factor_of(text), ctx.base.get(self.knob)
        if factor is None or not isinstance(base, (int, float)) or isinstance(base, bool) or not base:
            return Misfit(f"{text!r} is a factor of the baseline, and the baseline's {self.knob} "
                          f"({base!r}) gives no value to scale" if factor is not None else
                          f"{text!r} holds no single factor of the baseline")
        value = base * factor
        if self.integer:
            if abs(value - round(value)) > 1e-9:
                return Misfit(f"{text!r}: {_fmt(factor)} x the baseline's {self.knob}={_fmt(base)} is not a whole number")
            value = int(round(value))
        else:
            value = float(f"{value:.12g}")   # 10 x 1e-3 is 0.01, not 0.010000000000000002
        if not self.lo <= value <= self.hi:
            return Misfit(f"{_fmt(value)} ({_fmt(factor)} x the baseline's {_fmt(base)}) is outside the plausible "
                          f"range of {self.knob} ({_fmt(self.lo)}..{_fmt(self.hi)})")
        return Value({self.knob: value}, 0.9)

    @property
    def describe(self) -> str:  # type: ignore[override]
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {_fmt(self.lo)}..{_fmt(self.hi)}"

    def read(self, text: str, ctx: Context) -> Reading:
        words = tokens(text)
        if self.zero_words and any(contains(words, tuple(tokens(z))) for z in self.zero_words):
            return Value({self.knob: 0}, 1.0)
        if is_multiplier(text):
            return self._relative(text, ctx)
        found = numbers(text)
        if not found:
            return Misfit(f"{text!r} holds no number")
        if len(found) > 1 and len({n.value for n in found}) > 1:
            return Misfit(f"{text!r} holds several numbers")
        n: Number = found[0]
        value = n.value / 100 if n.percent else n.value
        note = ""
        if n.percent and self.of_steps and ctx.base.get("steps"):
            value = round(value * int(ctx.base["steps"]))
            note = f"{_fmt(n.value)}% of the baseline's {ctx.base['steps']} steps is {self.knob}={value}"
        elif n.percent and not self.percent_ok:
            return Misfit(f"{text!r} is a percentage, not a {self.knob} value")
        if self.integer:
            if value != int(value):
                return Misfit(f"{text!r} is not a whole number")
            value = int(value)
        if not self.lo <= value <= self.hi:
            return Misfit(f"{_fmt(value)} is outside the plausible range of {self.knob} ({_fmt(self.lo)}..{_fmt(self.hi)})")
        units = {u for u in (tokens(u)[0] for u in self.units if tokens(u))}
        unit = any(w in units for w in words) or any(
            re.search(rf"(?<![a-z]){re.escape(s)}\s*[=:]", normalise(text)) for s in self.symbols)
        other = [w for w in words if w in UNIT_WORDS and w not in units and w not in self.symbols]
        if other and not unit:  # "16 demonstrations" is a number of demonstrations, not of steps
            return Misfit(f"{text!r}: the number comes with words ({' '.join(other)}) that are units of "
                          f"another knob, not of {self.knob}")
        return Value({self.knob: value}, 1.0 if unit or note else 0.5, note)


# ---------------------------------------------------------------------------------------------
# vocabularies
# ---------------------------------------------------------------------------------------------
@dataclass
class Vocabulary(Domain):
    """A knob with named values; ``aliases`` maps phrases (any spelling) to the value."""

    knob: str
    aliases: Mapping[str, Any]
    fuzzy: bool = True
    gap: int = 1
    split: bool = True

    def __post_init__(self) -> None:
        self._table = sorted(((tuple(tokens(a)), v) for a, v in self.aliases.items()), key=lambda t: -len(t[0]))

    @property
    def describe(self) -> str:  # type: ignore[override]
        values = list(dict.fromkeys(str(v).lower() if isinstance(v, bool) else str(v) for v in self.aliases.values()))
        return "one of " + ", ".join(values)

    def match(self, text: str) -> tuple[Any, float, int] | None:
        """(value, fit, alias length) of the longest alias found in ``text``."""
        words = tokens(text)
        if not words:
            return None
        for alias, value in self._table:
            if alias and contains(words, alias, gap=self.gap if len(alias) > 1 else 0):
                common = len(alias) == 1 and alias[0] in _COMMON  # "half", "linear": ordinary words too
                return value, 0.6 if common and len(words) > 1 else 1.0, len(alias)
        if self.fuzzy:
            joined = " ".join(words)
            best = max(((fuzz.ratio(joined, " ".join(a)), len(a), i) for i, (a, _) in enumerate(self._table) if a),
                       default=None)
            if best and best[0] >= 88:
                return self._table[best[2]][1], 0.8, best[1]
        return None

    def read(self, text: str, ctx: Context) -> Reading:
        found = self.match(text)
        if found is None:
            return Misfit(f"{text!r} is not {self.describe}")
        return Value({self.knob: found[0]}, found[1], span=found[2])

    def locate(self, text: str) -> tuple[int, int] | None:
        """Where in ``text`` (characters) the alias :meth:`match` reads is written, when it can be
        found as written (stemmed or fuzzy matches may not be): the words a value's main reading uses."""
        found = self.match(text)
        if found is None:
            return None
        value, _, span = found
        for alias, v in self.aliases.items():
            if v == value and len(tokens(alias)) == span and (m := alias_regex(alias, self.gap).search(text)):
                return m.span()
        return None


def alias_regex(alias: str, gap: int = 1) -> re.Pattern[str]:
    """A regex for a vocabulary alias as written in free text: any case, hyphens or spaces between
    its words, word endings ("directions"), up to ``gap`` words between ("zo sgd with momentum")."""
    parts = [re.escape(w) + r"\w{0,4}" for w in alias.split()]
    sep = rf"(?:[\s_/-]+\w+){{0,{gap}}}[\s_/-]*" if gap else r"[\s_/-]*"
    return re.compile(r"(?<![a-z0-9])" + sep.join(parts) + r"(?![a-z0-9])", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# special shapes: models, layer lists, beta pairs, training-set size, sparsity
# ---------------------------------------------------------------------------------------------
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_LOCAL = re.compile(r"^(?:\.{0,2}/|~/|[A-Za-z]:\\)")
_FAMILY_SIZE = re.compile(r"\b(?P<family>opt|llama\s*-?\s*2|llama|gpt\s*-?\s*2|roberta|mistral|pythia)?"
                          r"[\s-]*(?P<size>\d+(?:\.\d+)?)\s*(?P<unit>[mb])\b", re.IGNORECASE)
_OPT_SIZES = ("125m", "350m", "1.3b", "2.7b", "6.7b", "13b", "30b", "66b")


@dataclass
class ModelDomain(Domain):
    """HF ids, local paths, zolab aliases, and "OPT-13B" / "13B" (same family as the baseline)."""

    knob: str = "model"
    aliases: tuple[str, ...] = ()
    split: bool = True
    describe: str = "a model id (org/name), a local path, a zolab alias or an OPT size such as OPT-13B"

    def read(self, text: str, ctx: Context) -> Reading:
        raw = text.strip().strip("`'\"")
        if _HF_ID.match(raw) or _LOCAL.match(raw):
            return Value({"model": raw}, 1.0)
        low = raw.lower()
        if low in self.aliases or re.match(r"^tiny-(opt|llama|gpt2)(-h\d+)?(-l\d+)?$", low):
            return Value({"model": low}, 1.0)
        m = _FAMILY_SIZE.search(raw)
        if m is None:
            return Misfit(f"{text!r} is not {self.describe}")
        size = f"{m.group('size')}{m.group('unit').lower()}"
        family = (m.group("family") or "").lower().replace(" ", "").replace("-", "")
        base = str(ctx.base.get("model", ""))
        if not family and base.startswith("facebook/opt-"):
            family = "opt"
        if family == "opt" and size in _OPT_SIZES:
            return Value({"model": f"facebook/opt-{size}"}, 1.0 if m.group("family") else 0.8)
        return Misfit(f"{text!r}: no model id for this size (write the HF id, e.g. facebook/opt-13b)")


@dataclass
class LayerDomain(Domain):
    """Layer lists: ``[0, 1, 2]``, ``layers 0-5``, ``first 12 layers``, ``last 4 layers`` (needs the depth)."""

    knob: str = "perturb_layers"
    depth: Callable[[str], int | None] = lambda model: None
    split: bool = False
    joins: bool = True
    describe: str = "layer indices ([0, 1, 2], 'layers 0-5', 'first 12 layers', 'last 4 layers')"

    def read(self, text: str, ctx: Context) -> Reading:
        norm = normalise(text)
        words = norm.split()
        layerish = any(w.startswith(("layer", "block")) for w in words)
        m = re.search(r"\b(first|bottom|lowest|last|top|final|upper)\s+(\d+)\b", norm)
        if m and layerish:
            n = int(m.group(2))
            if m.group(1) in ("first", "bottom", "lowest"):
                return Value({self.knob: list(range(n))}, 1.0)
            depth = self.depth(str(ctx.base.get("model", "")))
            if depth is None:
                return Misfit(f"{text!r}: the baseline model's depth is unknown, so 'last {n}' cannot be listed")
            if n > depth:
                return Misfit(f"{text!r}: the baseline model has only {depth} layers")
            return Value({self.knob: list(range(depth - n, depth))}, 1.0)
        m = re.search(r"(\d+)\s*(?:-|\u2013|to|\.\.)\s*(\d+)", str(text).lower())
        if m and layerish:
            a, b = int(m.group(1)), int(m.group(2))
            if a <= b:
                return Value({self.knob: list(range(a, b + 1))}, 1.0)
        found = numbers(text)
        listed = text.strip().startswith("[") or layerish
        if found and listed and all(n.value == int(n.value) and n.value >= 0 and not n.percent for n in found):
            return Value({self.knob: sorted({int(n.value) for n in found})}, 1.0 if layerish else 0.6)
        return Misfit(f"{text!r} is not {self.describe}")


@dataclass
class BetasDomain(Domain):
    """Adam's (beta1, beta2): a pair, or one value for the beta the ablated part names."""

    knob: str = "betas"
    split: bool = False
    describe: str = "a pair (beta1, beta2) in [0, 1), or one beta value when the ablated part names beta1/beta2"

    def read(self, text: str, ctx: Context) -> Reading:
        values = [n.value for n in numbers(text) if not n.percent]
        norm = normalise(text)
        values = [v for v in values if not (v in (1.0, 2.0) and re.search(rf"beta\s*{int(v)}", norm))]
        if not values or any(not 0 <= v < 1 for v in values):
            return Misfit(f"{text!r} is not {self.describe}")
        base = tuple(ctx.base.get("betas", (0.9, 0.999)))
        if len(values) == 2:
            marked = "(" in text or "beta" in norm or "beta" in normalise(ctx.part) or "adam" in normalise(ctx.part)
            return Value({self.knob: [values[0], values[1]]}, 1.0 if marked else 0.5)
        if len(values) == 1:
            where = normalise(ctx.part + " " + text)
            if re.search(r"beta\s*2|second moment|second order moment", where):
                return Value({self.knob: [base[0], values[0]]}, 1.0)
            if re.search(r"beta\s*1|first moment", where):
                return Value({self.knob: [values[0], base[1]]}, 1.0)
            return Misfit(f"{text!r}: one value, but which beta (beta1 or beta2)?")
        return Misfit(f"{text!r} is not {self.describe}")


_PER_CLASS = re.compile(r"per[- ](?:class|label|category)|\bk\s*[-=]?\s*shot|\bshots?\b|\bk\b|each class|every class")
_TOTAL = re.compile(r"\bin total\b|\btotal\b|\boverall\b|\baltogether\b|\bwhole\b|\bfull (?:training )?(?:set|data)")


@dataclass
class TrainSizeDomain(Domain):
    """Training examples: k per class (``k_shot``) or a total (``train_size`` with k-shot off).

    The unit comes from the value ("512 per class", "1000 in total"), else the ablated part, else the
    baseline's own (k per class when it samples k-shot, as the MeZO paper does).
    """

    knob: str = "k_shot"
    lo: int = 1
    hi: int = 100_000
    split: bool = True
    describe: str = "a number of training examples (per class or in total)"

    def read(self, text: str, ctx: Context) -> Reading:
        if is_multiplier(text):
            return Misfit(f"{text!r} is a factor of the baseline, not a number of examples")
        found = [n for n in numbers(text) if not n.percent]
        if len(found) != 1 or found[0].value != int(found[0].value) or not self.lo <= found[0].value <= self.hi:
            return Misfit(f"{text!r} is not {self.describe} ({self.lo}..{self.hi})")
        n = int(found[0].value)
        value, part = normalise(text), normalise(ctx.ablated)
        unit_word = bool(_PER_CLASS.search(value) or _TOTAL.search(value)
                         or re.search(r"example|sample|instance|shot", value))
        if _TOTAL.search(value) or (not _PER_CLASS.search(value) and _TOTAL.search(part)):
            per_class = False
        elif _PER_CLASS.search(value) or _PER_CLASS.search(part):
            per_class = True
        else:
            per_class = ctx.base.get("k_shot") is not None
        fit = 1.0 if unit_word else 0.5
        if per_class:
            return Value({"k_shot": n}, fit)
        return Value({"k_shot": None, "train_size": n}, fit)


_INVERSE = re.compile(r"perturbed|perturb (?:only|just)|perturbing|updat|touch|densit|dense|keep|kept|active|tuned|"
                      r"trained|selected")
_DIRECT = re.compile(r"sparsit|sparse|zeroed|frozen|not perturbed|pruned|dropped")


@dataclass
class SparsityDomain(Domain):
    """zolab's ``sparsity`` is the fraction NOT perturbed: "perturb only 10%" is sparsity 0.9."""

    knob: str = "sparsity"
    split: bool = True
    describe: str = "a fraction of weights in [0, 1) or a percentage"

    def read(self, text: str, ctx: Context) -> Reading:
        found = numbers(text)
        if len(found) != 1:
            return Misfit(f"{text!r} is not {self.describe}")
        n = found[0]
        frac = n.value / 100 if n.percent or n.value > 1 else n.value
        if not 0 <= frac <= 1:
            return Misfit(f"{text!r} is not {self.describe}")
        inverse = False
        for where in (text, ctx.ablated, ctx.title):  # the value says most, then the part, then the title
            words = normalise(where)
            if _INVERSE.search(words) or _DIRECT.search(words):
                inverse = bool(_INVERSE.search(words)) and not _DIRECT.search(words)
                break
        value = normalise(text)
        sparsity = round(1 - frac, 10) if inverse else frac
        if not 0 <= sparsity < 1:
            return Misfit(f"{text!r} would leave no weight perturbed (sparsity {sparsity:g})")
        note = f"{_fmt(frac)} of the weights perturbed is sparsity {sparsity:g}" if inverse else ""
        said = "sparsit" in value or "sparse" in value or bool(_INVERSE.search(value))
        return Value({"sparsity": sparsity}, 1.0 if said else 0.5, note)
