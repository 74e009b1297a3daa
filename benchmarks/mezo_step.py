"""Cost of one MeZO step against two inference forwards, on random-init OPT shapes (issue 7).

In one run, per size: one forward (the model's default attention, SDPA where transformers allows),
the reference-style step (:mod:`benchmarks.reference_mezo`), zolab's MeZO optimizer with the torch
and with the Triton backend (``zolab.runners.optim.build_optimizer``, as a run builds it: lookahead
on, 2 weight passes per step: -2eps; restore + update + next step's +eps in one launch), the same
optimizer on Triton without lookahead (3 passes: +eps; -2eps; restore + update), and FO-Adam
(fp32 master weights, fp16 autocast, as the anchor) where it fits. Peak memory allocated and
reserved for each. Writes ``mezo_step_<card>.json`` and ``.md`` under ``--out``.

Needs only torch + transformers (+ triton for the kernel rows); run from the repo root with
``PYTHONPATH=.``:  ``python benchmarks/mezo_step.py --sizes opt-125m,opt-1.3b --out $OUT``.
``--device cpu --sizes opt-tiny`` exercises the script itself on a CPU (no Triton rows unless
``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/mezo_step.py` from anywhere

from benchmarks.reference_mezo import SIZES, ref_step
from zolab.runners.config import RunConfig
from zolab.runners.kernels import get_backend

TINY = {"opt-tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "ffn_dim": 256}}
ALL_SIZES = {**TINY, **SIZES}
VOCAB = 50272
LR, EPS = 1e-7, 1e-3


# -- models and timing -----------------------------------------------------------------------
def build(name: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import OPTConfig, OPTForCausalLM

    shape = ALL_SIZES[name]
    vocab = 1000 if name in TINY else VOCAB
    cfg = OPTConfig(vocab_size=vocab, max_position_embeddings=2048, word_embed_proj_dim=shape["hidden_size"], **shape)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = OPTForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def n_params(name: str) -> int:
    s = ALL_SIZES[name]
    h, L, f = s["hidden_size"], s["num_hidden_layers"], s["ffn_dim"]
    vocab = 1000 if name in TINY else VOCAB
    return vocab * h + 2050 * h + L * (4 * h * h + 2 * h * f + 9 * h + f) + 2 * h


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str, reps: int, warm: int) -> float:
    for _ in range(warm):
        fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t) / reps


def measure(fn: Callable[[], object], device: str, reps: int, warm: int) -> dict[str, float | None]:
    """Mean seconds per call and the peak memory (GiB) over the calls."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    s = timed(fn, device, reps, warm)
    out: dict[str, float | None] = {"s": s, "peak_alloc_gib": None, "peak_reserved_gib": None}
    if device.startswith("cuda"):
        out["peak_alloc_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    return out


# -- the steps -------------------------------------------------------------------------------
def zolab_step(kernel: str, model: torch.nn.Module, loss: Callable[[], torch.Tensor], device: str,
               lookahead: bool = True) -> Callable[[], float]:
    """zolab's MeZO optimizer (torch.optim style) as a long run builds it, with the given backend.

    ``lookahead`` True is what ``build_optimizer`` gives a run (2 weight passes a step between
    settle points; the run here is long enough to have none); False is the 3-pass schedule."""
    from zolab.runners.optim import build_optimizer
    from zolab.runners.optim.zo import ZOSGD

    far = 10**9   # no eval / checkpoint / end inside the timed steps: no settle passes
    config = RunConfig(method="mezo", lr=LR, eps=EPS, kernel=kernel, device=device, seed=0,
                       steps=far, eval_every=far, checkpoint_every=far)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = build_optimizer(config, named, model=model, device=device)
    if not lookahead:
        opt = ZOSGD([p for _, p in named], lr=LR, eps=EPS, seed=0, backend=get_backend(kernel, device))
    assert isinstance(opt, ZOSGD) and opt.lookahead == lookahead
    return lambda: opt.step(loss)


def fo_adam_step(name: str, ids: torch.Tensor, device: str) -> tuple[Callable[[], None], torch.nn.Module]:
    """First-order AdamW full fine-tuning, fp32 master weights + fp16 autocast (the anchor's FT row)."""
    model = build(name, device, torch.float32).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.split(":")[0], dtype=torch.float16, enabled=device.startswith("cuda")):
            out = model(input_ids=ids, labels=ids).loss
        out.backward()
        opt.step()

    return step, model


# -- one size --------------------------------------------------------------------------------
def triton_usable(device: str) -> bool:
    try:
        get_backend("triton", device)
    except RuntimeError:
        return False
    return True


def bench_size(name: str, args: argparse.Namespace) -> dict:
    device, B, T = args.device, args.batch, args.seq
    model = build(name, device, torch.float16 if device.startswith("cuda") else torch.float32)
    ids = torch.randint(0, model.config.vocab_size, (B, T), device=device)
    params = [p for p in model.parameters() if p.requires_grad]

    def loss() -> torch.Tensor:
        return model(input_ids=ids, labels=ids).loss

    row: dict = {"model": name, "params": sum(p.numel() for p in params),
                 "attn": getattr(model.config, "_attn_implementation", None)}
    with torch.no_grad():
        fwd = measure(loss, device, args.reps * 2, args.warm)
    row["forward"] = fwd
    two = 2 * fwd["s"]
    methods: list[tuple[str, Callable[[], Callable[[], object]]]] = [
        ("reference", lambda: (lambda: ref_step(loss, params, LR, EPS))),
        ("zolab_torch", lambda: zolab_step("torch", model, loss, device)),
    ]
    if triton_usable(device):
        methods += [("zolab_triton", lambda: zolab_step("triton", model, loss, device)),
                    ("zolab_triton_3pass", lambda: zolab_step("triton", model, loss, device, lookahead=False))]
    for key, make in methods:
        row[key] = measure(make(), device, args.reps, args.warm)
    if args.fo and fo_fits(row["params"], device):
        del model, params
        gc.collect()
        step, fo_model = fo_adam_step(name, ids, device)
        row["fo_adam"] = measure(step, device, args.reps, args.warm)
        del fo_model, step
    for key in ("reference", "zolab_torch", "zolab_triton", "zolab_triton_3pass", "fo_adam"):
        if key in row:
            r = row[key]
            r["over_2fwd"] = r["s"] / two
            r["speedup_vs_reference"] = row["reference"]["s"] / r["s"]
            if r["peak_alloc_gib"] is not None and fwd["peak_alloc_gib"]:
                r["alloc_over_inference"] = r["peak_alloc_gib"] / fwd["peak_alloc_gib"]
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return row


def fo_fits(params: int, device: str) -> bool:
    """fp32 weights + grads + two Adam moments = 16 bytes a parameter, with room for activations."""
    if not device.startswith("cuda"):
        return params < 50_000_000
    total = torch.cuda.get_device_properties(device).total_memory
    return 16 * params < 0.7 * total


def fits(name: str, device: str) -> bool:
    """fp16 weights plus generous room for activations, the z temporaries and the reference's copies."""
    if not device.startswith("cuda"):
        return name in TINY or n_params(name) < 200_000_000
    total = torch.cuda.get_device_properties(device).total_memory
    return 2 * n_params(name) * 1.35 + 4 * 2**30 < total


# -- report ----------------------------------------------------------------------------------
COLUMNS = [("reference", "reference"), ("zolab_torch", "zolab torch"), ("zolab_triton", "zolab triton"),
           ("zolab_triton_3pass", "triton 3-pass"), ("fo_adam", "FO-Adam")]


def markdown(report: dict) -> str:
    lines = [f"# MeZO step cost on {report['device']}", "",
             (f"torch {report['torch']}, transformers {report['transformers']}, triton {report['triton']}; "
             f"B={report['B']}, T={report['T']}, {report['dtype']} random-init OPT; times are means over {report['reps']} steps "
             f"after {report['warm']} warm-up. `x2fwd` = step time / two forwards; `vs ref` = reference step time / this."),
             "", "| model | params | fwd ms | " + " | ".join(f"{label} ms (x2fwd, vs ref)" for _, label in COLUMNS) + " |",
             "|---|---:|---:|" + "---:|" * len(COLUMNS)]
    for row in report["rows"]:
        cells = [row["model"], f"{row['params'] / 1e6:.0f}M", f"{row['forward']['s'] * 1e3:.1f}"]
        for key, _ in COLUMNS:
            r = row.get(key)
            cells.append("-" if r is None else f"{r['s'] * 1e3:.1f} ({r['over_2fwd']:.2f}x, {r['speedup_vs_reference']:.2f}x)")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Peak memory, GiB allocated / reserved (allocated as a multiple of the inference peak):", "",
              "| model | inference | " + " | ".join(label for _, label in COLUMNS) + " |",
              "|---|---:|" + "---:|" * len(COLUMNS)]
    for row in report["rows"]:
        f = row["forward"]
        if f["peak_alloc_gib"] is None:
            continue
        cells = [row["model"], f"{f['peak_alloc_gib']:.2f} / {f['peak_reserved_gib']:.2f}"]
        for key, _ in COLUMNS:
            r = row.get(key)
            cells.append("-" if r is None else
                         f"{r['peak_alloc_gib']:.2f} / {r['peak_reserved_gib']:.2f} ({r['alloc_over_inference']:.3f}x)")
        lines.append("| " + " | ".join(cells) + " |")
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in report["skipped"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="opt-125m,opt-1.3b,opt-6.7b,opt-13b",
                    help=f"comma-separated, from {', '.join(ALL_SIZES)}")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warm", type=int, default=1)
    ap.add_argument("--no-fo", dest="fo", action="store_false", help="skip the FO-Adam rows")
    ap.add_argument("--budget-s", type=float, default=float("inf"), help="start no new size after this many seconds")
    ap.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results")
    args = ap.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in ALL_SIZES]
    if unknown:
        ap.error(f"unknown size(s) {', '.join(unknown)}; known: {', '.join(ALL_SIZES)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("no CUDA device here; use --device cpu --sizes opt-tiny to check the script")

    import transformers

    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    card = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    report = {"device": card, "dtype": "float16" if args.device.startswith("cuda") else "float32", "torch": torch.__version__, "transformers": transformers.__version__,
              "triton": triton_version, "B": args.batch, "T": args.seq, "reps": args.reps, "warm": args.warm,
              "lr": LR, "eps": EPS, "rows": [], "skipped": {}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"mezo_step_{re.sub(r'[^A-Za-z0-9]+', '-', card).strip('-').lower()}"
    start = time.perf_counter()
    for name in sizes:
        if time.perf_counter() - start > args.budget_s:
            report["skipped"][name] = "time budget"
            continue
        if not fits(name, args.device):
            report["skipped"][name] = "does not fit this device's memory"
            continue
        row = bench_size(name, args)
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
        stem.with_suffix(".json").write_text(json.dumps(report, indent=1))  # partial results survive a timeout
        stem.with_suffix(".md").write_text(markdown(report))
    report["wall_s"] = time.perf_counter() - start
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
