"""In-context learning prompts (``method: icl``), as the MeZO reference builds them.

Each of the k demonstrations is a training example *verbalized*: the task's template filled with
its fields, followed by the label word of its gold label (``"{text} It was" + " great"``). The
demonstrations are joined with a blank line (MeZO's ``train_sep = "\\n\\n"``) and the eval
example's prompt comes last, where the label word is scored::

    demo_1 + label_1 + "\\n\\n" + ... + demo_k + label_k + "\\n\\n" + template(eval example)

Which demonstrations: a permutation of the training split drawn from the run's seed, the first k
whose filled template differs from the eval example's (so an eval example is never its own
demonstration, even when the pool repeats a text); the same k for every eval example unless one of
them would be the example itself. Truncation is the runner's usual rule for prompts: the tokens
are cut from the *left* (keeping a leading BOS), so the eval example and the latest
demonstrations survive and the earliest demonstration loses its beginning, as in the reference.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from zolab.runners.tasks.base import Example

SEPARATOR = "\n\n"


def demo_order(n: int, seed: int) -> list[int]:
    """The seeded order in which training examples are offered as demonstrations."""
    order = list(range(n))
    random.Random(f"icl-demos:{seed}").shuffle(order)
    return order


def verbalize(template: str, label_words: Sequence[str], ex: Example) -> str:
    """A demonstration: the filled template and the gold label word."""
    return template.format(**ex.fields) + label_words[ex.label]


def pick_demonstrations(train: Sequence[Example], order: Sequence[int], k: int, template: str,
                        ex: Example) -> list[Example]:
    """The first ``k`` training examples in ``order`` whose prompt is not ``ex``'s own."""
    own = template.format(**ex.fields)
    out: list[Example] = []
    for i in order:
        if len(out) == k:
            break
        if template.format(**train[i].fields) != own:
            out.append(train[i])
    if len(out) < k:
        raise ValueError(f"icl_demos={k} but the training split has only {len(out)} usable demonstrations "
                         f"({len(train)} examples); lower icl_demos or raise train_size / k_shot")
    return out


def icl_text(template: str, label_words: Sequence[str], demos: Sequence[Example], ex: Example) -> str:
    """The whole prompt: demonstrations, then the eval example's filled template."""
    parts = [verbalize(template, label_words, d) for d in demos]
    return SEPARATOR.join([*parts, template.format(**ex.fields)])
