"""run(): learning on the synthetic task, resume == uninterrupted, eval-only, reporting, failures."""

from __future__ import annotations

import math

import pytest
import torch

from zolab.runners.config import METHODS, RunConfig
from zolab.runners.errors import NonFiniteLossError
from zolab.runners.models import load_model, trainable_parameters
from zolab.runners.reporter import JobCancelled, MemoryReporter
from zolab.runners.train import _Run, run

SMALL = dict(model="tiny-llama-h16-l1", task="synthetic-sentiment", train_size=200, dev_size=60, test_size=100,
             batch_size=8, eps=1e-2, device="cpu")


def test_mezo_lora_learns_synthetic_task_from_chance():
    # n_samples 4: with one direction a step, 300 steps at this size end anywhere in 0.50-0.88 across
    # seeds (ulp-level changes of the arithmetic move a run within that spread); with 4 every seed
    # tried (0-5) ended at 0.665-0.95, 0.12-0.53 above its zero-shot accuracy
    cfg = RunConfig(method="mezo", peft="lora", lr=2e-2, n_samples=4, steps=300, eval_every=100,
                    checkpoint_every=1000, seed=0,
                    **{**SMALL, "train_size": 500, "dev_size": 100, "test_size": 200, "batch_size": 16})
    res = run(cfg)
    assert res.zero_shot_accuracy is not None and res.zero_shot_accuracy <= 0.6
    assert res.accuracy >= 0.68 and res.accuracy >= res.zero_shot_accuracy + 0.15, res
    assert res.forward_passes == 2 * 4 * 300
    assert res.extra["trainable_params"] == 512  # LoRA q/v only: ZO perturbs trainable params alone


@pytest.mark.slow
def test_mezo_full_parameters_learns_synthetic_task():
    # One direction a step: where one run ends depends on its z stream. Seeds 0-5 ended at 0.54-1.00 on
    # the native kernel and 0.555-0.98 on torch's generator (means 0.80 and 0.79, from zero-shot 0.41-0.675);
    # for seeds 0-3 every run gained 0.115-0.56 on either stream. So: over four seeds, the mean gain and
    # most runs, not one run's accuracy.
    gains = []
    for seed in range(4):
        cfg = RunConfig(method="mezo", lr=3e-3, steps=1000, eval_every=250, checkpoint_every=1000, seed=seed,
                        **{**SMALL, "train_size": 500, "dev_size": 200, "test_size": 200, "batch_size": 16})
        res = run(cfg)
        assert res.zero_shot_accuracy <= 0.7 and not res.diverged, res
        gains.append(res.accuracy - res.zero_shot_accuracy)
    assert sum(gains) / len(gains) >= 0.2, gains
    assert sum(g >= 0.1 for g in gains) >= 3, gains


def _final_params(cfg, rep=None, resume=None):
    captured = {}
    orig = _Run.train

    def spy(self, start):
        out = orig(self, start)
        captured["w"] = [p.detach().clone() for _, p in self.named]
        return out

    _Run.train = spy
    try:
        res = run(cfg, rep, resume=resume)
    finally:
        _Run.train = orig
    return captured["w"], res


@pytest.mark.parametrize("method", ["mezo", "zo-adam", "one-point-rf", "fo-adam"])
def test_resume_from_checkpoint_equals_uninterrupted(method, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOLAB_DATA_ROOTS", str(tmp_path))  # checkpoint_dir must lie under a data root
    cfg = RunConfig(method=method, lr=1e-3, steps=12, eval_every=6, checkpoint_every=5, n_samples=1,
                    task_options={"checkpoint_dir": str(tmp_path)}, **SMALL)
    full, _ = _final_params(cfg)
    stopped = MemoryReporter(stop_at=5)
    with pytest.raises(JobCancelled):
        run(cfg, stopped)
    ckpt = stopped.checkpoints[-1]
    assert ckpt.step == 5
    if method != "fo-adam":
        assert len(ckpt.trajectory) == 5 and len(str(ckpt.to_dict())) < 4096  # a few KB
    resumed, res = _final_params(cfg, MemoryReporter(), resume=ckpt)
    assert res.extra["resumed_from"] == 5
    for a, b in zip(full, resumed):
        assert torch.equal(a, b), (a - b).abs().max()


def test_resume_refuses_other_base_weights():
    cfg = RunConfig(method="mezo", lr=1e-3, steps=4, checkpoint_every=2, **SMALL)
    rep = MemoryReporter()
    run(cfg, rep)
    other = cfg.replace(seed=cfg.seed + 1)
    with pytest.raises(ValueError, match="base weights"):
        run(other, resume=rep.checkpoints[0])


def test_steps_zero_is_evaluation_only():
    rep = MemoryReporter()
    res = run(RunConfig(method="mezo", steps=0, **SMALL), rep)
    assert res.forward_passes == 0 and res.steps == 0
    assert res.accuracy == res.zero_shot_accuracy
    assert rep.series("dev_accuracy")[0][0] == 0 and not rep.series("train_loss")
    assert 0.0 <= res.f1 <= 1.0 and res.peak_rss and res.gpu_hours == 0.0


def test_reporter_sees_progress_losses_evals_checkpoints():
    rep = MemoryReporter()
    res = run(RunConfig(method="zo-momentum", lr=1e-3, steps=6, eval_every=3, checkpoint_every=2, **SMALL), rep)
    assert [s for s, _, _ in rep.progress_calls] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in rep.series("dev_accuracy")] == [0, 3, 6]
    assert [s for s, _ in rep.series("train_loss")] == [1, 2, 3, 4, 5, 6]
    assert [c.step for c in rep.checkpoints] == [2, 4, 6]
    assert len(rep.heartbeats) >= 6
    assert res.convergence_step in (0, 3, 6) and res.loss_slope is not None and math.isfinite(res.final_loss)


@pytest.mark.parametrize("method", ["mezo", "fo-sgd"])
def test_non_finite_loss_fails_with_step(method, monkeypatch):
    from zolab.runners import objectives

    calls = {"n": 0}
    ce = objectives.OBJECTIVES["ce"]

    def poisoned(ll, lengths, labels):  # the loss turns NaN from the 7th evaluation on
        calls["n"] += 1
        loss = ce(ll, lengths, labels)
        return loss * float("nan") if calls["n"] > 6 else loss

    monkeypatch.setitem(objectives.OBJECTIVES, "ce", poisoned)
    rep = MemoryReporter()
    with pytest.raises(NonFiniteLossError) as err:
        run(RunConfig(method=method, lr=1e-3, steps=30, **SMALL), rep)
    done = 3 if method == "mezo" else 6  # steps finished before the 7th forward: 2 per ZO step, 1 per FO step
    assert err.value.step == done + 1 and math.isnan(err.value.value)
    assert len(rep.progress_calls) == done


def test_prompt_false_uses_raw_input():
    cfg = RunConfig(method="mezo", steps=0, prompt=False, **SMALL)
    from zolab.runners.objectives import LabelScorer
    from zolab.runners.tasks import get_task

    _, tok = load_model(cfg)
    task = get_task(cfg.task)
    raw = LabelScorer(tok, task, prompt=False)
    prompted = LabelScorer(tok, task, prompt=True)
    ex = task.loader({}, 0)[0]
    assert tok.decode(raw.prompt_ids(ex, 64)) == ex.fields["text"]
    assert tok.decode(prompted.prompt_ids(ex, 64)).endswith("it was")
    assert run(cfg).accuracy >= 0.0


def test_only_trainable_parameters_are_perturbed():
    cfg = RunConfig(method="mezo", peft="lora", lr=1e-2, steps=3, **SMALL)
    model, _ = load_model(cfg)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all("lora" in n for n, _ in trainable_parameters(model))


def _smoke(method: str, peft: str):
    from zolab.runners.optim import OPTIMIZERS

    knobs = {"method": method, "peft": peft, "model": "tiny-opt-h16-l1", "steps": 2, "train_size": 20,
             "dev_size": 8, "test_size": 8, "batch_size": 4, "lr": 1e-3, "device": "cpu", "icl_demos": 4}
    if method in ("icl", "linear-probe") and peft != "none":  # they use the base model as it is
        with pytest.raises(ValueError, match="peft must be none"):
            RunConfig(**knobs)
        return
    assert method in OPTIMIZERS or method in ("icl", "linear-probe")  # the baselines: zolab.runners.baselines
    res = run(RunConfig(**knobs))
    per_step = {"zo-cons": 5, "forward-grad": 1, "one-point-rf": 1, "fo-sgd": 1, "fo-adam": 1,
                "linear-probe": 1, "icl": 0}.get(method, 2)
    assert res.forward_passes == 2 * per_step and 0.0 <= res.accuracy <= 1.0


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_end_to_end(method):
    _smoke(method, "none")


@pytest.mark.slow
@pytest.mark.parametrize("peft", ["lora", "prefix"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_through_peft(method, peft):
    _smoke(method, peft)


def test_zero_shot_run_evaluates_the_test_split_once(monkeypatch):
    """steps=0 is the zero-shot reference row: final accuracy IS the zero-shot accuracy, measured once."""
    from zolab.runners import train as train_mod
    from zolab.runners.config import RunConfig

    calls = []
    real = train_mod.evaluate

    def counting(model, scorer, examples, batch_size):
        calls.append(len(examples))
        return real(model, scorer, examples, batch_size)

    monkeypatch.setattr(train_mod, "evaluate", counting)
    cfg = RunConfig(model="tiny-gpt2-h16-l1", task="synthetic-sentiment", device="cpu", steps=0,
                    batch_size=4, train_size=8, dev_size=6, test_size=10)
    res = train_mod.run(cfg)
    assert res.accuracy == res.zero_shot_accuracy and res.forward_passes == 0
    assert calls.count(10) == 1  # test split (10 examples) once; dev (6) once for the zero-shot dev point


def test_config_hash_ignores_checkpoint_location():
    from zolab.runners.config import RunConfig

    a = RunConfig(task_options={"checkpoint_dir": "/tmp/a"})
    b = RunConfig(task_options={"checkpoint_dir": "/tmp/b"})
    assert a.config_hash() == b.config_hash() == RunConfig().config_hash()
    assert RunConfig(task_options={"path": "x.jsonl"}).config_hash() != a.config_hash()


def test_one_point_rf_and_mezo_with_one_point_estimator_are_one_variant():
    """The two spellings build the same optimizer, so a plan naming both runs it once."""
    rf = RunConfig(method="one-point-rf")
    assert RunConfig(method="mezo", estimator="one-point").config_hash() == rf.config_hash()
    assert RunConfig(method="one-point-rf", estimator="one-point").config_hash() == rf.config_hash()
    assert RunConfig(method="mezo").config_hash() != rf.config_hash()
    assert RunConfig(method="zo-adam", estimator="one-point").config_hash() != rf.config_hash()


def test_estimator_contradictions_are_refused_at_config_time():
    with pytest.raises(ValueError, match="one-point takes one direction"):
        RunConfig(estimator="one-point", n_samples=4)
    with pytest.raises(ValueError, match="contradicts"):
        RunConfig(method="one-point-rf", estimator="forward")
