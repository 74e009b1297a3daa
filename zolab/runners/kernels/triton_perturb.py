"""The fused Philox perturbation kernel (Triton): one read-modify-write pass over many tensors.

Why a kernel: MeZO's step is bound by how many times it streams the weights through memory.
Regenerating z from a counter-based generator (Philox) inside the pass needs no z buffer and
lets one pass apply decay, the restore, the update and the next step's perturbation together.

Definition of z (the contract every pass relies on, independent of launch geometry):
element ``e`` of the parameter with index ``i`` at key ``k`` lies in tile ``e // TILE``, quarter
``(e % TILE) // QUAD`` and lane ``e % QUAD``; the four 32-bit Philox4x32-10 outputs at key ``k`` and
counter ``(i << 32) + (e // TILE) * QUAD + lane`` become four normals by Box-Muller
(``r = sqrt(-2 ln u1)``, ``theta = pi (2 u2 - 1)``; ``r cos theta``, ``r sin theta``, likewise for u3, u4),
taken at that quarter. One Philox call thus feeds four contiguous, coalesced vectors.

The law (:class:`~.law.ZLaw`) is applied to those four outputs, element by element:

* ``DIST`` 1 (rademacher): +1 when the top bit of the element's Philox output is set, else -1 (no transform);
* ``SCALED`` (sphere): the normal times the tensor's scale ``sqrt(k / sum z^2)`` from a table, which
  :func:`sumsq_kernel` computes by generating the same normals over the same program layout
  (fp32 per program, fp64 per tensor on the host: a fixed order, so every pass gets the same scale);
* ``SPARSE`` 1 (random): the element is touched when the top 16 bits of the Philox output at the
  mask key (seed xor MASK_SALT) and the same counter are >= the law's 16-bit threshold;
  ``SPARSE`` 2 (magnitude): bit ``e % 8`` of byte ``e // 8`` of the tensor's stored mask.
  Untouched elements are stored back unchanged (bit-identical, -0.0 included).

Cost: the pass must keep up with HBM (about 750e9 fp16 elements/s read+written on an H100), so the
transform uses the GPU's fast approximations (MUFU lg2/sin/cos: ~1e-6 absolute error, deterministic on
a given GPU); the numpy interpreter uses exact functions, so z differs in the last bits between the
two (never mixed within a run).
"""

from __future__ import annotations

import os

import triton
import triton.language as tl
from triton.language.extra.cuda import libdevice

#: fast transcendental approximations (lg2/sin/cos.approx) on the GPU; the interpreter has no libdevice
FAST_MATH: bool = os.environ.get("TRITON_INTERPRET") != "1"
N_ROUNDS: int = 10         # Philox4x32-10, as cuRAND and tl.randn
QUAD: int = 1024           # lanes per tile quarter (one Philox output vector)
TILE: int = 4 * QUAD       # elements per Philox tile
TILES_PER_PROGRAM: int = 16  # a program walks up to 16 tiles (64K elements) of one tensor
NUM_WARPS: int = 8          # launch geometry only (z does not depend on it): 88 registers, 8-byte accesses


@triton.jit
def _box_muller(u1, u2, FAST: tl.constexpr):
    """Two independent N(0, 1) from two U[0, 1) (u1 clamped away from 0 as in tl.randn)."""
    u1 = tl.maximum(1.0e-7, u1)
    theta = 3.141592653589793 * (2.0 * u2 - 1.0)     # in [-pi, pi): the approximations' accurate range
    if FAST:
        r = tl.sqrt(-2.0 * libdevice.fast_logf(u1))
        return r * libdevice.fast_cosf(theta), r * libdevice.fast_sinf(theta)
    else:
        r = tl.sqrt(-2.0 * tl.log(u1))
        return r * tl.cos(theta), r * tl.sin(theta)


@triton.jit
def _normal4(seed, counter, N_ROUNDS: tl.constexpr, FAST: tl.constexpr):
    i1, i2, i3, i4 = tl.randint4x(seed, counter, N_ROUNDS)
    n1, n2 = _box_muller(tl.uint_to_uniform_float(i1), tl.uint_to_uniform_float(i2), FAST)
    n3, n4 = _box_muller(tl.uint_to_uniform_float(i3), tl.uint_to_uniform_float(i4), FAST)
    return n1, n2, n3, n4


@triton.jit
def _sign(i):
    """+1.0 when the top bit of a 32-bit Philox output is set, else -1.0."""
    return tl.where((i.to(tl.uint32, bitcast=True) >> 31) != 0, 1.0, -1.0)


@triton.jit
def _signs4(seed, counter, N_ROUNDS: tl.constexpr):
    i1, i2, i3, i4 = tl.randint4x(seed, counter, N_ROUNDS)
    return _sign(i1), _sign(i2), _sign(i3), _sign(i4)


@triton.jit
def _z4(seed, counter, scale, DIST: tl.constexpr, SCALED: tl.constexpr, N_ROUNDS: tl.constexpr, FAST: tl.constexpr):
    """The four z vectors of one Philox call: normals (times the sphere scale) or signs."""
    if DIST == 1:
        z1, z2, z3, z4 = _signs4(seed, counter, N_ROUNDS)
    else:
        z1, z2, z3, z4 = _normal4(seed, counter, N_ROUNDS, FAST)
        if SCALED:
            z1 = z1 * scale
            z2 = z2 * scale
            z3 = z3 * scale
            z4 = z4 * scale
    return z1, z2, z3, z4


@triton.jit
def _key(i, threshold):
    return ((i.to(tl.uint32, bitcast=True) >> 16) & 0xFFFF).to(tl.int32) >= threshold


@triton.jit
def _keys4(mseed, counter, threshold, N_ROUNDS: tl.constexpr):
    """Random sparsity: which of the four vectors' elements are touched."""
    i1, i2, i3, i4 = tl.randint4x(mseed, counter, N_ROUNDS)
    return _key(i1, threshold), _key(i2, threshold), _key(i3, threshold), _key(i4, threshold)


@triton.jit
def _stored(mask_base, offs, numel, MASKED: tl.constexpr):
    """Magnitude sparsity: bit ``offs % 8`` of byte ``offs // 8`` of the stored mask."""
    if MASKED:
        byte = tl.load(mask_base + (offs >> 3), mask=offs < numel, other=0)
    else:
        byte = tl.load(mask_base + (offs >> 3))
    return ((byte.to(tl.int32) >> (offs & 7).to(tl.int32)) & 1) != 0


@triton.jit
def _stored4(mask_base, offs, numel, QUAD: tl.constexpr, MASKED: tl.constexpr):
    """:func:`_stored` for the four quarters of a tile."""
    return (_stored(mask_base, offs, numel, MASKED), _stored(mask_base, offs + QUAD, numel, MASKED),
            _stored(mask_base, offs + 2 * QUAD, numel, MASKED), _stored(mask_base, offs + 3 * QUAD, numel, MASKED))


@triton.jit
def _program(chunk_slot_ptr, chunk_start_ptr, slot_numel_ptr, slot_index_ptr):
    """This program's tensor slot, first element, the tensor's size and the counter's high word."""
    pid = tl.program_id(0)
    slot = tl.load(chunk_slot_ptr + pid)
    start = tl.load(chunk_start_ptr + pid)
    return pid, slot, start, tl.load(slot_numel_ptr + slot), tl.load(slot_index_ptr + slot) << 32


@triton.jit
def _load(base, offs, numel, MASKED: tl.constexpr):
    if MASKED:
        return tl.load(base + offs, mask=offs < numel, other=0.0)
    else:
        return tl.load(base + offs)


@triton.jit
def _update_store(base, offs, numel, x, keep, alpha0, z0, m0, alpha1, z1, m1,
                  DTYPE: tl.constexpr, NTERMS: tl.constexpr, HAS_DECAY: tl.constexpr, SPARSE: tl.constexpr,
                  MASKED: tl.constexpr):
    """x <- keep * x + alpha0 * z0 (+ alpha1 * z1), in fp32, rounded once to the storage dtype.

    Sparse: a term adds only where its mask (m0, m1) is set; elsewhere x passes through unchanged."""
    x = x.to(tl.float32)
    if HAS_DECAY:
        x = x * keep
    if NTERMS >= 1:
        if SPARSE != 0:
            x = tl.where(m0, x + alpha0 * z0, x)
        else:
            x = x + alpha0 * z0
    if NTERMS >= 2:
        if SPARSE != 0:
            x = tl.where(m1, x + alpha1 * z1, x)
        else:
            x = x + alpha1 * z1
    if MASKED:
        tl.store(base + offs, x.to(DTYPE), mask=offs < numel)
    else:
        tl.store(base + offs, x.to(DTYPE))


@triton.jit
def _tile(base, mask_base, tile_start, numel, keep, hi_word, seed0, alpha0, scale0, mseed0,
          seed1, alpha1, scale1, mseed1, threshold,
          DTYPE: tl.constexpr, NTERMS: tl.constexpr, HAS_DECAY: tl.constexpr, DIST: tl.constexpr,
          SCALED: tl.constexpr, SPARSE: tl.constexpr, MASKED: tl.constexpr,
          ALIGNED: tl.constexpr, QUAD: tl.constexpr, N_ROUNDS: tl.constexpr, FAST: tl.constexpr):
    """One Philox tile: 4 * QUAD elements from one Philox call per term (two with random sparsity).

    The four loads are issued before the Philox arithmetic so memory latency overlaps the compute."""
    lane = tl.arange(0, QUAD).to(tl.int64)
    offs = tile_start + lane
    if ALIGNED:  # tile_start is a multiple of 4 * QUAD: let the compiler use wide accesses
        offs = tl.max_contiguous(tl.multiple_of(offs, QUAD), QUAD)
    x0 = _load(base, offs, numel, MASKED)
    x1 = _load(base, offs + QUAD, numel, MASKED)
    x2 = _load(base, offs + 2 * QUAD, numel, MASKED)
    x3 = _load(base, offs + 3 * QUAD, numel, MASKED)
    counter = hi_word + tile_start // 4 + lane
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    b0 = 0.0
    b1 = 0.0
    b2 = 0.0
    b3 = 0.0
    if NTERMS >= 1:
        a0, a1, a2, a3 = _z4(seed0, counter, scale0, DIST, SCALED, N_ROUNDS, FAST)
    if NTERMS >= 2:
        b0, b1, b2, b3 = _z4(seed1, counter, scale1, DIST, SCALED, N_ROUNDS, FAST)
    # masks per term and quarter (unused unless SPARSE)
    ma0 = True
    ma1 = True
    ma2 = True
    ma3 = True
    mb0 = True
    mb1 = True
    mb2 = True
    mb3 = True
    if SPARSE == 1:
        if NTERMS >= 1:
            ma0, ma1, ma2, ma3 = _keys4(mseed0, counter, threshold, N_ROUNDS)
        if NTERMS >= 2:
            mb0, mb1, mb2, mb3 = _keys4(mseed1, counter, threshold, N_ROUNDS)
    if SPARSE == 2:
        ma0, ma1, ma2, ma3 = _stored4(mask_base, offs, numel, QUAD, MASKED)
        mb0 = ma0
        mb1 = ma1
        mb2 = ma2
        mb3 = ma3
    _update_store(base, offs, numel, x0, keep, alpha0, a0, ma0, alpha1, b0, mb0,
                  DTYPE, NTERMS, HAS_DECAY, SPARSE, MASKED)
    _update_store(base, offs + QUAD, numel, x1, keep, alpha0, a1, ma1, alpha1, b1, mb1,
                  DTYPE, NTERMS, HAS_DECAY, SPARSE, MASKED)
    _update_store(base, offs + 2 * QUAD, numel, x2, keep, alpha0, a2, ma2, alpha1, b2, mb2,
                  DTYPE, NTERMS, HAS_DECAY, SPARSE, MASKED)
    _update_store(base, offs + 3 * QUAD, numel, x3, keep, alpha0, a3, ma3, alpha1, b3, mb3,
                  DTYPE, NTERMS, HAS_DECAY, SPARSE, MASKED)


@triton.jit
def _seed(lo, hi):
    # 62-bit keys arrive as two 31-bit halves so the kernel signature never changes with the seed
    return (hi.to(tl.uint64) << 31) | lo.to(tl.uint64)


@triton.jit(do_not_specialize=["seed0_lo", "seed0_hi", "alpha0", "mseed0_lo", "mseed0_hi",
                               "seed1_lo", "seed1_hi", "alpha1", "mseed1_lo", "mseed1_hi", "threshold"])
def perturb_kernel(
    chunk_slot_ptr,    # int32 [programs]: which tensor this program works on
    chunk_start_ptr,   # int64 [programs]: first element (a multiple of TILE)
    slot_addr_ptr,     # int64 [tensors]: data pointer (16-byte aligned when ALIGNED)
    slot_numel_ptr,    # int64 [tensors]
    slot_index_ptr,    # int64 [tensors]: parameter index (the high word of the Philox counter)
    slot_keep_ptr,     # fp32  [tensors]: 1 - decay
    slot_mask_ptr,     # int64 [tensors]: address of the packed magnitude mask (SPARSE == 2)
    scale0_ptr,        # fp32  [tensors]: sphere scale of term 0 (SCALED)
    scale1_ptr,        # fp32  [tensors]: sphere scale of term 1
    seed0_lo, seed0_hi, alpha0, mseed0_lo, mseed0_hi,
    seed1_lo, seed1_hi, alpha1, mseed1_lo, mseed1_hi,
    threshold,         # random sparsity: 16-bit key threshold
    DTYPE: tl.constexpr,
    NTERMS: tl.constexpr,
    HAS_DECAY: tl.constexpr,
    DIST: tl.constexpr,
    SCALED: tl.constexpr,
    SPARSE: tl.constexpr,
    ALIGNED: tl.constexpr,
    TILES: tl.constexpr,
    QUAD: tl.constexpr,
    N_ROUNDS: tl.constexpr,
    FAST: tl.constexpr,
):
    _, slot, start, numel, hi_word = _program(chunk_slot_ptr, chunk_start_ptr, slot_numel_ptr, slot_index_ptr)
    base = tl.load(slot_addr_ptr + slot).to(tl.pointer_type(DTYPE))
    if ALIGNED:
        base = tl.multiple_of(base, 16)
    mask_base = base.to(tl.pointer_type(tl.uint8))     # unused unless SPARSE == 2
    if SPARSE == 2:
        mask_base = tl.load(slot_mask_ptr + slot).to(tl.pointer_type(tl.uint8))
    keep = 1.0
    if HAS_DECAY:
        keep = tl.load(slot_keep_ptr + slot)
    scale0 = 1.0
    scale1 = 1.0
    if SCALED:
        scale0 = tl.load(scale0_ptr + slot)
        scale1 = tl.load(scale1_ptr + slot)
    seed0 = _seed(seed0_lo, seed0_hi)
    seed1 = _seed(seed1_lo, seed1_hi)
    mseed0 = _seed(mseed0_lo, mseed0_hi)
    mseed1 = _seed(mseed1_lo, mseed1_hi)
    remaining = numel - start
    full = tl.minimum(remaining // (4 * QUAD), TILES)          # whole tiles: no masks, vector accesses
    for t in range(full):
        _tile(base, mask_base, start + t * (4 * QUAD), numel, keep, hi_word, seed0, alpha0, scale0, mseed0,
              seed1, alpha1, scale1, mseed1, threshold,
              DTYPE, NTERMS, HAS_DECAY, DIST, SCALED, SPARSE, False, ALIGNED, QUAD, N_ROUNDS, FAST)
    if full < TILES and full * (4 * QUAD) < remaining:        # the tensor's ragged last tile
        _tile(base, mask_base, start + full * (4 * QUAD), numel, keep, hi_word, seed0, alpha0, scale0, mseed0,
              seed1, alpha1, scale1, mseed1, threshold,
              DTYPE, NTERMS, HAS_DECAY, DIST, SCALED, SPARSE, True, ALIGNED, QUAD, N_ROUNDS, FAST)


@triton.jit
def _sumsq_quarter(z, offs, numel, m):
    touched = (offs < numel) & m
    return tl.sum(tl.where(touched, z * z, 0.0), axis=0), tl.sum(touched.to(tl.int32), axis=0)


@triton.jit(do_not_specialize=["seed_lo", "seed_hi", "mseed_lo", "mseed_hi", "threshold"])
def sumsq_kernel(
    chunk_slot_ptr, chunk_start_ptr, slot_numel_ptr, slot_index_ptr, slot_mask_ptr,
    seed_lo, seed_hi, mseed_lo, mseed_hi, threshold,
    out_sum_ptr,       # fp32  [programs]: sum of z^2 over the program's touched elements
    out_count_ptr,     # int32 [programs]: how many elements it touches
    SPARSE: tl.constexpr,
    TILES: tl.constexpr,
    QUAD: tl.constexpr,
    N_ROUNDS: tl.constexpr,
    FAST: tl.constexpr,
):
    """Sphere: per program, the sum of squares of the normals the perturb kernel would draw (no weights read)."""
    pid, slot, start, numel, hi_word = _program(chunk_slot_ptr, chunk_start_ptr, slot_numel_ptr, slot_index_ptr)
    mask_base = slot_mask_ptr.to(tl.pointer_type(tl.uint8))
    if SPARSE == 2:
        mask_base = tl.load(slot_mask_ptr + slot).to(tl.pointer_type(tl.uint8))
    seed = _seed(seed_lo, seed_hi)
    mseed = _seed(mseed_lo, mseed_hi)
    lane = tl.arange(0, QUAD).to(tl.int64)
    total = 0.0
    count = 0
    tiles = tl.minimum((numel - start + 4 * QUAD - 1) // (4 * QUAD), TILES)
    for t in range(tiles):
        tile_start = start + t * (4 * QUAD)
        offs = tile_start + lane
        counter = hi_word + tile_start // 4 + lane
        z0, z1, z2, z3 = _normal4(seed, counter, N_ROUNDS, FAST)
        m0 = offs >= 0
        m1 = m0
        m2 = m0
        m3 = m0
        if SPARSE == 1:
            m0, m1, m2, m3 = _keys4(mseed, counter, threshold, N_ROUNDS)
        if SPARSE == 2:
            m0, m1, m2, m3 = _stored4(mask_base, offs, numel, QUAD, True)
        s0, c0 = _sumsq_quarter(z0, offs, numel, m0)
        s1, c1 = _sumsq_quarter(z1, offs + QUAD, numel, m1)
        s2, c2 = _sumsq_quarter(z2, offs + 2 * QUAD, numel, m2)
        s3, c3 = _sumsq_quarter(z3, offs + 3 * QUAD, numel, m3)
        total += (s0 + s1) + (s2 + s3)
        count += (c0 + c1) + (c2 + c3)
    tl.store(out_sum_ptr + pid, total)
    tl.store(out_count_ptr + pid, count)
