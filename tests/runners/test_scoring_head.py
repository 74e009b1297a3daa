"""Only the scored positions go through the vocabulary head, and the scores do not change."""

from __future__ import annotations

import pytest
import torch

from zolab.runners.config import RunConfig
from zolab.runners.models import load_model
from zolab.runners.objectives import LabelScorer, scored_positions_only
from zolab.runners.tasks.base import Example, Task

SINGLE = Task(name="t", loader=lambda o, s: [], template="{text} it was", label_words=[" bad", " good"])
MULTI = Task(name="t", loader=lambda o, s: [], template="{text} it was", label_words=[" bad", " good", " very good"])
EXAMPLES = [Example(fields={"text": "the movie was great fun to watch"}, label=1),
            Example(fields={"text": "dull plot"}, label=0),
            Example(fields={"text": "a long and winding and rather tedious affair overall"}, label=0)]


def full_logits_scores(scorer: LabelScorer, model, batch) -> torch.Tensor:
    """The reference: every position through the head, then pick the scored ones (the old path)."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    rows = torch.arange(logits.shape[0]).unsqueeze(1)
    picked = logits[rows, batch.score_pos].float().log_softmax(-1)
    if scorer.single_token:
        return picked[:, 0, [t[0] for t in scorer.label_tokens]]
    tok = picked.gather(-1, batch.score_ids.unsqueeze(-1)).squeeze(-1)
    return (tok * batch.score_mask).sum(-1).view(-1, batch.num_classes)


@pytest.mark.parametrize("model_name", ["tiny-opt", "tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("peft", ["none", "lora", "prefix"])
@pytest.mark.parametrize("task", [SINGLE, MULTI], ids=["single-token", "multi-token"])
def test_scores_equal_full_logits_path(model_name, peft, task):
    model, tok = load_model(RunConfig(model=model_name, peft=peft))
    scorer = LabelScorer(tok, task)
    batch = scorer.encode(EXAMPLES)
    seen: list[tuple[int, ...]] = []
    head = model.get_output_embeddings()
    probe = head.register_forward_hook(lambda _m, _a, out: seen.append(tuple(out.shape)))
    with torch.no_grad():
        got, _ = scorer.scores(model, batch)
        probe.remove()
        want = full_logits_scores(scorer, model, batch)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (got - want).abs().max()
    rows, width = batch.input_ids.shape
    # the head produced [rows, L, V], not [rows, T, V]
    assert seen == [(rows, batch.score_pos.shape[1], head.out_features)]
    assert batch.score_pos.shape[1] < width


def test_gradients_through_the_gathered_head_are_unchanged():
    model, tok = load_model(RunConfig(model="tiny-llama", method="fo-sgd"))
    scorer = LabelScorer(tok, MULTI)
    batch = scorer.encode(EXAMPLES)
    params = [p for p in model.parameters() if p.requires_grad]
    ll, _ = scorer.scores(model, batch)
    got = torch.autograd.grad(torch.nn.functional.cross_entropy(ll, batch.labels), params)
    want = torch.autograd.grad(torch.nn.functional.cross_entropy(full_logits_scores(scorer, model, batch),
                                                                 batch.labels), params)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-6, rtol=1e-4)


def test_hook_is_removed_and_headless_models_keep_full_logits():
    model, tok = load_model(RunConfig(model="tiny-opt"))
    scorer = LabelScorer(tok, SINGLE)
    batch = scorer.encode(EXAMPLES)
    with scored_positions_only(model, batch.score_pos) as hooked, torch.no_grad():
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    assert hooked["gathered"] and out.shape[1] == 1
    with torch.no_grad():   # hook gone: the plain model gives full logits again
        assert model(input_ids=batch.input_ids).logits.shape[1] == batch.input_ids.shape[1]

    class Headless(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None):
            return type("Out", (), {"logits": model(input_ids=input_ids, attention_mask=attention_mask).logits})

        def get_output_embeddings(self):
            return None

    with torch.no_grad():
        got, _ = scorer.scores(Headless(), batch)
        want, _ = scorer.scores(model, batch)
    assert torch.allclose(got, want, atol=1e-6)
