"""The torch backend draws z for a large CPU parameter list on several threads, bit-identically."""

from __future__ import annotations

import threading

import pytest
import torch

from zolab.runners.kernels import TorchBackend
from zolab.runners.kernels.contract import CHECKS


class Recording(TorchBackend):
    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def _one(self, p, index, terms, decay, use_cache=True):   # where each parameter's z is drawn and added
        if terms:
            self.threads.add(threading.current_thread().name)
        return super()._one(p, index, terms, decay, use_cache)


@pytest.fixture
def four_threads(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)


def _params(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(300, 700), (5,), (1000,), (64, 64), (0,), (128, 513)]
    return [(torch.randn(s, generator=g) * 0.02).to(dtype) for s in shapes]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_threaded_apply_equals_serial_apply_bit_for_bit(dtype, four_threads):
    serial, threaded = Recording(), Recording()
    serial.parallel_min_elements = 1 << 62
    threaded.parallel_min_elements = 0
    a, b = _params(dtype), _params(dtype)
    decay = [0.01, 0.0, 0.02, 0.0, 0.0, 0.03]
    for backend, params in ((serial, a), (threaded, b)):
        backend.apply(params, [(7, 1e-3), (8, -2e-3), (7, 5e-4)], decay=decay)
        backend.apply(params, [(9, 1e-3)])
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert serial.threads == {threading.current_thread().name}
    assert any(name.startswith("zolab-z") for name in threaded.threads)


def test_small_lists_and_one_thread_stay_serial(monkeypatch):
    backend = Recording()
    backend.apply(_params(torch.float32), [(1, 1e-3)])             # 0.4M elements < 1M
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    backend.parallel_min_elements = 0
    backend.apply(_params(torch.float32), [(1, 1e-3)])
    assert backend.threads == {threading.current_thread().name}


def test_a_worker_error_reaches_the_caller(four_threads):
    backend = TorchBackend()
    backend.parallel_min_elements = 0
    with pytest.raises(TypeError, match="parameter 1: cannot perturb a torch.int64"):
        backend.apply([torch.zeros(10), torch.zeros(10, dtype=torch.int64)], [(1, 0.5)])


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_contract_through_the_thread_pool(check, four_threads):
    backend = TorchBackend()
    backend.parallel_min_elements = 0
    CHECKS[check](backend)


def test_trainable_parameters_are_perturbed_in_worker_threads(four_threads):
    """no_grad is per thread: the worker threads must enter it themselves for leaves that require grad."""
    backend = TorchBackend()
    backend.parallel_min_elements = 0
    params = [torch.nn.Parameter(p) for p in _params(torch.float32)]
    before = [p.detach().clone() for p in params]
    backend.apply(params, [(3, 1e-2)])
    assert all(not torch.equal(p, q) for p, q in zip(params, before) if p.numel())
    assert all(p.grad_fn is None for p in params)
