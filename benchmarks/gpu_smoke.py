"""GPU smoke run of every zolab method through the real entry point, ``zolab.runners.train.run``.

For each method (MeZO and its variants, the ZO family, forward-grad, one-point RF, the naive
``in_place=false`` MeZO, FO-SGD/FO-Adam, MeZO through LoRA and prefix tuning) a few steps on a small
random-init model, timed through the reporter's ``progress`` calls. Reports, per method: whether it
ran, step time as a multiple of two forwards (one forward timed on a training batch of the same
model), peak memory allocated during the steps as a multiple of the inference peak, loss before and
after, forwards per step. Writes ``gpu_smoke_<card>.json`` and ``.md`` under ``--out`` ($OUT).

Needs only torch + transformers + peft (+ triton for the kernel); from the repo root:
``PYTHONPATH=. python benchmarks/gpu_smoke.py --out $OUT``; on a CPU ``--device cpu --steps 2``
checks the script itself (no memory figures there).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zolab.runners.config import RunConfig
from zolab.runners.reporter import Checkpoint

#: (label, RunConfig overrides): every method of the issue, in one place
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("mezo", {"method": "mezo"}),
    ("mezo kernel=torch", {"method": "mezo", "kernel": "torch"}),
    ("mezo n_samples=2", {"method": "mezo", "n_samples": 2}),
    ("zo-momentum", {"method": "zo-momentum"}),
    ("zo-adam", {"method": "zo-adam"}),
    ("zo-sign", {"method": "zo-sign"}),
    ("zo-cons", {"method": "zo-cons"}),
    ("forward-grad", {"method": "forward-grad"}),
    ("one-point-rf", {"method": "one-point-rf"}),
    ("mezo in_place=false", {"method": "mezo", "in_place": False}),
    ("fo-sgd", {"method": "fo-sgd", "lr": 1e-4}),
    ("fo-adam", {"method": "fo-adam", "lr": 1e-4}),
    ("mezo lora", {"method": "mezo", "peft": "lora"}),
    ("mezo prefix", {"method": "mezo", "peft": "prefix"}),
]


class TimingReporter:
    """Records when each step ends and the device's peak memory over the timed window.

    The window opens at step 1 (after the first step: kernel compilation, lazy allocations) and
    closes at step ``total - 1`` (the last step is followed by the final evaluation)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.stamps: list[tuple[int, float]] = []
        self.losses: list[float] = []
        self.window_peak: tuple[int, int] | None = None

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def progress(self, step: int, total: int, loss: float | None = None) -> None:
        self._sync()
        self.stamps.append((step, time.perf_counter()))
        if loss is not None:
            self.losses.append(float(loss))
        if self.cuda and step == 1:
            torch.cuda.reset_peak_memory_stats()
        if self.cuda and step == total - 1 and step > 1:
            self.window_peak = (torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved())

    def metric(self, step: int, name: str, value: float) -> None:
        return None

    def heartbeat(self) -> None:
        return None

    def checkpoint(self, ckpt: Checkpoint) -> None:
        return None

    def step_seconds(self) -> float | None:
        """Median time between consecutive steps, leaving out the last one (it includes the final eval)."""
        gaps = [b[1] - a[1] for a, b in zip(self.stamps, self.stamps[1:])]
        gaps = gaps[:-1] if len(gaps) > 1 else gaps
        return statistics.median(gaps) if gaps else None


def inference_reference(config: RunConfig, reps: int = 5) -> dict[str, float | None]:
    """One training-batch forward of the same model/task/batch as the run: seconds and peak memory.

    Built through the runner's own set-up (``train._Run``), so the batch, template and model are
    exactly those the steps use."""
    from zolab.runners.reporter import NullReporter
    from zolab.runners.train import _cpu_threads, _Run

    config = config.replace(method="mezo", kernel="torch", peft="none", in_place=True)
    with _cpu_threads(config):  # the same threading as run() (tiny models on CPU: one thread)
        return _time_forward(_Run(config, NullReporter()), reps)


def _time_forward(r: Any, reps: int) -> dict[str, float | None]:
    batch = r.scorer.encode(r.schedule.batch(0))
    cuda = r.device.type == "cuda"
    with torch.no_grad():
        for _ in range(2):
            r.loss_fn(batch)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for _ in range(reps):
            r.loss_fn(batch)
        if cuda:
            torch.cuda.synchronize()
    out = {"forward_s": (time.perf_counter() - t) / reps, "peak_alloc": None, "peak_reserved": None}
    if cuda:
        out["peak_alloc"] = torch.cuda.max_memory_allocated()
        out["peak_reserved"] = torch.cuda.max_memory_reserved()
    return out


def run_variant(label: str, config: RunConfig, two_fwd: float, infer_peak: int | None) -> dict[str, Any]:
    from zolab.runners.train import resolve_device, run

    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    rep = TimingReporter(device)
    row: dict[str, Any] = {"variant": label, "config": {k: v for k, v in config.to_dict().items()
                                                        if k in ("method", "peft", "n_samples", "in_place", "kernel", "lr")}}
    try:
        result = run(config, rep)
    except Exception as exc:  # noqa: BLE001 -- a smoke run reports every failure and goes on
        row.update(ok=False, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=6))
        return row
    step_s = rep.step_seconds()
    row.update(
        ok=True, step_s=step_s, over_2fwd=step_s / two_fwd if step_s else None,
        first_loss=rep.losses[0] if rep.losses else None, last_loss=rep.losses[-1] if rep.losses else None,
        accuracy=result.accuracy, forwards_per_step=result.extra.get("forwards_per_step"),
        forward_passes=result.forward_passes, forwards_measured_per_step=result.forward_passes / max(1, config.steps),
        trainable_params=result.extra.get("trainable_params"),
    )
    if rep.window_peak and infer_peak:
        row["peak_alloc"], row["peak_reserved"] = rep.window_peak
        row["alloc_over_inference"] = rep.window_peak[0] / infer_peak
    return row


def markdown(report: dict) -> str:
    ref = report["inference"]
    lines = [f"# zolab GPU smoke on {report['device']}", "",
             (f"Model `{report['model']}` ({report['dtype']}), batch {report['batch_size']}, {report['steps']} steps per "
              f"method through `zolab.runners.train.run`; one forward {ref['forward_s'] * 1e3:.2f} ms"
              + (f", inference peak {ref['peak_alloc'] / 2**20:.0f} MiB allocated." if ref["peak_alloc"] else ".")),
             "", "| method | ok | step ms | x two forwards | peak alloc x inference | fwd/step | loss first -> last |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in report["rows"]:
        if not r["ok"]:
            lines.append(f"| {r['variant']} | FAILED: {r['error'][:120]} | | | | | |")
            continue
        step = f"{r['step_s'] * 1e3:.1f}" if r["step_s"] else "-"
        over = f"{r['over_2fwd']:.2f}" if r["over_2fwd"] else "-"
        mem = f"{r['alloc_over_inference']:.3f}" if r.get("alloc_over_inference") else "-"
        loss = f"{r['first_loss']:.4f} -> {r['last_loss']:.4f}" if r["first_loss"] is not None else "-"
        lines.append(f"| {r['variant']} | yes | {step} | {over} | {mem} | {r['forwards_measured_per_step']:.1f} | {loss} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-opt-h768-l12")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default=None, help="default: float16 on CUDA, float32 on CPU")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--only", default="", help="comma-separated variant labels (default: all)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("no CUDA device here; use --device cpu --steps 2 to check the script")
    dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")
    base = RunConfig(model=args.model, device=args.device, dtype=dtype, steps=args.steps, batch_size=args.batch_size,
                     eval_every=10**6, checkpoint_every=10**6, train_size=max(64, args.batch_size * 4),
                     dev_size=32, test_size=32, lr=1e-6, eps=1e-3, seed=0)
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = wanted - {label for label, _ in VARIANTS}
    if unknown:
        ap.error(f"unknown variant(s) {sorted(unknown)}; known: {[label for label, _ in VARIANTS]}")
    card = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    ref = inference_reference(base)
    report: dict[str, Any] = {"device": card, "torch": torch.__version__, "model": args.model, "dtype": dtype,
                              "batch_size": args.batch_size, "steps": args.steps, "inference": ref, "rows": []}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"gpu_smoke_{re.sub(r'[^A-Za-z0-9]+', '-', card).strip('-').lower()}"
    for label, overrides in VARIANTS:
        if wanted and label not in wanted:
            continue
        row = run_variant(label, base.replace(**overrides), 2 * ref["forward_s"], ref["peak_alloc"])
        report["rows"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "traceback"}), flush=True)
        stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0 if all(r["ok"] for r in report["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
