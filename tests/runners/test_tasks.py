"""Task registry, local loaders (errors name file and line), HF loaders offline, sampling, label scoring."""

from __future__ import annotations

import json

import pytest
import torch

from zolab.runners.config import RunConfig
from zolab.runners.errors import AssetError
from zolab.runners.models import load_model
from zolab.runners.objectives import LabelScorer, get_objective
from zolab.runners.tasks import get_task, task_names
from zolab.runners.tasks.base import Example, Task
from zolab.runners.tasks.loaders import sample_splits


def test_builtin_tasks_register_with_paper_templates():
    names = set(task_names())
    assert {"sst2", "rte", "cb", "boolq", "wic", "jsonl", "csv", "synthetic-sentiment"} <= names
    sst2 = get_task("sst2")
    assert sst2.template.format(text="A gem.") == "A gem. It was"
    assert sst2.label_words == [" terrible", " great"]
    assert get_task("synthetic-sentiment").synthetic
    with pytest.raises(KeyError, match="did you mean"):
        get_task("sst-2")


@pytest.mark.parametrize("name", ["sst2", "rte", "cb", "boolq", "wic"])
def test_hf_tasks_fail_clearly_offline(name, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(AssetError, match="datasets|offline"):
        get_task(name).loader({}, 0)


def test_jsonl_loader_with_fields_and_label_names(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"review": f"text {i}", "y": "pos" if i % 2 else "neg", "id": i} for i in range(20)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    task = get_task("jsonl", {"label_words": [" no", " yes"]})
    exs = task.loader({"path": str(path), "text_field": "review", "label_field": "y", "labels": ["neg", "pos"]}, 0)
    assert len(exs) == 20 and exs[1].fields["text"] == "text 1" and exs[1].label == 1 and exs[0].label == 0
    assert task.label_words == [" no", " yes"]


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok", "label": 0}\n{"text": "no label"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: line 2: missing label field 'label'"):
        get_task("jsonl").loader({"path": str(path)}, 0)
    path.write_text('{"text": "ok", "label": 0}\n{oops\n')
    with pytest.raises(ValueError, match=r"line 2: invalid JSON"):
        get_task("jsonl").loader({"path": str(path)}, 0)
    path.write_text('{"text": "ok", "label": 5}\n')
    with pytest.raises(ValueError, match=r"line 1: the label is out of range 0..1"):
        get_task("jsonl").loader({"path": str(path), "label_words": [" a", " b"]}, 0)
    with pytest.raises(ValueError, match="needs task_options.path"):
        get_task("jsonl").loader({}, 0)


def test_csv_loader(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("sentence,label\nhello there,1\nbad one,0\n,1\n")
    with pytest.raises(ValueError, match=r"d.csv: line 4: missing text field 'sentence'"):
        get_task("csv").loader({"path": str(path), "text_field": "sentence"}, 0)
    path.write_text("sentence,label\nhello there,1\nbad one,0\n")
    exs = get_task("csv").loader({"path": str(path), "text_field": "sentence"}, 0)
    assert [(e.fields["text"], e.label) for e in exs] == [("hello there", 1), ("bad one", 0)]


def _pool(n=300, labels=2):
    return [Example(fields={"text": f"t{i}"}, label=i % labels) for i in range(n)]


def test_sampling_is_seeded_disjoint_and_k_shot():
    a = sample_splits(_pool(), num_labels=2, seed=1, train_size=50, dev_size=20, test_size=30)
    b = sample_splits(_pool(), num_labels=2, seed=1, train_size=50, dev_size=20, test_size=30)
    c = sample_splits(_pool(), num_labels=2, seed=2, train_size=50, dev_size=20, test_size=30)
    assert a == b and a.train != c.train
    assert (len(a.train), len(a.dev), len(a.test)) == (50, 20, 30)
    texts = [e.fields["text"] for s in (a.train, a.dev, a.test) for e in s]
    assert len(set(texts)) == len(texts)
    k = sample_splits(_pool(labels=3), num_labels=3, seed=1, train_size=0, dev_size=10, test_size=10, k_shot=4)
    assert sorted(e.label for e in k.train) == [0] * 4 + [1] * 4 + [2] * 4
    with pytest.raises(ValueError, match="not enough examples"):
        sample_splits(_pool(20), num_labels=2, seed=1, train_size=5, dev_size=10, test_size=10)


def test_held_out_split_feeds_test():
    pool = _pool(100) + [Example(fields={"text": f"v{i}", "_split": "test"}, label=i % 2) for i in range(10)]
    s = sample_splits(pool, num_labels=2, seed=0, train_size=50, dev_size=10, test_size=30)
    assert len(s.test) == 10 and all(e.fields["text"].startswith("v") for e in s.test)


def test_single_and_multi_token_label_scoring_agree():
    model, tok = load_model(RunConfig(model="tiny-opt"))
    single = Task(name="t", loader=lambda o, s: [], template="{text} it was", label_words=[" bad", " good"])
    multi = Task(name="t", loader=lambda o, s: [], template="{text} it was",
                 label_words=[" bad", " good", " very good"])
    exs = [Example(fields={"text": "the movie was great"}, label=1), Example(fields={"text": "dull plot"}, label=0)]
    s1, s2 = LabelScorer(tok, single), LabelScorer(tok, multi)
    assert s1.single_token and not s2.single_token
    with torch.no_grad():
        ll1, _ = s1.scores(model, s1.encode(exs))
        ll2, lengths = s2.scores(model, s2.encode(exs))
    assert torch.allclose(ll1, ll2[:, :2], atol=1e-5)
    assert lengths.tolist() == [1.0, 1.0, 2.0] and (ll2[:, 2] < ll2[:, 1]).all()


def test_non_differentiable_objectives_refused_for_first_order():
    with pytest.raises(ValueError, match="not differentiable"):
        get_objective("f1", method_needs_grad=True)
    with pytest.raises(ValueError, match="not differentiable"):
        RunConfig(method="fo-adam", objective="accuracy")
    ll = torch.tensor([[0.0, -1.0], [-2.0, 0.0], [0.0, -3.0]])
    lengths = torch.ones(2)
    labels = torch.tensor([0, 1, 1])
    assert get_objective("accuracy")(ll, lengths, labels).item() == pytest.approx(-2 / 3)
    assert get_objective("f1")(ll, lengths, labels).item() == pytest.approx(-(2 / 3 + 2 / 3) / 2)
