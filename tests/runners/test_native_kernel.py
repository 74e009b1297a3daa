"""The native CPU kernel (``kernel: native``, what ``auto`` picks on CPU): its documented law, its
independence from threads and compiler flags, the fallback without a compiler, and resume across streams.

The contract every backend meets is in ``test_kernels_contract.py``; here, what is particular to this
one: z is the Philox4x32-10 / Box-Muller function of (seed, parameter index, element) that
``native_perturb.c`` documents, checked against an independent Python implementation (itself checked
on the Random123 known-answer vectors), so a change of the law cannot pass silently.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zolab.runners.kernels import get_backend, native_available
from zolab.runners.kernels.law import MASK_SALT, ZLaw

ROOT = Path(__file__).resolve().parents[2]
U32 = (1 << 32) - 1
M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85

usable, why = native_available()
pytestmark = pytest.mark.skipif(not usable and not os.environ.get("CI"), reason=f"native kernel: {why}")


def philox4x32_10(ctr: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """Philox4x32-10 (Salmon et al., SC'11) in plain Python integers."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for _ in range(10):
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & U32, p1 & U32, ((p0 >> 32) ^ c3 ^ k1) & U32, p0 & U32
        k0, k1 = (k0 + W0) & U32, (k1 + W1) & U32
    return c0, c1, c2, c3


def test_the_python_philox_gives_the_random123_known_answers():
    assert philox4x32_10((0, 0, 0, 0), (0, 0)) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    assert philox4x32_10((U32,) * 4, (U32, U32)) == (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)
    assert philox4x32_10((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0)) == (
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)


def _lib():
    from zolab.runners.kernels.native_build import load

    return load()


@pytest.mark.parametrize("n", [1024, 16 + 3, 7])   # whole vectors and the scalar tail
def test_the_kernels_philox_words_are_philox4x32_10(n):
    lib = _lib()
    out = (ctypes.c_uint32 * (4 * n))()
    key = 0x0123456789ABCDEF
    lib.zolab_philox(0xFFFFFF00, 77, key, n, out)          # counters wrap past 2**32 inside the block
    for lane in range(n):
        want = philox4x32_10(((0xFFFFFF00 + lane) & U32, 77, 0, 0), (key & U32, key >> 32))
        assert tuple(out[q * n + lane] for q in range(4)) == want, lane


def _box_muller(wa: int, wb: int) -> tuple[float, float]:
    u1 = (2 * (wa >> 9) + 1) / 2**24
    u2 = (wb >> 8) / 2**24
    r = math.sqrt(-2 * math.log(u1))
    return r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)


def _expected_z(seed: int, index: int, e: int) -> float:
    tile, quarter, lane = e // 4096, (e % 4096) // 1024, e % 1024
    words = philox4x32_10(((tile * 1024 + lane) & U32, index, 0, 0), (seed & U32, (seed >> 32) & U32))
    pair = _box_muller(words[quarter // 2 * 2], words[quarter // 2 * 2 + 1])
    return pair[quarter % 2]


def test_box_muller_polynomials_are_within_a_few_fp32_ulps_of_the_exact_transform():
    lib = _lib()
    g = torch.Generator().manual_seed(3)
    n = 200_000
    wa = torch.randint(0, 2**32, (n,), generator=g, dtype=torch.int64).to(torch.int32)  # (wraps: raw bits)
    wb = torch.randint(0, 2**32, (n,), generator=g, dtype=torch.int64).to(torch.int32)
    wa[:4] = torch.tensor([0, -1, 2**31 - 1, -(2**31)], dtype=torch.int32)            # u1 extremes
    wb[4:8] = torch.tensor([0, -1, 2**30, 2**31 - 256], dtype=torch.int32)            # angle 0, ~2pi, pi/2.. edges
    za, zb = torch.empty(n), torch.empty(n)
    lib.zolab_box_muller(wa.data_ptr(), wb.data_ptr(), n, za.data_ptr(), zb.data_ptr())
    ua, ub = wa.to(torch.int64) & U32, wb.to(torch.int64) & U32
    u1 = ((ua >> 9) * 2 + 1).double() / 2**24
    u2 = (ub >> 8).double() / 2**24
    r = torch.sqrt(-2 * torch.log(u1))
    ea, eb = r * torch.cos(2 * math.pi * u2), r * torch.sin(2 * math.pi * u2)
    err = torch.maximum((za.double() - ea).abs(), (zb.double() - eb).abs())
    assert err.max().item() < 2e-6, err.max().item()            # |z| <= 5.8: a few ulps of fp32
    assert za.abs().max().item() <= math.sqrt(-2 * math.log(2**-24)) + 1e-5   # the law's tail cut: 5.77


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_z_is_the_documented_function_of_seed_index_and_element(dtype):
    b = get_backend("native", "cpu")
    seed, index = (1 << 63) + 12345, 5
    z = b.z(torch.zeros(2 * 4096 + 777, dtype=dtype), seed, index)
    for e in [0, 1, 1023, 1024, 2047, 3071, 3072, 4095, 4096, 5000, 8191, 8192, 8192 + 776]:
        want = torch.tensor(_expected_z(seed, index, e), dtype=torch.float64)
        tol = 3e-6 if dtype != torch.bfloat16 else abs(want.item()) * 2**-8 + 3e-6
        assert abs(z[e].double().item() - want.item()) <= tol, (e, z[e].item(), want.item())


def test_rademacher_and_random_mask_read_the_documented_words():
    seed, index, n = 99, 2, 4096 + 100
    rad = get_backend("native", "cpu", ZLaw("rademacher")).z(torch.zeros(n), seed, index)
    sparse = get_backend("native", "cpu", ZLaw("gaussian", 0.75, "random"))
    zs = sparse.z(torch.zeros(n), seed, index)
    threshold = sparse.law.key_threshold
    for e in [0, 5, 1030, 2100, 4095, 4096 + 99]:
        tile, quarter, lane = e // 4096, (e % 4096) // 1024, e % 1024
        ctr = ((tile * 1024 + lane) & U32, index, 0, 0)
        w = philox4x32_10(ctr, (seed & U32, seed >> 32))[quarter]
        assert rad[e].item() == (1.0 if w >> 31 else -1.0), e
        mkey = (seed ^ MASK_SALT) & ((1 << 64) - 1)
        kept = (philox4x32_10(ctr, (mkey & U32, mkey >> 32))[quarter] >> 16) >= threshold
        assert (zs[e].item() != 0) == kept, e
        if kept:
            assert abs(zs[e].item() - _expected_z(seed, index, e)) < 3e-6


def test_results_do_not_depend_on_the_thread_count():
    params = [torch.randn(1_500_001) * 0.02, torch.randn(300, 7) * 0.02, torch.randn(600_000).to(torch.bfloat16)]
    outs = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            b = get_backend("native", "cpu", ZLaw("sphere"))      # sphere: the scale's sum order matters too
            work = [p.clone() for p in params]
            b.apply(work, [(7, 1e-3), (8, -2e-3)], decay=[1e-4, 0.0, 1e-4])
            outs.append(work)
    finally:
        torch.set_num_threads(before)
    for other in outs[1:]:
        assert all(torch.equal(x, y) for x, y in zip(outs[0], other))


def test_z_is_the_same_bits_in_the_portable_build(tmp_path):
    """The law uses exact IEEE arithmetic only: the AVX build and a plain -O3 build compute the same z."""
    from zolab.runners.kernels import native_build

    cc = native_build.compiler()
    portable = tmp_path / "portable.so"
    assert native_build._compile(cc, native_build.FLAG_SETS[-1], portable) is None
    other = native_build._declare(ctypes.CDLL(str(portable)))
    fast = _lib()
    n = 3 * 4096 + 513
    scratch = ctypes.create_string_buffer(int(fast.zolab_scratch_bytes()))
    for dist in (0, 1):
        a, b = torch.empty(n), torch.empty(n)
        for lib, out in ((fast, a), (other, b)):
            lib.zolab_z_f32(out.data_ptr(), n, 0, 4, 9, 2**40 + 3, 5, 1.0, dist, 0, 0, None, 0.0, scratch)
        assert torch.equal(a.view(torch.int32), b.view(torch.int32)), dist


def test_auto_is_native_on_cpu_and_falls_back_to_torch_without_a_compiler(tmp_path):
    assert get_backend("auto", "cpu").name == "native"
    code = (
        "import json\n"
        "from zolab.runners.kernels import get_backend, NativeKernelUnavailable\n"
        "auto = get_backend('auto', 'cpu').name\n"
        "try:\n    get_backend('native', 'cpu'); msg = ''\n"
        "except NativeKernelUnavailable as exc:\n    msg = str(exc)\n"
        "print(json.dumps([auto, msg]))\n"
    )
    env = dict(os.environ, CC=str(tmp_path / "no-such-cc"), ZOLAB_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    auto, msg = json.loads(proc.stdout.splitlines()[-1])
    assert auto == "torch"
    assert "could not be built" in msg and "no-such-cc" in msg and "kernel 'torch'" in msg


def test_a_result_says_which_stream_drew_its_z():
    from zolab.runners.config import RunConfig
    from zolab.runners.train import run

    cfg = RunConfig(model="tiny-opt-h16-l1", train_size=16, dev_size=8, test_size=8, batch_size=4, steps=2,
                    eval_every=100, checkpoint_every=100, device="cpu")
    assert run(cfg).extra["z_stream"] == "native"
    assert run(cfg.replace(kernel="torch")).extra["z_stream"] == "torch"
    assert "z_stream" not in run(cfg.replace(method="fo-sgd")).extra


def test_native_refuses_cuda_devices_with_a_clear_error():
    with pytest.raises(RuntimeError, match="kernel 'native' runs on CPU tensors"):
        get_backend("native", "cuda")


# -- resume across streams -------------------------------------------------------------------------
def _torch_checkpoint(steps: int = 3):
    from tests.runners.method_reference import Problem, as_float, config
    from zolab.runners import checkpoint as ckpts
    from zolab.runners.optim import build_optimizer
    from zolab.runners.reporter import Checkpoint

    cfg = config("mezo", steps)                                  # kernel 'torch' (the reference's stream)
    live = Problem()
    opt = build_optimizer(cfg, live.named, model=live.model)
    for _ in range(steps):
        as_float(opt.step(live.closure(opt)))
    ckpt = Checkpoint.from_dict(json.loads(json.dumps(ckpts.zo_checkpoint(opt, "base").to_dict())))
    return cfg, live, ckpt


def _restore(cfg, ckpt, kernel: str):
    from tests.runners.method_reference import Problem
    from zolab.runners import checkpoint as ckpts
    from zolab.runners.optim import build_optimizer

    fresh = Problem()
    opt = build_optimizer(cfg.replace(kernel=kernel), fresh.named, model=fresh.model)
    ckpts.replay(opt, ckpt, "base", kernel=kernel)
    return fresh, opt


def test_a_checkpoint_resumes_on_the_stream_it_was_recorded_with():
    cfg, live, ckpt = _torch_checkpoint()
    assert ckpt.optimizer_state["z_stream"] == "torch"
    fresh, opt = _restore(cfg, ckpt, "auto")                    # auto would pick native: the checkpoint wins
    assert opt.z_stream == "torch"
    assert all(torch.equal(a, b) for a, b in zip(live.weights().values(), fresh.weights().values()))
    with pytest.raises(ValueError, match="drew z from kernel 'torch'.*resume with kernel 'torch'"):
        _restore(cfg, ckpt, "native")


def test_a_checkpoint_from_before_streams_were_recorded_never_resumes_on_native():
    cfg, live, ckpt = _torch_checkpoint()
    del ckpt.optimizer_state["z_stream"]
    fresh, opt = _restore(cfg, ckpt, "auto")
    assert opt.z_stream == "torch"
    assert all(torch.equal(a, b) for a, b in zip(live.weights().values(), fresh.weights().values()))
