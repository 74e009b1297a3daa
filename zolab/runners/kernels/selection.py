"""Which parameters a block-wise ZO run perturbs and updates (``RunConfig.perturb_layers``).

A parameter belongs to transformer layer ``i`` when its name contains the block container
followed by ``.i.``: ``decoder.layers.i.`` (OPT), ``layers.i.`` (Llama, Mistral, Qwen, GPT-NeoX),
``h.i.`` (GPT-2, GPT-J, BLOOM, Falcon); peft prefixes (``base_model.model.``) and adapter
suffixes (``lora_A.default.weight``) do not matter. Parameters outside every layer (embeddings,
the final norm, the LM head) are not in any block, so a block-wise run leaves them frozen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from torch import nn

_LAYER = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)\.")


def layer_of(name: str) -> int | None:
    """The transformer layer index a parameter name belongs to (None outside the layers)."""
    m = _LAYER.search(name)
    return int(m.group(1)) if m else None


def layer_count(model: nn.Module | None, names: Iterable[str] = ()) -> int:
    """Transformer layers of ``model`` (its config's ``num_hidden_layers``), else inferred from the names."""
    config = getattr(model, "config", None)
    n = getattr(config, "num_hidden_layers", None)
    if isinstance(n, int) and n > 0:
        return n
    if model is not None:
        names = [name for name, _ in model.named_parameters()]
    found = [i for i in map(layer_of, names) if i is not None]
    return max(found) + 1 if found else 0


def select_layers(named_params: Sequence[tuple[str, nn.Parameter]], layers: Sequence[int], n_layers: int
                  ) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs of the listed layers; a clear error for an index out of range."""
    wanted = sorted({int(i) for i in layers})
    bad = [i for i in wanted if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"perturb_layers {bad} out of range: the model has {n_layers} layers (indices 0..{n_layers - 1})")
    keep = set(wanted)
    chosen = [(n, p) for n, p in named_params if layer_of(n) in keep]
    if not chosen:
        raise ValueError(f"perturb_layers {wanted}: none of the {len(named_params)} trainable parameters lies in "
                         "those layers (a prefix-tuning or head-only run has no per-layer weights)")
    return chosen
