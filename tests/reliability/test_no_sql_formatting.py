"""No SQL built by string formatting, and no SQL outside ``zolab/db/`` (issue 8, item 5).

An AST check, not a grep: it sees through line breaks, aliases (``import sqlalchemy as sa``)
and names assigned a formatted string before being executed. Rules:

1. a call to ``text(...)``, ``execute(...)``, ``executemany(...)``, ``executescript(...)`` or
   ``exec_driver_sql(...)`` never receives, as its SQL argument, an f-string with placeholders,
   ``%``-formatting, ``.format(...)``, ``.join(...)`` or ``+`` concatenation involving a string — directly
   or through a local name assigned such an expression;
2. no string that reads like SQL (``SELECT .. FROM``, ``INSERT INTO``, ``UPDATE .. SET``,
   ``DELETE FROM``, ``CREATE/DROP/ALTER TABLE``) is built with formatting, anywhere in ``zolab/``.
   Upper-case keywords only: English messages ("select a plan from the list") are not SQL;
3. outside ``zolab/db/`` nothing builds SQL: no import of ``sqlalchemy``'s query builders
   (``text``, ``select``, ``insert``, ``func``, ...; ``import sqlalchemy`` as a whole module; anything
   from ``sqlalchemy.sql``), no ``sqlite3``/``psycopg`` drivers, and no SQL-looking string literal.
   Allowed, because they build no SQL: ``sqlalchemy.engine.make_url`` (URL parsing), the
   ``sqlalchemy.orm.Session`` type and ``sqlalchemy.exc`` errors; any import under
   ``if TYPE_CHECKING:``.

``text(...)`` counts as SQL only when ``text`` is SQLAlchemy's (imported from it, or ``sa.text``):
``st.text(f"...")`` in a Streamlit page is not SQL.

The checker is tested on synthetic bad snippets so that a pass on the real tree means something.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import zolab

PACKAGE_DIR = Path(zolab.__file__).resolve().parent
SQL_HOME = "db"  # the one subpackage allowed to hold SQL

SQL_CALLS = {"execute", "executemany", "executescript", "exec_driver_sql"}  # plus SQLAlchemy's text()
SQL_MODULES = ("sqlalchemy", "sqlite3", "psycopg", "psycopg2", "asyncpg")
#: what may be imported from sqlalchemy outside zolab/db: nothing here builds a query
SA_ALLOWED = {("sqlalchemy.engine", "make_url"), ("sqlalchemy.engine", "URL"), ("sqlalchemy.orm", "Session"),
              ("sqlalchemy", "exc"), ("sqlalchemy.exc", "*")}
SQL_RE = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\b[\s\S]*\bSET\b|\bDELETE\s+FROM\b"
    r"|\b(?:CREATE|DROP|ALTER|TRUNCATE)\s+(?:TABLE|INDEX|VIEW)\b"
)


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.detail}"


def _is_str_const(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _formatted(node: ast.AST) -> bool:
    """Is ``node`` a string built at run time from pieces (f-string, %, .format, join, +)?"""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Mod):
            return _is_str_const(node.left) or _formatted(node.left)
        if isinstance(node.op, ast.Add):
            sides = (node.left, node.right)
            return any(_is_str_const(s) or _formatted(s) or isinstance(s, ast.JoinedStr) for s in sides) or (
                not any(isinstance(s, ast.Constant) for s in sides)  # name + name: unknown strings, refuse
            )
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in {"format", "format_map", "join", "replace"} and (
            _is_str_const(node.func.value) or node.func.attr in {"format", "format_map", "join"}
        )
    return False


def _literal_text(node: ast.AST) -> str:
    """The constant parts of a (possibly formatted) string expression, for the SQL look test."""
    parts: list[str] = []
    for sub in ast.walk(node):
        if _is_str_const(sub):
            parts.append(sub.value)
    return " ".join(parts)


def _call_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _sql_arg(call: ast.Call) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg in {"statement", "text", "sql", "query", "clause"}:
            return kw.value
    return call.args[0] if call.args else None


def _type_checking_bodies(tree: ast.AST) -> set[int]:
    """ids of import nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                for stmt in node.body:
                    for sub in ast.walk(stmt):
                        inside.add(id(sub))
    return inside


class _Checker(ast.NodeVisitor):
    def __init__(self, path: str, sql_allowed: bool, tree: ast.AST) -> None:
        self.path = path
        self.sql_allowed = sql_allowed
        self.violations: list[Violation] = []
        self.scopes: list[dict[str, ast.AST]] = [{}]  # name -> last formatted value assigned
        self.type_only = _type_checking_bodies(tree)
        self.sa_text: set[str] = set()      # local names of sqlalchemy's text()
        self.sa_modules: set[str] = set()   # local names of the sqlalchemy module (import sqlalchemy as sa)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
                self.sa_text |= {a.asname or a.name for a in node.names if a.name == "text"}
            elif isinstance(node, ast.Import):
                self.sa_modules |= {a.asname or a.name for a in node.names if a.name == "sqlalchemy"}

    def _add(self, node: ast.AST, rule: str, detail: str) -> None:
        self.violations.append(Violation(self.path, getattr(node, "lineno", 0), rule, detail))

    # scopes: a function's formatted locals do not leak into the next function
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append({})
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def _record(self, target: ast.AST, value: ast.AST) -> None:
        if isinstance(target, ast.Name):
            if _formatted(value):
                self.scopes[-1][target.id] = value
            else:
                self.scopes[-1].pop(target.id, None)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        for target in node.targets:
            self._record(target, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.generic_visit(node)
        if node.value is not None:
            self._record(node.target, node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.generic_visit(node)
        if isinstance(node.target, ast.Name) and isinstance(node.op, (ast.Add, ast.Mod)):
            self.scopes[-1][node.target.id] = node  # sql += "..." builds a string piece by piece

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node)
        func = node.func
        is_sa_text = (isinstance(func, ast.Name) and func.id in self.sa_text) or (
            isinstance(func, ast.Attribute) and func.attr == "text"
            and isinstance(func.value, ast.Name) and func.value.id in self.sa_modules
        )
        if name in SQL_CALLS or is_sa_text:
            arg = _sql_arg(node)
            if arg is not None:
                formatted = _formatted(arg) or (
                    isinstance(arg, ast.Name) and any(arg.id in scope for scope in self.scopes)
                )
                if formatted:
                    self._add(node, "sql-format", f"{name}(...) receives a string built by formatting")
        self.generic_visit(node)

    def _check_string_expr(self, node: ast.AST) -> None:
        if _formatted(node) and SQL_RE.search(_literal_text(node)):
            self._add(node, "sql-format", f"SQL text built by formatting: {_literal_text(node)[:60]!r}")

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        self._check_string_expr(node)  # no generic_visit: its parts are not separate strings

    def visit_BinOp(self, node: ast.BinOp) -> None:
        self._check_string_expr(node)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if not self.sql_allowed and isinstance(node.value, str) and SQL_RE.search(node.value):
            self._add(node, "sql-outside-db", f"SQL-looking string outside zolab/db: {node.value[:60]!r}")

    def visit_Import(self, node: ast.Import) -> None:
        if not self.sql_allowed and id(node) not in self.type_only:
            for alias in node.names:
                if alias.name.split(".")[0] in SQL_MODULES:
                    self._add(node, "sql-import", f"imports {alias.name} outside zolab/db")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if self.sql_allowed or id(node) in self.type_only or node.level:
            return
        module = node.module or ""
        if module.split(".")[0] in SQL_MODULES:
            bad = [a.name for a in node.names
                   if (module, a.name) not in SA_ALLOWED and (module, "*") not in SA_ALLOWED]
            if bad:
                self._add(node, "sql-import", f"from {module} import {', '.join(bad)} outside zolab/db")


def check_source(source: str, path: str = "<snippet>", *, sql_allowed: bool = True) -> list[Violation]:
    """All violations in one module's source. ``sql_allowed`` is True only for ``zolab/db``."""
    tree = ast.parse(source, filename=path)
    checker = _Checker(path, sql_allowed, tree)
    checker.visit(tree)
    return checker.violations


def check_tree(root: Path = PACKAGE_DIR) -> list[Violation]:
    out: list[Violation] = []
    for file in sorted(root.rglob("*.py")):
        rel = file.relative_to(root)
        sql_allowed = rel.parts[0] == SQL_HOME
        out += check_source(file.read_text(encoding="utf-8"), f"zolab/{rel.as_posix()}", sql_allowed=sql_allowed)
    return out


# --------------------------------------------------------------------------------------------
# the real tree


def test_zolab_tree_has_no_formatted_sql_and_no_sql_outside_db() -> None:
    files = list(PACKAGE_DIR.rglob("*.py"))
    assert len(files) > 10, "the check must see the package"
    violations = check_tree()
    assert not violations, "SQL rules broken:\n" + "\n".join(map(str, violations))


# --------------------------------------------------------------------------------------------
# the checker itself: each bad snippet is caught, each good one passes

BAD_IN_DB = {
    "fstring-text": 'from sqlalchemy import text\ndef f(s, t):\n    s.execute(text(f"SELECT * FROM {t}"))\n',
    "percent": 'def f(conn, name):\n    conn.execute("DELETE FROM jobs WHERE name = \'%s\'" % name)\n',
    "format": 'def f(conn, n):\n    conn.exec_driver_sql("UPDATE jobs SET x={}".format(n))\n',
    "concat": 'def f(cur, n):\n    cur.execute("SELECT id FROM plans WHERE name = \'" + n + "\'")\n',
    "via-local-name": (
        "from sqlalchemy import text\n"
        "def f(s, t):\n"
        '    q = f"INSERT INTO {t} VALUES (1)"\n'
        "    s.execute(text(q))\n"
    ),
    "augassign": (
        "def f(cur, n):\n"
        '    q = "SELECT 1 FROM plans"\n'
        '    q += " WHERE n = " + n\n'
        "    cur.executescript(q)\n"
    ),
    "keyword-arg": 'def f(c, t):\n    c.execute(statement=f"DROP TABLE {t}")\n',
    "sql-built-not-yet-executed": 'def f(t):\n    return "SELECT * FROM %s" % t\n',
    "join": 'def f(cur, cols):\n    cur.execute(", ".join(cols))\n',
    "sa-module-text": 'import sqlalchemy as sa\ndef f(s, t):\n    s.execute(sa.text("SELECT 1 FROM " + t))\n',
    "aliased-text": 'from sqlalchemy import text as T\ndef f(t):\n    return T(f"DELETE FROM {t}")\n',
}

BAD_OUTSIDE_DB = {
    "import-text": "from sqlalchemy import text\n",
    "import-select": "from sqlalchemy import select, func\n",
    "import-sql-expression": "from sqlalchemy.sql import text\n",
    "import-orm-query": "from sqlalchemy.orm import Session, aliased\n",
    "import-module": "import sqlalchemy as sa\n",
    "import-driver": "import sqlite3\n",
    "import-psycopg": "from psycopg import sql\n",
    "literal-sql": 'Q = "SELECT id FROM jobs WHERE status = :s"\n',
}

GOOD_IN_DB = {
    "bound-params": (
        "from sqlalchemy import text\n"
        "def f(s, name):\n"
        '    return s.execute(text("SELECT id FROM plans WHERE name = :n"), {"n": name})\n'
    ),
    "orm": "from sqlalchemy import select\ndef f(s, M):\n    return s.execute(select(M).where(M.id == 1))\n",
    "constant-fstring": 'from sqlalchemy import text\nQ = text(f"SELECT 1 FROM plans")\n',
    "english-message": 'def f(n):\n    return f"select a plan from the list: {n}"\n',
    "name-reassigned-constant": (
        "def f(cur, t):\n"
        '    q = f"{t}"\n'
        '    q = "SELECT 1 FROM plans"\n'
        "    cur.execute(q)\n"
    ),
}

GOOD_OUTSIDE_DB = {
    "type-only": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from sqlalchemy.orm import Session\n"
        "def f(s: 'Session') -> None: ...\n"
    ),
    "repo-call": "from zolab.db import repo\ndef f(s):\n    return repo.list_plans(s)\n",
    "relative": "from . import sibling\n",
    "streamlit-text": 'import streamlit as st\ndef f(n):\n    st.text(f"Plan name: {n}")\n',
    "url-parsing": "from sqlalchemy.engine import make_url\nfrom sqlalchemy.orm import Session\n",
    "message": 'def f(p):\n    raise ValueError(f"update the plan {p} and set its name")\n',
}


@pytest.mark.parametrize("name", sorted(BAD_IN_DB))
def test_checker_catches_formatted_sql(name: str) -> None:
    found = check_source(BAD_IN_DB[name], f"zolab/db/{name}.py", sql_allowed=True)
    assert [v.rule for v in found] and all(v.rule == "sql-format" for v in found), found
    assert found[0].line >= 1


@pytest.mark.parametrize("name", sorted(BAD_OUTSIDE_DB))
def test_checker_catches_sql_outside_db(name: str) -> None:
    found = check_source(BAD_OUTSIDE_DB[name], f"zolab/platform/{name}.py", sql_allowed=False)
    assert found, f"{name} not caught"
    assert {v.rule for v in found} <= {"sql-import", "sql-outside-db"}
    # the same code is fine inside zolab/db (the rule is about where, not what)
    assert check_source(BAD_OUTSIDE_DB[name], f"zolab/db/{name}.py", sql_allowed=True) == []


@pytest.mark.parametrize("name", sorted(GOOD_IN_DB))
def test_checker_accepts_parameterised_sql(name: str) -> None:
    assert check_source(GOOD_IN_DB[name], f"zolab/db/{name}.py", sql_allowed=True) == []


@pytest.mark.parametrize("name", sorted(GOOD_OUTSIDE_DB))
def test_checker_accepts_code_without_sql(name: str) -> None:
    assert check_source(GOOD_OUTSIDE_DB[name], f"zolab/ui/{name}.py", sql_allowed=False) == []


def test_check_tree_reports_a_planted_violation(tmp_path: Path) -> None:
    """The tree walker applies the db/ exemption by folder: the same snippet passes in db/, fails in ui/."""
    for sub in ("db", "ui"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "q.py").write_text('Q = "SELECT id FROM jobs"\n')
    found = check_tree(tmp_path)
    assert [(v.path, v.rule) for v in found] == [("zolab/ui/q.py", "sql-outside-db")]
