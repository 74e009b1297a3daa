"""zolab.runners imports with torch + transformers + peft alone (GPU workers run lean images).

A meta-path hook refuses the platform's packages when *zolab code* imports them (directly or via
another zolab module). Packages that transformers itself needs (it depends on pyyaml, for
instance) stay importable for transformers, because the GPU image has them through it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ["sqlalchemy", "pydantic", "optuna", "typer", "rich", "streamlit", "psutil", "yaml", "alembic", "pandas",
           "sklearn", "zolab.db", "zolab.platform", "zolab.ui", "zolab.cli", "zolab.assets"]

SCRIPT = """
import sys
BLOCKED = {blocked!r}
refused = []

def importer():
    f = sys._getframe(2)
    while f is not None:
        name = f.f_globals.get("__name__", "")
        if not name.startswith(("importlib", "_frozen_importlib")):
            return name
        f = f.f_back
    return ""

class Block:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            who = importer()
            if who.startswith("zolab"):
                refused.append((name, who))
                raise ImportError(f"blocked: {{who}} imports {{name}}")

sys.meta_path.insert(0, Block())
import zolab.runners, zolab.runners.train, zolab.runners.optim, zolab.runners.models
import zolab.runners.tasks, zolab.runners.metrics, zolab.runners.objectives, zolab.runners.checkpoint
import zolab.runners.batch, zolab.runners.jobfile
from zolab.runners.tasks import task_names
assert "synthetic-sentiment" in task_names()
from zolab.runners.config import RunConfig
from zolab.runners.train import run
res = run(RunConfig(model="tiny-gpt2-h16-l1", steps=2, train_size=20, dev_size=8, test_size=8, batch_size=4))
assert res.forward_passes == 4
assert not refused, refused
print("ok")
"""


def _run(blocked: list[str]) -> subprocess.CompletedProcess:
    code = textwrap.dedent(SCRIPT.format(blocked=blocked))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_runner_imports_without_platform_packages():
    out = _run(BLOCKED)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_the_import_hook_does_catch_a_zolab_import():
    out = _run(["zolab.runners.metrics"])  # the runner needs it: the hook must make the script fail
    assert out.returncode != 0 and "blocked: zolab" in out.stderr
