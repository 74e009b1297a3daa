"""Memory and time estimates: parameter counts, method ordering, the H100 anchor, the knobs' forwards,
device classes and cards named, recalibration from finished runs, preview = stored plan."""

from __future__ import annotations

import pytest

from zolab.db.repo.jobs import StepTimeSample
from zolab.platform import estimates
from zolab.platform.estimates import (
    ANCHOR,
    CARDS,
    CPU_CARD,
    StepTimeModel,
    UnknownModelError,
    card_for,
    card_named,
    default_estimate_device,
    default_step_seconds,
    estimate_job,
    estimate_memory,
    eval_seconds,
    job_seconds,
    model_shape,
    step_seconds,
    step_work,
    trainable_params,
)
from zolab.runners.config import RunConfig


def test_tiny_parameter_count_matches_the_built_model():
    from zolab.runners.models import load_model, trainable_parameters

    for name in ("tiny-opt", "tiny-llama-h32-l3", "tiny-gpt2"):
        model, _ = load_model(RunConfig(model=name))
        real = sum(p.numel() for _, p in trainable_parameters(model))
        assert model_shape(name).params == real, name


def test_offline_sizes_from_the_name():
    opt = model_shape("facebook/opt-1.3b")
    assert 1.25e9 < opt.params < 1.45e9 and (opt.hidden, opt.layers) == (2048, 24)
    assert 5.5e9 < model_shape("someone/custom-7b").params < 9e9
    with pytest.raises(UnknownModelError, match="no size like"):
        model_shape("someone/mystery-model")


def test_memory_by_method_follows_the_design_rules():
    shape = model_shape("facebook/opt-1.3b")
    base = RunConfig(model="facebook/opt-1.3b", dtype="float16", batch_size=16, max_length=256)
    w = shape.params * 2
    mezo = estimate_memory(base, shape)
    naive = estimate_memory(base.replace(in_place=False), shape)
    adam = estimate_memory(base.replace(method="fo-adam"), shape)
    sgd = estimate_memory(base.replace(method="fo-sgd", momentum=0.0), shape)
    lora_adam = estimate_memory(base.replace(method="fo-adam", peft="lora"), shape)
    assert mezo.weights == w and mezo.method_state == 0                   # MeZO ~ inference
    assert naive.method_state == w and naive.activations == mezo.activations  # + one copy of the weights
    assert adam.weights + adam.method_state == 4 * w                      # Adam ~ 4x weights
    assert sgd.method_state == w                                          # gradients only
    assert adam.activations > 5 * mezo.activations                        # activations kept for backprop
    assert mezo.total < naive.total < sgd.total < adam.total
    assert lora_adam.method_state == 3 * trainable_params(base.replace(peft="lora"), shape) * 2
    assert lora_adam.method_state < adam.method_state / 100
    # bigger batch or longer sequences: more activation memory, same weights
    assert estimate_memory(base.replace(batch_size=32), shape).activations > mezo.activations


def test_default_step_time_scales_with_work():
    c = RunConfig(model="tiny-opt", device="cpu")
    t = default_step_seconds(c)
    q4 = c.replace(n_samples=4)
    assert step_work(q4).forwards == 4 * step_work(c).forwards == 8
    assert 3.0 < step_seconds(q4, CPU_CARD) / step_seconds(c, CPU_CARD) <= 4.0  # 4x forwards, 3x passes
    assert default_step_seconds(c.replace(batch_size=64)) > t
    assert default_step_seconds(c.replace(method="one-point-rf")) < t
    assert default_step_seconds(c, "gpu") < t


def test_the_h100_anchor():
    """MeZO at OPT-1.3B, batch 16, length 128, fp16 on an H100: 0.130 s a step (the reference-style step)."""
    cfg = RunConfig(method="mezo", model="facebook/opt-1.3b", batch_size=16, max_length=128, dtype="float16")
    assert (ANCHOR.model, ANCHOR.card, ANCHOR.seconds) == ("facebook/opt-1.3b", "H100", 0.130)
    assert step_seconds(cfg, CARDS["H100"]) == pytest.approx(0.130, rel=1e-9)
    # other cards: scaled by their datasheet throughput and bandwidth; fp32 capped by the FP32 peak
    assert step_seconds(cfg, CARDS["A100"]) > step_seconds(cfg, CARDS["H100"]) > step_seconds(cfg, CARDS["H200"])
    assert step_seconds(cfg.replace(dtype="float32"), CARDS["H100"]) > 1.3 * step_seconds(cfg, CARDS["H100"])
    assert 0.0 < estimates.gpu_utilisation() < 1.0
    # FO-Adam costs forward + backward (3 forwards), MeZO 2: per step FO is dearer
    assert step_seconds(cfg.replace(method="fo-adam"), CARDS["H100"]) > step_seconds(cfg, CARDS["H100"])


def test_the_knobs_change_forwards_per_step():
    c = RunConfig(model="tiny-opt", n_samples=3)
    assert step_work(c).forwards == 6                                        # central: 2q
    assert step_work(c.replace(estimator="forward")).forwards == 4           # one-sided: q + 1
    assert step_work(c.replace(estimator="one-point")).forwards == 3         # one-point: q (1 at q = 1)
    assert step_work(c.replace(estimator="one-point", n_samples=1)).forwards == 1
    assert step_work(c.replace(method="one-point-rf", n_samples=1)).forwards == 1
    assert step_work(c.replace(method="fo-adam")).forwards == 3              # forward + backward
    assert step_work(c.replace(method="linear-probe")).forwards == 1         # FO on the head only
    assert step_work(c.replace(method="icl")).forwards == 0                  # no training
    # sparsity / block-wise ZO shrink the weight passes, not the forwards
    sparse = step_work(c.replace(sparsity=0.75))
    assert sparse.forwards == 6 and sparse.pass_fraction == pytest.approx(0.25)
    shape = model_shape("tiny-opt")
    assert step_work(c.replace(perturb_layers=[0]), shape).pass_fraction == pytest.approx(1 / shape.layers)
    # ICL: evaluation only, with prompts 1 + icl_demos times longer
    icl = RunConfig(model="facebook/opt-1.3b", method="icl", icl_demos=4, steps=0)
    zero = icl.replace(method="mezo")
    assert eval_seconds(icl, CARDS["H100"]) > 2 * eval_seconds(zero, CARDS["H100"])
    assert job_seconds(icl.replace(steps=100), CARDS["H100"]) == pytest.approx(eval_seconds(icl, CARDS["H100"]))


def test_every_estimate_names_its_device_class_and_card():
    assert CARDS["H100"].label == "H100 GPU-hours" and CPU_CARD.label == "CPU-hours on this machine"
    cfg = RunConfig(model="tiny-opt", steps=10)
    assert estimate_job(cfg, StepTimeModel(), "cpu").label == "CPU-hours on this machine"
    assert estimate_job(cfg, StepTimeModel(), "gpu", card="A100").label == "A100 GPU-hours"
    assert card_named("NVIDIA H100 80GB HBM3").name == "H100" and card_named("NVIDIA L40S").name == "L40S"
    with pytest.raises(ValueError, match="unknown card"):
        card_named("TPU v5")


def test_hub_models_default_to_gpu_estimates_without_a_gpu(monkeypatch):
    monkeypatch.setattr(estimates, "local_card", lambda: None)
    assert default_estimate_device(["facebook/opt-1.3b"]) == "gpu"
    assert default_estimate_device(["smollm2-135m", "tiny-opt"]) == "gpu"
    assert default_estimate_device(["tiny-opt", "tiny-llama-h16-l1"]) == "cpu"
    assert card_for("gpu").name == "H100"
    monkeypatch.setattr(estimates, "local_card", lambda: CARDS["A100"])
    assert default_estimate_device(["tiny-opt"]) == "gpu" and card_for("gpu").name == "A100"


def _sample(cfg: RunConfig, seconds_per_step: float, device: str = "cpu") -> StepTimeSample:
    return StepTimeSample(cfg.to_dict(), 100, 100 * seconds_per_step, device)


def test_step_time_model_learns_only_from_the_same_model_method_and_device():
    cfg = RunConfig(model="tiny-opt", device="cpu")
    default = default_step_seconds(cfg)
    assert StepTimeModel().estimate(cfg).source.startswith("default model (")
    samples = [_sample(cfg, 3 * default), _sample(cfg, 5 * default), _sample(cfg, 4 * default),
               _sample(cfg.replace(method="fo-adam"), 100 * default),   # other method
               _sample(cfg.replace(model="tiny-gpt2"), 100 * default),  # other model
               _sample(cfg, 0.001 * default, device="cuda:0")]          # other device kind
    est = StepTimeModel(samples).estimate(cfg)
    assert est.source == "recalibrated from 3 finished runs: x4" and est.factor == pytest.approx(4.0)
    assert est.seconds == pytest.approx(4 * default) and est.runs == 3
    long = cfg.replace(steps=3600)
    job = estimate_job(long, StepTimeModel(samples))
    assert job.hours == pytest.approx(4 * job_seconds(long, CPU_CARD) / 3600) and job.memory_bytes > 0
    assert job.label == "CPU-hours on this machine" and job.source == est.source


def test_learned_estimates_within_2x_of_measured_cpu_step_times():
    """Real tiny MeZO runs: learn from one, predict others (other seed / batch / directions)."""
    from zolab.runners import train

    base = RunConfig(method="mezo", model="tiny-opt", steps=20, eval_every=20, checkpoint_every=20,
                     train_size=48, dev_size=16, test_size=16, max_length=32, device="cpu", batch_size=4)
    train.run(base.replace(seed=99, steps=2))  # warm-up: imports and first-call costs are not step time
    measured = {}
    for name, cfg in {"learn": base.replace(seed=1), "seed": base.replace(seed=2),
                      "batch": base.replace(seed=3, batch_size=12), "dirs": base.replace(seed=4, n_samples=3)}.items():
        r = train.run(cfg)
        measured[name] = (cfg, r.wall_time_s / r.steps, r)
    cfg, _, r = measured["learn"]
    model = StepTimeModel([StepTimeSample(cfg.to_dict(), r.steps, r.wall_time_s, r.device)])
    for name in ("seed", "batch", "dirs"):
        cfg, secs, _ = measured[name]
        est = model.estimate(cfg).seconds
        assert secs / 2 <= est <= secs * 2, f"{name}: estimated {est:.4f} s/step, measured {secs:.4f}"


def test_model_shape_is_built_one_thread_at_a_time(monkeypatch):
    """transformers' lazy module breaks when two threads first-use it at once (Streamlit reruns):
    model_shape must never run two shape builds concurrently."""
    import threading
    import time

    from zolab.platform import estimates

    active, peak = [0], [0]

    def slow_build(model):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        active[0] -= 1
        return model

    monkeypatch.setattr(estimates, "_model_shape", slow_build)
    threads = [threading.Thread(target=estimates.model_shape, args=(f"m{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1
