"""Hypothesis strategies that turn valid plans into malformed ones (issue 8, item 4).

Three families, one per plan format:

* :func:`mutated_text` / :func:`mutated_bytes`: random character, line and byte edits of a seed file
  (span deletes, inserts of plan-syntax tokens and odd unicode, duplicated/swapped lines, bit flips,
  truncation). Used for the LM-planner markdown seeds and, at the text level, for YAML and JSONL;
* :func:`mutated_yaml`: structural edits of a valid YAML plan's data (drop / duplicate / rename /
  retype keys, wrong types, deep nesting, huge numbers, NaN/inf, unicode, shared sub-trees that dump
  as anchors and aliases), dumped back to YAML and optionally spiked with tags, duplicate keys,
  alias bombs and unbalanced nesting at the text level;
* :func:`jsonl_documents`: AblationBench JSON lines mixing mutated valid records, random JSON values,
  non-JSON lines, blank lines and deeply nested arrays.

The seed inputs are verbatim copies of the LM-planner seed plans 000 and 001 kept in
``tests/reliability/fixtures/`` (the repository stands alone), plus the ``ablations/`` YAML plans.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
REPO_ROOT = HERE.parent.parent


# ------------------------------------------------------------------------------------------------
# settings profiles: ``zolab-default`` for the default suite (a few hundred cases per format; no
# deadline, the machine is shared), ``zolab-fuzz`` for the long run behind ``-m fuzz``, whose total
# case count is ``ZOLAB_FUZZ_CASES`` (default 10,000). Neither keeps an example database in the
# repository: a failure prints its minimal example, which becomes a regression test.

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
          HealthCheck.function_scoped_fixture, HealthCheck.large_base_example]
settings.register_profile("zolab-default", max_examples=200, deadline=None, database=None,
                          suppress_health_check=_QUIET)
settings.register_profile("zolab-fuzz", max_examples=2500, deadline=None, database=None,
                          suppress_health_check=_QUIET, print_blob=True)
FUZZ_CASES = int(os.environ.get("ZOLAB_FUZZ_CASES", "10000"))


# ------------------------------------------------------------------------------------------------
# seed inputs


def markdown_seeds() -> dict[str, str]:
    """LM-planner markdown seeds 000 and 001 (the repository's verbatim copies)."""
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(FIXTURES.glob("seed_*.md"))}


def yaml_seeds() -> dict[str, str]:
    """Valid YAML plans: everything under ``ablations/`` plus our fixtures."""
    out: dict[str, str] = {}
    ablations = REPO_ROOT / "ablations"
    for path in sorted(ablations.glob("*.y*ml")) if ablations.is_dir() else []:  # plans, not baselines/
        out[str(path.relative_to(REPO_ROOT))] = path.read_text(encoding="utf-8")
    for path in sorted(FIXTURES.glob("*.yaml")):
        out[path.name] = path.read_text(encoding="utf-8")
    return out


def jsonl_seeds() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(FIXTURES.glob("*.jsonl"))}


# ------------------------------------------------------------------------------------------------
# text and byte mutations

#: pieces of plan syntax and troublemakers, inserted at random places
TOKENS = [
    "\n", "\r\n", "\r", "\t", " ", "  ", ":", ": ", "- ", "-", "#", "###", "### ", "- **Action**:",
    "- **Ablated Part**:", "- **Replacement**:", "- **Metrics**:", "**", "REPLACE", "REMOVE", "ADD", "DELETE",
    "{", "}", "[", "]", "'", '"', "\\", ",", "&a ", "*a", "*undefined", "<<: *a", "!!python/object/apply:os.system",
    "!!binary", "!!set", "!foo", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "? ", "|", ">", "@", "`",
    "~", "null", "true", "yes", "0x1F", "0o17", "1e999", "-1e999", ".nan", ".inf", "-.inf", "1_000", "9" * 400,
    "1.0e-6", "<div>", "</div>", "<h2>Ablation Plan</h2>", "<script>alert(1)</script>", "[bold red]x[/]",
    "\x00", "\x1b[31m", "\x7f", "\u200b", "\ufeff", "\u202e", "\ud7ff", "\U0001f600", "é", "ß", "漢字", "\u2028",
    "zolab: 1", "baseline:", "ablations:", "tasks:", "seeds:", "name:", "action:", "replacement:",
]

_chars = st.characters(exclude_categories=("Cs",))  # lone surrogates cannot even be written to a file
_junk = st.one_of(st.sampled_from(TOKENS), st.text(_chars, max_size=12))


@st.composite
def mutated_text(draw: st.DrawFn, base: str, max_edits: int = 6) -> str:
    """``base`` after 1..``max_edits`` random character- and line-level edits."""
    text = base
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(
            ["delete", "insert", "replace", "duplicate", "truncate", "del_line", "dup_line", "swap_lines",
             "indent", "dedent", "case"]
        ))
        n = len(text)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + draw(st.sampled_from([1, 2, 8, 64, 512])))))
        lines = text.split("\n")
        k = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(_junk) + text[i:]
        elif op == "replace":
            text = text[:i] + draw(_junk) + text[j:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] * draw(st.integers(1, 3)) + text[j:]
        elif op == "truncate":
            text = text[:i]
        elif op == "del_line" and lines:
            text = "\n".join(lines[:k] + lines[k + 1:])
        elif op == "dup_line" and lines:
            text = "\n".join(lines[: k + 1] + [lines[k]] + lines[k + 1:])
        elif op == "swap_lines" and len(lines) > 1:
            m = draw(st.integers(0, len(lines) - 1))
            lines[k], lines[m] = lines[m], lines[k]
            text = "\n".join(lines)
        elif op == "indent" and lines:
            lines[k] = draw(st.sampled_from([" ", "  ", "\t", "    "])) + lines[k]
            text = "\n".join(lines)
        elif op == "dedent" and lines:
            lines[k] = lines[k].lstrip()
            text = "\n".join(lines)
        elif op == "case":
            text = text[:i] + text[i:j].swapcase() + text[j:]
    return text


@st.composite
def mutated_bytes(draw: st.DrawFn, base: bytes, max_edits: int = 4) -> bytes:
    """``base`` after random byte edits: bit flips, random bytes (invalid UTF-8), NULs, truncation."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "bom", "latin1"]))
        i = draw(st.integers(0, len(data)))
        if op == "flip" and i < len(data):
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[i: i + draw(st.integers(1, 32))]
        elif op == "truncate":
            del data[i:]
        elif op == "bom":
            data[0:0] = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"]))
        elif op == "latin1":
            data[i:i] = "café".encode("latin-1")
    return bytes(data)


# ------------------------------------------------------------------------------------------------
# structural YAML mutations

HUGE = [10**400, -(10**400), 2**63, -(2**63) - 1, 2**64, 1e308, -1e308, 5e-324]

weird_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(HUGE),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(_chars, max_size=40), st.sampled_from(["", " ", "REPLACE ", "replace", "Remove", "ADD\n", "\u0000"]),
    st.dates(), st.binary(max_size=8),
)
weird_values = st.recursive(
    weird_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(_chars, max_size=10), st.integers()), inner,
                                                     max_size=4)
    ),
    max_leaves=12,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a nested dict/list, root excluded."""
    out: list[tuple[Any, ...]] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in items:
        out.append(prefix + (key,))
        out += _paths(value, prefix + (key,))
    return out


def _parent(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        obj = obj[key]
    return obj


def _nest(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def mutated_yaml_data(draw: st.DrawFn, base: Any, max_edits: int = 4) -> Any:
    """The plan's data after structural edits (the result may be any YAML-representable value)."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_edits))):
        paths = _paths(data)
        op = draw(st.sampled_from(["drop", "retype", "rename", "add", "dup_item", "nest", "share", "root"]))
        if not paths or op == "root":
            data = draw(st.one_of(weird_values, st.just(data), st.just([data])))
            continue
        path = draw(st.sampled_from(paths))
        parent, key = _parent(data, path), path[-1]
        if op == "drop":
            del parent[key]
        elif op == "retype":
            parent[key] = draw(weird_values)
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.one_of(st.text(_chars, max_size=12), st.sampled_from(["Name", "actoin", "zolab "])))] = (
                parent.pop(key)
            )
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(_chars, min_size=1, max_size=12))] = draw(weird_values)
        elif op == "dup_item" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif op == "nest":
            parent[key] = _nest(parent[key], draw(st.sampled_from([2, 10, 60])))
        elif op == "share":  # the same object in two places: safe_dump writes an anchor and an alias
            other = draw(st.sampled_from(paths))
            try:
                target = _parent(data, other)
                if target is not parent[key] and not _contains(parent[key], target):
                    target[other[-1]] = parent[key]
            except (KeyError, IndexError, TypeError):
                pass
    return data


def _contains(container: Any, item: Any) -> bool:
    if container is item:
        return True
    if isinstance(container, dict):
        return any(_contains(v, item) for v in container.values())
    if isinstance(container, list):
        return any(_contains(v, item) for v in container)
    return False


#: text-level spikes that structural edits cannot express through safe_dump
YAML_SPIKES = [
    "evil: !!python/object/apply:os.system ['echo pwned']\n",
    "evil: !!python/object/new:os.system ['true']\n",
    "evil: !!python/name:os.system\n",
    "evil: !!binary aGVsbG8=\n",
    "evil: !!set {a, b}\n",
    "evil: !!omap [a: 1]\n",
    "evil: !Custom {x: 1}\n",
    "evil: !!float not-a-float\n",
    "evil: !!int 12abc\n",
    "evil: !!timestamp 2001-13-45\n",
    "name: duplicate\n",
    "".join(f"{k}: &{k} [{', '.join([p] * 9)}]\n" for k, p in zip("bcdefg", ["x", "*b", "*c", "*d", "*e", "*f"])),
    "r: &r [*r]\n",
    "m: &m {<<: *m}\n",
    "x: " + "[" * 3000 + "]" * 3000 + "\n",
    "x: " + "{a: " * 1500 + "1" + "}" * 1500 + "\n",
    "x: " + "[" * 50 + "\n",
    "x: " + "- " * 400 + "1\n",
    "x: *nowhere\n",
    "? [complex, key]\n: 1\n",
    "? {a: 1}\n: 2\n",
    "1: int key\n",
    "null: null key\n",
    "<<: {zolab: 2}\n",
    "<<: [1, 2]\n",
    "%YAML 1.1\n---\n",
    "--- second document\n",
    "x: " + "9" * 5000 + "\n",
    "x: 1e99999\n",
    "x: .nan\n",
    "x: '\\x00'\n",
    'x: "\\ud800"\n',
    'x: "\\U0010FFFF\\u202e"\n',
]


@st.composite
def mutated_yaml(draw: st.DrawFn, base_text: str) -> str:
    """A YAML plan text: structural edits dumped back, then maybe a text spike or character edits."""
    base = yaml.safe_load(base_text)
    data = draw(mutated_yaml_data(base))
    try:
        text = yaml.safe_dump(data, allow_unicode=draw(st.booleans()), sort_keys=draw(st.booleans()),
                              default_flow_style=draw(st.sampled_from([False, None, True])))
    except (yaml.YAMLError, RecursionError, ValueError):
        text = base_text
    where = draw(st.sampled_from(["none", "append", "prepend", "text"]))
    if where == "append":
        text = text + ("" if text.endswith("\n") else "\n") + draw(st.sampled_from(YAML_SPIKES))
    elif where == "prepend":
        text = draw(st.sampled_from(YAML_SPIKES)) + text
    elif where == "text":
        text = draw(mutated_text(text, max_edits=3))
    return text


# ------------------------------------------------------------------------------------------------
# JSONL

_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.text(_chars, max_size=30)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(_chars, max_size=10), inner,
                                                                         max_size=5)),
    max_leaves=10,
)
_raw_lines = st.one_of(
    st.text(_chars, max_size=60),
    st.sampled_from([
        "", " ", "{", "}", "[]", "{}", "null", "NaN", "[NaN, Infinity, -Infinity]", '{"name": NaN}',
        '{"name": "a", "name": "b", "ablated_part": "x", "action": "REMOVE"}',
        '{"action": 1e999}', '{"replacement": ' + "9" * 5000 + "}", "[" * 5000 + "]" * 5000,
        '{"a": ' * 2000 + "1" + "}" * 2000, '{"name": "\\ud800"}', "\ufeff{}", "// comment",
        '{"name": "[bold red]x[/]", "ablated_part": "<script>", "action": "ADD"}',
    ]),
)


@st.composite
def jsonl_line(draw: st.DrawFn, records: list[dict[str, Any]]) -> str:
    kind = draw(st.sampled_from(["valid", "mutated", "random", "raw"]))
    if kind == "valid":
        return json.dumps(draw(st.sampled_from(records)))
    if kind == "mutated":
        data = draw(mutated_yaml_data(draw(st.sampled_from(records)), max_edits=2))
        try:
            return json.dumps(data, default=str)
        except (ValueError, TypeError, RecursionError):
            return "{}"
    if kind == "random":
        return json.dumps(draw(_json_values))
    return draw(_raw_lines)


@st.composite
def jsonl_documents(draw: st.DrawFn, base_text: str) -> str:
    """A JSONL document of 0..8 lines, each valid, mutated, random JSON or not JSON at all."""
    records = [json.loads(line) for line in base_text.splitlines() if line.strip()]
    lines = draw(st.lists(jsonl_line(records), max_size=8))
    text = "\n".join(lines)
    if draw(st.booleans()):
        text = draw(mutated_text(text, max_edits=2)) if text else text
    return text
