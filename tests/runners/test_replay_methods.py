"""Replaying a recorded trajectory (zolab's checkpoint/resume path) lands exactly where the live run did.

For every case of :data:`tests.runners.method_reference.CASES`: a live run of 4 steps takes a
checkpoint at step 2 (through JSON, as the database stores it); a fresh model from the same base
weights is restored from it (ZO: :func:`zolab.runners.checkpoint.replay` of the trajectory; FO: the
``torch.save`` blob) and runs steps 3-4 live. Weights, trajectories, reported losses and optimizer
buffers must be bit-identical (``torch.equal``), and so must a replay of the whole 4-step trajectory:
the replay repeats the live run's weight operations one for one (zo-cons included, whose choices
the checkpoint records), so there is no rounding difference to tolerate.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.runners.method_reference import CASES, Problem, as_float, buffers, config
from zolab.runners import checkpoint as ckpts
from zolab.runners.config import RunConfig
from zolab.runners.optim import build_optimizer
from zolab.runners.optim.base import ZOOptimizer
from zolab.runners.reporter import Checkpoint

BASE = "tiny-opt-h16-l1:init-seed=3:float64"


def take(opt, problem: Problem, cfg, step: int) -> Checkpoint:
    if isinstance(opt, ZOOptimizer):
        ckpt = ckpts.zo_checkpoint(opt, BASE)
    else:
        ckpt = ckpts.fo_checkpoint(opt, problem.named, step, BASE, cfg)
    return Checkpoint.from_dict(json.loads(json.dumps(ckpt.to_dict())))   # as stored and read back


def restore(cfg, ckpt: Checkpoint) -> tuple[Problem, torch.optim.Optimizer]:
    problem = Problem()
    opt = build_optimizer(cfg, problem.named, model=problem.model)
    if isinstance(opt, ZOOptimizer):
        ckpts.replay(opt, ckpt, BASE)
    else:
        ckpts.fo_restore(opt, problem.named, ckpt, BASE)
    return problem, opt


def step(opt, problem: Problem) -> float:
    return as_float(opt.step(problem.closure(opt)))


def assert_same(a: Problem, opt_a, b: Problem, opt_b) -> None:
    wa, wb = a.weights(), b.weights()
    for n in wa:
        assert torch.equal(wa[n], wb[n]), (n, (wa[n] - wb[n]).abs().max().item())
    ba, bb = buffers(opt_a, a), buffers(opt_b, b)
    assert set(ba) == set(bb)
    for key in ba:
        assert all(torch.equal(ba[key][n], bb[key][n]) for n in ba[key]), key
    if isinstance(opt_a, ZOOptimizer):
        assert opt_a.trajectory == opt_b.trajectory
        assert opt_a.zo_state() == opt_b.zo_state()


@pytest.mark.parametrize(("method", "knobs"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_resume_and_replay_equal_the_live_run(method, knobs, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOLAB_DATA_ROOTS", str(tmp_path))  # checkpoint_dir must lie under a data root
    cfg = config(method, 4, checkpoint_every=2, task_options={"checkpoint_dir": str(tmp_path)}, **knobs)
    live = Problem()
    opt = build_optimizer(cfg, live.named, model=live.model)
    losses, saved = [], {}
    for t in range(1, 5):
        losses.append(step(opt, live))
        if t % cfg.checkpoint_every == 0:
            saved[t] = take(opt, live, cfg, t)

    resumed, ropt = restore(cfg, saved[2])
    assert [step(ropt, resumed) for _ in range(2)] == losses[2:]
    assert_same(live, opt, resumed, ropt)

    if isinstance(opt, ZOOptimizer):
        assert len(saved[4].trajectory) == 4 * cfg.n_samples
        replayed, popt = restore(cfg, saved[4])
        assert_same(live, opt, replayed, popt)
        assert saved[2].optimizer_state["step"] == 2 and len(json.dumps(saved[4].to_dict())) < 4096


def test_zo_cons_checkpoint_records_its_choices_and_refuses_a_replay_without_them():
    cfg = config("zo-cons", 3, lr=1e-2, checkpoint_every=3)
    live = Problem()
    opt = build_optimizer(cfg, live.named, model=live.model)
    for _ in range(3):
        step(opt, live)
    state = opt.zo_state()
    assert state["choices"] == "".join(c[0] for c in opt.choices) and len(state["choices"]) == 3
    legacy = Checkpoint(step=3, base=BASE, trajectory=list(opt.trajectory), optimizer_state={"step": 3})
    fresh = Problem()
    with pytest.raises(ValueError, match="no recorded choices"):
        ckpts.replay(build_optimizer(cfg, fresh.named, model=fresh.model), legacy, BASE)
    direct = build_optimizer(cfg, fresh.named, model=fresh.model)
    with pytest.raises(ValueError, match="begin_replay"):
        direct.replay(opt.trajectory[:1])


@pytest.mark.parametrize("knobs", [{"method": "zo-cons"}, {"method": "mezo", "estimator": "forward", "n_samples": 2},
                                   {"method": "zo-sign", "sign_rule": "scalar", "estimator": "one-point"}],
                         ids=["zo-cons", "mezo-forward-q2", "zo-sign-scalar-one-point"])
def test_run_resumed_from_its_checkpoint_ends_where_the_uninterrupted_run_does(knobs, monkeypatch):
    """The trainer's path: batches by step, settle points, a checkpoint through the reporter, resume."""
    from zolab.runners.reporter import JobCancelled, MemoryReporter
    from zolab.runners.train import _Run, run

    cfg = RunConfig(model="tiny-opt-h16-l1", train_size=40, dev_size=8, test_size=8, batch_size=4, lr=1e-2,
                    eps=1e-2, weight_decay=0.1, device="cpu", steps=7, eval_every=5, checkpoint_every=3, **knobs)
    finals = []
    spy_train = _Run.train

    def keep_final(self, start):
        out = spy_train(self, start)
        finals.append([p.detach().clone() for _, p in self.named])
        return out

    stopped = MemoryReporter(stop_at=4)
    with pytest.raises(JobCancelled):
        run(cfg, stopped)
    ckpt = stopped.checkpoints[-1]
    assert ckpt.step == 3
    monkeypatch.setattr(_Run, "train", keep_final)
    full, resumed = run(cfg), run(cfg, MemoryReporter(), resume=ckpt)
    assert resumed.extra["resumed_from"] == 3 and full.forward_passes == 7 * resumed.extra["forwards_per_step"]
    assert all(torch.equal(a, b) for a, b in zip(*finals))
    assert resumed.final_loss == full.final_loss
