"""Weighing the evidence: which component an ablation is about, and the resolution it gets.

For every component the resolver scores how strongly the ablation *names* it (the phrases of the
registry in the ablated part, and less in the title: :func:`name_evidence`) and how well the
replacement values fit its domain (each component's :func:`~.readings.read`). The two combine as
``1 - (1 - name) (1 - 0.75 fit)``: a strong name needs only a readable value, a value that only one
domain can read ("Rademacher", "bfloat16", "linear probing") carries a reading on its own, and a
bare number alone never does. A component that cannot read the values keeps half its name score.

Then, precision first:

* best score below :data:`THRESHOLD` -> ``unresolved`` (with the best-named component's reason);
* another runnable reading with different changes within :data:`MARGIN` -> ``ambiguous``;
* otherwise the best reading's status (``resolved``, ``inverted``, ``no_op``, or ``unresolved``
  with its reason: an impossible REMOVE, a value out of range, a knob zolab does not have).

``ambiguous`` and ``unresolved`` carry up to three candidates (the runnable readings, best
first), each with the changes it would make; the user picks one by component name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from zolab.platform.plan import Ablation, Plan
from zolab.platform.resolver.readings import Reading, change_label, context, differing, read
from zolab.platform.resolver.registry import COMPONENTS, SETTABLE, Component
from zolab.platform.resolver.text import normalise, parse_phrase, phrase_score, tokens

THRESHOLD = 0.7
MARGIN = 0.1
TITLE_WEIGHT = 0.85
STATUSES = ("resolved", "inverted", "no_op", "ambiguous", "unresolved")
RUNNABLE = ("resolved", "inverted")
NOT_RUN = ("no_op", "ambiguous", "unresolved")


# ---------------------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Match:
    """Name evidence for one component: ``how`` says which phrase, ``note`` is the registry's note."""

    component: str
    score: float
    how: str
    note: str = ""


@lru_cache(maxsize=65536)
def _name_score_cached(key: str, text: str) -> tuple[float, str, str]:
    return _name_score(COMPONENTS[key], text)


def _name_score(comp: Component, text: str) -> tuple[float, str, str]:
    phrase = parse_phrase(text)
    best = (0.0, "", "")
    for name in comp.names:
        score = phrase_score(phrase, name.words) * name.weight
        if score > best[0]:
            best = (round(score, 3), name.phrase, name.note)
    return best


def name_evidence(part: str, title: str = "") -> list[Match]:
    """Every component's name score for an ablated part (and its title), best first."""
    out = []
    for comp in COMPONENTS.values():
        score, phrase, note = _name_score_cached(comp.key, part)
        how = f"{phrase!r} in the ablated part"
        if title:
            t_score, t_phrase, t_note = _name_score_cached(comp.key, title)
            if t_score * TITLE_WEIGHT > score:
                score, how, note = round(t_score * TITLE_WEIGHT, 3), f"{t_phrase!r} in the title", t_note
        out.append(Match(comp.key, score, how if score else "no phrase", note))
    return sorted(out, key=lambda m: -m.score)


def match_component(text: str) -> list[Match]:
    """Candidate components for free text by name alone, best first."""
    return name_evidence(text)


@lru_cache(maxsize=1)
def _lookup() -> tuple[dict[str, str], dict[tuple[str, ...], str]]:
    exact: dict[str, str] = {}
    stemmed: dict[tuple[str, ...], str] = {}
    for comp in COMPONENTS.values():
        for word in (comp.key, comp.knob):
            if word:
                exact.setdefault(word, comp.key)
        for n in comp.names:
            exact.setdefault(normalise(n.phrase).replace(" ", "_"), comp.key)
            if n.weight >= 0.9:
                stemmed.setdefault(n.words, comp.key)
    return exact, stemmed


@lru_cache(maxsize=4096)
def find_component(name: str) -> str | None:
    """A component key from its key, knob or one of its names (exact, or the same word stems), else None."""
    exact, stemmed = _lookup()
    norm = normalise(name).replace(" ", "_")
    if norm in exact:
        return exact[norm]
    return stemmed.get(tuple(tokens(name)))


def component_names() -> list[str]:
    """Components the user can pick (those with a knob to set)."""
    return list(SETTABLE)


def canonical_component(name: str) -> str:
    """A component key from its key, knob or a name; unknown names list the known ones."""
    key = find_component(name)
    if key is not None:
        return key
    from zolab.platform.errors import did_you_mean

    norm = normalise(name).replace(" ", "_")
    raise ValueError(f"unknown component {name!r}{did_you_mean(norm, COMPONENTS)}; known: {', '.join(SETTABLE)}")


# ---------------------------------------------------------------------------------------------
# resolution
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """A reading the user may pick: what it would run and why it was considered."""

    component: str
    score: float
    status: str
    changes: list[tuple[str, dict[str, Any]]]
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"component": self.component, "score": round(self.score, 3), "status": self.status,
                "changes": [{"label": label, "changes": ch} for label, ch in self.changes], "why": self.why}


@dataclass
class Resolution:
    """What one ablation runs: ``variants`` are (label, RunConfig changes) against the baseline."""

    ablation: str
    component: str | None
    status: str
    confidence: float
    explanation: str
    variants: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    overridden: bool = False
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def runnable(self) -> bool:
        return self.status in RUNNABLE

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.ablation, "component": self.component, "status": self.status,
            "confidence": round(self.confidence, 3), "explanation": self.explanation,
            "changes": [{"label": label, "changes": changes} for label, changes in self.variants],
            "overridden": self.overridden, "candidates": [c.to_dict() for c in self.candidates],
        }


@dataclass
class _Scored:
    reading: Reading
    name: Match
    score: float


def _score(name: float, reading: Reading) -> float:
    if reading.fit is None:
        return name
    if reading.unreadable:
        return 0.5 * name
    return 1 - (1 - name) * (1 - 0.75 * reading.fit)


def _why(s: _Scored) -> str:
    """One line: the evidence for this reading (which phrase named it, how well the values fit)."""
    r = s.reading
    fit = f"the values fit {r.component.title} ({r.fit:.2f})" if r.fit is not None and not r.unreadable else ""
    if s.name.score and fit:
        return f"{s.name.how} ({s.name.score:.2f}); {fit}"
    if s.name.score:
        return f"{s.name.how} ({s.name.score:.2f})"
    return f"only {fit}" if fit else "weak evidence"


def _candidates(ranked: list[_Scored], limit: int = 3) -> list[Candidate]:
    out: list[Candidate] = []
    seen: list[Reading] = []
    for s in ranked:
        if s.reading.runnable and s.score >= 0.2 and not any(s.reading.same_changes(r) for r in seen) \
                and all(c.component != s.reading.component.key for c in out):
            out.append(Candidate(s.reading.component.key, s.score, s.reading.status, s.reading.variants, _why(s)))
            seen.append(s.reading)
        if len(out) == limit:
            break
    return out


def _explain(s: _Scored) -> str:
    r = s.reading
    parts = [n for n in (s.name.note,) if n] + [r.why] + [f"({n})" for n in r.notes]
    return f"{' '.join(parts)} [{r.component.key}: {s.name.how if s.name.score else 'read from the values'}]"


def _resolution(ab: Ablation, s: _Scored, status: str | None = None, explanation: str | None = None,
                candidates: list[Candidate] | None = None, overridden: bool = False) -> Resolution:
    r = s.reading
    status = status or r.status
    variants = r.variants if status in RUNNABLE or status == "no_op" else []
    return Resolution(ab.name, r.component.key if status != "ambiguous" else None, status, s.score,
                      explanation or _explain(s), variants, overridden,
                      candidates if status in ("ambiguous", "unresolved") else [])


#: a vocabulary word that is part of a longer name another domain read in the same value
SHADOWED = 0.6


def _prefer_longest_words(readings: list[Reading]) -> None:
    """Where two domains read the same value by vocabulary words, the longer words win: in
    "linear probing" the optimizer reads two words, the LR schedule only "linear"."""
    longest: dict[str, int] = {}
    for r in readings:
        for text, span in r.spans:
            longest[text] = max(longest.get(text, 0), span)
    for r in readings:
        if r.fit is not None and any(0 < span < longest[text] for text, span in r.spans):
            r.fit *= SHADOWED


#: a part that names a component this strongly ...
NAMED = 0.8
#: ... is not overruled by a reading that its name does not support
UNNAMED = 0.3


def _no_value_only_over_a_named_part(scored: list[_Scored]) -> None:
    """When the ablated part clearly names a component that cannot read the values, a reading
    that rests on the values alone stays below the threshold (the user picks it), unless a name
    of several words in the value supports it ("linear probing"). "half as many steps" is not
    float16 because "half" is also a dtype word."""
    if not any(s.name.score >= NAMED and s.reading.unreadable for s in scored):
        return
    for s in scored:
        if s.name.score < UNNAMED and s.reading.runnable and max((sp for _, sp in s.reading.spans), default=0) < 2:
            s.score = min(s.score, round(THRESHOLD - 0.01, 3))


def _adds(rival: Reading, top: Reading, base: Mapping[str, Any]) -> bool:
    """Whether ``rival`` would run a variant that ``top`` does not (else it is no competitor)."""
    if not rival.runnable:
        return False
    ours = [differing(base, ch) for _, ch in top.variants] if top.runnable else []
    return any(d and d not in ours for d in (differing(base, ch) for _, ch in rival.variants))


def resolve(ablation: Ablation, baseline: Any, *, component: str | None = None) -> Resolution:
    """Resolve one ablation against the baseline (a Baseline model or a dict of its fields).

    ``component`` (or ``ablation.component``) is the user's pick: that component's reading is used
    whatever the scores (confidence 1). Never raises for what the ablation says: a reading that
    cannot run is ``unresolved`` with the reason.
    """
    base = baseline.model_dump() if hasattr(baseline, "model_dump") else dict(baseline)
    ctx = context(ablation, base)
    names = {m.component: m for m in name_evidence(ablation.ablated_part, ablation.name)}
    readings = [read(comp, ablation, base, ctx) for comp in COMPONENTS.values()]
    _prefer_longest_words(readings)
    scored = [_Scored(r, names[r.component.key], round(_score(names[r.component.key].score, r), 3)) for r in readings]
    _no_value_only_over_a_named_part(scored)
    ranked = sorted(scored, key=lambda s: -s.score)
    forced = component or ablation.component
    if forced:
        key = canonical_component(forced)
        chosen = next(s for s in ranked if s.reading.component.key == key)
        chosen = _Scored(chosen.reading, Match(key, 1.0, "set by the user"), 1.0)
        others = [s for s in ranked if s.reading.component.key != key]
        return _resolution(ablation, chosen, candidates=_candidates(others), overridden=True)
    top = ranked[0]
    candidates = _candidates(ranked)
    if top.score < THRESHOLD:
        named = max(ranked, key=lambda s: s.name.score)
        hint = "; pick a candidate with --set-component NAME=COMPONENT (or set 'component:')" if candidates \
            else f"; set 'component:' to one of {', '.join(SETTABLE)}"
        if named.name.score >= 0.5 and not named.reading.runnable:
            # the closest reading cannot run (a no-op or a setting zolab lacks), but it is below the
            # threshold: say it as the best guess, never as the answer
            reason = (f"best guess {named.reading.component.key} ({named.score:.2f} < {THRESHOLD}, "
                      f"{named.name.how}): {named.reading.why.rstrip('.')}")
            hint = (f"; if that is what it means, confirm it with --set-component NAME="
                    f"{named.reading.component.key}" + (", or pick a candidate" if candidates else "")
                    + f" (or set 'component:' to one of {', '.join(SETTABLE)})")
            return _resolution(ablation, named, "unresolved", reason + hint, candidates)
        reason = (f"no component matches {ablation.ablated_part!r} well enough (best: "
                  f"{top.reading.component.key} at {top.score:.2f} < {THRESHOLD})")
        res = _resolution(ablation, top, "unresolved", reason + hint, candidates)
        res.component = None
        return res
    rivals = [s for s in ranked[1:] if top.score - s.score < MARGIN and _adds(s.reading, top.reading, base)]
    if rivals:
        shown = [top, *rivals][:3]
        text = "; ".join(f"{s.reading.component.key} ({s.score:.2f}): "
                         f"{', '.join(lbl for lbl, _ in s.reading.variants) or s.reading.status}" for s in shown)
        return _resolution(ablation, top, "ambiguous",
                           f"two readings compete within {MARGIN}: {text}; pick one with --set-component",
                           [c for c in _candidates([top, *rivals, *ranked])])
    return _resolution(ablation, top, candidates=candidates)


def pick_index(plan: Plan, name: str) -> int | None:
    """The index of the ablation ``name`` stands for: its name (case-insensitive), else its 1-based number."""
    for i, ab in enumerate(plan.ablations):
        if ab.name == name or ab.name.casefold() == name.strip().casefold():
            return i
    if name.strip().isdigit() and 1 <= int(name) <= len(plan.ablations):
        return int(name) - 1
    return None


def parse_overrides(plan: Plan, overrides: Mapping[str, str] | None) -> dict[int, str]:
    """``{ablation name or 1-based number: component}`` -> ``{index: component key}``; a name that is
    no ablation, or a component that does not exist, is a PlanError naming it (nothing else is)."""
    from zolab.platform.errors import Issue, PlanError

    picks: dict[int, str] = {}
    issues: list[Issue] = []
    for name, comp in (overrides or {}).items():
        index = pick_index(plan, name)
        if index is None:
            issues.append(Issue(f"override for unknown ablation {name!r}; ablations: "
                                + ", ".join(a.name for a in plan.ablations), plan._source, field="overrides"))
            continue
        try:
            picks[index] = canonical_component(comp)
        except ValueError as exc:
            where = plan.locate(("ablations", index, "component"))
            issues.append(Issue(f"override for {plan.ablations[index].name!r}: {exc}", where.file, where.line,
                                where.column, where.field))
    if issues:
        raise PlanError(issues)
    return picks


def resolve_plan(plan: Plan, overrides: Mapping[str, str] | None = None) -> list[Resolution]:
    """Resolve every ablation. Only the overrides can be refused (a PlanError naming them): what an
    ablation says never refuses the plan; it makes that ablation ``unresolved`` or ``ambiguous``."""
    picks = parse_overrides(plan, overrides)
    return [resolve(ab, plan.baseline, component=picks.get(i)) for i, ab in enumerate(plan.ablations)]


__all__ = ["MARGIN", "NOT_RUN", "RUNNABLE", "STATUSES", "THRESHOLD", "TITLE_WEIGHT", "Candidate", "Match",
           "Resolution", "canonical_component", "change_label", "component_names", "find_component",
           "match_component", "name_evidence", "parse_overrides", "pick_index", "resolve", "resolve_plan"]
