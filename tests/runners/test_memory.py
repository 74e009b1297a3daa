"""Peak memory on CPU: MeZO stays near inference; the naive ZO variant and fo-adam are measurably higher.

Peak RSS is a process-wide high-water mark, so each method runs in its own fresh process (all at
once, to keep the wall time down). Margins are in units of the model's parameter bytes, not
absolute numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

MODEL = "tiny-opt-h512-l4"
CHILD = f"""
import json, sys, torch
torch.set_num_threads(1)
from zolab.runners.config import RunConfig
from zolab.runners.train import run
method, in_place, steps = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
cfg = RunConfig(model="{MODEL}", method=method, in_place=in_place, steps=steps, lr=1e-6, train_size=32,
                dev_size=8, test_size=8, batch_size=8, max_length=32, eval_every=1000, checkpoint_every=1000)
res = run(cfg)
print(json.dumps({{"rss": res.peak_rss, "params": res.extra["trainable_params"]}}))
"""

RUNS = {"inference": ("mezo", "1", "0"), "mezo": ("mezo", "1", "3"), "naive": ("mezo", "0", "3"),
        "fo-adam": ("fo-adam", "1", "3")}


@pytest.mark.slow
def test_peak_rss_mezo_near_inference_naive_and_adam_higher():
    procs = {k: subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for k, args in RUNS.items()}
    peaks = {}
    for k, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        data = json.loads(out.strip().splitlines()[-1])
        peaks[k] = data["rss"]
        param_bytes = data["params"] * 4
    over = {k: (v - peaks["inference"]) / param_bytes for k, v in peaks.items()}
    assert over["mezo"] < 0.35, over                     # in place: about one tensor's z at a time
    assert over["naive"] - over["mezo"] > 0.6, over      # a full copy of z held for the step
    assert over["fo-adam"] - over["mezo"] > 2.0, over    # gradients + two Adam moments (+ activations)
