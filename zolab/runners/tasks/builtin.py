"""Built-in tasks: the MeZO paper's GLUE/SuperGLUE tasks (HF datasets), local files, synthetic.

Templates and label words follow the MeZO paper (Malladi et al. 2023, Table 14) for causal LMs.
Multi-field tasks put the fields into the template (``{premise}``, ``{question}``, ...); with
``prompt: false`` the runner uses ``raw_template``, which joins the same fields without any
task-aligning words.
"""

from __future__ import annotations

from zolab.runners.tasks.base import TASKS, Task
from zolab.runners.tasks.loaders import hf_loader, load_csv, load_jsonl
from zolab.runners.tasks.synthetic import sentiment_examples

BUILTIN = [
    Task(
        name="sst2", loader=hf_loader("glue", "sst2", {"text": "sentence"}),
        template="{text} It was", label_words=[" terrible", " great"],
        description="SST-2 sentiment (GLUE, HF datasets).",
    ),
    Task(
        name="rte", loader=hf_loader("super_glue", "rte", {"text": "premise", "hypothesis": "hypothesis"}),
        template='{text}\nDoes this mean that "{hypothesis}" is true? Yes or No?\n',
        raw_template="{text} {hypothesis}", label_words=["Yes", "No"],
        description="RTE entailment (SuperGLUE): 0 = entailment.",
    ),
    Task(
        name="cb", loader=hf_loader("super_glue", "cb", {"text": "premise", "hypothesis": "hypothesis"}),
        template='Suppose {text} Can we infer that "{hypothesis}"? Yes, No, or Maybe?\n',
        raw_template="{text} {hypothesis}", label_words=["Yes", "No", "Maybe"],
        description="CommitmentBank (SuperGLUE): entailment / contradiction / neutral.",
    ),
    Task(
        name="boolq", loader=hf_loader("super_glue", "boolq", {"text": "passage", "question": "question"}),
        template="{text} {question}?", raw_template="{text} {question}", label_words=[" No", " Yes"],
        description="BoolQ (SuperGLUE): 1 = true.",
    ),
    Task(
        name="wic",
        loader=hf_loader("super_glue", "wic", {"text": "sentence1", "sentence2": "sentence2", "word": "word"}),
        template="Does the word \"{word}\" have the same meaning in these two sentences? Yes, No?\n"
                 "{text}\n{sentence2}\n",
        raw_template="{text} {sentence2} {word}", label_words=["No", "Yes"],
        description="Words in Context (SuperGLUE): 1 = same meaning.",
    ),
    Task(
        name="jsonl", loader=load_jsonl, template="{text} It was", label_words=[" bad", " good"],
        description="Local JSON lines; task_options: path, text_field, label_field, labels, label_words, template.",
    ),
    Task(
        name="csv", loader=load_csv, template="{text} It was", label_words=[" bad", " good"],
        description="Local CSV with a header; task_options as for jsonl plus delimiter.",
    ),
    Task(
        name="synthetic-sentiment", loader=sentiment_examples, template="{text} It was",
        label_words=[" bad", " good"], synthetic=True,
        description="SYNTHETIC generated reviews with one sentiment word (tests and demos).",
    ),
]

for _task in BUILTIN:
    if _task.name not in TASKS:
        TASKS.register(_task)
