"""Compound replacement values: one value that names a main reading *and* settings of other knobs.

"prefix tuning with 10 virtual tokens" is ``peft: prefix`` and ``prefix_tokens: 10``; "Adam (lr
1e-4)" is the optimizer and the learning rate; "perturb only 20% of the weights with the smallest
magnitude" is ``sparsity: 0.8`` *and* ``sparsity_rule: magnitude``. Dropping the second half runs a
different experiment than the one asked for, silently, so :func:`read_value` reads a value as:

1. every knob's :class:`~zolab.platform.resolver.attributes.Attribute` found in it, and every
   ``name: value`` pair whose name is a component ("lr: 1e-5", "warmup_steps: 100");
2. the main reading by the component's own domain (a vocabulary reads the whole value; a number
   domain reads what is left once the other knobs' words are taken out);
3. the other knobs' attributes, each typed by that knob's own domain (a LoRA rank of 5000 is out of
   range there too), where the attribute may be read in this component's values.

What it cannot place makes the value a misfit that names the words, never a reading that ignores
them: an attribute this component's values may not carry, words naming something zolab cannot run
("Nesterov", "gradient clipping"), and a number left over that has a unit or symbol ("500 steps",
"r=16", "20%") or is a fraction or exponent ("1e-4", "0.9"). Other leftover words and whole numbers
without a unit ("Spall (1992)", "entries +1 or -1") are only words: they do not stop a reading.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from zolab.platform.resolver.attributes import Attribute
from zolab.platform.resolver.domains import (
    UNIT_WORDS,
    Context,
    Misfit,
    NumberDomain,
    Reading,
    Value,
    Vocabulary,
)
from zolab.platform.resolver.text import Number, numbers, stem

_GREEK = {"ε": "epsilon", "ϵ": "epsilon", "η": "eta", "β": "beta", "μ": "mu", "α": "alpha", "λ": "lambda"}
_KEYED = re.compile(r"(?P<k>[a-z][\w.'-]*(?:[ \t]+[a-z][\w.'-]*){0,3})\s*[:=]\s*(?P<v>[^,;()\s][^,;()]*?)\s*"
                    r"(?=[,;()]|$|\s+[a-z][\w.-]*\s*[:=])", re.IGNORECASE)  # "r=16 alpha=32": two pairs


def light(text: str) -> str:
    """The value with Greek letters named and dashes made ASCII; case kept (model ids need it)."""
    text = unicodedata.normalize("NFKC", str(text))
    for letter, name in _GREEK.items():
        text = text.replace(letter, f" {name}")
    return text.replace("\u2212", "-").replace("\u2013", "-").replace("\u00b1", "+/-")


@dataclass(frozen=True)
class Found:
    """One attribute (or ``name: value`` pair) found in a value: where, and which numbers it holds
    (by where each number starts)."""

    key: str                     # the component it sets
    attribute: Attribute | None  # None: a "name: value" pair
    start: int
    end: int
    snippet: str                 # what the knob's domain reads
    nums: tuple[int, ...]

    def conflicts(self, other: Found) -> bool:
        """Two finds claim the same words: they share a number, or (no numbers) they overlap."""
        if self.nums and other.nums:
            return bool(set(self.nums) & set(other.nums))
        if self.nums or other.nums:
            return False
        return self.start < other.end and other.start < self.end

    def covers(self, other: Found) -> bool:
        """Whether this find says more than ``other`` about the same words (it holds them and more)."""
        return self.start <= other.start and other.end <= self.end and self.end - self.start > other.end - other.start


@lru_cache(maxsize=4096)
def _numbers(text: str) -> tuple[Number, ...]:
    return tuple(numbers(text))


def _nums(text: str, start: int, end: int) -> tuple[int, ...]:
    return tuple(n.start for n in _numbers(text) if start <= n.start < end)


#: a replacement written as a sentence names the old value too: "Replace the Gaussian perturbation
#: with Rademacher noise", "8 random directions instead of one"; only the new value is read
_OLD_PART = (re.compile(r"\breplac\w*\s+.+?\s(?:with|by)\s", re.IGNORECASE),
             re.compile(r"\bswitch\w*\s+from\s+.+?\sto\s", re.IGNORECASE),
             re.compile(r"\s(?:instead\s+of|rather\s+than|in\s+place\s+of)\s[^,;()]*", re.IGNORECASE))


def _new_part(text: str) -> str:
    for pattern in _OLD_PART:
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


@lru_cache(maxsize=4096)
def _scan(text: str) -> tuple[Found, ...]:
    """Every attribute of every component, and every ``name: value`` pair, found in ``text``."""
    from zolab.platform.resolver.registry import COMPONENTS
    from zolab.platform.resolver.resolve import find_component

    found: list[Found] = []
    for comp in COMPONENTS.values():
        for attr in comp.attributes:
            for m in re.finditer(attr.pattern, text, re.IGNORECASE):
                if m.end() == m.start():
                    continue
                group = "v" if "v" in m.re.groupindex and m.group("v") is not None and not attr.whole else 0
                found.append(Found(comp.key, attr, m.start(), m.end(), m.group(group).strip(),
                                   _nums(text, m.start(), m.end())))
    for m in _KEYED.finditer(text):
        words = m.group("k").split()
        for i in range(len(words)):  # "with lr: 1e-5": the name is the longest tail that names a component
            key = find_component(" ".join(words[i:]))
            if key is not None and COMPONENTS[key].knob is not None:
                start = m.start("k") + m.group("k").index(words[i]) if i else m.start("k")
                found.append(Found(key, None, start, m.end(), m.group("v").strip(), _nums(text, m.start("v"), m.end())))
                break
    return tuple(found)


def _unit_after(text: str, end: int) -> re.Match[str] | None:
    m = re.match(r"\s*-?\s*([a-z]+)(?:\s+([a-z]+))?", text[end:end + _WINDOW], re.IGNORECASE)
    return m if m and any(stem(w.lower()) in UNIT_WORDS for w in m.groups() if w) else None


_WORD_BEFORE = re.compile(r"([a-z]+)\s*[=:]?\s*$", re.IGNORECASE)
_WINDOW = 40  # characters looked at before a number for its unit word


def _word_before(text: str, start: int) -> re.Match[str] | None:
    return _WORD_BEFORE.search(text[max(0, start - _WINDOW):start])


def _unit_before(text: str, start: int) -> re.Match[str] | None:
    m = _word_before(text, start)
    return m if m and stem(m.group(1).lower()) in UNIT_WORDS else None


def _word_part(text: str, n: Number) -> bool:
    """A number inside a word (fp16, OPT-13B, GPT-2): part of a name, not a count."""
    if n.start > 0 and (text[n.start - 1].isalpha() or (text[n.start] in "+-" and n.start > 1
                                                        and text[n.start - 1].isalpha())):
        return True
    return n.end < len(text) and text[n.end].isalpha() and text[n.end].lower() not in "km"


def _bare(text: str, n: Number) -> bool:
    """A whole number without a unit or symbol: only a word ("Spall (1992)", "entries +1 or -1")."""
    raw = text[n.start:n.end].lower()
    fraction = n.value != int(n.value) or "e" in raw
    return not (n.percent or fraction or _unit_after(text, n.end) or _unit_before(text, n.start))


def _own_units(comp: Any, text: str) -> list[Found]:
    """The component's own numbers written with its units or symbols ("200 steps" for warmup)."""
    domain = comp.domain
    if not isinstance(domain, NumberDomain) or not (domain.units or domain.symbols):
        return []
    spans = []
    units = {stem(u.split()[0]) for u in domain.units}
    for n in _numbers(text):
        after = re.match(r"\s*-?\s*([a-z]+)", text[n.end:n.end + _WINDOW], re.IGNORECASE)
        before = _word_before(text, n.start)
        if after and stem(after.group(1).lower()) in units:
            spans.append(Found(comp.key, None, n.start, n.end + after.end(), "", (n.start,)))
        elif before and before.group(1).lower() in domain.symbols + tuple(units):
            spans.append(Found(comp.key, None, n.start - (len(before.string) - before.start()), n.end, "", (n.start,)))
    return spans


def _leftover(text: str, claimed: list[tuple[int, int]]) -> list[str]:
    """Numbers outside ``claimed`` that carry a unit or symbol, a percent sign, or are fractions."""
    out = []
    for n in _numbers(text):
        if any(s <= n.start < e for s, e in claimed) or _word_part(text, n) or _bare(text, n):
            continue
        after, before = _unit_after(text, n.end), _unit_before(text, n.start)
        words = f"{before.group(1) + ' ' if before and not after else ''}{text[n.start:n.end].strip()}" \
                f"{' ' + after.group(0).strip() if after else ''}"
        out.append(words.strip())
    return out


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for s, e in spans:
        chars[s:e] = " " * (e - s)
    return "".join(chars)


def _only_words(text: str, claims: list[Found]) -> str:
    """For a number domain: when one number has the knob's unit, the bare whole numbers beside it are
    words ("10,000 steps (evaluate every 500)")."""
    found = numbers(text)
    united = [n for n in found if any(n.start in c.nums for c in claims)]
    if len(found) < 2 or len(united) != 1:
        return text
    return _blank(text, [(n.start, n.end) for n in found if n not in united and _bare(text, n)])


def _merge(changes: dict[str, Any], more: dict[str, Any], base: Any) -> str | None:
    """Add ``more`` to ``changes``; a pair of betas fills in the other beta; a clash is a reason."""
    for key, value in more.items():
        if key not in changes:
            changes[key] = value
            continue
        old = changes[key]
        if old == value:
            continue
        if isinstance(old, (list, tuple)) and isinstance(value, (list, tuple)) and len(old) == len(value):
            ref = list(base.get(key) or [])
            merged = [b if (i < len(ref) and a == ref[i]) else a for i, (a, b) in enumerate(zip(old, value))]
            if all(i >= len(ref) or a == ref[i] or b == ref[i] or a == b for i, (a, b) in enumerate(zip(old, value))):
                changes[key] = merged
                continue
        return f"the value says both {key}={old} and {key}={value}"
    return None


def _methods(main: Reading | None, finds: tuple[Found, ...], ctx: Context) -> set[str]:
    """The methods a value names (its main reading's, or a method name inside it)."""
    from zolab.platform.resolver.registry import COMPONENTS

    out = {main.changes["method"]} if isinstance(main, Value) and "method" in main.changes else set()
    for f in finds:
        if f.key == "optimizer" and f.attribute is not None and not f.attribute.reason:
            got = COMPONENTS["optimizer"].domain.read(f.snippet, ctx)
            if isinstance(got, Value) and "method" in got.changes:
                out.add(got.changes["method"])
    return out


def _main_span(domain: Any, text: str) -> tuple[int, int] | None:
    locate = getattr(domain, "locate", None)
    return locate(text) if locate else None


def read_value(comp: Any, text: str, ctx: Context) -> Reading:
    """``comp``'s reading of one replacement value, with the other knobs it names (module doc).

    Returns a :class:`Value` whose changes hold the main reading and every attribute read, and whose
    ``attributes`` name the components they came from; or a :class:`Misfit` naming the words that
    could not be placed."""
    from zolab.platform.resolver.registry import COMPONENTS

    domain = comp.domain
    src = _new_part(light(text))
    finds = _scan(src)
    vocabulary = isinstance(domain, Vocabulary)
    main: Reading | None = domain.read(src, ctx) if vocabulary else None
    if isinstance(main, Misfit):
        return main
    span = _main_span(domain, src) if vocabulary else None
    strong = [Found(comp.key, None, span[0], span[1], "", _nums(src, *span))] if span else []
    own = [f for f in finds if f.key == comp.key]
    refused = [f for f in own if f.attribute is not None and f.attribute.reason]  # "warm restarts" for the schedule
    #: the component's own words: another knob's find takes them only when it says more about them
    #: ("a soft prompt 50 tokens long" is a prefix length, not a max_length with a word before it)
    weak = [f for f in own if f not in refused] + _own_units(comp, src)

    def related(f: Found) -> bool:
        return f.attribute is None or f.attribute.reason != "" or f.attribute.readable_in(comp.key)

    kept: list[Found] = list(refused)
    others = sorted((f for f in finds if f.key != comp.key),
                    key=lambda f: (not related(f), f.attribute is None, -(f.end - f.start), f.start))
    methods = _methods(main, finds, ctx)

    def beats(f: Found, w: Found) -> bool:
        """A related find takes the component's own words when it says more about them, or when they
        are the same words and the method the value names reads only that knob ("ICL, 32-shot")."""
        uses = COMPONENTS[f.key].uses
        same = (f.start, f.end) == (w.start, w.end) or f.covers(w)
        return related(f) and (f.covers(w) or (same and bool(uses) and bool(set(uses) & methods)))

    for f in others:
        if any(f.conflicts(o) for o in strong + kept) or any(f.conflicts(w) and not beats(f, w) for w in weak):
            continue
        if f.attribute is not None and not f.attribute.numeric and not f.attribute.reason \
                and isinstance(own_read := domain.read(src[f.start:f.end], ctx), Value) and own_read.fit >= 1.0:
            continue  # the component's own words ("zero-shot" for steps, "one-point" for one-point-rf)
        kept.append(f)
    weak = [w for w in weak if not any(k.conflicts(w) and beats(k, w) for k in kept)]
    if not vocabulary:
        main = domain.read(_only_words(_blank(src, [(f.start, f.end) for f in kept]), weak), ctx)
        if isinstance(main, Misfit):
            return main
    assert isinstance(main, Value)
    changes = dict(main.changes)
    notes = [main.note] if main.note else []
    problems: list[str] = []
    used: list[str] = []
    for f in sorted(kept, key=lambda f: f.start):
        other = COMPONENTS[f.key]
        words = src[f.start:f.end].strip()
        if f.attribute is not None and f.attribute.reason:
            problems.append(f"{words!r}: {f.attribute.reason}")
            continue
        if not related(f):
            problems.append(f"{words!r} sets {other.title}, which a value of the {comp.title} does not carry here")
            continue
        if f.attribute is not None and not f.attribute.numeric:
            got: Reading = Value({other.knob: f.attribute.value}, 1.0)
        else:
            got = other.domain.read(f.snippet, ctx)
        if isinstance(got, Misfit):
            problems.append(f"{words!r} ({other.title}): {got.reason}")
            continue
        if clash := _merge(changes, got.changes, ctx.base):
            problems.append(clash)
            continue
        if got.note:
            notes.append(got.note)
        used.append(f.key)
    claimed = [(f.start, f.end) for f in kept + strong + weak]
    if not vocabulary:
        claimed.append((0, len(src)))  # a number domain read (or refused) every number left
    if left := _leftover(src, claimed):
        problems.append(f"{', '.join(repr(w) for w in left)} not understood: no setting of the {comp.title} "
                        "takes it; give it as 'knob: value' or in an ablation of its own")
    if problems:
        return Misfit(f"{text!r}: " + "; ".join(dict.fromkeys(problems)))
    return Value(changes, main.fit, "; ".join(dict.fromkeys(notes)), main.span, tuple(dict.fromkeys(used)))


__all__ = ["Found", "light", "read_value"]
