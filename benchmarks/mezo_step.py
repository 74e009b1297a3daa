"""Cost of one MeZO step against two inference forwards, on random-init OPT shapes (issues 7, 14).

In one run, per size: one forward (the model's default attention, SDPA where transformers allows),
the reference-style step (:mod:`benchmarks.reference_mezo`), zolab's MeZO optimizer with the torch
and with the Triton backend (``zolab.runners.optim.build_optimizer``, as a run builds it: lookahead
on, 2 weight passes per step: -2eps; restore + update + next step's +eps in one launch), the same
optimizer on Triton without lookahead (3 passes: +eps; -2eps; restore + update), a Rademacher row per
backend (``distribution: rademacher``), on CPU the torch backend with its z cache (one generation a
step, one extra copy of the weights) and the native kernel (Gaussian and Rademacher rows) and, with ``--torch-before REV``, the torch backend as it was at
git revision REV (side by side, same run), and FO-Adam (fp32 master weights, fp16 autocast, as the
anchor) where it fits. Peak memory allocated and reserved for each (CUDA). ``--repeat N`` measures
every row N times, interleaved, and reports the median and the spread (the CPU here is shared).
Writes ``mezo_step_<card>.json`` and ``.md`` under ``--out``.

Needs only torch + transformers (+ triton for the kernel rows); run from the repo root with
``PYTHONPATH=.``:  ``python benchmarks/mezo_step.py --sizes opt-125m,opt-1.3b --out $OUT``.
``--device cpu --sizes opt-tiny`` exercises the script itself on a CPU (no Triton rows unless
``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/mezo_step.py` from anywhere

from benchmarks.reference_mezo import SIZES, ref_step
from zolab.runners.config import RunConfig
from zolab.runners.kernels import TorchBackend, get_backend, native_available

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


#: the clock ``timed`` reads: wall time, or the process's CPU time (``--clock cpu``: on a shared machine the
#: work a step costs, steadier than wall time; meaningful with ``--threads 1``, where no thread spins idle)
CLOCK: Callable[[], float] = time.perf_counter


def timed(fn: Callable[[], object], device: str, reps: int, warm: int) -> float:
    for _ in range(warm):
        fn()
    sync(device)
    t = CLOCK()
    for _ in range(reps):
        fn()
    sync(device)
    return (CLOCK() - t) / reps


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
FAR = 10**9   # no eval / checkpoint / end inside the timed steps: no settle passes


def zolab_step(kernel: str, model: torch.nn.Module, loss: Callable[[], torch.Tensor], device: str,
               lookahead: bool = True, distribution: str = "gaussian", backend: object | None = None
               ) -> Callable[[], float]:
    """zolab's MeZO optimizer (torch.optim style) as a long run builds it, with the given backend.

    ``lookahead`` True is what ``build_optimizer`` gives a run (2 weight passes a step between
    settle points; the run here is long enough to have none); False is the 3-pass schedule.
    ``backend`` replaces the one ``kernel`` names (the z-cache row)."""
    from zolab.runners.optim import build_optimizer
    from zolab.runners.optim.zo import ZOSGD

    config = RunConfig(method="mezo", lr=LR, eps=EPS, kernel=kernel, device=device, seed=0, distribution=distribution,
                       steps=FAR, eval_every=FAR, checkpoint_every=FAR)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = build_optimizer(config, named, model=model, device=device, backend=backend)
    if not lookahead:
        opt = ZOSGD([p for _, p in named], lr=LR, eps=EPS, seed=0, backend=get_backend(kernel, device))
    assert isinstance(opt, ZOSGD) and opt.lookahead == lookahead
    return lambda: opt.step(loss)


def torch_backend_at(rev: str) -> type:
    """The ``TorchBackend`` class of ``zolab/runners/kernels/torch_backend.py`` at git revision ``rev``."""
    src = subprocess.run(["git", "show", f"{rev}:zolab/runners/kernels/torch_backend.py"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    spec = importlib.util.spec_from_loader(f"torch_backend_at_{rev}", loader=None)
    module = importlib.util.module_from_spec(spec)   # type: ignore[arg-type]
    exec(compile(src, f"{rev}:zolab/runners/kernels/torch_backend.py", "exec"), module.__dict__)  # noqa: S102
    return module.TorchBackend


def before_step(backend_cls: type, model: torch.nn.Module, loss: Callable[[], torch.Tensor]) -> Callable[[], float]:
    """Today's MeZO optimizer (lookahead on, as a run builds it) on an older torch backend: the 'before' row."""
    from zolab.runners.optim.zo import ZOSGD

    opt = ZOSGD([p for p in model.parameters() if p.requires_grad], lr=LR, eps=EPS, seed=0, backend=backend_cls(),
                lookahead=True, settle_after=lambda step: False)
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
    cpu = not device.startswith("cuda")
    model = build(name, device, torch.float32 if cpu else torch.float16)
    ids = torch.randint(0, model.config.vocab_size, (B, T), device=device)
    params = [p for p in model.parameters() if p.requires_grad]

    def loss() -> torch.Tensor:
        return model(input_ids=ids, labels=ids).loss

    row: dict = {"model": name, "params": sum(p.numel() for p in params),
                 "attn": getattr(model.config, "_attn_implementation", None)}
    methods: list[tuple[str, Callable[[], Callable[[], object]]]] = [
        ("reference", lambda: (lambda: ref_step(loss, params, LR, EPS))),
    ]
    if args.torch_before:
        old = torch_backend_at(args.torch_before)
        methods.append(("zolab_torch_before", lambda: before_step(old, model, loss)))
    methods += [("zolab_torch", lambda: zolab_step("torch", model, loss, device)),
                ("zolab_torch_rademacher", lambda: zolab_step("torch", model, loss, device, distribution="rademacher"))]
    if cpu:
        methods.append(("zolab_torch_zcache", lambda: zolab_step(
            "torch", model, loss, device, backend=TorchBackend(z_cache_bytes=1 << 62))))
        if native_available()[0]:
            methods += [("zolab_native", lambda: zolab_step("native", model, loss, device)),
                        ("zolab_native_rademacher", lambda: zolab_step("native", model, loss, device,
                                                                       distribution="rademacher"))]
    if triton_usable(device):
        methods += [("zolab_triton", lambda: zolab_step("triton", model, loss, device)),
                    ("zolab_triton_3pass", lambda: zolab_step("triton", model, loss, device, lookahead=False)),
                    ("zolab_triton_rademacher", lambda: zolab_step("triton", model, loss, device,
                                                                   distribution="rademacher"))]
    steps = {key: make() for key, make in methods}
    runs: list[dict] = []
    for _ in range(args.repeat):                    # every row once per round: shared-machine noise hits all alike
        rnd: dict = {}
        with torch.no_grad():
            before = measure(loss, device, args.reps * 2, args.warm)
        for key, step in steps.items():
            rnd[key] = measure(step, device, args.reps, args.warm)
        with torch.no_grad():
            after = measure(loss, device, args.reps * 2, args.warm)
        rnd["forward"] = {**before, "s": 0.5 * (before["s"] + after["s"])}   # the forward around the round
        for key in steps:
            rnd[key]["over_2fwd"] = rnd[key]["s"] / (2 * rnd["forward"]["s"])
            rnd[key]["speedup_vs_reference"] = rnd["reference"]["s"] / rnd[key]["s"]
        runs.append(rnd)
    row["forward"] = summarise([r["forward"] for r in runs])
    for key in steps:
        row[key] = summarise([r[key] for r in runs])
    del steps
    if args.fo and fo_fits(row["params"], device):
        del model, params
        gc.collect()
        step, fo_model = fo_adam_step(name, ids, device)
        fo = measure(step, device, args.reps, args.warm)
        fo["over_2fwd"] = fo["s"] / (2 * row["forward"]["s"])
        fo["speedup_vs_reference"] = row["reference"]["s"] / fo["s"]
        row["fo_adam"] = summarise([fo])
        del fo_model, step
    for key in ROW_KEYS:
        r = row.get(key)
        if r is not None and r["peak_alloc_gib"] is not None and row["forward"]["peak_alloc_gib"]:
            r["alloc_over_inference"] = r["peak_alloc_gib"] / row["forward"]["peak_alloc_gib"]
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return row


def summarise(rounds: list[dict]) -> dict:
    """Median over the rounds for every figure, and each figure's per-round values under ``<key>_all``."""
    out: dict = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        if all(isinstance(v, (int, float)) for v in values):
            out[key] = statistics.median(values)
            out[f"{key}_all"] = values
        else:
            out[key] = values[0]
    return out


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
ROWS = [("reference", "reference (MeZO repo style)"), ("zolab_torch_before", "zolab torch, before"),
        ("zolab_torch", "zolab torch"), ("zolab_torch_rademacher", "zolab torch, rademacher"),
        ("zolab_torch_zcache", "zolab torch + z cache"), ("zolab_native", "zolab native"),
        ("zolab_native_rademacher", "zolab native, rademacher"), ("zolab_triton", "zolab triton"),
        ("zolab_triton_3pass", "triton 3-pass"), ("zolab_triton_rademacher", "zolab triton, rademacher"),
        ("fo_adam", "FO-Adam")]
ROW_KEYS = [k for k, _ in ROWS]


def _spread(r: dict, key: str, fmt: str) -> str:
    values = r.get(f"{key}_all") or [r[key]]
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(r[key], fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def markdown(report: dict) -> str:
    before = report.get("torch_before")
    lines = [f"# MeZO step cost on {report['device']}", "",
             (f"torch {report['torch']}, transformers {report['transformers']}, triton {report['triton']}; "
              f"B={report['B']}, T={report['T']}, {report['dtype']} random-init OPT; {report.get('clock', 'wall')} clock, "
              f"{report.get('threads')} torch thread(s); each figure is the median over "
              f"{report['repeat']} interleaved round(s) [min-max], each round the mean over {report['reps']} steps "
              f"after {report['warm']} warm-up. `x2fwd` = step time / two forwards of the same round; `vs ref` = "
              "reference step time / this."
              + (f" `before` = the torch backend at git revision {before}, today's optimizer." if before else "")),
             ""]
    if report.get("command"):
        lines += ["Command:", "", f"    {report['command']}", ""]
    lines += ["| model | params | fwd ms | row | step ms | x2fwd | vs ref |", "|---|---:|---:|---|---:|---:|---:|"]
    for row in report["rows"]:
        for key, label in ROWS:
            r = row.get(key)
            if r is None:
                continue
            ms = {"s": r["s"] * 1e3, "s_all": [v * 1e3 for v in r.get("s_all", [r["s"]])]}
            lines.append(f"| {row['model']} | {row['params'] / 1e6:.0f}M | {row['forward']['s'] * 1e3:.1f} | {label} | "
                         f"{_spread(ms, 's', '.0f')} | {_spread(r, 'over_2fwd', '.2f')} | "
                         f"{_spread(r, 'speedup_vs_reference', '.2f')} |")
    mem = [row for row in report["rows"] if row["forward"]["peak_alloc_gib"] is not None]
    if mem:
        lines += ["", "Peak memory, GiB allocated / reserved (allocated as a multiple of the inference peak):", "",
                  "| model | row | peak alloc / reserved | x inference |", "|---|---|---:|---:|"]
        for row in mem:
            f = row["forward"]
            lines.append(f"| {row['model']} | inference | {f['peak_alloc_gib']:.2f} / {f['peak_reserved_gib']:.2f} | 1 |")
            for key, label in ROWS:
                r = row.get(key)
                if r is not None and r.get("peak_alloc_gib") is not None:
                    lines.append(f"| {row['model']} | {label} | {r['peak_alloc_gib']:.2f} / {r['peak_reserved_gib']:.2f} "
                                 f"| {r['alloc_over_inference']:.3f} |")
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
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds of every row (median and spread)")
    ap.add_argument("--torch-before", metavar="REV", help="add the torch backend of this git revision as a row")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or process CPU time (steadier on a shared machine; use with --threads 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
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

    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers

    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    card = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    report = {"device": card, "dtype": "float16" if args.device.startswith("cuda") else "float32", "torch": torch.__version__, "transformers": transformers.__version__,
              "triton": triton_version, "B": args.batch, "T": args.seq, "reps": args.reps, "warm": args.warm,
              "repeat": args.repeat, "torch_before": args.torch_before, "clock": args.clock,
              "threads": torch.get_num_threads(),
              "command": "PYTHONPATH=. python benchmarks/mezo_step.py " + " ".join(argv if argv is not None else sys.argv[1:]),
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
