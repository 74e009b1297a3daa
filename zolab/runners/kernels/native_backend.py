"""Native CPU perturbation backend: z from a counter-based Philox stream, computed and added in one pass.

The law of z is defined in :file:`native_perturb.c` (Philox4x32-10 at key = the step seed and
counter (element tile and lane, parameter index); Box-Muller with fixed polynomials). It is not the
``torch`` backend's stream (Mersenne Twister) nor the ``triton`` kernel's (Philox4x64) but follows
the same :class:`~.law.ZLaw` (distribution, sparsity, the same magnitude masks). Because z is a
pure function of the element's position, any split of the work gives the same bits: :meth:`apply`
cuts every tensor into ranges of :data:`ITEM_TILES` tiles and runs them on
``torch.get_num_threads()`` threads (ctypes releases the GIL), largest tensors first.

fp32 tensors are updated by the kernel itself (``p <- keep * p + sum_k alpha_k z_k``, each product
and sum rounded to fp32); other floating dtypes (fp16, bf16, and fp64 as the float64 method tests
use) get z from the kernel in fp32, converted once to their dtype and added by torch, as in the torch
backend. Sphere scales (fp64 sums of squares, in a fixed
order of ranges) are computed once per (seed, parameter) and cached.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from zolab.runners.kernels.law import MASK_SALT, ScaleCache, ZLaw, magnitude_mask
from zolab.runners.kernels.native_build import load
from zolab.runners.kernels.torch_backend import CpuPool, checked_terms, stored_mask

TILE = 4096
#: tiles per work item (1M elements): the unit of parallel work, and of the sphere's fixed summation order
ITEM_TILES = 256
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1
_SCALES_KEPT = 1 << 16
_MAX_TERMS_PER_CALL = 16
_MAX_NUMEL = 1 << 34       # the 32-bit counter word holds tile * 1024 + lane


def _key(seed: int) -> int:
    return int(seed) & _U64


def _items(n: int) -> list[tuple[int, int]]:
    tiles = (n + TILE - 1) // TILE
    return [(lo, min(lo + ITEM_TILES, tiles)) for lo in range(0, tiles, ITEM_TILES)]


class NativeBackend:
    """``p <- (1 - d) p + sum_k a_k z(s_k)`` on CPU tensors with the compiled Philox kernel."""

    name = "native"
    #: parameter lists smaller than this run on the calling thread
    parallel_min_elements = 1 << 20

    def __init__(self, law: ZLaw | None = None) -> None:
        self.law = law or ZLaw()
        self.lib = load()
        self._scratch_size = int(self.lib.zolab_scratch_bytes())
        self._local = threading.local()
        self._held: dict[tuple[int, str], int] = {}          # (thread id, buffer) -> bytes, for scratch_bytes
        self._held_lock = threading.Lock()
        self._pool = CpuPool("zolab-native")
        self._masks: list[torch.Tensor] | None = None
        self._scales = ScaleCache(_SCALES_KEPT)

    def with_law(self, law: ZLaw) -> NativeBackend:
        """This backend drawing from ``law`` (itself when the law is unchanged)."""
        return self if law == self.law else type(self)(law)

    def prepare(self, params: Sequence[torch.Tensor]) -> None:
        """Magnitude rule: the masks from the base weights (the same ones as the other backends)."""
        if self.law.stored_mask:
            self._masks = [magnitude_mask(p, self.law).contiguous() for p in params]
            self._scales.clear()

    def held_bytes(self) -> int:
        """Memory kept between calls: the magnitude masks (1 bit a parameter)."""
        return sum(m.numel() for m in self._masks) if self._masks is not None else 0

    # -- per-thread scratch and the pool ----------------------------------------------------------
    def _scratch(self) -> int:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = ctypes.create_string_buffer(self._scratch_size)
            self._note("tile", self._scratch_size)
        return ctypes.addressof(buf)

    def _note(self, kind: str, nbytes: int) -> None:
        with self._held_lock:
            self._held[(threading.get_ident(), kind)] = nbytes

    def scratch_bytes(self) -> int:
        """Bytes the threads keep between calls: one tile's words, z and keep flags each (36 KB, whatever the
        model's size), plus a work item's fp32 z for threads that perturbed non-fp32 tensors."""
        with self._held_lock:
            return sum(self._held.values())

    def _fp32(self, n: int) -> torch.Tensor:
        """This thread's fp32 buffer of n <= one work item's entries (non-fp32 tensors: z before conversion)."""
        buf = getattr(self._local, "fp32", None)
        if buf is None or buf.numel() < n:
            buf = self._local.fp32 = torch.empty(max(n, ITEM_TILES * TILE), dtype=torch.float32)
            self._note("fp32", buf.numel() * 4)
        return buf[:n]

    def _cpu_pool(self, total: int) -> ThreadPoolExecutor | None:
        return self._pool.get() if total >= self.parallel_min_elements else None

    # -- the law ------------------------------------------------------------------------------------
    @property
    def _dist(self) -> int:
        return 1 if self.law.distribution == "rademacher" else 0

    @property
    def _sparse(self) -> int:
        return 1 if self.law.random_mask else 2 if self.law.stored_mask else 0

    def _mask_ptr(self, index: int, p: torch.Tensor) -> int:
        mask = stored_mask(self.law, self._masks, index, p)
        return 0 if mask is None else mask.data_ptr()

    def _scale(self, p: torch.Tensor, seed: int, index: int) -> float:
        """Sphere: sqrt(k / sum z^2) over the k touched entries of parameter ``index`` at ``seed``."""
        if self.law.distribution != "sphere":
            return 1.0
        key = (int(seed), index, p.numel())
        hit = self._scales.get(key)
        if hit is not None:
            return hit
        total, count = 0.0, 0
        mask = self._mask_ptr(index, p)
        n = ctypes.c_int64(0)
        for lo, hi in _items(p.numel()):                         # a fixed order: the same sum in every pass
            total += self.lib.zolab_sumsq(p.numel(), lo, hi, index & _U32, _key(seed), _key(seed ^ MASK_SALT),
                                          self._sparse, self.law.key_threshold, mask, ctypes.byref(n),
                                          self._scratch())
            count += n.value
        return self._scales.put(key, count, total)

    # -- z and apply --------------------------------------------------------------------------------
    def z(self, p: torch.Tensor, seed: int, index: int) -> torch.Tensor:
        """The direction for parameter ``index`` at ``seed``: what :meth:`apply` adds (0 + 1 * z, same path)."""
        out = torch.zeros(p.shape, dtype=p.dtype, device=p.device)
        if out.numel():
            self._check(index, out)
            work = self._work(out, index, [(seed, 1.0)], 0.0)
            for lo, hi in _items(out.numel()):
                work(lo, hi)
        return out

    @staticmethod
    def _check(index: int, p: torch.Tensor) -> None:
        if p.device.type != "cpu":
            raise ValueError(f"parameter {index} is on {p.device}: kernel 'native' runs on CPU tensors "
                             "(use 'auto' or 'triton' on CUDA)")
        if not p.dtype.is_floating_point:
            raise TypeError(f"parameter {index}: cannot perturb a {p.dtype} tensor")
        if p.numel() > _MAX_NUMEL:
            raise ValueError(f"parameter {index}: {p.numel()} elements exceed the kernel's counter space "
                             f"({_MAX_NUMEL}: 2**32 Philox counters of 4 words)")

    @torch.no_grad()
    def apply(
        self,
        params: Sequence[torch.Tensor],
        terms: Sequence[tuple[int, float]],
        decay: Sequence[float] | None = None,
    ) -> None:
        """For every parameter i: ``p_i <- (1 - decay_i) p_i + sum_k alpha_k z(seed_k, i)`` in place."""
        terms = checked_terms(params, terms, decay, self.law, self._masks)
        for i, p in enumerate(params):
            self._check(i, p)
        jobs = []
        copies = []
        for i, p in enumerate(params):
            d = float(decay[i]) if decay is not None else 0.0
            if not p.numel() or (not terms and not d):
                continue
            if not terms:
                p.mul_(1.0 - d)
                continue
            work_t = p if p.is_contiguous() else p.contiguous()
            if work_t is not p:
                copies.append((p, work_t))
            work = self._work(work_t, i, terms, d)
            jobs += [(p.numel(), work, lo, hi) for lo, hi in _items(p.numel())]
        pool = self._cpu_pool(sum(p.numel() for p in params))
        if pool is None:
            for _, work, lo, hi in jobs:
                work(lo, hi)
        else:
            jobs.sort(key=lambda j: -j[0])                        # largest tensors first: the tail is small
            for _ in pool.map(lambda j: j[1](j[2], j[3]), jobs):  # re-raises a worker's exception here
                pass
        for p, work_t in copies:
            p.copy_(work_t)

    def _work(self, p: torch.Tensor, index: int, terms: Sequence[tuple[int, float]], decay: float):
        """A function of a tile range [lo, hi) that applies decay and the terms to that range of ``p``."""
        lib = self.lib
        n = p.numel()
        mask = self._mask_ptr(index, p)
        idx = index & _U32
        seeds = [_key(s) for s, _ in terms]
        mseeds = [_key(s ^ MASK_SALT) for s, _ in terms]
        alphas = [float(a) for _, a in terms]
        scales = [self._scale(p, s, index) for s, _ in terms]
        dist, sparse, threshold = self._dist, self._sparse, self.law.key_threshold
        flat = p.view(-1)
        if p.dtype == torch.float32:
            batches = [slice(k, k + _MAX_TERMS_PER_CALL) for k in range(0, len(terms), _MAX_TERMS_PER_CALL)]
            arrays = [((ctypes.c_uint64 * len(seeds[b]))(*seeds[b]), (ctypes.c_uint64 * len(seeds[b]))(*mseeds[b]),
                       (ctypes.c_float * len(seeds[b]))(*alphas[b]), (ctypes.c_float * len(seeds[b]))(*scales[b]))
                      for b in batches]
            ptr = p.data_ptr()

            def run(lo: int, hi: int) -> None:
                for k, (s, m, a, c) in enumerate(arrays):
                    lib.zolab_apply_f32(ptr, n, lo, hi, idx, len(s), s, m, a, c, 1.0 - decay, int(k == 0 and decay != 0),
                                        dist, sparse, threshold, mask, self._scratch())
            return run

        def run_other(lo: int, hi: int) -> None:
            a, b = lo * TILE, min(hi * TILE, n)
            pc = flat[a:b]
            if decay:
                pc.mul_(1.0 - decay)
            buf = self._fp32(b - a)
            for s, m, alpha, scale in zip(seeds, mseeds, alphas, scales):
                # untouched entries get alpha * (-+0.0) = -0.0, and x + (-0.0) == x bit for bit
                fill = -0.0 if alpha > 0 else 0.0
                lib.zolab_z_f32(buf.data_ptr(), n, lo, hi, idx, s, m, scale, dist, sparse, threshold, mask,
                                fill, self._scratch())
                pc.add_(buf.to(p.dtype), alpha=alpha)
        return run_other
