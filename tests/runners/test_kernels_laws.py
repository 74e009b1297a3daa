"""The laws of z (:class:`~zolab.runners.kernels.law.ZLaw`) tested statistically, with fixed seeds.

The contract (:mod:`zolab.runners.kernels.contract`) checks every backend with plain asserts; here
scipy tests the torch backend's draws against the exact laws (KS, binomial, Archimedes' theorem for
the sphere), and the torch backend's own promises: the gaussian stream is the one it drew before
chunking, chunk boundaries change nothing, and the z cache changes nothing but speed.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats

from zolab.runners.kernels import TorchBackend, ZLaw
from zolab.runners.kernels.law import magnitude_mask, pack_bits, unpack_bits
from zolab.runners.kernels.torch_backend import CHUNK, chunk_bounds, mix_seed

N = 200_000
P_MIN = 1e-3   # fixed seeds: each p-value below is a fixed number, this only says how far from rejection


def z(law: ZLaw, n: int = N, seed: int = 2024, index: int = 0, dtype=torch.float32) -> torch.Tensor:
    return TorchBackend(law).z(torch.zeros(n, dtype=dtype), seed, index).double()


def test_gaussian_is_normal():
    x = z(ZLaw())
    assert stats.kstest(x.numpy(), "norm").pvalue > P_MIN
    assert abs(x.mean().item()) < 4 / math.sqrt(N) and abs(x.var().item() - 1) < 4 * math.sqrt(2 / N)


def test_rademacher_support_and_balance():
    x = z(ZLaw("rademacher"))
    assert set(x.unique().tolist()) == {-1.0, 1.0}
    assert stats.binomtest(int((x > 0).sum()), N, 0.5).pvalue > P_MIN
    pairs = (x[:-1] > 0).long() * 2 + (x[1:] > 0).long()            # neighbours independent
    assert stats.chisquare(torch.bincount(pairs, minlength=4).numpy()).pvalue > P_MIN
    other = z(ZLaw("rademacher"), seed=2025)
    assert stats.binomtest(int((x == other).sum()), N, 0.5).pvalue > P_MIN   # seeds independent


def test_sphere_norm_and_uniformity():
    law = ZLaw("sphere")
    for n in (1, 2, 3, 100, 70_001):
        assert z(law, n).square().sum().item() == pytest.approx(n, rel=1e-6)
    # Archimedes: a coordinate of a uniform point on the unit 2-sphere is uniform on [-1, 1];
    # 4000 tensors of 3 entries (one group each) at 4000 seeds
    coords = torch.stack([z(law, 3, seed=s) for s in range(4000)]) / math.sqrt(3)
    assert stats.kstest(coords[:, 0].numpy(), "uniform", args=(-1, 2)).pvalue > P_MIN
    assert stats.kstest(coords[:, 2].numpy(), "uniform", args=(-1, 2)).pvalue > P_MIN
    assert stats.kstest(z(law).numpy(), "norm").pvalue > P_MIN          # large d: entries ~ N(0, 1)


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_random_sparsity_law(sparsity):
    law = ZLaw("gaussian", sparsity, "random")
    x = z(law)
    kept = x != 0
    assert stats.binomtest(int(kept.sum()), N, law.kept_fraction).pvalue > P_MIN
    assert law.kept_fraction == pytest.approx(1 - sparsity, abs=2**-16)
    assert stats.kstest(x[kept].numpy(), "norm").pvalue > P_MIN
    runs = torch.diff(kept.long()).abs().sum().item()                 # Wald-Wolfowitz: the mask is not clumped
    q = kept.double().mean().item()
    expect = 2 * N * q * (1 - q)
    assert abs(runs - expect) < 4 * math.sqrt(expect)
    mask2 = z(law, seed=2025) != 0
    assert stats.binomtest(int((kept & mask2).sum()), N, law.kept_fraction ** 2).pvalue > P_MIN


def test_sphere_with_sparsity_normalises_the_touched_entries():
    x = z(ZLaw("sphere", 0.75, "random"))
    kept = int((x != 0).sum())
    assert x.square().sum().item() == pytest.approx(kept, rel=1e-6)


def test_magnitude_mask_keeps_the_smallest_and_packs_losslessly():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(1001, generator=g)
    law = ZLaw("gaussian", 0.8, "magnitude")
    mask = unpack_bits(magnitude_mask(w, law), 0, 1001)
    assert int(mask.sum()) == law.kept_entries(1001) == 201
    assert w.abs()[mask].max() <= w.abs()[~mask].min()
    bits = torch.rand(77, generator=g) > 0.5
    assert torch.equal(unpack_bits(pack_bits(bits), 0, 77), bits)
    assert torch.equal(unpack_bits(pack_bits(bits), 8, 60), bits[8:68])
    with pytest.raises(ValueError, match="multiple of 8"):
        unpack_bits(pack_bits(bits), 3, 10)


def test_bad_laws_are_clear_errors():
    with pytest.raises(ValueError, match="distribution 'cauchy'"):
        ZLaw("cauchy")
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        ZLaw(sparsity=1.0)
    with pytest.raises(ValueError, match="sparsity_rule 'top-k'"):
        ZLaw(sparsity=0.5, sparsity_rule="top-k")


# -- the torch backend's own promises -----------------------------------------------------------
@pytest.mark.parametrize("n", [1, 15, 16, 17, CHUNK - 1, CHUNK + 15, CHUNK + 16, 2 * CHUNK + 5])
def test_gaussian_stream_is_one_randn_of_the_tensor(n):
    """Chunked drawing reproduces the pre-chunking z (one randn per tensor): old trajectories replay the same."""
    gen = torch.Generator().manual_seed(mix_seed(99, 4))
    want = torch.randn(n, generator=gen)
    assert torch.equal(TorchBackend().z(torch.zeros(n), 99, 4), want)
    assert torch.equal(TorchBackend().z(torch.zeros(n, dtype=torch.bfloat16), 99, 4), want.to(torch.bfloat16))


def test_chunk_bounds_cover_once_with_no_short_tail():
    for n in (1, 16, CHUNK, CHUNK + 15, CHUNK + 16, 3 * CHUNK + 7):
        b = chunk_bounds(n, CHUNK)
        assert b[0][0] == 0 and b[-1][1] == n and all(x[1] == y[0] for x, y in itertools.pairwise(b))
        assert all(stop - start >= 16 or len(b) == 1 for start, stop in b)


@pytest.mark.parametrize("law", [ZLaw(), ZLaw("sphere")], ids=str)
def test_z_cache_gives_the_same_weights_and_fewer_draws(law):
    """MeZO's passes with the cache on land bit-identically, drawing each seed once instead of three times."""

    class Counting(TorchBackend):
        draws = 0

        def _draw(self, *a):
            type(self).draws += 1
            return super()._draw(*a)

    g = torch.Generator().manual_seed(0)
    w = [torch.randn(CHUNK * 2 + 100, generator=g), torch.randn(300, generator=g).to(torch.float16)]
    out = []
    for budget in (0, 1 << 30):
        Counting.draws = 0
        b = Counting(law, z_cache_bytes=budget)
        params = [t.clone() for t in w]
        b.apply(params, [(1, 1e-3)])
        for s in range(1, 6):                  # lookahead schedule: -2 eps; restore + update + next +eps
            b.apply(params, [(s, -2e-3)])
            b.apply(params, [(s, 1e-3 - 1e-4 * s), (s + 1, 1e-3)])
        out.append((params, Counting.draws, b.held_bytes()))
    (plain, plain_draws, _), (cached, cached_draws, held) = out
    assert all(torch.equal(x, y) for x, y in zip(plain, cached))
    assert plain_draws == 2 * (1 + 3 * 5) and cached_draws == 2 * (1 + 5)
    assert held == sum(t.numel() * t.element_size() for t in w)


def test_z_cache_respects_its_budget():
    b = TorchBackend(z_cache_bytes=4 * 1000)
    params = [torch.zeros(800), torch.zeros(800)]
    b.apply(params, [(1, 1.0)])
    assert b.held_bytes() == 4 * 800


def test_magnitude_rule_needs_prepared_masks_for_this_list():
    b = TorchBackend(ZLaw("gaussian", 0.5, "magnitude"))
    with pytest.raises(RuntimeError, match="prepare"):
        b.z(torch.zeros(10), 1, 0)
    b.prepare([torch.randn(10), torch.randn(20)])
    assert b.held_bytes() == 2 + 3
    with pytest.raises(ValueError, match="prepared for 2 parameters, got 1"):
        b.apply([torch.zeros(10)], [(1, 1.0)])
    with pytest.raises(ValueError, match="parameter 1: its magnitude mask covers 24 entries"):
        b.apply([torch.zeros(10), torch.zeros(30)], [(1, 1.0)])
