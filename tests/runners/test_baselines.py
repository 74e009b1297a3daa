"""The paper's baselines: ``icl`` (k demonstrations, no training) and ``linear-probe`` (FO on the
label-word head rows only)."""

from __future__ import annotations

import math

import pytest
import torch

from zolab.runners.baselines import ICLScorer
from zolab.runners.config import RunConfig
from zolab.runners.models import LabelProbe, trainable_parameters
from zolab.runners.reporter import MemoryReporter
from zolab.runners.tasks.icl import SEPARATOR, verbalize
from zolab.runners.train import _Run, run

TINY = {"model": "tiny-opt-h16-l1", "task": "synthetic-sentiment", "train_size": 40, "dev_size": 20,
        "test_size": 30, "batch_size": 8, "device": "cpu"}


# -- icl -------------------------------------------------------------------------------------------
def _icl_run(**kw) -> _Run:
    return _Run(RunConfig(method="icl", **{**TINY, "max_length": 256, **kw}), MemoryReporter())


def test_icl_prompt_has_exactly_k_train_demos_and_never_the_eval_example():
    r = _icl_run(icl_demos=5, train_size=600, dev_size=60, test_size=60)
    sc = r.scorer
    assert isinstance(sc, ICLScorer)
    train_texts = {verbalize(sc.template, sc.label_words, ex) for ex in r.splits.train}
    for ex in r.splits.dev + r.splits.test:
        parts = sc.text(ex).split(SEPARATOR)
        assert len(parts) == 5 + 1 and parts[-1] == sc.template.format(**ex.fields)
        assert all(p in train_texts for p in parts[:-1])          # demonstrations come from the train split
        own = sc.template.format(**ex.fields)
        assert all(not p.startswith(own + sc.label_words[0]) and not p.startswith(own + sc.label_words[1])
                   for p in parts[:-1])                             # never the eval example itself
        # the gold label word follows each demonstration
        for d in sc.demonstrations(ex):
            assert verbalize(sc.template, sc.label_words, d).endswith(sc.label_words[d.label])
    # the synthetic pool repeats texts: put a training copy of an eval example first in the order
    ex, i = next((e, i) for e in r.splits.test for i, t in enumerate(r.splits.train)
                 if sc.template.format(**t.fields) == sc.template.format(**e.fields))
    sc.order = [i] + [j for j in sc.order if j != i]
    demos = sc.demonstrations(ex)
    assert len(demos) == 5 and r.splits.train[i] not in demos
    assert demos == [r.splits.train[j] for j in sc.order[1:6]]  # the next ones in the order take its place


def test_icl_demonstrations_are_deterministic_from_the_seed():
    a, b, c = _icl_run(icl_demos=4, seed=1), _icl_run(icl_demos=4, seed=1), _icl_run(icl_demos=4, seed=2)
    ex = a.splits.test[0]
    assert a.scorer.text(ex) == b.scorer.text(ex)
    assert a.scorer.demonstrations(ex) != c.scorer.demonstrations(c.splits.test[0])


def test_icl_truncates_from_the_left_keeping_the_eval_example():
    r = _icl_run(icl_demos=8, max_length=24)
    sc = r.scorer
    ex = r.splits.test[0]
    full = sc.tokenizer(sc.text(ex))["input_ids"]
    own = sc.tokenizer(sc.template.format(**ex.fields))["input_ids"]
    ids = sc.prompt_ids(ex, 24)
    assert len(full) > 24 and ids == full[-24:] and ids[-len(own):] == own
    sc.encode(r.splits.test)
    assert sc.stats()["icl_truncated_prompts"] == sc.stats()["icl_prompts"] > 0


def test_icl_needs_enough_train_examples():
    with pytest.raises(ValueError, match="icl_demos=100 but the training split has only"):
        _icl_run(icl_demos=100).scorer.text(_icl_run(icl_demos=1).splits.test[0])


def test_icl_run_costs_eval_forwards_only_and_scores_the_demo_prompts():
    cfg = RunConfig(method="icl", icl_demos=4, steps=50, max_length=256, **TINY)
    calls = {"n": 0}
    orig = _Run.__init__

    def counting_init(self, config, reporter):
        orig(self, config, reporter)
        self.model.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
        counting_init.run = self

    _Run.__init__ = counting_init
    try:
        res = run(cfg)
    finally:
        _Run.__init__ = orig
    r = counting_init.run
    eval_bs = max(32, cfg.batch_size)
    assert calls["n"] == math.ceil(20 / eval_bs) + math.ceil(30 / eval_bs)  # one dev + one test pass, no training
    assert res.forward_passes == 0 and res.steps == 0 and res.extra["steps_ignored"] == 50
    assert res.zero_shot_accuracy is None and res.dev_accuracy is not None and res.extra["trainable_params"] == 0
    assert res.extra["icl_demos"] == 4 and res.extra["icl_truncated_prompts"] == 0
    # the accuracy is that of the demo prompts: recompute it by hand from the model's next-token logits
    label_ids = [t[0] for t in r.scorer.label_tokens]
    correct = 0
    with torch.no_grad():
        for ex in r.splits.test:
            ids = torch.tensor([r.tokenizer(r.scorer.text(ex))["input_ids"]])
            logits = r.model(input_ids=ids).logits[0, -1, label_ids]
            correct += int(logits.argmax().item() == ex.label)
    assert res.accuracy == pytest.approx(correct / len(r.splits.test))


def test_icl_with_zero_demos_is_the_zero_shot_prompt():
    icl = run(RunConfig(method="icl", icl_demos=0, **TINY))
    zero = run(RunConfig(method="mezo", steps=0, **TINY))
    assert icl.accuracy == zero.accuracy and icl.f1 == zero.f1


# -- linear-probe ----------------------------------------------------------------------------------
def _probe_run(**kw) -> _Run:
    return _Run(RunConfig(method="linear-probe", lr=1e-2, steps=3, eval_every=3, **{**TINY, **kw}), MemoryReporter())


@pytest.mark.parametrize("model", ["tiny-opt-h16-l1", "tiny-llama-h16-l1", "tiny-gpt2-h16-l1"])
def test_linear_probe_changes_only_the_label_word_head_rows(model):
    r = _probe_run(model=model)
    probe = r.model.label_probe
    assert isinstance(probe, LabelProbe)
    assert [n for n, _ in trainable_parameters(r.model)] == [n for n, _ in r.named] == ["label_probe.weight"]
    ids = sorted({t[0] for t in r.scorer.label_tokens})
    head = r.model.get_output_embeddings()
    assert probe.ids.tolist() == ids and torch.equal(probe.weight, head.weight[ids])  # step 0 = the model
    before = {n: p.detach().clone() for n, p in r.model.named_parameters() if n != "label_probe.weight"}
    w0 = probe.weight.detach().clone()
    r.train(0)
    after = dict(r.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)  # every model weight, tied embeddings too
    assert not torch.equal(w0, probe.weight)
    # the probe's rows are what the model now scores with; the other vocabulary columns are untouched
    batch = r.scorer.encode(r.splits.test[:4])
    hidden = {}
    h = head.register_forward_pre_hook(lambda m, a: hidden.__setitem__("x", a[0]))
    with torch.no_grad():
        ll, _ = r.scorer.scores(r.model, batch)
    h.remove()
    at_label = hidden["x"][torch.arange(len(batch.labels)), batch.score_pos[:, 0]]  # features at the label position
    logits = at_label @ probe.weight.detach().T
    want = torch.log_softmax(logits, -1)
    rows = [ids.index(t[0]) for t in r.scorer.label_tokens]
    got = ll - torch.logsumexp(ll, -1, keepdim=True)  # scores over the label words
    assert torch.allclose(got, want[:, rows], atol=1e-5)


def test_linear_probe_fixed_batch_step_equals_the_hand_gradient_step():
    """Softmax regression on the frozen features: dL/dW_c = mean_b (p_bc - [y_b = c]) h_b; AdamW's
    first step from zero moments is W - lr g / (|g| + 1e-8)."""
    r = _probe_run()
    probe = r.model.label_probe
    batch = r.scorer.encode(r.schedule.batch(0))
    head = r.model.get_output_embeddings()
    feats = {}
    h = head.register_forward_pre_hook(lambda m, a: feats.__setitem__("h", a[0].detach()))
    w0 = probe.weight.detach().to(torch.float64).clone()
    from zolab.runners.train import _closure

    r.lr_schedule.apply(r.opt, 0)
    r.opt.step(_closure(r.loss_fn, batch, r.opt, r.meter))
    h.remove()
    full = feats["h"]                                             # [B, T, H]: this hook runs before the gather
    hb = full[torch.arange(full.shape[0]), batch.score_pos[:, 0]].to(torch.float64)  # [B, H] at the label position
    ids = probe.ids.tolist()
    rows = [ids.index(t[0]) for t in r.scorer.label_tokens]       # class c -> probe row
    p = torch.softmax(hb @ w0[rows].T, -1)                        # [B, C]
    y = torch.nn.functional.one_hot(batch.labels, len(rows)).to(torch.float64)
    g = torch.zeros_like(w0)
    g[rows] = (p - y).T @ hb / hb.shape[0]
    assert torch.allclose(probe.weight.grad.to(torch.float64), g, rtol=1e-4, atol=1e-7)
    want = w0 - 1e-2 * g / (g.abs() + 1e-8)
    assert torch.allclose(probe.weight.detach().to(torch.float64), want, atol=1e-6)


def test_linear_probe_and_icl_refuse_peft():
    for method in ("linear-probe", "icl"):
        with pytest.raises(ValueError, match="peft must be none"):
            RunConfig(method=method, peft="lora")
