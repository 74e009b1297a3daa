"""First-order baselines with backprop: torch's SGD and AdamW, marked so the runner builds a graph.

Their closure zeroes gradients, computes the loss with autograd on and calls ``backward()``
(``torch.optim`` calls it under ``enable_grad``). Full fine-tuning or through peft: they see only
the trainable parameters they are given.
"""

from __future__ import annotations

import torch


class FOSGD(torch.optim.SGD):
    """SGD with momentum (``fo-sgd``)."""

    needs_grad = True
    forwards_per_step = 1


class FOAdam(torch.optim.AdamW):
    """AdamW (``fo-adam``): Adam with decoupled weight decay, the usual LM fine-tuning optimizer."""

    needs_grad = True
    forwards_per_step = 1
