"""The CLI console honours COLUMNS set after import (wrapper scripts, test runners)."""

from __future__ import annotations

from zolab.cli.common import EnvConsole


def test_columns_set_after_creation_is_used(monkeypatch):
    c = EnvConsole(force_terminal=False)
    monkeypatch.setenv("COLUMNS", "321")
    assert c.width == 321
    monkeypatch.setenv("COLUMNS", "55")
    assert c.width == 55
    monkeypatch.delenv("COLUMNS")
    assert c.width > 0
