"""Issue 14's runner knobs (lr_schedule + warmup_steps, icl, linear-probe) on the real offline
SmolLM2-135M and the Drugs.com reviews (needs `zolab assets fetch`; 4-8 minutes on 2 busy CPU cores).

Measured on this machine (seed 42, 32 test reviews, max_chars 160): zero-shot accuracy 0.53 / F1 0.51;
icl with 4 demonstrations 0.69 / F1 0.41 (every review called positive: 22 of the 32 are); linear-probe
after 4 AdamW steps at lr 1e-3 0.69 / 0.41; MeZO+LoRA with a cosine schedule 0.53 / 0.51 after 4 steps.
These are smoke runs of the paths, so the assertions are about what each knob must do, not accuracy.
"""

from __future__ import annotations

import pytest

from zolab.runners.config import RunConfig
from zolab.runners.reporter import MemoryReporter
from zolab.runners.schedule import LRSchedule
from zolab.runners.train import run

pytestmark = [pytest.mark.assets, pytest.mark.slow]

BASE = {"model": "smollm2-135m", "task": "drugreview", "device": "cpu", "seed": 42, "test_size": 16, "dev_size": 8,
        "train_size": 16, "batch_size": 8, "max_length": 256, "task_options": {"max_chars": 160}}


def test_smollm2_icl_puts_demonstrations_in_the_prompt_without_training() -> None:
    res = run(RunConfig(method="icl", icl_demos=4, **BASE))
    assert res.forward_passes == 0 and res.steps == 0 and res.extra["trainable_params"] == 0
    assert res.extra["icl_demos"] == 4 and res.extra["icl_truncated_prompts"] == 0
    assert res.extra["icl_longest_prompt_tokens"] > 100  # four reviews with their label words, then the test one
    assert 0.0 <= res.accuracy <= 1.0 and 0.0 <= res.f1 <= 1.0 and not res.diverged


def test_smollm2_linear_probe_trains_the_two_label_rows_only() -> None:
    res = run(RunConfig(method="linear-probe", lr=1e-3, steps=4, eval_every=4, **BASE))
    assert res.extra["trainable_params"] == 2 * 576  # " negative" / " positive" rows of a 576-wide head
    assert res.forward_passes == 4 and res.zero_shot_accuracy is not None and not res.diverged


def test_smollm2_mezo_lora_with_cosine_warmup_uses_the_scheduled_lr() -> None:
    cfg = RunConfig(method="mezo", peft="lora", lr=1e-3, steps=4, eval_every=4, lr_schedule="cosine",
                    warmup_steps=2, **BASE)
    rep = MemoryReporter()
    res = run(cfg, rep)
    sched = LRSchedule.from_config(cfg)
    assert [v for _, v in rep.series("lr")] == pytest.approx([sched.lr(t) for t in range(4)])
    assert rep.series("lr")[0][1] == 0.0 and res.forward_passes == 8 and not res.diverged
