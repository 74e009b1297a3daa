"""Correctness and bandwidth of the Triton perturbation kernel on a CUDA device (issue 7 acceptance).

1. The backend contract (:mod:`zolab.runners.kernels.contract`) on CUDA tensors, for the Triton and
   the torch backends: z statistics, bit-identical regeneration, multi-tensor launches, fused terms,
   decay, restore within one ulp (round-to-nearest on the GPU), identical updates across passes.
2. At scale (OPT-1.3B-like fp16 parameter list, ~1.3e9 elements): z mean/variance over 2^26 draws,
   regeneration bit for bit after other launches, +eps/-2eps/+eps restore (share exact, worst error in
   ulps), and the update against the torch path's: same distribution of ``p_new - p`` (std ratio,
   quantiles) within fp16 tolerance.
3. Bandwidth: one- and two-term passes over the same list against ``torch._foreach_add_`` (a plain
   multi-tensor read-modify-write): GB/s moved and the fraction of that floor.

``PYTHONPATH=. python benchmarks/triton_check.py --out $OUT`` writes ``triton_check_<card>.json``/``.md``;
exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zolab.runners.kernels import TorchBackend, contract
from zolab.runners.kernels.contract import ulp

#: OPT-1.3B's parameter shapes (embeddings, 24 layers, final norm), fp16: realistic sizes and counts
H, F, L, V = 2048, 8192, 24, 50272
SMALL = (64, 256, 2, 1000)  # --small: the same script on a CPU under TRITON_INTERPRET=1 (checks the script)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def opt13_shapes() -> list[tuple[int, ...]]:
    layer = [(H, H), (H,)] * 4 + [(F, H), (F,), (H, F), (H,)] + [(H,)] * 4
    return [(V, H), (2050, H)] + layer * L + [(H,), (H,)]


def make_params(device: str, dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(seed)
    return [(torch.randn(s, generator=g, device=device) * 0.02).to(dtype) for s in opt13_shapes()]


def timed(fn, reps: int = 5) -> float:
    fn()
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t) / reps


def scale_checks(triton_backend, device: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # z statistics over 2^26 draws (5-sigma tolerances)
    z = triton_backend.z(torch.empty(1 << (26 if device != "cpu" else 16), device=device), 2026, 7).double()
    n = z.numel()
    out["z_mean"], out["z_var"] = z.mean().item(), z.var().item()
    out["z_ok"] = abs(out["z_mean"]) < 5 / math.sqrt(n) and abs(out["z_var"] - 1) < 5 * math.sqrt(2 / n)
    del z

    params = make_params(device, torch.float16)
    start = [p.clone() for p in params]
    n_el = sum(p.numel() for p in params)
    out["elements"] = n_el
    # regeneration: the kernel adds exactly z(), also after unrelated launches in between
    zs = [triton_backend.z(params[i], 11, i) for i in (0, 5, len(params) - 1)]
    triton_backend.apply(params, [(12, 1e-3)])
    zs2 = [triton_backend.z(params[i], 11, i) for i in (0, 5, len(params) - 1)]
    out["regenerated_bit_identical"] = all(torch.equal(a, b) for a, b in zip(zs, zs2))
    for p, s in zip(params, start):
        p.copy_(s)
    # restore: +eps, -2eps, +eps
    eps = 1e-3
    largest = [s.abs() for s in start]              # the largest magnitude each weight takes on the way
    for alpha in (eps, -2 * eps, eps):
        triton_backend.apply(params, [(99, alpha)])
        for m, p in zip(largest, params):
            torch.maximum(m, p.abs(), out=m)
    exact = worst_ulps = beyond = 0.0
    for p, s, m in zip(params, start, largest):
        err = (p.double() - s.double()).abs()
        exact += (err == 0).sum().item()
        worst_ulps = max(worst_ulps, (err / ulp(s)).max().item())
        beyond += (err > ulp(m)).sum().item()
    del largest
    out["restore_exact_share"] = exact / n_el
    out["restore_worst_in_ulps_of_p0"] = worst_ulps
    out["restore_elements_beyond_one_ulp_of_largest"] = int(beyond)
    # the update against the torch path: same law for p_new - p (z differs: another generator)
    alpha = 5e-3
    deltas = {}
    for name, backend in (("triton", triton_backend), ("torch", TorchBackend())):
        for p, s in zip(params, start):
            p.copy_(s)
        backend.apply(params[2:6], [(5, alpha)])  # layer-0 tensors: 4.2M + ... elements
        deltas[name] = torch.cat([(p.float() - s.float()).flatten() for p, s in zip(params[2:6], start[2:6])])
    qs = torch.tensor([0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99], device=device)
    sample = {k: v[: 1 << 23] for k, v in deltas.items()}  # torch.quantile's input limit is 2**24
    q_t, q_r = (torch.quantile(sample[k], qs) for k in ("triton", "torch"))
    out["update_std_triton"] = deltas["triton"].std().item()
    out["update_std_torch"] = deltas["torch"].std().item()
    out["update_std_ratio"] = out["update_std_triton"] / out["update_std_torch"]
    out["update_quantile_max_abs_diff_over_alpha"] = ((q_t - q_r).abs().max() / alpha).item()
    out["update_ok"] = abs(out["update_std_ratio"] - 1) < 0.01 and out["update_quantile_max_abs_diff_over_alpha"] < 0.02
    # bandwidth
    bytes_rw = 2 * sum(p.numel() * p.element_size() for p in params)
    t1 = timed(lambda: triton_backend.apply(params, [(1, 1e-3)]))
    t2 = timed(lambda: triton_backend.apply(params, [(1, 1e-3), (2, 1e-3)]))
    td = timed(lambda: triton_backend.apply(params, [(1, 1e-3)], decay=[1e-4] * len(params)))
    tf = timed(lambda: torch._foreach_add_(params, 1e-3))
    tt = timed(lambda: TorchBackend().apply(params, [(1, 1e-3)]), reps=2)
    sweep = {}
    for warps in (4, 8, 16):  # launch geometry only: z is the same, so the fastest can be the default
        b = type(triton_backend)(num_warps=warps)
        sweep[f"warps{warps}_1term_over_floor"] = timed(lambda b=b: b.apply(params, [(1, 1e-3)])) / tf
        sweep[f"warps{warps}_2term_over_floor"] = timed(lambda b=b: b.apply(params, [(1, 1e-3), (2, 1e-3)])) / tf
    out["bandwidth"] = {
        "bytes_read_plus_written": bytes_rw,
        "foreach_add_ms": tf * 1e3, "foreach_add_GBps": bytes_rw / tf / 1e9,
        "triton_1term_ms": t1 * 1e3, "triton_1term_GBps": bytes_rw / t1 / 1e9, "triton_1term_over_floor": t1 / tf,
        "triton_2term_ms": t2 * 1e3, "triton_2term_over_floor": t2 / tf,
        "triton_1term_decay_ms": td * 1e3, "triton_1term_decay_over_floor": td / tf,
        "torch_backend_1term_ms": tt * 1e3, "torch_backend_over_floor": tt / tf,
        "num_warps_default": triton_backend.num_warps, **sweep,
    }
    return out


def lookahead_check(triton_backend, device: str, steps: int = 8) -> dict[str, Any]:
    """The MeZO optimizer with lookahead (2 passes a step) against the 3-pass schedule, fp16 weights.

    Same seeds, same loss; the schedules differ only in where fp16 rounding happens (restore +
    update + next +eps rounded once instead of twice). fp16 rounding of the perturbed weights
    already moves each projected gradient by about ulp/eps (~1% at eps 1e-3), so "within fp16
    tolerance" is judged against fp16 itself: the lookahead-vs-3-pass difference of the total update
    must be no larger (x1.5) than the 3-pass fp16 run's difference from the same run in fp32."""
    from zolab.runners.optim.zo import ZOSGD

    start = make_params(device, torch.float16)[2:6]           # layer 0 of OPT-1.3B: 4 tensors
    targets = [torch.randn_like(p, dtype=torch.float32) * 0.02 for p in start]
    moves = {}
    for name, ahead, dtype in (("fp16_lookahead", True, torch.float16), ("fp16_3pass", False, torch.float16),
                               ("fp32_3pass", False, torch.float32)):
        ps = [p.to(dtype, copy=True) for p in start]

        def loss(ps=ps) -> float:
            return sum(((p.float() - t) ** 2).sum() for p, t in zip(ps, targets)).item()

        opt = ZOSGD(ps, lr=1e-4, eps=1e-3, seed=5, backend=triton_backend, lookahead=ahead,
                    settle_after=lambda t: t >= steps)
        for _ in range(steps):
            opt.step(loss)
        assert opt.settled
        moves[name] = torch.cat([(p.double() - s.double()).flatten() for p, s in zip(ps, start)])

    def rel(a: str, b: str) -> float:
        return ((moves[a] - moves[b]).norm() / moves[b].norm()).item()

    la, fp16 = rel("fp16_lookahead", "fp16_3pass"), rel("fp16_3pass", "fp32_3pass")
    return {"steps": steps, "lookahead_vs_3pass_rel": la, "fp16_vs_fp32_rel": fp16,
            "ok": moves["fp16_3pass"].norm().item() > 0 and la <= 1.5 * fp16}


def markdown(report: dict) -> str:
    lines = [f"# Triton perturbation kernel checks on {report['device']}", "", "## Contract (CUDA tensors)", "",
             "| check | triton | torch |", "|---|---|---|"]
    for name in sorted(report["contract"]["triton"]):
        cells = [report["contract"][b].get(name, "-") for b in ("triton", "torch")]
        cells = ["ok" if c == "ok" else "FAIL: " + c.strip().splitlines()[-1][:100] for c in cells]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    s = report["scale"]
    lines += ["", f"## At scale: OPT-1.3B parameter list, fp16, {s['elements'] / 1e9:.2f}e9 elements", ""]
    for k, v in s.items():
        if k != "bandwidth":
            lines.append(f"- {k}: {v:.6g}" if isinstance(v, float) else f"- {k}: {v}")
    lines += ["", "## Bandwidth (one pass over all parameters)", ""]
    lines += [f"- {k}: {v:.4g}" for k, v in s["bandwidth"].items()]
    la = report.get("lookahead")
    if la:
        lines += ["", "## MeZO with lookahead (2 passes a step) vs 3 passes, fp16", "",
                  (f"- after {la['steps']} steps, ||difference of the total updates|| / ||update||: lookahead vs "
                  f"3-pass {la['lookahead_vs_3pass_rel']:.3g}; fp16 vs fp32 (3-pass) {la['fp16_vs_fp32_rel']:.3g}; "
                  f"ok (first <= 1.5 x second): {la['ok']}")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny shapes (with --device cpu and TRITON_INTERPRET=1)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results")
    args = ap.parse_args(argv)
    if args.small:
        global H, F, L, V
        H, F, L, V = SMALL
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("needs a CUDA device (or --device cpu --small under TRITON_INTERPRET=1 to check the script)")
    from zolab.runners.kernels.triton_backend import TritonBackend

    contract.DEVICE = args.device
    triton_backend = TritonBackend()
    card = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu-interpreter"
    report: dict[str, Any] = {"device": card, "torch": torch.__version__}
    report["contract"] = {"triton": contract.run_all(triton_backend), "torch": contract.run_all(TorchBackend())}
    report["scale"] = scale_checks(triton_backend, args.device)
    report["lookahead"] = lookahead_check(triton_backend, args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"triton_check_{re.sub(r'[^A-Za-z0-9]+', '-', card).strip('-').lower()}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    s = report["scale"]
    ok = (all(v == "ok" for v in report["contract"]["triton"].values()) and s["z_ok"] and s["update_ok"]
          and s["regenerated_bit_identical"] and s["restore_elements_beyond_one_ulp_of_largest"] == 0
          and report["lookahead"]["ok"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
