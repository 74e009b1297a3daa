"""zolab's MeZO optimizer on the Triton backend (run by the interpreter on CPU, in a subprocess).

``kernel: triton`` must reach the kernel through ``build_optimizer``, train (loss goes down on a
least-squares problem), and replay its trajectory to bit-identical weights, exactly like the torch
backend does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import json, torch
from zolab.runners.config import RunConfig
from zolab.runners.optim import build_optimizer

def problem():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 8, generator=g)
    y = X @ torch.randn(8, 1, generator=g) + 0.5
    w = torch.nn.Parameter(torch.zeros(8, 1))
    b = torch.nn.Parameter(torch.zeros(1))
    return X, y, [("w", w), ("b", b)]

def train(steps):
    X, y, named = problem()
    cfg = RunConfig(method="mezo", lr=0.02, eps=1e-3, kernel="triton", seed=3)
    opt = build_optimizer(cfg, named, device="cpu")
    loss = lambda: ((X @ named[0][1] + named[1][1] - y) ** 2).mean()
    first = float(loss().detach())
    for _ in range(steps):
        opt.step(loss)
    return opt, named, first, float(loss().detach())

opt, named, first, last = train(40)
_, _, fresh = problem()
replayer = build_optimizer(RunConfig(method="mezo", lr=0.02, eps=1e-3, kernel="triton", seed=3), fresh, device="cpu")
for k in range(0, len(opt.trajectory)):
    replayer.replay([opt.trajectory[k]])
same = all(torch.equal(a, b) for (_, a), (_, b) in zip(named, fresh))
print(json.dumps({"backend": opt.backend.name, "first": first, "last": last, "replay_identical": same}))
"""


@pytest.mark.slow  # ~40 s: 240 interpreted kernel launches
def test_mezo_optimizer_on_triton_backend_trains_and_replays() -> None:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["backend"] == "triton"
    assert got["last"] < 0.7 * got["first"], got
    assert got["replay_identical"], got
