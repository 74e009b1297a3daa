"""Reading free text: normalised tokens, the noun phrase an ablated part is about, numbers.

An ablated part is a short noun phrase ("learning-rate warmup", "number of sampled z's", "update
rule of the zeroth-order optimizer"). What it names is its *focus*: the first chunk before a
preposition, or the next one when the first holds only generic words ("number of", "size of").
Within the focus the last word is the *head* ("warmup" in "learning-rate warmup"); words before it
modify it. Parenthesised text is an apposition ("finite-difference step (epsilon)") and counts like
the focus. :func:`phrase_score` turns where a name phrase occurs into evidence in [0, 1].
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property, lru_cache

from rapidfuzz import fuzz


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: words that only say "the quantity of" (or an action): the focus moves to what follows them
_GENERIC_WORDS = _wordset("""
the a an number num size amount choice type kind value count degree level effect impact role use usage
ablation ablating study comparison contribution importance sensitivity setting set subset fraction portion
share proportion optimization optimisation its their our this that how what component part technique strategy
mechanism module design variant option configuration implementation operation choice trick formulation
remove removing removal replace replacing replacement add adding without no ablate ablated effect vary varying
compare comparing swap use using change changing impact test testing more less different alternative
layer module
""")
#: fixed expressions whose inner word is a separator: kept as one word
_JOINED = re.compile(r"\b(in|per|on|one|two)[ -](place|context|layer|class|label|element|device|point|sided)\b")
#: words that end a chunk (when not the first word)
SEPARATORS = _wordset("""
of for in on with to by from that which who used applied per at into over under via across during when
where as instead vs versus against and or while than such like including namely especially
""")
_COORDINATING = frozenset({"and", "or", "vs", "versus"})
_STOP = frozenset({"the", "a", "an", "its", "their", "our", "this", "is", "are", "be", "being", "s"})
_GREEK = {"ε": "epsilon", "ϵ": "epsilon", "η": "eta", "β": "beta", "μ": "mu", "α": "alpha", "λ": "lambda",
          "θ": "theta", "σ": "sigma"}
_KEEP_PLURAL = ("ss", "us", "is", "as", "os", "ics", "ys")
#: tokens that annotate a phrase ("momentum coefficient beta", "number of samples n"): not its head
SYMBOLS = frozenset({"epsilon", "eta", "beta", "mu", "alpha", "lambda", "theta", "sigma", "q", "n", "k", "r", "z",
                     "d", "t"})


def stem(word: str) -> str:
    """A light stemmer, so that word forms meet: directions/direction, queries/query,
    perturbed/perturb, regenerating/regenerated/regenerate, materialise/materialized. It keeps
    the nouns apart that must stay apart (optimizer vs optimization) and words of four letters."""
    if word.isdigit() or len(word) <= 4:
        return word
    if word.endswith("ies"):
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith(_KEEP_PLURAL):
        word = word[:-1]
    word = re.sub(r"is(e|ed|ing)$", r"iz\1", word)
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) >= 5:
        word = word[:-1]
    return word


GENERIC = frozenset(stem(w) for w in _GENERIC_WORDS)


#: lab shorthand researchers write in notes ("wd", "bs", "LR sched", "mom. coeff", "z dist"), spelled
#: out so that names and vocabularies meet it; ambiguous ones ("opt": OPT or optimizer, "ft", "lp")
#: are left alone
ABBREVIATIONS = {
    "wd": "weight decay", "bs": "batch size", "mom": "momentum", "coeff": "coefficient", "coef": "coefficient",
    "sched": "schedule", "cos": "cosine", "prec": "precision", "optim": "optimizer", "pert": "perturbation",
    "dirs": "directions", "dir": "direction", "params": "parameters", "param": "parameter", "num": "number",
    "dist": "distribution", "distr": "distribution", "iters": "iterations", "iter": "iteration", "mag": "magnitude",
    "seq": "sequence", "len": "length", "ctx": "context", "init": "initial", "grad": "gradient", "grads": "gradients",
    "reg": "regularization", "approx": "approximate",
}


@lru_cache(maxsize=8192)
def normalise(text: str) -> str:
    """Lowercase words separated by single spaces; Greek letters named; "z's" -> "z"; shorthand
    spelled out (:data:`ABBREVIATIONS`)."""
    text = unicodedata.normalize("NFKC", str(text))
    for letter, name in _GREEK.items():
        text = text.replace(letter, f" {name} ")
    text = text.lower().replace("\u2019", "'").replace("\u2212", "-")
    text = re.sub(r"'s\b", "", text)
    text = _JOINED.sub(r"\1\2", text)
    text = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z]{2,})", " ", text)  # beta2 -> beta 2, 16shot -> 16 shot
    text = re.sub(r"[^a-z0-9.+()]+", " ", text)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)
    return " ".join(ABBREVIATIONS.get(w, w) for w in text.split())


def tokens(text: str) -> list[str]:
    """Stemmed content words (parentheses dropped)."""
    return list(_tokens(text))


@lru_cache(maxsize=8192)
def _tokens(text: str) -> tuple[str, ...]:
    return tuple(stem(w) for w in normalise(text).replace("(", " ").replace(")", " ").split() if w not in _STOP)


@dataclass(frozen=True, eq=False)
class Phrase:
    """An ablated part split for scoring: ``chunks`` of tokens, the focus index, appositions."""

    chunks: tuple[tuple[str, ...], ...]
    focus: int
    appositions: tuple[int, ...]

    @cached_property
    def words(self) -> tuple[str, ...]:
        return tuple(w for c in self.chunks for w in c)

    @cached_property
    def owner(self) -> tuple[int, ...]:
        """The chunk of each word of :attr:`words`."""
        return tuple(i for i, c in enumerate(self.chunks) for _ in c)

    @cached_property
    def vocabulary(self) -> frozenset[str]:
        return frozenset(self.words)


@lru_cache(maxsize=4096)
def parse_phrase(text: str) -> Phrase:
    norm = normalise(re.sub(r"\s*/\s*", " or ", str(text)))
    inner = re.findall(r"\(([^()]*)\)", norm)
    outer = re.sub(r"\([^()]*\)", " , ", norm)
    chunks: list[tuple[str, ...]] = []
    joins: list[str] = []  # the separator before each chunk
    current: list[str] = []
    before = ""
    for word in outer.replace("(", " ").replace(")", " ").split():
        if word == "," or (word in SEPARATORS and current):
            if current:
                chunks.append(tuple(current))
                joins.append(before)
            current, before = [], word
            continue
        if word in _STOP or word in SEPARATORS:
            continue
        current.append(stem(word))
    if current:
        chunks.append(tuple(current))
        joins.append(before)
    focus = next((i for i, c in enumerate(chunks) if any(w not in GENERIC for w in c)), 0)
    appositions = []
    for i in range(focus + 1, len(chunks)):  # "step size and perturbation size": both are the focus
        if joins[i] not in _COORDINATING:
            break
        appositions.append(i)
    for group in inner:
        words = tuple(stem(w) for w in group.split() if w not in _STOP and w not in SEPARATORS)
        if words:
            appositions.append(len(chunks))
            chunks.append(words)
    return Phrase(tuple(chunks) or ((),), focus, tuple(appositions))


def _find(words: tuple[str, ...], name: tuple[str, ...], fuzzy: bool) -> tuple[int, int] | None:
    """(start, end) of ``name`` inside ``words`` (exact, or one typo per long word when ``fuzzy``)."""
    n = len(name)
    if fuzzy and n > 1 and not set(name) & set(words):  # a typo in every word is no match
        return None
    for start in range(len(words) - n + 1):
        window = words[start:start + n]
        if window == name:
            return start, start + n
        if fuzzy and all(a == b or (len(b) >= 5 and abs(len(a) - len(b)) <= 2 and fuzz.ratio(a, b) >= 85)
                         for a, b in zip(window, name)):
            return start, start + n
    return None


def phrase_score(phrase: Phrase, name: tuple[str, ...]) -> float:
    """How strongly the name phrase ``name`` (stemmed tokens) names what ``phrase`` is about.

    In the focus or an apposition: 0.5 + 0.25 x (share of the chunk's content words it covers) +
    0.25 if it ends at the head (only symbols or generic words after it). In a later chunk (a
    complement: "... of the zeroth-order optimizer"): 0.75 x that. A name may span chunks
    ("number of sampled z").
    """
    name = tuple(w for w in name if w not in SEPARATORS)
    if not name:
        return 0.0
    words, owner = phrase.words, phrase.owner
    exact_possible = phrase.vocabulary.issuperset(name)
    if not exact_possible and len(name) > 1 and phrase.vocabulary.isdisjoint(name):
        return 0.0
    best = 0.0
    for fuzzy in (False, True):
        if not fuzzy and not exact_possible:
            continue
        found = _find(words, name, fuzzy)
        if found is None:
            continue
        start, end = found
        first, last = owner[start], owner[end - 1]
        span = [w for i in range(first, last + 1) for w in phrase.chunks[i]]
        content = [w for w in span if w not in GENERIC] or span
        specific = [w for w in name if w not in GENERIC]
        covered = min(1.0, len(specific) / max(len(content), 1))
        chunk_end = sum(len(c) for c in phrase.chunks[:last + 1])
        head = 1.0 if all(w in SYMBOLS or w in GENERIC or w.isdigit() for w in words[end:chunk_end]) else 0.0
        score = 0.5 + 0.25 * covered + 0.25 * head
        if not specific:  # a name of generic words only ("layer") says little about "dropout layers"
            score *= 0.6
        if fuzzy:
            score *= 0.9
        if not (first <= phrase.focus <= last) and last not in phrase.appositions:
            score *= 0.75
        best = max(best, score)
        break
    return best


# ---------------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------------
_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d*)?|\.\d+)(?:\s*[eE]\s*[-+]?\d+)?"
_NUMBER = re.compile(
    rf"(?P<num>{_NUM})(?:\s*(?:x|×|\*)\s*10\s*\^\s*\{{?\s*(?P<exp>[-+]?\d+)\s*\}}?)?(?P<suffix>\s*(?:k|m|b)\b)?"
    r"(?P<pct>\s*%)?", re.IGNORECASE)
_POWER = re.compile(r"(?<![\d.])10\s*\^\s*\{?\s*(?P<exp>[-+]?\d+)\s*\}?")
_MULTIPLIER = re.compile(r"\d\s*(?:x|×)(?!\s*10\s*\^)(?:\s|$)|(?:^|\s)(?:x|×)\s*(?!10\s*\^)\d|\btimes\b|\bdouble|\bhalve|\bhalf\b", re.IGNORECASE)
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9}


@dataclass(frozen=True)
class Number:
    value: float
    percent: bool
    start: int
    end: int


def numbers(text: str) -> list[Number]:
    """Every number in ``text``: 1e-3, 10^-3, 1 x 10^-3, 5,000, 50k, 10%, with the unicode minus."""
    return list(_numbers(str(text)))


@lru_cache(maxsize=8192)
def _numbers(text: str) -> tuple[Number, ...]:
    text = text.replace("\u2212", "-").replace("\u2013", "-")
    out: list[Number] = []
    pos = 0
    powers = list(_POWER.finditer(text))  # found once: searching again from every number is quadratic
    while pos < len(text):
        p = next((q for q in powers if q.start() >= pos), None)
        m = _NUMBER.search(text, pos)
        if p and (not m or p.start() <= m.start()):
            try:
                out.append(Number(10.0 ** int(p.group("exp")), False, p.start(), p.end()))
            except OverflowError:  # 10^99999
                pass
            pos = p.end()
            continue
        if not m:
            break
        raw = re.sub(r"\s+", "", m.group("num")).replace(",", "")
        try:
            value = float(raw)
        except ValueError:
            pos = m.end()
            continue
        if m.group("exp"):
            try:
                value *= 10.0 ** int(m.group("exp"))
            except OverflowError:  # 1e400: no number a knob can take, the value reads as holding none
                value = math.inf
        suffix = (m.group("suffix") or "").strip().lower()
        if suffix:
            value *= _SUFFIX[suffix]
        if math.isfinite(value):  # "1" x 999 is no number anyone means
            out.append(Number(value, bool(m.group("pct")), m.start(), m.end()))
        pos = m.end()
    return tuple(out)


_FACTOR_NUM = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*(?:x|×|times)(?![\w])|(?<![\w.])(?:x|×)\s*(\d+(?:\.\d+)?)(?![\w.])",
                         re.IGNORECASE)
_FACTOR_WORDS = {"double": 2.0, "doubled": 2.0, "twice": 2.0, "triple": 3.0, "tripled": 3.0, "half": 0.5,
                 "halve": 0.5, "halved": 0.5, "quarter": 0.25}
_SMALLER = re.compile(r"\b(?:smaller|lower|less|fewer|reduced?|decreased?|down|shrunk|divided|shorter)\b", re.IGNORECASE)


def factor_of(text: str) -> float | None:
    """The factor of the baseline a value asks for: "10x larger" 10, "3x smaller" 1/3, "twice" 2,
    "half" 0.5, "x4" 4; None when the text is not one factor (two factors, or a factor and a number)."""
    text = str(text)
    found = [float(m.group(1) or m.group(2)) for m in _FACTOR_NUM.finditer(text)]
    words = [f for w, f in _FACTOR_WORDS.items() if re.search(rf"\b{w}\b", text, re.IGNORECASE)]
    if len(found) + len(words) != 1:
        return None
    factor = found[0] if found else words[0]
    if factor <= 0:
        return None
    if found and _SMALLER.search(text):   # "10x smaller" (a word factor already says its direction)
        factor = 1.0 / factor
    return factor


def is_multiplier(text: str) -> bool:
    """"2x", "x4", "double": a factor of the baseline, not a value."""
    return bool(_MULTIPLIER.search(str(text)))


def split_list(text: str) -> list[str]:
    """``"1e-3, 1e-4 and 1e-5"`` -> three items; separators inside brackets do not split."""
    text = str(text).strip()
    if len(text) >= 2 and text[0] in "[{" and text[-1] in "]}":
        text = text[1:-1]
    parts, depth, current = [], 0, ""
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        thousands = ch == "," and i > 0 and text[i - 1].isdigit() and re.match(r",\d{3}(?!\d)", text[i:])
        if ch in ",;|" and depth == 0 and not thousands:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    out: list[str] = []
    for part in parts:
        out += re.split(r"\s+(?:and|or|vs\.?|versus)\s+|\s+/\s+", part)
    return [p.strip().strip("'\"") for p in out if p.strip().strip("'\"")]
