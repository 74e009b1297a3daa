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
     "seed0_lo", "seed0_hi", "alpha0", "seed1_lo", "seed1_hi", "alpha1"],
    ["*i32", "*i64", "*i64", "*i64", "*i64", "*fp32", "i32", "i32", "fp32", "i32", "i32", "fp32"])}
out = {}
for name, dt, nterms, decay, aligned in json.loads(sys.argv[1]):
    consts = dict(DTYPE=getattr(tl, dt), NTERMS=nterms, HAS_DECAY=decay, ALIGNED=aligned,
                  TILES=K.TILES_PER_PROGRAM, QUAD=K.QUAD, N_ROUNDS=K.N_ROUNDS, FAST=K.FAST_MATH)
    sig_all = dict(sig, **{k: "constexpr" for k in consts})
    k = triton.compile(ASTSource(fn=K.perturb_kernel, signature=sig_all, constexprs=consts),
                       target=GPUTarget("cuda", 90, 32), options={"num_warps": K.NUM_WARPS})
    ptx = k.asm["ptx"]
    out[name] = {op: ptx.count(op) for op in ("ld.global.v", "st.global.v", "lg2.approx", "sin.approx", "cos.approx")}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_kernel_compiles_for_sm90_with_vector_access_and_fast_math() -> None:
    import json

    variants = [["fp16_2terms_decay", "float16", 2, True, True], ["bf16_1term_unaligned", "bfloat16", 1, False, False],
                ["fp32_decay_only", "float32", 0, True, True]]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(variants)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    fp16 = got["fp16_2terms_decay"]
    assert fp16["ld.global.v"] > 0 and fp16["st.global.v"] > 0, fp16            # vector (8/16-byte) accesses
    assert fp16["lg2.approx"] > 0 and fp16["sin.approx"] > 0 and fp16["cos.approx"] > 0, fp16
    assert got["bf16_1term_unaligned"]["ld.global.v"] == 0, got                   # no alignment promise, no vectors
    assert got["fp32_decay_only"]["lg2.approx"] == 0, got                          # no terms: no random numbers
