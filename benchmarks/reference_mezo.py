"""The reference-style MeZO step the zolab kernels are measured against.

Copied (functions only, unchanged maths) from the project's GPU anchor measurement,
``shared/bench/mezo_gpu_anchor.py`` (outside this repository), which mimics the MeZO paper's
reference trainer (Malladi et al. 2023, github.com/princeton-nlp/MeZO): four Gaussian passes per
step, one ``torch.normal`` per parameter and out-of-place ``p.data = p.data + ...`` updates.
Copied so the benchmark is self-contained on a GPU machine that only has the repository.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

SIZES = {
    "opt-125m": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "ffn_dim": 3072},
    "opt-1.3b": {"hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 32, "ffn_dim": 8192},
    "opt-6.7b": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "ffn_dim": 16384},
    "opt-13b": {"hidden_size": 5120, "num_hidden_layers": 40, "num_attention_heads": 40, "ffn_dim": 20480},
}


def ref_perturb(params: Sequence[torch.Tensor], seed: int, scale: float, eps: float = 1e-3) -> None:
    torch.manual_seed(seed)
    for p in params:
        z = torch.normal(mean=0, std=1, size=p.data.size(), device=p.data.device, dtype=p.data.dtype)
        p.data = p.data + scale * z * eps


def ref_step(loss: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], lr: float = 1e-7, eps: float = 1e-3) -> float:
    """One reference MeZO step: +eps, -2eps, +eps (restore), then the update: four passes. Returns g."""
    seed = torch.randint(0, 10**9, (1,)).item()
    with torch.no_grad():
        ref_perturb(params, seed, 1, eps)
        l1 = loss()
        ref_perturb(params, seed, -2, eps)
        l2 = loss()
        ref_perturb(params, seed, 1, eps)
        g = ((l1 - l2) / (2 * eps)).item()
        torch.manual_seed(seed)
        for p in params:
            z = torch.normal(mean=0, std=1, size=p.data.size(), device=p.data.device, dtype=p.data.dtype)
            p.data = p.data - lr * g * z
    return g


def inplace_step(loss: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], lr: float = 1e-7, eps: float = 1e-3) -> float:
    """The anchor's plain in-place variant: restore fused with the update, three passes."""
    dev = params[0].device
    seed = torch.randint(0, 10**9, (1,)).item()
    gen = torch.Generator(device=dev)

    def walk(alpha: float) -> None:
        gen.manual_seed(seed)
        for p in params:
            z = torch.randn(p.shape, generator=gen, device=dev, dtype=p.dtype)
            p.add_(z, alpha=alpha)

    with torch.no_grad():
        walk(eps)
        l1 = loss()
        walk(-2 * eps)
        l2 = loss()
        g = ((l1 - l2) / (2 * eps)).item()
        walk(eps - lr * g)
    return g
