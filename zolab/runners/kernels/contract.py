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

from zolab.runners.kernels.law import ZLaw, unpack_bits

DEVICE = "cpu"
N_STAT = 120_000           # elements for the distribution checks (tolerances are 5 sigma)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
#: the laws every backend is checked under: each distribution and both sparsity rules
LAWS = {
    "gaussian": ZLaw(),
    "rademacher": ZLaw("rademacher"),
    "sphere": ZLaw("sphere"),
    "gaussian-random-0.75": ZLaw("gaussian", 0.75, "random"),
    "rademacher-magnitude-0.5": ZLaw("rademacher", 0.5, "magnitude"),
    "sphere-random-0.5": ZLaw("sphere", 0.5, "random"),
    "sphere-magnitude-0.9": ZLaw("sphere", 0.9, "magnitude"),
}
KS_CRITICAL = 1.95   # sqrt(n) * D above this rejects at about the 0.001 level (Kolmogorov distribution)


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


def with_law(backend, law: ZLaw, params):
    """``backend`` drawing from ``law``, prepared (magnitude masks) for ``params``."""
    b = backend.with_law(law)
    b.prepare(params)
    return b


def ks_normal(x: torch.Tensor) -> float:
    """sqrt(n) * the Kolmogorov-Smirnov distance of the sample ``x`` from N(0, 1)."""
    v = x.double().flatten().sort().values
    n = v.numel()
    cdf = 0.5 * (1 + torch.erf(v / math.sqrt(2)))
    i = torch.arange(1, n + 1, dtype=torch.float64, device=v.device)
    d = torch.maximum(i / n - cdf, cdf - (i - 1) / n).max().item()
    return d * math.sqrt(n)


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
    _restore_bounds(backend)


def _restore_bounds(backend, law: ZLaw | None = None) -> None:
    eps = 1e-3
    for dtype in DTYPES:
        p0 = _weights(50_000, dtype, 6)
        p0[:10] = 0.0                                   # zeros: the perturbation dominates
        params = [p0.clone()]
        if law is not None:
            backend = with_law(backend, law, params)
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
        if law is not None and law.sparsity:
            z = backend.z(p0, 99, 0)
            assert torch.equal(steps[-1][z == 0], p0[z == 0]), f"{law}: untouched entries moved"
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


# -- every law ---------------------------------------------------------------------------------
def check_laws_regenerated(backend) -> None:
    """Under every law and dtype: the same (seed, index) gives the same z, and apply adds exactly that z."""
    for name, law in LAWS.items():
        for dtype in DTYPES:
            w = [_weights(5000, dtype, 1), _weights(300, dtype, 2), _weights(1, dtype, 3)]
            b = with_law(backend, law, w)
            z1, z2 = b.z(w[0], 77, 0), b.z(w[0], 77, 0)
            assert z1.dtype == dtype and torch.equal(z1, z2), (name, dtype)
            zeros = [torch.zeros_like(t) for t in w]
            b.apply(zeros, [(77, 1.0)])
            for i, t in enumerate(w):
                assert torch.equal(zeros[i], b.z(t, 77, i)), (name, dtype, i)
            assert not torch.equal(z1, b.z(w[0], 78, 0)), (name, dtype)      # another seed, another z


def check_laws_restore_bounds(backend) -> None:
    """Under every law: +eps, -2eps, +eps restores each weight within the rounding bound (untouched: exactly)."""
    for law in LAWS.values():
        _restore_bounds(backend, law)


def check_laws_same_update_across_passes(backend) -> None:
    """Under every law: the same terms from the same weights give bit-identical results, and one term
    lands on ``w + alpha z`` (rounded once to the dtype)."""
    for name, law in LAWS.items():
        for dtype in DTYPES:
            w = [_weights(40_000, dtype, 7), _weights(33, dtype, 8)]
            b = with_law(backend, law, w)
            outs = []
            for _ in range(2):
                params = [t.clone() for t in w]
                b.apply(params, [(31, 1e-3), (32, -2.5e-4)], decay=[1e-4, 0.0])
                outs.append(params)
            assert all(torch.equal(x, y) for x, y in zip(*outs)), (name, dtype)
            one = [t.clone() for t in w]
            b.apply(one, [(31, 1e-2)])
            for i, t in enumerate(w):
                z = b.z(t, 31, i)
                step = 1e-2 * z.double()
                expect = t.double() + step
                # rounding of alpha * z and of the sum (a backend may fuse them): two ulps of the larger; and
                # z() is rounded to the dtype while a kernel may add z in fp32: alpha * ulp(z) more
                bound = 2 * ulp(torch.maximum(expect.abs(), step.abs()).to(dtype)) + 1e-2 * ulp(z)
                gap = (one[i].double() - expect).abs()
                assert bool((gap <= bound).all()), (name, dtype, i, gap.max().item())


def check_rademacher_law(backend) -> None:
    """Rademacher: every entry is exactly +1 or -1, each with probability 1/2, independent across seeds."""
    b = backend.with_law(LAWS["rademacher"])
    p = _zeros(N_STAT)
    z = b.z(p, 4321, 0).double()
    n = z.numel()
    assert bool(((z == 1) | (z == -1)).all()), z.unique()
    assert abs(z.mean().item()) < 5 / math.sqrt(n), z.mean().item()
    for other in (b.z(p, 4322, 0), b.z(p, 4321, 1)):
        assert abs((z * other.double()).mean().item()) < 5 / math.sqrt(n)
    for dtype in (torch.float16, torch.bfloat16):
        assert torch.equal(b.z(_zeros(N_STAT, dtype), 4321, 0).double(), z), dtype


def check_sphere_law(backend) -> None:
    """Sphere: ||z||^2 = d for every tensor (one group = one parameter tensor), entries ~ N(0, 1) for large d."""
    b = backend.with_law(LAWS["sphere"])
    for n in (1, 7, 4096, 70_001, N_STAT):
        z = b.z(_zeros(n), 555, 3).double()
        assert abs(z.square().sum().item() / n - 1) < 1e-5, (n, z.square().sum().item())
    z = b.z(_zeros(N_STAT), 555, 0).double()
    assert abs(z.mean().item()) < 5 / math.sqrt(N_STAT)
    assert ks_normal(z) < KS_CRITICAL, ks_normal(z)
    kurt = (z**4).mean().item() / z.var().item() ** 2
    assert abs(kurt - 3.0) < 5 * math.sqrt(96 / N_STAT), kurt
    assert ks_normal(backend.with_law(LAWS["gaussian"]).z(_zeros(N_STAT), 555, 0)) < KS_CRITICAL


def check_random_sparsity_law(backend) -> None:
    """Random rule: the kept fraction is 1 - sparsity, the mask changes with the seed (independently), and
    the kept values have the distribution's law."""
    for s in (0.5, 0.75, 0.9):
        b = backend.with_law(ZLaw("gaussian", s, "random"))
        p = _zeros(N_STAT)
        z1, z2 = b.z(p, 808, 0), b.z(p, 809, 0)
        q = b.law.kept_fraction
        m1, m2 = z1 != 0, z2 != 0
        for m in (m1, m2):
            assert abs(m.double().mean().item() - q) < 5 * math.sqrt(q * (1 - q) / N_STAT), (s, m.double().mean())
        both = (m1 & m2).double().mean().item()
        assert abs(both - q * q) < 5 * math.sqrt(q * q * (1 - q * q) / N_STAT), (s, both)
        kept = z1[m1].double()
        assert abs(kept.var().item() - 1) < 5 * math.sqrt(2 / kept.numel()) and ks_normal(kept) < KS_CRITICAL
    r = backend.with_law(ZLaw("rademacher", 0.75, "random")).z(_zeros(N_STAT), 1, 0)
    assert bool(((r == 0) | (r == 1) | (r == -1)).all())


def check_magnitude_sparsity_law(backend) -> None:
    """Magnitude rule: z touches exactly the ceil((1 - s) n) smallest-|w| entries of each tensor of the base
    weights (ties by position), the same entries at every seed, and never any other entry."""
    g = torch.Generator().manual_seed(12)
    w = [(torch.randn(3000, generator=g) * 0.02).to(DEVICE), torch.zeros(50, device=DEVICE),
         (torch.randn(17, 5, generator=g)).to(torch.bfloat16).to(DEVICE)]
    w[0][:40] = 0.0
    w[0][40:80] = -0.0
    for s in (0.5, 0.9):
        law = ZLaw("gaussian", s, "magnitude")
        b = with_law(backend, law, w)
        for i, t in enumerate(w):
            flat = t.double().abs().flatten()
            k = law.kept_entries(flat.numel())
            order = sorted(range(flat.numel()), key=lambda j: (flat[j].item(), j))
            want = torch.zeros(flat.numel(), dtype=torch.bool)
            want[order[:k]] = True
            for seed in (5, 6):
                got = (b.z(t, seed, i) != 0).flatten().cpu()
                assert torch.equal(got, want), (s, i, seed, (got ^ want).sum().item())
        params = [t.clone() for t in w]
        b.apply(params, [(5, 0.3), (6, -0.1)])
        for i, t in enumerate(w):
            untouched = b.z(t, 5, i) == 0
            assert torch.equal(params[i][untouched], t[untouched]), (s, i)
            bits = torch.equal(params[i][untouched].view(torch.int16 if t.element_size() == 2 else torch.int32),
                               t[untouched].view(torch.int16 if t.element_size() == 2 else torch.int32))
            assert bits, f"{s} {i}: untouched entries changed bits (e.g. -0.0)"
    try:
        backend.with_law(ZLaw("gaussian", 0.5, "magnitude")).apply([_zeros(10)], [(1, 1.0)])
    except RuntimeError as exc:
        assert "prepare" in str(exc), exc
    else:
        raise AssertionError("the magnitude rule ran without masks from the base weights")
    assert unpack_bits(torch.tensor([0b10000001], dtype=torch.uint8), 0, 8).tolist() == [True] + [False] * 6 + [True]


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
