"""The install recipe shows progress: a line per step, and pip's own output on the long steps."""

from __future__ import annotations

import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def _recipe(target: str) -> list[str]:
    lines = MAKEFILE.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"{target}:"))
    out = []
    for ln in lines[start + 1:]:
        if not ln.startswith("\t"):
            break
        out.append(ln.strip())
    return out


def test_install_steps_are_announced_and_not_silent():
    recipe = _recipe("$(STAMP)")
    installs = [ln for ln in recipe if "pip install" in ln]
    assert len(installs) == 3
    for ln in installs:
        i = recipe.index(ln)
        assert recipe[i - 1].startswith("@echo") or recipe[i - 2].startswith("@echo"), ln
    long_steps = [ln for ln in installs if "TORCH_PIN" in ln or "-e " in ln]
    assert len(long_steps) == 2 and not any(re.search(r"\s-q(\s|$)", ln) for ln in long_steps)
    assert sum(ln.startswith('@echo "==> [') for ln in recipe) == 4
