"""Small optimisation problems shared by the optimizer tests (not a test module)."""

from __future__ import annotations

import torch
from torch import nn

from zolab.runners.config import RunConfig
from zolab.runners.optim import build_optimizer


class Quadratic(nn.Module):
    """L(theta) = 0.5 (theta - c)^T A (theta - c), A positive definite; exact gradient known."""

    def __init__(self, d: int = 20, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        m = torch.randn(d, d, generator=g) / d**0.5
        self.register_buffer("A", m @ m.T + 0.5 * torch.eye(d))
        self.register_buffer("c", torch.randn(d, generator=g))
        self.theta = nn.Parameter(torch.zeros(d))

    def forward(self) -> torch.Tensor:
        r = self.theta - self.c
        return 0.5 * r @ self.A @ r

    def true_grad(self) -> torch.Tensor:
        return self.A @ (self.theta.detach() - self.c)


class Regression(nn.Module):
    """Least squares with a hidden linear teacher: a small problem every method should make progress on."""

    def __init__(self, d: int = 8, n: int = 64, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("X", torch.randn(n, d, generator=g))
        self.register_buffer("y", self.X @ torch.randn(d, 1, generator=g))
        self.lin = nn.Linear(d, 1)
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.bias.zero_()
        self.calls = 0

    def forward(self) -> torch.Tensor:
        self.calls += 1
        return ((self.lin(self.X) - self.y) ** 2).mean()


def optimizer_for(model: nn.Module, **cfg) -> torch.optim.Optimizer:
    config = RunConfig(**{"kernel": "torch", **cfg})
    return build_optimizer(config, list(model.named_parameters()), model=model)


def fo_closure(model: nn.Module, opt: torch.optim.Optimizer):
    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = model()
        loss.backward()
        return loss

    return closure
