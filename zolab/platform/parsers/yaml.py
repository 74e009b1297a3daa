"""YAML plans, with a line and column for every error.

The text is composed into PyYAML's node tree with the *safe* loader, which keeps start marks. Before
anything is constructed the tree is checked: only the standard scalar/sequence/mapping tags (no
``!!python/object``), no duplicate keys, no recursive aliases and no alias bombs (the size of the
tree with aliases expanded is computed without expanding it). The marks are kept as a
``loc -> (line, column)`` map so pydantic's error locations point back into the file.
"""

from __future__ import annotations

from typing import Any

import yaml

from zolab.platform.errors import Issue, PlanError
from zolab.platform.parsers.replacement import normalise_ablations
from zolab.platform.parsers.source import MAX_BYTES
from zolab.platform.plan import Plan, validate_plan

#: nodes in the tree after alias expansion; a real plan has a few hundred
MAX_EXPANDED_NODES = 20_000
#: nesting depth of mappings/sequences; a real plan is about 5 deep
MAX_DEPTH = 64
#: characters of scalar text after alias expansion: no more than a plan file may hold, so one long
#: string aliased a thousand times (a few KB of "*a") cannot become hundreds of MB of plan
MAX_EXPANDED_CHARS = MAX_BYTES
_ALLOWED_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge", "timestamp")
}

Marks = dict[tuple[Any, ...], tuple[int, int]]


class _DepthLimitedLoader(yaml.SafeLoader):
    """The safe loader, refusing nesting past :data:`MAX_DEPTH` while *scanning*.

    PyYAML's scanner is quadratic in flow nesting (it walks every open level per token), so
    ``x: [[[[...`` a few KB long burns seconds before the composer's recursion even fails;
    counting levels here refuses it in microseconds.
    """

    def _too_deep(self) -> yaml.scanner.ScannerError:
        return yaml.scanner.ScannerError(None, None, f"nested more than {MAX_DEPTH} levels deep", self.get_mark())

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise self._too_deep()
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column: int) -> bool:
        if len(self.indents) >= MAX_DEPTH:
            raise self._too_deep()
        return super().add_indent(column)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _issue(message: str, file: str | None, node: yaml.Node | None = None, mark: Any = None) -> PlanError:
    mark = mark or (node.start_mark if node is not None else None)
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    return PlanError([Issue(message, file, line, col)])


def _check(node: yaml.Node, file: str | None) -> None:
    """Tags, duplicate keys, recursion and expanded size, without constructing anything."""
    sizes: dict[int, tuple[int, int]] = {}
    active: set[int] = set()

    def size(n: yaml.Node, depth: int = 1) -> tuple[int, int]:
        """(nodes, scalar characters) under ``n`` with aliases expanded."""
        if depth > MAX_DEPTH:
            raise _issue(f"YAML nested more than {MAX_DEPTH} levels deep", file, n)
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _issue("recursive YAML alias (a node that contains itself) is not allowed", file, n)
        if n.tag not in _ALLOWED_TAGS:
            raise _issue(
                f"YAML tag {n.tag!r} is not allowed: plans are plain data (no object-constructing tags)", file, n
            )
        active.add(key)
        total, chars = 1, len(n.value) if isinstance(n, yaml.ScalarNode) else 0
        children: list[yaml.Node] = []
        if isinstance(n, yaml.SequenceNode):
            children = list(n.value)
        elif isinstance(n, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in seen:
                        line = seen[k.value].start_mark.line + 1
                        raise _issue(f"duplicate key {k.value!r} (first defined on line {line})", file, k)
                    seen[k.value] = k
                children += (k, v)
        for child in children:
            child_nodes, child_chars = size(child, depth + 1)
            total, chars = total + child_nodes, chars + child_chars
        active.discard(key)
        sizes[key] = (total, chars)
        if total > MAX_EXPANDED_NODES:
            raise _issue(
                f"YAML expands to more than {MAX_EXPANDED_NODES:,} nodes through aliases (an alias bomb?)", file, n
            )
        if chars > MAX_EXPANDED_CHARS:
            raise _issue(
                f"YAML expands to more than {MAX_EXPANDED_CHARS:,} characters of text through aliases "
                "(one long string repeated by aliases?)", file, n
            )
        return total, chars

    size(node)


def _marks(node: yaml.Node, loc: tuple[Any, ...] = (), out: Marks | None = None) -> Marks:
    """``loc -> (line, column)``: a mapping entry points at its key, a list item at the item."""
    out = {} if out is None else out
    out.setdefault(loc, _pos(node))
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                child = loc + (k.value,)
                out[child] = _pos(k)
                _marks(v, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[loc + (i,)] = _pos(v)
            _marks(v, loc + (i,), out)
    return out


def load_yaml_data(text: str, file: str | None) -> tuple[Any, Marks]:
    """Safely parse YAML text into plain data and its marks."""
    try:
        loader = _DepthLimitedLoader(text)  # the reader refuses non-printable characters right here
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise PlanError.single(f"malformed YAML: {exc.reason} (character U+{exc.character:04X})",
                               file=file, line=line, column=column) from None
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:  # the composer recurses once per level, before _check can count them
            raise PlanError.single(f"YAML nested more than {MAX_DEPTH} levels deep", file=file) from None
        except yaml.MarkedYAMLError as exc:
            msg = " ".join(p for p in (exc.context, exc.problem) if p) or "malformed YAML"
            if exc.context_mark is not None and exc.problem_mark is not None \
                    and exc.context_mark.line != exc.problem_mark.line:
                msg += f" (the construct started on line {exc.context_mark.line + 1})"
            raise _issue(f"malformed YAML: {msg}", file, mark=exc.problem_mark or exc.context_mark) from None
        except yaml.YAMLError as exc:
            raise PlanError.single(f"malformed YAML: {exc}", file=file) from None
        if node is None:
            raise PlanError.single("the file is empty", file=file, line=1, column=1)
        _check(node, file)
        marks = _marks(node)
        try:
            data = loader.construct_document(node)
        except yaml.MarkedYAMLError as exc:
            raise _issue(f"invalid YAML value: {exc.problem}", file, mark=exc.problem_mark) from None
        except ValueError as exc:  # e.g. an integer over Python's 4300-digit conversion limit
            raise PlanError.single(f"invalid YAML value: {exc}", file=file) from None
    finally:
        loader.dispose()
    return data, marks


def locator_for(marks: Marks):
    return lambda loc: marks.get(tuple(loc))


def parse_yaml(text: str, *, file: str | None = None, tasks: list[str] | None = None,
               seeds: list[int] | None = None) -> Plan:
    """A YAML plan -> Plan; ``tasks``/``seeds`` (command-line options) replace the file's."""
    data, marks = load_yaml_data(text, file)
    if isinstance(data, dict):
        if tasks:
            data["tasks"] = list(tasks)
        if seeds:
            data["seeds"] = list(seeds)
        normalise_ablations(data.get("ablations"))
    return validate_plan(data, file=file, locator=locator_for(marks), marks=marks)
