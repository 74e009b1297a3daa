"""Model loading: HF causal LMs (hub id, local dir, alias) and tiny random-init test models, plus peft.

``load_model(config) -> (model, tokenizer)``. Tiny models (``tiny-opt``, ``tiny-llama``,
``tiny-gpt2``, optionally sized like ``tiny-opt-h256-l4``) are built offline from a config and a
word-level tokenizer made in code, with weights drawn from ``config.seed``: their base weights
are identified by ``(name, seed)`` (:func:`base_identity`), which is what trajectory checkpoints
replay onto. Everything else goes through ``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from zolab.runners.config import RunConfig
from zolab.runners.errors import AssetError

TINY_FAMILIES = ("opt", "llama", "gpt2")
TINY_INIT_STD = 0.2
_TINY_RE = re.compile(r"^tiny-(?P<family>opt|llama|gpt2)(?:-h(?P<hidden>\d+))?(?:-l(?P<layers>\d+))?$")

#: words every tiny tokenizer knows: template words, label words and a small general vocabulary
_BASE_WORDS = ["it", "was", "the", "a", "an", "of", "and", "or", "to", "in", "is", "this", "that", "movie", "film", "plot", "story", "acting", "music", "scene", "really", "very", "quite", "so", "not", "too", "rather", "bit", "somewhat", "truly", "pretty", "just", "all", "in", "all", "overall", "good", "bad", "great", "terrible", "positive", "negative", "yes", "no", "true", "false", "maybe", "neither", "question", "answer", "review", "sentiment", "topic", "premise", "hypothesis", "sentence", "text", "label", ".", ",", "?", "!", ":", "'", '"', "-", "i", "you", "he", "she", "we", "they", "my", "your", "his", "her", "our", "their", "me", "him", "them", "us", "one", "two", "three", "four", "five", "ending", "actors", "director", "characters", "dialogue", "pacing", "script", "camera", "score", "cast", "screenplay", "felt", "seemed", "looked", "sounded", "watched", "saw", "liked", "hated", "found", "thought", "made", "had", "has", "have", "great", "excellent", "wonderful", "lovely", "superb", "fantastic", "brilliant", "delightful", "charming", "moving", "awful", "horrible", "poor", "dreadful", "boring", "dull", "weak", "tedious", "bland", "clumsy", "messy", "business", "entertainment", "politics", "sports", "tech", "world", "news"]


def tiny_vocab() -> list[str]:
    """The tiny tokenizer's vocabulary (specials first, then words in a fixed order)."""
    from zolab.runners.tasks.synthetic import VOCABULARY  # task words, so generated data has no <unk>

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    words: list[str] = []
    for w in list(_BASE_WORDS) + list(VOCABULARY):
        if w not in words:
            words.append(w)
    return specials + words


def tiny_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer built in code (no download): unknown words map to <unk>."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    vocab = {w: i for i, w in enumerate(tiny_vocab())}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        padding_side="right",
    )


def parse_tiny(name: str) -> tuple[str, int, int] | None:
    """``tiny-opt-h256-l4`` -> ("opt", 256, 4); None when ``name`` is not a tiny model name."""
    m = _TINY_RE.match(name)
    if not m:
        return None
    return m["family"], int(m["hidden"] or 64), int(m["layers"] or 2)


def tiny_config(family: str, hidden: int, layers: int, vocab_size: int) -> transformers.PretrainedConfig:
    """Small random-init configs of real architectures (dropout off: ZO needs deterministic forwards).

    Weights are drawn with std 0.2 instead of the usual 0.02: in a frozen random base (peft) the
    features must be large enough to carry the input's signal to the label logits, and in full
    fine-tuning the ZO noise must not swamp the initial weights after a few steps.
    """
    heads = max(1, hidden // 16)
    common: dict[str, Any] = dict(vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                  initializer_range=TINY_INIT_STD)
    if family == "opt":
        return transformers.OPTConfig(
            hidden_size=hidden, num_hidden_layers=layers, ffn_dim=4 * hidden, num_attention_heads=heads,
            word_embed_proj_dim=hidden, max_position_embeddings=256, dropout=0.0, attention_dropout=0.0,
            init_std=TINY_INIT_STD, **common,
        )
    if family == "llama":
        return transformers.LlamaConfig(
            hidden_size=hidden, num_hidden_layers=layers, intermediate_size=2 * hidden,
            num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=256,
            tie_word_embeddings=True, **common,
        )
    return transformers.GPT2Config(
        n_embd=hidden, n_layer=layers, n_head=heads, n_positions=256, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, **common,
    )


def _dtype_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    """transformers >= 4.56 takes ``dtype=``; older 4.x only ``torch_dtype=``."""
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def resolve_alias(name: str) -> str:
    """Model alias (``smollm2-135m``) -> local path, via :mod:`zolab.runners.assets` when present."""
    try:
        from zolab.runners.assets import resolve_model_alias
    except ImportError:
        return name
    resolved = resolve_model_alias(name)
    return str(resolved) if resolved else name


def base_identity(config: RunConfig) -> str:
    """What a trajectory replays onto: tiny models are (name, init seed), others the resolved id/path."""
    if parse_tiny(config.model):
        return f"{config.model}:init-seed={config.seed}:{config.dtype}"
    return f"{resolve_alias(config.model)}:{config.dtype}"


def _build_tiny(name: str, seed: int, dtype: torch.dtype) -> tuple[nn.Module, Any]:
    family, hidden, layers = parse_tiny(name)  # type: ignore[misc]
    tokenizer = tiny_tokenizer()
    cfg = tiny_config(family, hidden, layers, vocab_size=len(tokenizer))
    cfg._attn_implementation = "eager"  # forward-grad's jvp runs through every attention kernel
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    return model.to(dtype), tokenizer


def _load_pretrained(name: str, dtype: torch.dtype) -> tuple[nn.Module, Any]:
    source = resolve_alias(name)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        model = transformers.AutoModelForCausalLM.from_pretrained(source, **_dtype_kwargs(dtype))
    except (OSError, ValueError) as exc:
        where = "local directory" if Path(source).exists() else "hub id (offline? no cache?)"
        raise AssetError(f"cannot load model {name!r} as a {where}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return model, tokenizer


def wrap_peft(model: nn.Module, config: RunConfig) -> nn.Module:
    """LoRA on the attention query/value projections (peft's per-family defaults) or prefix tuning."""
    if config.peft == "none":
        return model
    import peft

    if config.peft == "lora":
        model_type = getattr(model.config, "model_type", "")
        mapping = getattr(peft.utils, "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING", {})
        targets = mapping.get(model_type, ["q_proj", "v_proj"])
        pc: Any = peft.LoraConfig(
            task_type=peft.TaskType.CAUSAL_LM, r=config.lora_r, lora_alpha=config.lora_alpha,
            lora_dropout=0.0, target_modules=targets,
        )
    else:
        pc = peft.PrefixTuningConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=config.prefix_tokens)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft calls transformers APIs deprecated in 5.x
        torch.manual_seed(config.seed)
        return peft.get_peft_model(model, pc)


def load_model(config: RunConfig, device: torch.device | str = "cpu") -> tuple[nn.Module, Any]:
    """(model in eval mode on ``device``, tokenizer). Only trainable parameters are optimised."""
    dtype = getattr(torch, config.dtype)
    if parse_tiny(config.model):
        model, tokenizer = _build_tiny(config.model, config.seed, dtype)
    else:
        model, tokenizer = _load_pretrained(config.model, dtype)
    model = wrap_peft(model, config)
    model.to(device)
    model.eval()  # no dropout: the two ZO forwards of a step must see the same function
    return model, tokenizer


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) pairs that the optimizer changes (all, or the peft adapter's)."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


class LabelProbe(nn.Module):
    """The linear-probing baseline's weights: the LM head restricted to the label-word rows.

    The MeZO paper's LP row trains a linear classifier on the frozen LM's last hidden state at
    the label position, with the label words' output-embedding rows as the classifier (its
    reference fits it with scikit-learn's LogisticRegression and writes the coefficients back into
    those rows of ``lm_head``). Here the rows are copied into their own parameters (so tied input
    embeddings stay frozen) and trained first-order on the same objective: cross-entropy over the
    label words' scores is softmax regression on those features. A forward hook on the head puts
    the probe's logits in the label-word columns; every other column, and every other weight of the
    model, is the frozen model's. At step 0 the probe equals the head, so the model is unchanged.
    """

    def __init__(self, head: nn.Module, token_ids: list[int]) -> None:
        super().__init__()
        weight = getattr(head, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            raise ValueError(f"linear-probe needs a linear output head, got {type(head).__name__}")
        ids = torch.tensor(sorted(set(token_ids)), dtype=torch.long, device=weight.device)
        self.register_buffer("ids", ids, persistent=False)
        self.weight = nn.Parameter(weight.detach()[ids].clone())
        bias = getattr(head, "bias", None)
        self.bias = nn.Parameter(bias.detach()[ids].clone()) if isinstance(bias, torch.Tensor) else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(hidden, self.weight, self.bias)

    def hook(self, _module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        """Forward hook of the head: the label-word columns come from the probe."""
        return output.index_copy(-1, self.ids, self(args[0]).to(output.dtype))


def attach_label_probe(model: nn.Module, token_ids: list[int]) -> LabelProbe:
    """Freeze every weight of ``model`` and make the label-word head rows its only trainable ones
    (``model.label_probe``); returns the probe."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise ValueError("linear-probe needs a model with an output head (get_output_embeddings() is None)")
    for p in model.parameters():
        p.requires_grad_(False)
    probe = LabelProbe(head, token_ids)
    model.add_module("label_probe", probe)
    head.register_forward_hook(probe.hook)
    return probe
