"""The bytes a method holds (Result.method_memory_bytes), against a hand count on a tiny model.

Weights = every parameter x 4 bytes (float32); on the torch backend (set here: ``auto`` is the native
kernel on CPU, whose scratch is one 4096-element tile per thread) in-place MeZO draws z chunk by chunk
into buffers the backend keeps, one per term slot: a lookahead pass applies two seeds, so two buffers of the
largest trainable tensor (below the 1M-entry chunk); naive ZO holds every z of the step (the trainable
bytes) plus one such buffer; FO-Adam holds gradients (1x) and two moments (2x); zo-momentum one buffer; forward-gradient
all tangents at once.
"""

from __future__ import annotations

import pytest
import torch

from zolab.runners.config import RunConfig
from zolab.runners.metrics import MethodMemory
from zolab.runners.models import load_model, trainable_parameters
from zolab.runners.optim import build_optimizer
from zolab.runners.train import run

BASE = RunConfig(model="tiny-opt", steps=3, lr=1e-4, train_size=24, dev_size=8, test_size=8, batch_size=4,
                 max_length=24, eval_every=100, checkpoint_every=100, device="cpu", seed=5, kernel="torch")


def _hand_count(cfg: RunConfig) -> dict[str, int]:
    """Sizes from the model alone (not from the run): all weights, trainable bytes, largest trainable tensor."""
    model, _ = load_model(cfg, torch.device("cpu"))
    trainable = [p for _, p in trainable_parameters(model)]
    return {"weights": sum(p.numel() * 4 for p in model.parameters()),
            "trainable": sum(p.numel() * 4 for p in trainable),
            "largest": max(p.numel() * 4 for p in trainable),
            "n_trainable": len(trainable)}


@pytest.fixture(scope="module")
def results():
    cfgs = {
        "mezo": BASE,
        "naive": BASE.replace(in_place=False),
        "fo-adam": BASE.replace(method="fo-adam"),
        "fo-sgd": BASE.replace(method="fo-sgd", momentum=0.0),
        "zo-momentum": BASE.replace(method="zo-momentum"),
        "forward-grad": BASE.replace(method="forward-grad"),
        "lora-mezo": BASE.replace(peft="lora"),
        "lora-naive": BASE.replace(peft="lora", in_place=False),
        "mezo-native": BASE.replace(kernel="native"),
    }
    return {k: (cfg, run(cfg)) for k, cfg in cfgs.items()}


def test_result_carries_the_total_and_its_parts(results):
    for name, (_, res) in results.items():
        parts = res.extra["method_memory"]
        assert set(parts) == {"weights", "optimizer_state", "gradients", "z_buffers"}
        assert res.method_memory_bytes == sum(parts.values()), name


def test_mezo_in_place_holds_weights_and_one_tensors_z(results):
    cfg, res = results["mezo"]
    hand = _hand_count(cfg)
    parts = res.extra["method_memory"]
    assert parts["weights"] == hand["weights"]
    assert parts["optimizer_state"] == 0 and parts["gradients"] == 0
    assert parts["z_buffers"] == 2 * hand["largest"]      # two term slots' chunk buffers, nothing else


def test_mezo_on_the_native_kernel_holds_one_tile_of_scratch_whatever_the_model(results):
    from zolab.runners.kernels.native_build import load

    cfg, res = results["mezo-native"]
    parts = res.extra["method_memory"]
    assert parts["weights"] == _hand_count(cfg)["weights"]
    assert parts["z_buffers"] == load().zolab_scratch_bytes() == 2 * 4 * 4096 + 4096   # 32-bit words, fp32 z, keep flags
    _, torch_run = results["mezo"]
    assert parts["z_buffers"] < torch_run.extra["method_memory"]["z_buffers"]


def test_naive_zo_holds_more_by_about_the_size_of_z(results):
    cfg, naive = results["naive"]
    _, mezo = results["mezo"]
    hand = _hand_count(cfg)
    assert naive.extra["method_memory"]["z_buffers"] == hand["trainable"] + hand["largest"]  # every z held
    extra = naive.method_memory_bytes - mezo.method_memory_bytes
    assert extra == hand["trainable"] - hand["largest"]
    assert extra > 0.5 * hand["trainable"]


def test_fo_adam_holds_two_moments_and_gradients(results):
    cfg, adam = results["fo-adam"]
    _, sgd = results["fo-sgd"]
    hand = _hand_count(cfg)
    parts = adam.extra["method_memory"]
    assert parts["gradients"] == hand["trainable"]
    steps = parts["optimizer_state"] - 2 * hand["trainable"]
    assert 0 <= steps <= 8 * hand["n_trainable"]         # exp_avg + exp_avg_sq (+ a 0-d step counter each)
    assert parts["z_buffers"] == 0
    assert sgd.extra["method_memory"]["optimizer_state"] == 0   # SGD without momentum keeps no state
    assert adam.method_memory_bytes - sgd.method_memory_bytes == pytest.approx(2 * hand["trainable"], abs=steps)


def test_stateful_zo_and_forward_gradient(results):
    cfg, mom = results["zo-momentum"]
    hand = _hand_count(cfg)
    assert mom.extra["method_memory"]["optimizer_state"] == hand["trainable"]   # one momentum buffer
    _, fg = results["forward-grad"]
    assert fg.extra["method_memory"]["z_buffers"] == hand["trainable"] + hand["largest"]  # all tangents + a chunk buffer


def test_peft_counts_base_weights_and_only_the_adapters_state(results):
    cfg, lora = results["lora-mezo"]
    _, lora_naive = results["lora-naive"]
    hand = _hand_count(cfg)
    assert lora.extra["method_memory"]["weights"] == hand["weights"]            # base + adapters
    assert hand["trainable"] < hand["weights"] / 5
    assert lora_naive.method_memory_bytes - lora.method_memory_bytes == hand["trainable"] - hand["largest"]


def test_z_tracking_counts_each_held_tensor_once_and_frees():
    cfg = BASE.replace(in_place=False)
    model, _ = load_model(cfg, torch.device("cpu"))
    named = trainable_parameters(model)
    opt = build_optimizer(cfg, named, model=model)
    meter = MethodMemory(model, opt)
    p = named[0][1]
    a = opt.backend.z(p, 7, 0)
    b = opt.backend.z(p, 7, 0)            # materialised: the same held tensor again
    assert a is b and meter.z_peak_bytes == p.numel() * 4
    opt.backend.release()
    del a, b
    c = opt.backend.z(p, 8, 0)
    assert meter.z_peak_bytes == p.numel() * 4 and meter._live_bytes == p.numel() * 4
    del c


def test_method_memory_reaches_the_results_table(sqlite_url):
    """Result.method_memory_bytes -> results.method_memory_bytes through the queue's finish."""
    from tests.platform._factories import make_jobs
    from zolab.db.repo import jobs as repo
    from zolab.db.session import session_scope
    from zolab.platform.queue import JobQueue
    from zolab.runners.reporter import Result

    _, (job_id,) = make_jobs(sqlite_url, 1)
    q = JobQueue(sqlite_url)
    claim = q.claim("w1")
    assert claim is not None and claim.job_id == job_id
    res = Result(accuracy=0.5, f1=0.5, steps=1, forward_passes=2, wall_time_s=0.1, gpu_hours=0.0,
                 method_memory_bytes=568_576, extra={"method_memory": {"weights": 502_528, "z_buffers": 66_048}})
    q.finish(job_id, "w1", res.to_dict())
    with session_scope(sqlite_url) as s:
        row = repo.result_of(s, job_id)
        assert row.method_memory_bytes == 568_576 and row.extra["method_memory"]["z_buffers"] == 66_048
