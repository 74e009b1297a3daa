"""Classification with a causal LM as in the MeZO paper: prompt + label words.

:class:`LabelScorer` encodes examples and returns, for each example and each label word, the
summed log-likelihood of the label word's tokens after the prompt (and their token counts).
Prediction is the label word with the highest *length-normalised* log-likelihood. Objectives turn
those scores into the training loss:

* ``ce``: cross-entropy over the label words' summed log-likelihoods (differentiable);
* ``accuracy`` / ``f1``: minus the batch accuracy / macro-F1 of the predictions (not
  differentiable: only zeroth-order methods can use them, which :class:`RunConfig` enforces).

When every label word is one token (the common case) one forward of the prompt suffices: the
next-token distribution at the prompt's last position is read at the label tokens. Otherwise each
(example, label word) pair is one sequence.

Only the scored positions go through the output projection (:func:`scored_positions_only`): the
vocabulary head of a small model is a large share of its forward (SmolLM2-135M: 28M of 135M
weights, 49k-wide logits for every token), and the full ``[rows, T, V]`` logits tensor would
dominate the activation memory that MeZO's "inference memory" promise is measured against.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zolab.runners.metrics import macro_f1
from zolab.runners.tasks.base import Example, Task


@dataclass
class Batch:
    """Encoded examples. ``rows`` sequences (B, or B*C in the multi-token path), right-padded."""

    input_ids: torch.Tensor        # [rows, T]
    attention_mask: torch.Tensor   # [rows, T]
    labels: torch.Tensor           # [B] class indices
    score_pos: torch.Tensor        # [rows, L] positions whose next-token logits score label tokens
    score_ids: torch.Tensor        # [rows, L] the label tokens (pad where the label is shorter)
    score_mask: torch.Tensor       # [rows, L] 1 where a label token is scored
    num_classes: int


@contextlib.contextmanager
def scored_positions_only(model: nn.Module, positions: torch.Tensor) -> Iterator[dict[str, bool]]:
    """While active, the model's output head sees only the hidden states at ``positions`` ([rows, L]).

    A forward pre-hook on the head module gathers ``hidden[rows, positions]`` before the vocabulary
    projection, so ``logits`` come out ``[rows, L, V]`` instead of ``[rows, T, V]``. It works
    through PEFT wrappers (the head module is shared) and under autograd / ``torch.func.jvp``.
    Models without a separate head module (``get_output_embeddings()`` is None) keep full logits;
    the yielded ``{"gathered": bool}`` says which happened.
    """
    state = {"gathered": False}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        yield state
        return
    rows = torch.arange(positions.shape[0], device=positions.device).unsqueeze(1)

    def gather(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden, *rest = args
        state["gathered"] = True
        return (hidden[rows, positions], *rest)

    handle = head.register_forward_pre_hook(gather)
    try:
        yield state
    finally:
        handle.remove()


class LabelScorer:
    """Encodes examples for ``task`` and scores label words with a causal LM."""

    def __init__(self, tokenizer: Any, task: Task, *, prompt: bool = True, max_length: int = 128,
                 device: torch.device | str = "cpu") -> None:
        self.tokenizer = tokenizer
        self.template = task.template if prompt else task.raw_template
        self.max_length = max_length
        self.device = torch.device(device)
        self.label_tokens = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in task.label_words]
        for word, ids in zip(task.label_words, self.label_tokens):
            if not ids:
                raise ValueError(f"label word {word!r} encodes to no tokens")
        if len({tuple(t) for t in self.label_tokens}) != len(self.label_tokens):
            raise ValueError(f"label words {task.label_words} are not distinguishable by the tokenizer")
        self.single_token = all(len(t) == 1 for t in self.label_tokens)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self._cache: dict[tuple[str, int], list[int]] = {}  # prompt text -> ids (examples recur every epoch)

    @property
    def num_classes(self) -> int:
        return len(self.label_tokens)

    def prompt_ids(self, ex: Example, room: int) -> list[int]:
        """Token ids of the filled template, cut from the left (keeping a leading BOS) to ``room``."""
        text = self.template.format(**ex.fields)
        key = (text, room)
        if key not in self._cache:
            self._cache[key] = self._cut(self.tokenizer(text)["input_ids"], room)
        return self._cache[key]

    def _cut(self, ids: list[int], room: int) -> list[int]:
        if len(ids) <= room:
            return ids
        bos = self.tokenizer.bos_token_id
        if bos is not None and ids[0] == bos:
            return [bos] + ids[len(ids) - room + 1:]
        return ids[len(ids) - room:]

    def encode(self, examples: Sequence[Example]) -> Batch:
        longest = max(len(t) for t in self.label_tokens)
        room = self.max_length - (0 if self.single_token else longest)
        seqs: list[list[int]] = []
        pos: list[list[int]] = []
        sid: list[list[int]] = []
        for ex in examples:
            p = self.prompt_ids(ex, room)
            if self.single_token:
                seqs.append(p)
                pos.append([len(p) - 1])
                sid.append([0])
            else:
                for lab in self.label_tokens:
                    seqs.append(p + lab)
                    pos.append([len(p) - 1 + j for j in range(len(lab))])
                    sid.append(list(lab))
        width = max(len(s) for s in seqs)
        lwidth = max(len(x) for x in pos)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        spos = torch.zeros((len(seqs), lwidth), dtype=torch.long)
        sids = torch.zeros((len(seqs), lwidth), dtype=torch.long)
        smask = torch.zeros((len(seqs), lwidth), dtype=torch.bool)
        for r, (s, ps, ls) in enumerate(zip(seqs, pos, sid)):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
            spos[r, : len(ps)] = torch.tensor(ps)
            sids[r, : len(ls)] = torch.tensor(ls)
            smask[r, : len(ps)] = True
        labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)
        dev = self.device
        return Batch(ids.to(dev), mask.to(dev), labels.to(dev), spos.to(dev), sids.to(dev), smask.to(dev),
                     self.num_classes)

    def scores(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed log-likelihood [B, C], label token counts [C]) of each label word after each prompt."""
        with scored_positions_only(model, batch.score_pos) as hooked:
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        if not hooked["gathered"]:                          # no head module to hook: full logits came back
            rows = torch.arange(logits.shape[0], device=logits.device).unsqueeze(1)
            logits = logits[rows, batch.score_pos]
        picked = logits.float().log_softmax(-1)                                # [rows, L, V]
        lengths = torch.tensor([len(t) for t in self.label_tokens], device=logits.device, dtype=torch.float32)
        if self.single_token:
            label_ids = torch.tensor([t[0] for t in self.label_tokens], device=logits.device)
            return picked[:, 0, label_ids], lengths                            # [B, C]
        tok_ll = picked.gather(-1, batch.score_ids.unsqueeze(-1)).squeeze(-1)   # [rows, L]
        summed = (tok_ll * batch.score_mask).sum(-1)
        return summed.view(-1, batch.num_classes), lengths

    def predict(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        ll, lengths = self.scores(model, batch)
        return (ll / lengths).argmax(-1)


def ce_loss(ll: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the label words' summed log-likelihoods."""
    return F.cross_entropy(ll, labels)


def neg_accuracy(ll: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Minus batch accuracy of the length-normalised predictions (a ZO-only loss)."""
    pred = (ll / lengths).argmax(-1)
    return -(pred == labels).float().mean()


def neg_f1(ll: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Minus batch macro-F1 of the length-normalised predictions (a ZO-only loss)."""
    pred = (ll / lengths).argmax(-1)
    return torch.tensor(-macro_f1(pred.tolist(), labels.tolist()), device=ll.device)


Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
OBJECTIVES: dict[str, Objective] = {"ce": ce_loss, "accuracy": neg_accuracy, "f1": neg_f1}
DIFFERENTIABLE = frozenset({"ce"})


def get_objective(name: str, method_needs_grad: bool = False) -> Objective:
    """The loss for ``name``; a non-differentiable one with a gradient method is refused."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective {name!r} is not one of {', '.join(OBJECTIVES)}")
    if method_needs_grad and name not in DIFFERENTIABLE:
        raise ValueError(f"objective {name!r} is not differentiable: a first-order method needs a gradient; "
                         "use a zeroth-order method (e.g. mezo)")
    return OBJECTIVES[name]


def make_loss(model: nn.Module, scorer: LabelScorer, objective: Objective) -> Callable[[Batch], torch.Tensor]:
    """batch -> scalar loss tensor (the optimizer decides whether a graph is built)."""

    def loss(batch: Batch) -> torch.Tensor:
        ll, lengths = scorer.scores(model, batch)
        return objective(ll, lengths, batch.labels)

    return loss
