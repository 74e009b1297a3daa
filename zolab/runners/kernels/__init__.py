"""Perturbation backends: how ZO optimizers add ``alpha * z`` to the weights in place.

z is never stored: it is a pure function of (step seed, parameter index) and the backend's
:class:`~.law.ZLaw` (distribution, sparsity), regenerated bit-identically in every pass. Three
backends share one interface:

* ``native`` (:mod:`.native_backend`): a compiled Philox kernel for CPU tensors, built with the
  system C compiler on first use (:mod:`.native_build`); three to four times faster than torch's
  generator, which made z, not the forwards, the cost of a CPU step;
* ``torch`` (:mod:`.torch_backend`): plain torch, the fallback where no compiler is found;
* ``triton`` (:mod:`.triton_backend`): a fused Philox kernel for CUDA (issue: GPU speed).

Each backend has its own stream (z for a seed differs between them, the law is the same), so a
checkpoint records which one drew its z and a resume uses that one
(:func:`zolab.runners.checkpoint.match_z_stream`).
:func:`get_backend` picks one from ``RunConfig.kernel``: ``auto`` = triton on CUDA when importable,
native on CPU when it builds, else torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import torch

from zolab.runners.kernels.law import ZLaw
from zolab.runners.kernels.native_build import NativeKernelUnavailable
from zolab.runners.kernels.native_build import available as native_available
from zolab.runners.kernels.torch_backend import TorchBackend


class PerturbationBackend(Protocol):
    """``apply`` computes, for every parameter i, ``p_i <- (1 - decay_i) * p_i + sum_k alpha_k * z(seed_k, i)``.

    z follows the backend's ``law``; :meth:`prepare` computes what the law needs from the base
    weights (the magnitude masks) and must see the same parameter list, in the same order, as
    every later ``apply``.
    """

    name: str
    law: ZLaw

    def with_law(self, law: ZLaw) -> PerturbationBackend:
        """The same kind of backend drawing z from ``law``."""
        ...

    def prepare(self, params: Sequence[torch.Tensor]) -> None: ...

    def held_bytes(self) -> int:
        """Memory held between calls (masks, caches), for the method's memory figure."""
        ...

    def z(self, p: torch.Tensor, seed: int, index: int) -> torch.Tensor:
        """The direction for parameter ``index`` at ``seed`` (same shape/dtype/device as ``p``)."""
        ...

    def apply(
        self,
        params: Sequence[torch.Tensor],
        terms: Sequence[tuple[int, float]],
        decay: Sequence[float] | None = None,
    ) -> None: ...


def get_backend(kind: str = "auto", device: torch.device | str = "cpu", law: ZLaw | None = None
                ) -> PerturbationBackend:
    """Backend for ``kind`` (auto|native|triton|torch) on ``device`` drawing from ``law`` (default: dense
    Gaussian); clear error if native or triton is asked for but unusable."""
    law = law or ZLaw()
    dev = torch.device(device)
    if kind == "torch":
        return TorchBackend(law)
    if kind == "native" or (kind == "auto" and dev.type != "cuda"):
        if dev.type != "cpu":
            raise RuntimeError(f"kernel 'native' runs on CPU tensors, not {dev}; use 'auto' or 'triton' on CUDA")
        from zolab.runners.kernels.native_backend import NativeBackend  # noqa: WPS433 (built on first use)

        try:
            return NativeBackend(law)
        except NativeKernelUnavailable:
            if kind == "native":
                raise
            return TorchBackend(law)
    try:
        from zolab.runners.kernels.triton_backend import TritonBackend  # noqa: WPS433 (optional dependency)
    except ImportError as exc:
        if kind == "triton":
            raise RuntimeError(f"kernel 'triton' requested but triton is not usable here: {exc}") from exc
        return TorchBackend(law)
    if dev.type != "cuda" and kind == "triton" and os.environ.get("TRITON_INTERPRET") != "1":
        # (TRITON_INTERPRET=1 runs the kernel on CPU tensors with numpy: slow, but how CPU tests check it)
        raise RuntimeError("kernel 'triton' needs a CUDA device; use kernel 'torch' (or 'auto') on CPU")
    return TritonBackend(law=law)


__all__ = ["NativeKernelUnavailable", "PerturbationBackend", "TorchBackend", "ZLaw", "get_backend",
           "native_available"]
