"""The Triton kernel compiles for a Hopper GPU (sm_90) without one, and the code is the intended one.

The interpreter tests run the kernel's Python with numpy; this is the other half: the real compiler
path (types, constexpr branches, pointer casts) down to PTX, plus two properties of the PTX that
decide its speed: vector (8- or 16-byte) accesses for aligned tensors, and the fast MUFU approximations
(lg2/sin/cos.approx) in the Box-Muller transform rather than libdevice's slow exact functions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import json, sys
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from zolab.runners.kernels import triton_perturb as K

sig = {n: t for n, t in zip(
    ["chunk_slot_ptr", "chunk_start_ptr", "slot_addr_ptr", "slot_numel_ptr", "slot_index_ptr", "slot_keep_ptr",
     "slot_mask_ptr", "scale0_ptr", "scale1_ptr",
     "seed0_lo", "seed0_hi", "alpha0", "mseed0_lo", "mseed0_hi", "seed1_lo", "seed1_hi", "alpha1",
     "mseed1_lo", "mseed1_hi", "threshold"],
    ["*i32", "*i64", "*i64", "*i64", "*i64", "*fp32", "*i64", "*fp32", "*fp32",
     "i32", "i32", "fp32", "i32", "i32", "i32", "i32", "fp32", "i32", "i32", "i32"])}
sumsq_sig = {n: t for n, t in zip(
    ["chunk_slot_ptr", "chunk_start_ptr", "slot_numel_ptr", "slot_index_ptr", "slot_mask_ptr",
     "seed_lo", "seed_hi", "mseed_lo", "mseed_hi", "threshold", "out_sum_ptr", "out_count_ptr"],
    ["*i32", "*i64", "*i64", "*i64", "*i64", "i32", "i32", "i32", "i32", "i32", "*fp32", "*i32"])}
target = GPUTarget("cuda", 90, 32)
out = {}
for name, dt, nterms, decay, aligned, dist, scaled, sparse in json.loads(sys.argv[1]):
    consts = dict(DTYPE=getattr(tl, dt), NTERMS=nterms, HAS_DECAY=decay, DIST=dist, SCALED=scaled, SPARSE=sparse,
                  ALIGNED=aligned, TILES=K.TILES_PER_PROGRAM, QUAD=K.QUAD, N_ROUNDS=K.N_ROUNDS, FAST=K.FAST_MATH)
    sig_all = dict(sig, **{k: "constexpr" for k in consts})
    k = triton.compile(ASTSource(fn=K.perturb_kernel, signature=sig_all, constexprs=consts),
                       target=target, options={"num_warps": K.NUM_WARPS})
    ptx = k.asm["ptx"]
    out[name] = {op: ptx.count(op) for op in ("ld.global.v", "st.global.v", "lg2.approx", "sin.approx", "cos.approx")}
for sparse in (0, 1, 2):
    consts = dict(SPARSE=sparse, TILES=K.TILES_PER_PROGRAM, QUAD=K.QUAD, N_ROUNDS=K.N_ROUNDS, FAST=K.FAST_MATH)
    k = triton.compile(ASTSource(fn=K.sumsq_kernel, signature=dict(sumsq_sig, **{c: "constexpr" for c in consts}),
                                 constexprs=consts), target=target, options={"num_warps": K.NUM_WARPS})
    out[f"sumsq_sparse{sparse}"] = {"lg2.approx": k.asm["ptx"].count("lg2.approx")}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_kernel_compiles_for_sm90_with_vector_access_and_fast_math() -> None:
    import json

    # name, dtype, terms, decay, aligned, DIST (0 normal, 1 rademacher), SCALED (sphere), SPARSE (0, 1 random, 2 stored)
    variants = [["fp16_2terms_decay", "float16", 2, True, True, 0, False, 0],
                ["bf16_1term_unaligned", "bfloat16", 1, False, False, 0, False, 0],
                ["fp32_decay_only", "float32", 0, True, True, 0, False, 0],
                ["fp16_rademacher", "float16", 2, False, True, 1, False, 0],
                ["bf16_sphere_random_sparse", "bfloat16", 2, True, True, 0, True, 1],
                ["fp32_rademacher_magnitude", "float32", 1, False, True, 1, False, 2]]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(variants)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    fp16 = got["fp16_2terms_decay"]
    assert fp16["ld.global.v"] > 0 and fp16["st.global.v"] > 0, fp16            # vector (8/16-byte) accesses
    assert fp16["lg2.approx"] > 0 and fp16["sin.approx"] > 0 and fp16["cos.approx"] > 0, fp16
    assert got["bf16_1term_unaligned"]["ld.global.v"] == 0, got                   # no alignment promise, no vectors
    assert got["fp32_decay_only"]["lg2.approx"] == 0, got                          # no terms: no random numbers
    rad = got["fp16_rademacher"]
    assert rad["lg2.approx"] == 0 and rad["sin.approx"] == 0 and rad["st.global.v"] > 0, rad   # signs only
    assert got["bf16_sphere_random_sparse"]["lg2.approx"] > 0, got
    assert got["fp32_rademacher_magnitude"]["lg2.approx"] == 0, got
    assert all(got[f"sumsq_sparse{s}"]["lg2.approx"] > 0 for s in (0, 1, 2)), got
