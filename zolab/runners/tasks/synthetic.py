"""Generated tasks with a learnable signal (SYNTHETIC data, for tests and quick demos only).

``synthetic-sentiment``: short "reviews" made of neutral filler words plus exactly one sentiment
word; the label is that word's polarity (0 = negative, 1 = positive). The label words (" bad",
" good") never occur in the inputs, so a model has to learn the mapping rather than copy a token.
"""

from __future__ import annotations

import random
from typing import Any

from zolab.runners.tasks.base import Example

POSITIVE = ("great", "excellent", "wonderful", "lovely", "superb", "fantastic")
NEGATIVE = ("awful", "horrible", "poor", "dreadful", "boring", "dull")
SUBJECTS = ("the movie", "the film", "the plot", "the acting", "the music", "the ending", "the script",
            "the cast")
FILLERS = ("really", "very", "quite", "so", "rather", "truly", "pretty", "just", "felt", "seemed",
           "looked", "overall", "and", "the", "story", "scene", "camera", "score")

#: every word the generator can emit (the tiny tokenizer includes them all)
VOCABULARY = tuple(sorted({w for phrase in POSITIVE + NEGATIVE + SUBJECTS + FILLERS for w in phrase.split()}))


def sentiment_examples(options: dict[str, Any], seed: int) -> list[Example]:
    """``options``: ``n`` (pool size, default 2000), ``fillers`` (max filler words, default 3)."""
    n = int(options.get("n", 2000))
    max_fill = int(options.get("fillers", 3))
    rng = random.Random(f"synthetic-sentiment:{seed}")
    out: list[Example] = []
    for i in range(n):
        label = i % 2
        word = rng.choice(POSITIVE if label else NEGATIVE)
        words = rng.choice(SUBJECTS).split() + ["was"]
        words += [rng.choice(FILLERS) for _ in range(rng.randint(0, max_fill))]
        words.insert(rng.randint(len(words) - 1, len(words)), word)
        out.append(Example(fields={"text": " ".join(words)}, label=label))
    rng.shuffle(out)
    return out
