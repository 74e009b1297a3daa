"""Conformance checks of the perturbation-backend contract, shared by the CPU tests and the GPU check.

Each ``check_*`` takes a backend and asserts real numbers on tensors of :data:`DEVICE` (set it to
``"cuda"`` to check the kernel on a GPU: ``benchmarks/triton_check.py`` does). Plain asserts, no
pytest: GPU machines have torch + transformers + peft + triton only.

``python -m zolab.runners.kernels.contract triton [check ...]`` prints a JSON verdict per check
(run it with ``TRITON_INTERPRET=1`` on a CPU: the tests do, in a subprocess).
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from collections.abc import Callable

import torch

DEVICE = "cpu"
N_STAT = 120_000           # elements for the distribution checks (tolerances are 5 sigma)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# -- helpers ---------------------------------------------------------------------------------
def ulp(x: torch.Tensor) -> torch.Tensor:
    """Spacing of the floating-point grid at |x| in x's dtype, as fp64 (subnormal spacing near 0)."""
    fi = torch.finfo(x.dtype)
    a = x.double().abs().clamp_min(fi.tiny)
    _, e = torch.frexp(a)                      # a = m * 2**e, m in [0.5, 1)
    return torch.ldexp(torch.ones_like(a), e - 1 - (fi.bits - 1 - _exp_bits(x.dtype)))


def _exp_bits(dtype: torch.dtype) -> int:
    return {torch.float32: 8, torch.float16: 5, torch.bfloat16: 8, torch.float64: 11}[dtype]


def _weights(n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g) * 0.02).to(dtype).to(DEVICE)


def _zeros(shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.zeros(shape, dtype=dtype, device=DEVICE)


def _bf16_rounding_slack(backend) -> float:
    """Half an ulp per rounding (round-to-nearest); the Triton *interpreter* truncates fp32->bf16: a full ulp."""
    return 1.0 if backend.name == "triton" and os.environ.get("TRITON_INTERPRET") == "1" else 0.5


# -- the contract ------------------------------------------------------------------------------
def check_z_statistics(backend) -> None:
    """z ~ N(0, 1): mean, variance, mass within one sigma; independent across seeds and parameters."""
    p = _zeros(N_STAT)
    z = backend.z(p, 1234, 0).double()
    assert z.shape == p.shape and backend.z(p, 1234, 0).dtype == torch.float32
    n = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(n), z.mean().item()
    assert abs(z.var().item() - 1.0) < 5 * math.sqrt(2 / n), z.var().item()
    inside = (z.abs() < 1).double().mean().item()
    assert abs(inside - 0.682689) < 5 * math.sqrt(0.2166 / n), inside
    kurt = (z**4).mean().item() / z.var().item() ** 2
    assert abs(kurt - 3.0) < 5 * math.sqrt(96 / n), kurt
    for other in (backend.z(p, 1235, 0), backend.z(p, 1234, 1)):
        corr = torch.corrcoef(torch.stack([z, other.double()]))[0, 1].item()
        assert abs(corr) < 5 / math.sqrt(n), corr


def check_z_regenerated(backend) -> None:
    """The same (seed, index) gives the same z bit for bit, in every dtype, and apply adds exactly that z."""
    for dtype in DTYPES:
        p = _zeros(5000, dtype=dtype)
        z1, z2 = backend.z(p, 77, 3), backend.z(p, 77, 3)
        assert z1.dtype == dtype and torch.equal(z1, z2)
        params = [_zeros(10, dtype=dtype), _zeros(10, dtype=dtype), _zeros(10, dtype=dtype), p]
        backend.apply(params, [(77, 1.0)])
        assert torch.equal(params[3], z1)                    # 0 + 1 * z is exact
        assert not torch.equal(params[2], params[1])         # each parameter index has its own z


def check_multi_tensor(backend) -> None:
    """A mixed list (tiny and >64K-element tensors, three dtypes, empty ones, an unaligned view) gets each
    parameter's own z."""
    shapes = [(3,), (70_000,), (0,), (17, 5), (1,), (130_001,), (64, 64)]
    params = [_zeros(s, dtype=DTYPES[i % 3]) for i, s in enumerate(shapes)]
    params.append(_zeros(5001, torch.float16)[1:])   # a view 2 bytes off its allocation: not 16-byte aligned
    backend.apply(params, [(2024, 1.0)])
    for i, p in enumerate(params):
        assert torch.equal(p, backend.z(p, 2024, i)), f"parameter {i} {tuple(p.shape)} {p.dtype}"
    big = params[5].double()
    assert abs(big.mean().item()) < 5 / math.sqrt(big.numel()) and abs(big.std().item() - 1) < 0.02


def check_two_terms_equal_two_applies(backend) -> None:
    """apply([(s1, a1), (s2, a2)]) == apply(s1, a1) then apply(s2, a2) up to fp32 rounding."""
    a = [_weights(20_000, torch.float32, 1), _weights(300, torch.float32, 2)]
    b = [t.clone() for t in a]
    backend.apply(a, [(11, 0.3), (12, -0.7)])
    backend.apply(b, [(11, 0.3)])
    backend.apply(b, [(12, -0.7)])
    for x, y in zip(a, b):
        assert torch.allclose(x, y, rtol=0, atol=4e-7), (x - y).abs().max().item()
    c = [torch.zeros_like(t) for t in a]
    backend.apply(c, [(11, 0.3), (12, -0.7), (13, 0.5)])   # more terms than one launch takes
    expect = 0.3 * backend.z(c[0], 11, 0) - 0.7 * backend.z(c[0], 12, 0) + 0.5 * backend.z(c[0], 13, 0)
    assert torch.allclose(c[0], expect, rtol=0, atol=1e-6)
    d = [torch.zeros_like(t) for t in a]
    backend.apply(d, [(11, 0.25), (11, 0.5)])                # one seed twice: alphas add up
    assert torch.allclose(d[0], 0.75 * backend.z(d[0], 11, 0), rtol=0, atol=1e-6)


def check_same_seed_terms_share_one_z(backend) -> None:
    """Terms with one seed are one draw and one rounding: bit-identical to their summed alpha.

    (MeZO's last pass, restore ``+eps`` plus update ``-lr g``, costs one z, not two.)"""
    for dtype in DTYPES:
        a = [_weights(30_000, dtype, 10), _weights(17, dtype, 11)]
        b = [t.clone() for t in a]
        backend.apply(a, [(41, 1e-3), (42, 0.5e-3), (41, -3e-4)])
        backend.apply(b, [(41, 1e-3 - 3e-4), (42, 0.5e-3)])
        for x, y in zip(a, b):
            assert torch.equal(x, y), dtype


def check_decay(backend) -> None:
    """p <- (1 - d_i) p + a z per parameter; d = 0 leaves the decay out; no terms = pure decay."""
    params = [_weights(5000, torch.float32, 3), _weights(7, torch.float32, 4), _weights(900, torch.float32, 5)]
    start = [p.clone() for p in params]
    decay = [0.1, 0.0, 0.5]
    backend.apply(params, [(5, 0.01)], decay=decay)
    for i, (p, p0) in enumerate(zip(params, start)):
        expect = (1 - decay[i]) * p0 + 0.01 * backend.z(p0, 5, i)
        assert torch.allclose(p, expect, rtol=0, atol=1e-7), i
    backend.apply(params, [], decay=[0.5, 0.5, 0.0])
    assert torch.allclose(params[1], 0.5 * ((1 - decay[1]) * start[1] + 0.01 * backend.z(start[1], 5, 1)), atol=1e-7)


def check_decay_length_mismatch(backend) -> None:
    """A decay list of the wrong length is a clear ValueError and nothing is written."""
    params = [_weights(50, torch.float32, 3), _weights(7, torch.float32, 4)]
    start = [p.clone() for p in params]
    try:
        backend.apply(params, [(5, 0.01)], decay=[0.1])
    except ValueError as exc:
        assert "decay" in str(exc), exc
    else:
        raise AssertionError("a decay list of the wrong length was accepted")
    assert all(torch.equal(p, q) for p, q in zip(params, start))


def check_restore_bounds(backend) -> None:
    """+eps, -2eps, +eps returns each weight to within one ulp, and about half of them exactly.

    Each pass rounds once to the storage dtype, so |p3 - p0| <= r * (ulp(p1) + ulp(p2) + ulp(p3))
    (r = 1/2 for round-to-nearest). With round-to-nearest every weight also ends within one ulp of
    the largest magnitude it took in the three passes (one ulp of p0 itself unless the perturbation
    is comparable to the weight, e.g. near zero); fp32 is restored far below fp16's resolution.
    """
    eps = 1e-3
    for dtype in DTYPES:
        p0 = _weights(50_000, dtype, 6)
        p0[:10] = 0.0                                   # zeros: the perturbation dominates
        params = [p0.clone()]
        steps = []
        for alpha in (eps, -2 * eps, eps):
            backend.apply(params, [(99, alpha)])
            steps.append(params[0].clone())
        err = (steps[-1].double() - p0.double()).abs()
        r = _bf16_rounding_slack(backend) if dtype == torch.bfloat16 else 0.5
        bound = r * sum(ulp(s) for s in steps) * (1 + 1e-3)
        assert bool((err <= bound).all()), f"{dtype}: worst excess {(err - bound).max().item()}"
        if r == 0.5:
            largest = torch.stack([t.abs() for t in [p0, *steps]]).amax(0)
            assert bool((err <= ulp(largest)).all()), f"{dtype}: {(err > ulp(largest)).sum().item()} beyond one ulp"
            exact = (err == 0).double().mean().item()
            assert exact > 0.5, f"{dtype}: only {exact:.3f} restored exactly"
        if dtype == torch.float32:
            assert err.max().item() < 1e-8


def check_same_update_across_passes(backend) -> None:
    """From the same weights the same terms give bit-identical results (fused two-term pass too)."""
    for dtype in DTYPES:
        w = [_weights(40_000, dtype, 7), _weights(33, dtype, 8)]
        outs = []
        for _ in range(2):
            params = [t.clone() for t in w]
            backend.apply(params, [(31, 1e-3), (32, -2.5e-4)], decay=[1e-4, 0.0])
            outs.append(params)
        for x, y in zip(*outs):
            assert torch.equal(x, y), dtype
        delta = (outs[0][0].double() - w[0].double() * (1 - 1e-4))
        expect_std = math.hypot(1e-3, 2.5e-4)
        assert abs(delta.std().item() / expect_std - 1) < 0.05, dtype


def check_noop(backend) -> None:
    """No terms, zero alphas and no decay leave the weights untouched."""
    p = _weights(1000, torch.float16, 9)
    q = p.clone()
    backend.apply([q], [])
    backend.apply([q], [(1, 0.0)], decay=[0.0])
    assert torch.equal(p, q)


CHECKS: dict[str, Callable] = {name: fn for name, fn in globals().items() if name.startswith("check_")}



def run_all(backend, names: list[str] | None = None) -> dict[str, str]:
    """``{check: "ok" | traceback}`` for the named checks (all by default)."""
    verdicts = {}
    for name in names or sorted(CHECKS):
        try:
            CHECKS[name](backend)
            verdicts[name] = "ok"
        except Exception:  # noqa: BLE001 -- reported to the caller verbatim
            verdicts[name] = traceback.format_exc(limit=3)
    return verdicts


if __name__ == "__main__":
    from zolab.runners.kernels import get_backend

    which = sys.argv[1] if len(sys.argv) > 1 else "triton"
    print(json.dumps(run_all(get_backend(which, DEVICE), sys.argv[2:] or None)))
