"""Loaders (raw data -> examples) and the paper's sampling (examples -> train/dev/test splits).

Local files: :func:`load_jsonl` / :func:`load_csv` with configurable fields; bad rows raise a
``ValueError`` naming file, line and field but never quoting the file's content (errors reach job
rows and the UI; a plan pointing at a system file must not read it out that way). HF ``datasets``: :func:`hf_loader` (the real path for
users online or with a cache; it fails with a clear message when ``datasets`` is missing or the
hub cannot be reached). :func:`sample_splits` draws seeded splits: ``k_shot`` per class or fixed
``train_size``; dev and test sizes fixed. Examples a loader tags ``fields["_split"] = "test"``
(an official validation split) are kept for the test split, as in the paper.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from zolab.runners.errors import AssetError
from zolab.runners.tasks.base import Example, Splits

HELD_OUT = "_split"


def _shape(raw: Any) -> str:
    """What a bad value looks like, without its content: its type and length."""
    return f"a {type(raw).__name__} of {len(str(raw))} characters"


def _label_index(raw: Any, labels: Sequence[Any] | None, num_labels: int | None, where: str) -> int:
    """Row label -> class index: position in ``labels`` when given, else an int (or int string).
    Errors describe the bad value (:func:`_shape`) instead of quoting it."""
    if labels is not None:
        names = [str(x) for x in labels]
        if str(raw) in names:
            return names.index(str(raw))
        raise ValueError(f"{where}: the label ({_shape(raw)}) is not one of {names}")
    try:
        idx = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: the label ({_shape(raw)}) is not an integer "
                         "(set task_options.labels to map names)") from None
    if idx < 0 or (num_labels is not None and idx >= num_labels):
        raise ValueError(f"{where}: the label is out of range 0..{(num_labels or 1) - 1}")
    return idx


def rows_to_examples(rows: Iterable[tuple[int, dict[str, Any]]], options: dict[str, Any], source: str) -> list[Example]:
    """(line number, row) pairs -> examples. Options: text_field, label_field, labels, label_words."""
    text_field = options.get("text_field", "text")
    label_field = options.get("label_field", "label")
    labels = options.get("labels")
    words = options.get("label_words")
    num_labels = len(labels) if labels else (len(words) if words else None)
    out = []
    for line, row in rows:
        where = f"{source}: line {line}"
        if text_field not in row or row[text_field] in (None, ""):
            raise ValueError(f"{where}: missing text field {text_field!r}")
        if label_field not in row or row[label_field] in (None, ""):
            raise ValueError(f"{where}: missing label field {label_field!r}")
        fields = {k: str(v) for k, v in row.items() if isinstance(v, (str, int, float)) and k != label_field}
        fields["text"] = str(row[text_field])
        out.append(Example(fields=fields, label=_label_index(row[label_field], labels, num_labels, where)))
    if not out:
        raise ValueError(f"{source}: no examples")
    return out


def _path(options: dict[str, Any], kind: str) -> Path:
    raw = options.get("path")
    if not raw:
        raise ValueError(f"task {kind!r} needs task_options.path (a .{kind} file)")
    path = Path(raw).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"task {kind!r}: {path} does not exist")
    return path


def load_jsonl(options: dict[str, Any], seed: int) -> list[Example]:
    """One JSON object a line; blank lines skipped."""
    path = _path(options, "jsonl")
    rows = []
    with path.open(encoding=options.get("encoding", "utf-8")) as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {line_no}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {line_no}: expected a JSON object")
            rows.append((line_no, row))
    return rows_to_examples(rows, options, str(path))


def load_csv(options: dict[str, Any], seed: int) -> list[Example]:
    """A CSV (or TSV with ``delimiter``) with a header row."""
    path = _path(options, "csv")
    with path.open(encoding=options.get("encoding", "utf-8"), newline="") as fh:
        reader = csv.DictReader(fh, delimiter=options.get("delimiter", ","))
        rows = [(i + 2, row) for i, row in enumerate(reader)]  # line 1 is the header
    return rows_to_examples(rows, options, str(path))


def hf_loader(dataset: str, subset: str | None, fields: dict[str, str], label_field: str = "label",
              test_split: str = "validation") -> Callable[[dict[str, Any], int], list[Example]]:
    """A loader over ``datasets.load_dataset(dataset, subset)``: train split + official test split."""

    def load(options: dict[str, Any], seed: int) -> list[Example]:
        try:
            import datasets  # optional: not needed on machines that only run tiny/offline tasks
        except ImportError as exc:
            raise AssetError(f"task needs the `datasets` package for {dataset}: pip install 'zolab[hf]' (or datasets)") from exc
        try:
            ds = datasets.load_dataset(dataset, subset, cache_dir=options.get("cache_dir"))
        except Exception as exc:  # offline / not cached: datasets raises several kinds
            raise AssetError(f"cannot load HF dataset {dataset}/{subset} (offline and not cached?): {exc}") from exc
        out: list[Example] = []
        for split, tag in (("train", "train"), (test_split, "test")):
            for row in ds[split]:
                f = {name: str(row[src]) for name, src in fields.items()}
                f[HELD_OUT] = tag
                out.append(Example(fields=f, label=int(row[label_field])))
        return out

    return load


def _draw_k_shot(pool: list[Example], k: int, num_labels: int) -> tuple[list[Example], list[Example]]:
    taken: list[Example] = []
    rest: list[Example] = []
    counts = [0] * num_labels
    for ex in pool:
        if counts[ex.label] < k:
            counts[ex.label] += 1
            taken.append(ex)
        else:
            rest.append(ex)
    return taken, rest


def sample_splits(pool: Sequence[Example], *, num_labels: int, seed: int, train_size: int, dev_size: int,
                  test_size: int, k_shot: int | None = None) -> Splits:
    """Seeded train/dev/test as in the paper: test from the official held-out split when tagged."""
    rng = random.Random(f"splits:{seed}")
    for ex in pool:
        if not 0 <= ex.label < num_labels:
            raise ValueError(f"example label {ex.label} out of range for {num_labels} label words")
    held = [ex for ex in pool if ex.fields.get(HELD_OUT) == "test"]
    rest = [ex for ex in pool if ex.fields.get(HELD_OUT) != "test"]
    rng.shuffle(held)
    rng.shuffle(rest)
    if held:
        test = held[:test_size]
    else:
        test, rest = rest[:test_size], rest[test_size:]
    dev, rest = rest[:dev_size], rest[dev_size:]
    if k_shot is not None:
        train, _ = _draw_k_shot(rest, k_shot, num_labels)
    else:
        train = rest[:train_size]
    if not train:
        raise ValueError(f"not enough examples ({len(pool)}) for dev={dev_size}, test={test_size} and a train split")
    return Splits(train=train, dev=dev, test=test)
