"""Which backend ``get_backend`` picks for RunConfig.kernel (auto|native|triton|torch) and device."""

from __future__ import annotations

import sys

import pytest

from zolab.runners.kernels import TorchBackend, get_backend

triton = pytest.importorskip("triton")


def test_auto_is_native_on_cpu_and_triton_on_cuda() -> None:
    from zolab.runners.kernels.triton_backend import TritonBackend

    assert get_backend("auto", "cpu").name == "native"       # (torch where it cannot be built: test_native_kernel)
    assert isinstance(get_backend("torch", "cpu"), TorchBackend)
    assert isinstance(get_backend("auto", "cuda"), TritonBackend)   # picking touches no GPU
    assert isinstance(get_backend("torch", "cuda:0"), TorchBackend)
    assert get_backend("triton", "cuda").name == "triton"


def test_triton_on_cpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        get_backend("triton", "cpu")


def test_triton_on_cpu_allowed_under_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert get_backend("triton", "cpu").name == "triton"


def test_missing_triton_falls_back_or_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zolab.runners.kernels.triton_backend", None)  # import now raises
    assert isinstance(get_backend("auto", "cuda"), TorchBackend)
    with pytest.raises(RuntimeError, match="not usable"):
        get_backend("triton", "cuda")


def test_triton_backend_rejects_unsupported_tensors() -> None:
    import torch

    from zolab.runners.kernels.triton_backend import TritonBackend

    b = TritonBackend()
    with pytest.raises(TypeError, match="parameter 1: dtype torch.float64"):
        b.apply([torch.zeros(3), torch.zeros(3, dtype=torch.float64)], [(1, 1.0)])
    with pytest.raises(ValueError, match="parameter 0: .*contiguous"):
        b.apply([torch.zeros(4, 4).t()], [(1, 1.0)])
    huge = torch.empty(1 << 34, dtype=torch.float16, device="meta")  # no memory behind it: only the size matters
    with pytest.raises(ValueError, match="parameter 1: 17179869184 elements exceed"):
        b.apply([torch.zeros(3), huge], [(1, 1.0)])
