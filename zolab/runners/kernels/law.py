"""The law of the perturbation z: its distribution and which entries it touches (sparsity).

Every backend draws z from a :class:`ZLaw`; the law is part of the definition of z, so a backend
configured with one law regenerates the same z for a (seed, parameter index) in every pass.

Distributions (``RunConfig.distribution``), per parameter tensor of ``d`` touched entries:

* ``gaussian``: z ~ N(0, I) (MeZO).
* ``rademacher``: each entry +1 or -1 with probability 1/2 (no transcendental work: the cheapest).
* ``sphere``: z = g / ||g|| * sqrt(d) with g ~ N(0, I), i.e. uniform on the sphere of radius
  sqrt(d). The *group* normalised together is one parameter tensor (its touched entries when
  sparse), not the whole parameter list: (1) ``z(p, seed, index)`` stays a function of one tensor,
  so every pass regenerates a tensor's z without looking at the others; a list-wide norm would
  need an extra generation pass over every parameter for each new seed (or the whole z held in
  memory); (2) both choices give E[z z^T] = I, so the SPSA estimate has the same expectation, and
  for tensors of thousands of entries ||g|| / sqrt(d) is within 1/sqrt(2d) of 1 anyway (the
  choice only matters for tiny tensors such as a 1-element bias, which becomes +-1).

Sparsity (``RunConfig.sparsity`` = fraction of entries NOT perturbed, ``sparsity_rule``):

* ``random``: entry j is touched when a 16-bit key drawn for it from the step seed (an independent
  stream, mixed from the seed with :data:`MASK_SALT`) is >= :attr:`ZLaw.key_threshold`; the kept
  fraction is exactly ``1 - round(sparsity * 2**16) / 2**16`` in expectation. Nothing is stored:
  the mask is regenerated with z in every pass, and changes from step to step.
* ``magnitude`` (Sparse-MeZO, Liu et al. 2024): the ``ceil((1 - sparsity) * n)`` smallest-|w|
  entries of each tensor (ties broken by position). The mask is computed ONCE, from the base
  weights, when the optimizer is built (:func:`magnitude_mask`), and stored packed (1 bit per
  parameter). Sparse-MeZO selects by a per-layer magnitude threshold and, to stay at inference
  memory, evaluates the mask inside each layer's forward, where the weights it reads are the
  unperturbed theta. zolab perturbs the weights *in place*, so a mask re-evaluated from the
  current weights would see theta + eps z and flip entries near the threshold between the +eps,
  -2 eps and restore passes: the restore would no longer be exact and the update would touch
  other entries than the probe. A fixed mask keeps every pass of every step on the same entries;
  with MeZO learning rates (1e-6..1e-7) the weights move far less per step than the gaps between
  magnitudes, so a per-step mask would select almost the same set. It also survives resume: the
  optimizer is rebuilt from the base weights before the trajectory is replayed.

Masked-out entries are left bit-identical by every pass (even -0.0); weight decay, which is not
part of z, still acts on every decayed entry of a trained tensor (as in the MeZO reference).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import torch

from zolab.runners.config import DISTRIBUTIONS, SPARSITY_RULES

#: xor-ed into the step seed for the random-mask stream (independent of z's stream)
MASK_SALT = 0x5DEECE66D2F1A3B7
KEY_BITS = 16


@dataclass(frozen=True)
class ZLaw:
    """How z is drawn: ``distribution`` and the ``sparsity`` / ``sparsity_rule`` of the entries it touches."""

    distribution: str = "gaussian"
    sparsity: float = 0.0
    sparsity_rule: str = "random"

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution {self.distribution!r} is not one of {', '.join(DISTRIBUTIONS)}")
        if self.sparsity_rule not in SPARSITY_RULES:
            raise ValueError(f"sparsity_rule {self.sparsity_rule!r} is not one of {', '.join(SPARSITY_RULES)}")
        if not 0.0 <= float(self.sparsity) < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")

    @classmethod
    def from_config(cls, config) -> ZLaw:
        """The law a :class:`~zolab.runners.config.RunConfig` asks for."""
        return cls(config.distribution, float(config.sparsity), config.sparsity_rule)

    @property
    def is_default(self) -> bool:
        return self.distribution == "gaussian" and self.sparsity == 0.0

    @property
    def random_mask(self) -> bool:
        """A mask regenerated from the seed in every pass."""
        return self.sparsity > 0 and self.sparsity_rule == "random"

    @property
    def stored_mask(self) -> bool:
        """A mask computed once from the base weights (:meth:`PerturbationBackend.prepare`)."""
        return self.sparsity > 0 and self.sparsity_rule == "magnitude"

    @property
    def key_threshold(self) -> int:
        """Random rule: an entry is touched when its 16-bit key (0..65535) is >= this."""
        return min(round(self.sparsity * (1 << KEY_BITS)), (1 << KEY_BITS) - 1)

    @property
    def kept_fraction(self) -> float:
        """Expected fraction of entries z touches (exactly this per tensor, up to one entry, for magnitude)."""
        if self.random_mask:
            return 1.0 - self.key_threshold / (1 << KEY_BITS)
        return 1.0 - self.sparsity

    def kept_entries(self, n: int) -> int:
        """Magnitude rule: how many entries of an n-entry tensor are touched (at least one)."""
        frozen = math.floor(self.sparsity * n + 1e-9)
        return max(n - frozen, 1) if n else 0

    def __str__(self) -> str:
        if not self.sparsity:
            return self.distribution
        return f"{self.distribution}, sparsity {self.sparsity:g} ({self.sparsity_rule})"


class ScaleCache:
    """Sphere scales ``sqrt(k / sum z^2)`` by (seed, parameter, ...) key, the newest ``size`` kept; thread-safe.

    A scale costs one generation sweep of the tensor, and every pass of a step needs the same one."""

    def __init__(self, size: int = 1 << 16) -> None:
        self.size = size
        self._values: OrderedDict[Hashable, float] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> float | None:
        with self._lock:
            return self._values.get(key)

    def put(self, key: Hashable, count: int, total: float) -> float:
        """Store and return the scale of ``count`` touched entries whose squares sum to ``total`` (0 if none)."""
        scale = math.sqrt(count / total) if total > 0 else 0.0
        with self._lock:
            self._values[key] = scale
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return scale

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


# -- stored masks (magnitude rule) ------------------------------------------------------------
_SHIFTS: dict[torch.device, torch.Tensor] = {}


def _shifts(device: torch.device) -> torch.Tensor:
    s = _SHIFTS.get(device)
    if s is None:
        s = _SHIFTS[device] = torch.arange(8, dtype=torch.uint8, device=device)
    return s


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A bool vector as uint8 bytes, entry j in bit ``j % 8`` of byte ``j // 8`` (the last byte zero-padded)."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8) << _shifts(flat.device)).sum(1, dtype=torch.int32).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, start: int, n: int) -> torch.Tensor:
    """Entries ``start .. start + n`` of a :func:`pack_bits` mask as bool (``start`` a multiple of 8)."""
    if start % 8:
        raise ValueError(f"unpack_bits: start {start} is not a multiple of 8")
    chunk = packed[start // 8:(start + n + 7) // 8]
    return ((chunk.unsqueeze(1) >> _shifts(chunk.device)) & 1).view(-1)[:n].bool()


@torch.no_grad()
def magnitude_mask(p: torch.Tensor, law: ZLaw) -> torch.Tensor:
    """Packed mask of the ``law.kept_entries(n)`` smallest-|w| entries of ``p`` (ties: lower position first)."""
    flat = p.detach().reshape(-1)
    n = flat.numel()
    if not n:
        return torch.zeros(0, dtype=torch.uint8, device=p.device)
    keep = law.kept_entries(n)
    a = flat.abs().float()
    h = torch.kthvalue(a, keep).values
    below = a < h
    ties = a == h
    need = keep - int(below.sum())
    mask = below | (ties & (torch.cumsum(ties, 0) <= need))
    return pack_bits(mask)
