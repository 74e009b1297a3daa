"""The paper's no-ZO baselines, wired into the runner: ``icl`` and ``linear-probe``.

* ``icl`` (in-context learning, MeZO Table 1 "ICL"): no training at all. :class:`ICLScorer` puts
  ``icl_demos`` demonstrations from the training split in front of every eval prompt
  (:mod:`zolab.runners.tasks.icl` says which and how); ``steps`` is ignored, so the run costs
  the evaluation forwards only.
* ``linear-probe`` (MeZO "LP"): first-order training of the label-word head rows only
  (:class:`~zolab.runners.models.LabelProbe`); everything else frozen.

:func:`make_scorer` and :func:`prepare_model` are the two calls :mod:`zolab.runners.train` makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zolab.runners.config import NO_TRAIN_METHODS, RunConfig
from zolab.runners.models import attach_label_probe
from zolab.runners.objectives import LabelScorer
from zolab.runners.tasks.base import Example, Task
from zolab.runners.tasks.icl import demo_order, icl_text, pick_demonstrations


class ICLScorer(LabelScorer):
    """A LabelScorer whose prompts carry k demonstrations (cut from the left like any prompt)."""

    def __init__(self, tokenizer: Any, task: Task, train: Sequence[Example], *, k: int, seed: int,
                 prompt: bool = True, max_length: int = 128, device: torch.device | str = "cpu") -> None:
        super().__init__(tokenizer, task, prompt=prompt, max_length=max_length, device=device)
        self.label_words = list(task.label_words)
        self.train = list(train)
        self.k = k
        self.order = demo_order(len(self.train), seed)
        self.truncated: dict[str, bool] = {}   # full prompt text -> whether it was cut to fit
        self.longest = 0                       # tokens of the longest prompt before cutting

    def demonstrations(self, ex: Example) -> list[Example]:
        return pick_demonstrations(self.train, self.order, self.k, self.template, ex)

    def text(self, ex: Example) -> str:
        return icl_text(self.template, self.label_words, self.demonstrations(ex), ex)

    def prompt_ids(self, ex: Example, room: int) -> list[int]:
        text = self.text(ex)
        key = (text, room)
        if key not in self._cache:
            ids = self.tokenizer(text)["input_ids"]
            self.longest = max(self.longest, len(ids))
            self.truncated[text] = len(ids) > room
            self._cache[key] = self._cut(ids, room)
        return self._cache[key]

    def stats(self) -> dict[str, Any]:
        """For the Result's extra: how many distinct eval prompts lost tokens to ``max_length``."""
        return {"icl_demos": self.k, "icl_prompts": len(self.truncated),
                "icl_truncated_prompts": sum(self.truncated.values()), "icl_longest_prompt_tokens": self.longest}


def make_scorer(config: RunConfig, tokenizer: Any, task: Task, train: Sequence[Example],
                device: torch.device) -> LabelScorer:
    """The run's scorer: with demonstrations for ``icl``, the plain one otherwise."""
    if config.method == "icl":
        return ICLScorer(tokenizer, task, train, k=config.icl_demos, seed=config.seed, prompt=config.prompt,
                         max_length=config.max_length, device=device)
    return LabelScorer(tokenizer, task, prompt=config.prompt, max_length=config.max_length, device=device)


def prepare_model(config: RunConfig, model: nn.Module, scorer: LabelScorer) -> None:
    """``linear-probe``: freeze the model, train the label-word head rows (a no-op otherwise)."""
    if config.method == "linear-probe":
        attach_label_probe(model, [t for ids in scorer.label_tokens for t in ids])


def optimizer_config(config: RunConfig) -> RunConfig:
    """The config :func:`~zolab.runners.optim.build_optimizer` sees: ``linear-probe`` is AdamW
    (``fo-adam``, with the run's lr, betas and weight decay) over the probe's parameters alone."""
    return config.replace(method="fo-adam") if config.method == "linear-probe" else config


def trains(config: RunConfig) -> bool:
    """False for methods that never take an optimizer step (``icl``)."""
    return config.method not in NO_TRAIN_METHODS


def extra(config: RunConfig, scorer: LabelScorer) -> dict[str, Any]:
    """The baseline's own lines in the Result's ``extra``."""
    out: dict[str, Any] = {}
    if isinstance(scorer, ICLScorer):
        out.update(scorer.stats())
        if config.steps:
            out["steps_ignored"] = config.steps
    return out
