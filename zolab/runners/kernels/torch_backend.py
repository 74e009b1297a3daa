"""Reference perturbation backend in plain torch (CPU fallback, and the reference for the Triton kernel).

Definition of z here: for parameter ``index`` at ``seed``, a ``torch.Generator`` seeded with
:func:`mix_seed` draws the tensor's entries in order, in chunks of :data:`CHUNK` entries (a
remainder under 16 joins the last chunk; on CUDA one chunk is the whole tensor). Per chunk:

* gaussian / sphere: ``normal_`` (fp32). Drawn in order, the chunks are bit-identical to one
  ``torch.randn`` of the whole tensor (what this backend drew before chunking), so trajectories
  recorded earlier replay to the same weights;
* rademacher: ``ceil(n / 64)`` 64-bit words, entry j = +1 if bit ``j % 8`` of byte ``j // 8`` is set, else -1;
* random sparsity: a second generator (seed xor :data:`~.law.MASK_SALT`) draws one 16-bit key per
  entry; only the kept entries then receive values, in order (high sparsity draws fewer values);
* magnitude sparsity: the stored mask (:meth:`TorchBackend.prepare`) says which entries are kept;
* sphere: values times ``sqrt(k / sum g^2)`` over the tensor's k touched entries (the sum in fp64,
  in a fixed order), computed by one extra generation sweep per new (seed, parameter), then cached.

Values are fp32, rounded once to the parameter's dtype, then added (``p.add_(z, alpha=a)``), so every
pass regenerates the same z bit for bit. Chunks keep the z temporaries small (4 MB buffers per thread,
reused: no allocation per call) and few enough that Python's per-chunk cost stays small (1M entries:
half the time of 128K chunks for the cheap rademacher law on 2 threads).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from zolab.runners.kernels.law import MASK_SALT, ScaleCache, ZLaw, magnitude_mask, unpack_bits

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, index) over the 64-bit seed space
_MASK = (1 << 63) - 1
#: entries per generation chunk on CPU (part of the definition of the rademacher and sparse streams)
CHUNK = 1 << 20
_MIN_TAIL = 16             # torch's vectorised normal_ needs >= 16 entries to give the whole-tensor stream
_SUMSQ_BLOCK = 1 << 14     # below torch's parallel grain: the fp64 sum of squares has one fixed order
_SCALES_KEPT = 1 << 16


def checked_terms(params: Sequence[torch.Tensor], terms: Sequence[tuple[int, float]],
                  decay: Sequence[float] | None, law: ZLaw | None = None,
                  masks: Sequence[torch.Tensor] | None = None) -> list[tuple[int, float]]:
    """An ``apply`` call's terms, merged, after checking its decay list and (given the backend's ``law``)
    its magnitude masks, before anything is written."""
    if decay is not None and len(decay) != len(params):
        raise ValueError(f"decay has {len(decay)} entries for {len(params)} parameters")
    merged = merge_terms(terms)
    if merged and law is not None:
        check_masks(law, masks, params)
    return merged


def merge_terms(terms: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """Terms with the same seed share one z: sum their alphas (one draw, one rounding); drop zeros.

    MeZO's last pass is ``[(s, +eps), (s, -lr g)]``: merged, it costs one z instead of two."""
    merged: dict[int, float] = {}
    for seed, alpha in terms:
        merged[int(seed)] = merged.get(int(seed), 0.0) + float(alpha)
    return [(s, a) for s, a in merged.items() if a]


def mix_seed(seed: int, index: int) -> int:
    """Generator seed for (step seed, parameter index)."""
    return ((seed * _MIX) ^ (index * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB)) & _MASK


def chunk_bounds(n: int, chunk: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)`` in chunks of ``chunk``; a tail under 16 joins the last one."""
    bounds = []
    a = 0
    while a < n:
        b = a + chunk
        if n - b < _MIN_TAIL:
            b = n
        bounds.append((a, b))
        a = b
    return bounds


def check_masks(law: ZLaw, masks: Sequence[torch.Tensor] | None, params: Sequence[torch.Tensor]) -> None:
    """Magnitude rule: masks must have been prepared for exactly this parameter list (checked before writing)."""
    if not law.stored_mask:
        return
    if masks is None:
        raise RuntimeError("sparsity_rule 'magnitude' needs the base weights: call backend.prepare(params) "
                           "before the first step (build_optimizer does)")
    if len(masks) != len(params):
        raise ValueError(f"magnitude masks were prepared for {len(masks)} parameters, got {len(params)}")
    for i, (m, p) in enumerate(zip(masks, params)):
        if m.numel() != (p.numel() + 7) // 8:
            raise ValueError(f"parameter {i}: its magnitude mask covers {m.numel() * 8} entries, "
                             f"the tensor has {p.numel()}")


def stored_mask(law: ZLaw, masks: Sequence[torch.Tensor] | None, index: int, p: torch.Tensor
                ) -> torch.Tensor | None:
    """Parameter ``index``'s packed magnitude mask (None for the other laws); a clear error when the
    masks were not prepared or were prepared for another tensor."""
    if not law.stored_mask:
        return None
    if masks is None:
        check_masks(law, None, [])                           # raises: not prepared
    masks = masks or []
    if index >= len(masks) or masks[index].numel() != (p.numel() + 7) // 8:
        raise ValueError(f"parameter {index}: no magnitude mask prepared for a tensor of {p.numel()} entries")
    return masks[index]


class CpuPool:
    """A thread pool sized to ``torch.get_num_threads()``, rebuilt when that count changes or in a forked
    child (a pool inherited through fork has no threads to stop)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._pool: ThreadPoolExecutor | None = None
        self._key = (0, 0)                     # (pid, threads)

    def get(self) -> ThreadPoolExecutor | None:
        """The pool, or None with fewer than two threads (run on the calling thread)."""
        threads = torch.get_num_threads()
        if threads < 2:
            return None
        key = (os.getpid(), threads)
        if self._pool is None or self._key != key:
            if self._pool is not None and self._key[0] == key[0]:
                self._pool.shutdown(wait=True)
            self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=self.prefix)
            self._key = key
        return self._pool


def sumsq(values: torch.Tensor) -> float:
    """sum(v^2) in fp64 in a fixed order (independent of the thread count), so every pass agrees."""
    if values.device.type != "cpu":
        return float(values.double().square().sum())   # CUDA reductions are run-to-run deterministic
    return sum(float(b.double().square().sum()) for b in values.split(_SUMSQ_BLOCK))


_LUTS: dict[torch.device, torch.Tensor] = {}


def _sign_table(device: torch.device) -> torch.Tensor:
    """[256, 8] fp32: row b holds +-1 for the 8 bits of byte b (bit set: +1)."""
    t = _LUTS.get(device)
    if t is None:
        bits = (torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1
        t = _LUTS[device] = (bits * 2 - 1).float().to(device)
    return t


class _Scratch:
    """One thread's generators and chunk buffers on one device (reused: no allocation per chunk)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.gens: list[torch.Generator] = []
        self.mask_gens: list[torch.Generator] = []
        self.values: list[torch.Tensor] = []
        self.full: list[torch.Tensor] = []
        self._words = torch.empty(0, dtype=torch.int64, device=device)

    @staticmethod
    def _nth(pool: list[torch.Generator], k: int, device: torch.device) -> torch.Generator:
        while len(pool) <= k:
            pool.append(torch.Generator(device=device))
        return pool[k]

    def gen(self, k: int) -> torch.Generator:
        return self._nth(self.gens, k, self.device)

    def mask_gen(self, k: int) -> torch.Generator:
        return self._nth(self.mask_gens, k, self.device)

    def _kept(self, pool: list[torch.Tensor], k: int, n: int, cap: int, dtype: torch.dtype) -> torch.Tensor:
        """Slot k's buffer of >= n entries: kept and grown on demand up to ``cap`` entries (a small
        model never holds chunk-sized scratch); larger requests are one-off temporaries."""
        if n > cap:
            return torch.empty(n, dtype=dtype, device=self.device)
        while len(pool) <= k:
            pool.append(torch.empty(0, dtype=dtype, device=self.device))
        if pool[k].numel() < n:
            pool[k] = torch.empty(n, dtype=dtype, device=self.device)
        return pool[k][:n]

    def value_buf(self, k: int, n: int) -> torch.Tensor:
        """fp32 buffer of >= n entries (a multiple of 8) for term slot k; large ones are not kept."""
        return self._kept(self.values, k, (n + 7) // 8 * 8, CHUNK + 2 * _MIN_TAIL, torch.float32)

    def full_buf(self, k: int, n: int) -> torch.Tensor:
        """A second fp32 buffer per term slot (sparse chunks: values spread over the chunk)."""
        return self._kept(self.full, k, n, CHUNK + 2 * _MIN_TAIL, torch.float32)

    def words(self, n: int) -> torch.Tensor:
        """int64 buffer of n words (chunk-sized ones are kept)."""
        words = [self._words]
        out = self._kept(words, 0, n, CHUNK // 4 + _MIN_TAIL, torch.int64)
        self._words = words[0]
        return out

    def nbytes(self) -> int:
        """Bytes of the buffers this scratch keeps between calls."""
        kept = [*self.values, *self.full, self._words]
        return sum(t.numel() * t.element_size() for t in kept)


class _Draw:
    """One term's z for one parameter, produced chunk by chunk in order (see the module docstring)."""

    def __init__(self, law: ZLaw, scratch: _Scratch, slot: int, seed: int, index: int,
                 mask: torch.Tensor | None, scale: float | None) -> None:
        self.law = law
        self.scratch = scratch
        self.slot = slot
        self.gen = scratch.gen(slot)
        self.gen.manual_seed(mix_seed(seed, index))
        self.mask_gen = None
        if law.random_mask:
            self.mask_gen = scratch.mask_gen(slot)
            self.mask_gen.manual_seed(mix_seed(seed ^ MASK_SALT, index))
        self.mask = mask
        self.scale = scale

    def keep(self, a: int, b: int) -> torch.Tensor | None:
        """Which entries of chunk [a, b) z touches (None: all)."""
        if self.mask_gen is not None:
            n = b - a
            words = self.scratch.words((n + 3) // 4)
            words.random_(-(1 << 63), (1 << 63) - 1, generator=self.mask_gen)
            # a signed view of the 16-bit key u is u - 65536 for u >= 32768; compare u - 32768 instead:
            # the same law (P(keep) = 1 - threshold / 2**16), one op fewer
            return words.view(torch.int16)[:n] >= (self.law.key_threshold - 32768)
        if self.mask is not None:
            return unpack_bits(self.mask, a, b - a)
        return None

    def spread(self, values: torch.Tensor, keep: torch.Tensor, fill: float) -> torch.Tensor:
        """The chunk's z: ``values`` at the kept entries in order, ``fill`` (a signed zero) elsewhere."""
        out = self.scratch.full_buf(self.slot, keep.numel())
        return out.fill_(fill).masked_scatter_(keep, values)

    def values(self, n: int) -> torch.Tensor:
        """The next n values of this term's stream (fp32)."""
        buf = self.scratch.value_buf(self.slot, n)
        if self.law.distribution == "rademacher":
            words = self.scratch.words((n + 63) // 64)
            words.random_(-(1 << 63), (1 << 63) - 1, generator=self.gen)
            byte_idx = words.view(torch.uint8)[:buf.numel() // 8].long()
            torch.index_select(_sign_table(buf.device), 0, byte_idx, out=buf.view(-1, 8))
            return buf[:n]
        out = buf[:n]
        out.normal_(generator=self.gen)
        if self.scale is not None:
            out.mul_(self.scale)
        return out


@dataclass
class _Slot:
    """The z of one seed for one parameter, in the parameter's dtype."""

    buf: torch.Tensor
    seed: int | None = None


@dataclass
class ZCache:
    """Opt-in: per parameter, the z of the latest seed drawn for it, so the next passes read it instead
    of regenerating it (MeZO: one generation a step instead of three). Holds up to ``budget_bytes``
    (a full model costs one extra copy of the weights); the cached values are exactly what a
    regeneration gives, so results do not depend on it."""

    budget_bytes: int
    used_bytes: int = 0
    slots: dict[int, _Slot] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def slot(self, index: int, p: torch.Tensor) -> _Slot | None:
        with self._lock:
            s = self.slots.get(index)
            if s is not None and s.buf.numel() == p.numel() and s.buf.dtype == p.dtype and s.buf.device == p.device:
                return s
            if s is not None:
                self.used_bytes -= s.buf.numel() * s.buf.element_size()
                del self.slots[index]
            need = p.numel() * p.element_size()
            if self.used_bytes + need > self.budget_bytes:
                return None
            self.used_bytes += need
            s = self.slots[index] = _Slot(torch.empty(p.numel(), dtype=p.dtype, device=p.device))
            return s


def _cache_budget() -> int:
    return int(float(os.environ.get("ZOLAB_Z_CACHE_MB", "0") or 0) * 2**20)


class TorchBackend:
    """z from freshly seeded ``torch.Generator`` streams per (seed, parameter): pure, so passes regenerate it.

    On CPU, torch draws normals on one core (about 6 ns each here: the Mersenne Twister and the
    Box-Muller transform), which makes z, not the forwards, the cost of a MeZO step on a real model.
    Because each parameter's z comes from its own seed, parameters can be drawn in parallel with
    identical results: :meth:`apply` spreads CPU parameter lists of at least
    :attr:`parallel_min_elements` over ``torch.get_num_threads()`` threads (torch releases the GIL in
    its kernels), largest first, each thread with chunk-sized temporaries only. All terms of a call
    are applied chunk by chunk in one sweep over the weights.

    ``z_cache_bytes`` (default: ``ZOLAB_Z_CACHE_MB`` from the environment, else 0) turns on the
    :class:`ZCache` for dense gaussian/sphere laws: memory for speed, the same results.
    """

    name = "torch"
    #: CPU parameter lists smaller than this are perturbed serially (threads cost more than they save)
    parallel_min_elements = 1 << 20

    def __init__(self, law: ZLaw | None = None, *, z_cache_bytes: int | None = None) -> None:
        self.law = law or ZLaw()
        budget = _cache_budget() if z_cache_bytes is None else int(z_cache_bytes)
        self.cache: ZCache | None = ZCache(budget) if budget > 0 else None
        self._reset()

    def _reset(self) -> None:
        self._local = threading.local()      # one _Scratch per thread and device
        self._scratches: list[_Scratch] = []  # every thread's, for :meth:`scratch_bytes`
        self._scratches_lock = threading.Lock()
        self._pool = CpuPool("zolab-z")
        self._masks: list[torch.Tensor] | None = None
        self._scales = ScaleCache(_SCALES_KEPT)

    def with_law(self, law: ZLaw) -> TorchBackend:
        """This backend drawing from ``law`` (itself when the law is unchanged)."""
        if law == self.law:
            return self
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.law = law
        other.cache = ZCache(self.cache.budget_bytes) if self.cache is not None else None
        other._reset()
        return other

    def prepare(self, params: Sequence[torch.Tensor]) -> None:
        """Compute what the law needs from the base weights (the magnitude masks), before the first step."""
        if self.law.stored_mask:
            self._masks = [magnitude_mask(p, self.law) for p in params]
            self._scales.clear()

    def held_bytes(self) -> int:
        """Memory this backend keeps between calls: magnitude masks (1 bit a parameter) and the z cache."""
        masks = sum(m.numel() for m in self._masks) if self._masks is not None else 0
        return masks + (self.cache.used_bytes if self.cache is not None else 0)

    # -- z --------------------------------------------------------------------------------------
    def _scratch(self, device: torch.device) -> _Scratch:
        per_device = self._local.__dict__.setdefault("scratch", {})
        s = per_device.get(device)
        if s is None:
            s = per_device[device] = _Scratch(device)
            with self._scratches_lock:
                self._scratches.append(s)
        return s

    def scratch_bytes(self) -> int:
        """Bytes of the chunk buffers every thread keeps (z is drawn into them, chunk by chunk)."""
        with self._scratches_lock:
            return sum(s.nbytes() for s in self._scratches)

    @staticmethod
    def _chunk(p: torch.Tensor) -> int:
        return CHUNK if p.device.type == "cpu" else max(p.numel(), 1)

    def _draw(self, scratch: _Scratch, slot: int, p: torch.Tensor, seed: int, index: int) -> _Draw:
        mask = self._mask(index, p)
        scale = self._sphere_scale(scratch, slot, p, seed, index, mask) if self.law.distribution == "sphere" else None
        return _Draw(self.law, scratch, slot, seed, index, mask, scale)

    def _sphere_scale(self, scratch: _Scratch, slot: int, p: torch.Tensor, seed: int, index: int,
                      mask: torch.Tensor | None) -> float:
        """sqrt(k / sum g^2) over the k touched entries of parameter ``index`` at ``seed`` (one sweep, cached)."""
        key = (seed, index, p.numel(), p.device)
        hit = self._scales.get(key)
        if hit is not None:
            return hit
        draw = _Draw(self.law, scratch, slot, seed, index, mask, None)
        total, count = 0.0, 0
        for a, b in chunk_bounds(p.numel(), self._chunk(p)):
            keep = draw.keep(a, b)
            k = b - a if keep is None else int(torch.count_nonzero(keep))
            if k:
                total += sumsq(draw.values(k))
                count += k
        return self._scales.put(key, count, total)

    def z(self, p: torch.Tensor, seed: int, index: int) -> torch.Tensor:
        """The direction for parameter ``index`` at ``seed``: what :meth:`apply` adds (0 + 1 * z, same code path)."""
        out = torch.zeros(p.shape, dtype=p.dtype, device=p.device)
        self._one(out, index, [(seed, 1.0)], 0.0, use_cache=False)
        return out

    def _mask(self, index: int, p: torch.Tensor) -> torch.Tensor | None:
        """Parameter ``index``'s stored magnitude mask (None for the other laws)."""
        return stored_mask(self.law, self._masks, index, p)

    # -- apply ----------------------------------------------------------------------------------
    @torch.no_grad()
    def apply(
        self,
        params: Sequence[torch.Tensor],
        terms: Sequence[tuple[int, float]],
        decay: Sequence[float] | None = None,
    ) -> None:
        """For every parameter i: ``p_i <- (1 - decay_i) p_i + sum_k alpha_k z(seed_k, i)`` in place."""
        terms = checked_terms(params, terms, decay, self.law, self._masks)

        @torch.no_grad()
        def one(i: int) -> None:
            self._one(params[i], i, terms, float(decay[i]) if decay is not None else 0.0)

        pool = self._cpu_pool(params) if terms else None
        if pool is None:
            for i in range(len(params)):
                one(i)
            return
        largest_first = sorted(range(len(params)), key=lambda i: params[i].numel(), reverse=True)
        for _ in pool.map(one, largest_first):   # re-raises a worker's exception here
            pass

    def _one(self, p: torch.Tensor, index: int, terms: Sequence[tuple[int, float]], decay: float,
             use_cache: bool = True) -> None:
        """One parameter: decay, then every term, chunk by chunk in one sweep."""
        if not terms:
            if decay:
                p.mul_(1.0 - decay)
            return
        if not p.numel():
            return
        if not p.dtype.is_floating_point:
            raise TypeError(f"parameter {index}: cannot perturb a {p.dtype} tensor")
        work = p if p.is_contiguous() else p.contiguous()
        flat = work.view(-1)
        scratch = self._scratch(p.device)
        slot = self._cache_slot(index, p) if use_cache else None
        seeds = [s for s, _ in terms]
        read = slot.seed if slot is not None and slot.seed in seeds else None
        write = next((s for s in reversed(seeds) if s != read), None) if slot is not None else None
        if write is not None:
            slot.seed = None                                   # being overwritten
        draws = [None if s == read else self._draw(scratch, k, p, s, index) for k, s in enumerate(seeds)]
        for a, b in chunk_bounds(flat.numel(), self._chunk(p)):
            pc = flat[a:b]
            if decay:
                pc.mul_(1.0 - decay)
            fresh = None
            for (seed, alpha), draw in zip(terms, draws):
                if draw is None:
                    pc.add_(slot.buf[a:b], alpha=alpha)          # type: ignore[union-attr]
                    continue
                z = self._add_chunk(draw, pc, a, b, alpha)
                if seed == write:
                    fresh = z
            if fresh is not None:
                slot.buf[a:b].copy_(fresh)                       # type: ignore[union-attr]
        if write is not None:
            slot.seed = write
        if work is not p:
            p.copy_(work)

    def _cache_slot(self, index: int, p: torch.Tensor) -> _Slot | None:
        if self.cache is None or self.law.sparsity or self.law.distribution == "rademacher":
            return None          # sparse and rademacher z are about as cheap to draw as to read back
        return self.cache.slot(index, p)

    @staticmethod
    def _add_chunk(draw: _Draw, pc: torch.Tensor, a: int, b: int, alpha: float) -> torch.Tensor | None:
        """pc += alpha * z on chunk [a, b); returns the chunk's z in pc's dtype when dense."""
        keep = draw.keep(a, b)
        if keep is None:
            z = draw.values(b - a)
            if z.dtype != pc.dtype:
                z = z.to(pc.dtype)
            pc.add_(z, alpha=alpha)
            return z
        k = int(torch.count_nonzero(keep))
        if k:
            # untouched entries get alpha * z = -0.0, and x + (-0.0) == x bit for bit for every x (even -0.0)
            z = draw.spread(draw.values(k), keep, -0.0 if alpha > 0 else 0.0)
            if z.dtype != pc.dtype:
                z = z.to(pc.dtype)
            pc.add_(z, alpha=alpha)
        return None

    def _cpu_pool(self, params: Sequence[torch.Tensor]) -> ThreadPoolExecutor | None:
        """The thread pool for a large CPU parameter list (None: perturb serially)."""
        if (len(params) < 2 or any(p.device.type != "cpu" for p in params)
                or sum(p.numel() for p in params) < self.parallel_min_elements):
            return None
        return self._pool.get()
