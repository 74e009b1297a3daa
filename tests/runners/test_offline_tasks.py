"""Offline task loaders on small files written in the packages' own formats (no cache needed)."""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import pytest

from zolab.runners.assets import AssetMissing
from zolab.runners.tasks.base import TASKS
from zolab.runners.tasks.offline import load_bbc_topic, load_drugreview, load_tweet_sentiment

TSV_HEAD = "\tdrugName\tcondition\treview\trating\tdate\tusefulCount\n"


def _drug_zip(folder: Path, train_rows: list[tuple[str, str]], test_rows: list[tuple[str, str]]) -> Path:
    def table(rows: list[tuple[str, str]]) -> str:
        return TSV_HEAD + "".join(f"{i}\tDrug\tCond\t\"\"\"{text}\"\"\"\t{rating}\tJan 1, 2012\t3\n"
                                  for i, (text, rating) in enumerate(rows))

    path = folder / "drugsCom.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("drugsComTest.tsv", table(test_rows))
        zf.writestr("drugsComTrain.tsv", table(train_rows))
    return path


def test_drugreview_drops_neutral_unescapes_html_and_keeps_splits(tmp_path: Path) -> None:
    path = _drug_zip(
        tmp_path,
        [("I&#039;ve felt great &amp; calm", "positive"), ("meh", "neutral"), ("awful rash", "negative")],
        [("worked well", "positive")],
    )
    rows = load_drugreview({"path": str(path)}, 0)
    assert [(e.fields["text"], e.label, e.fields["_split"]) for e in rows] == [
        ("I've felt great & calm", 1, "train"),
        ("awful rash", 0, "train"),
        ("worked well", 1, "test"),
    ]
    assert [e.fields["text"] for e in load_drugreview({"path": str(path), "split": "test"}, 0)] == ["worked well"]
    clipped = load_drugreview({"path": str(path), "max_chars": 12}, 0)[0].fields["text"]
    assert clipped == "I've felt ..."


def test_drugreview_bad_rating_names_file_and_line(tmp_path: Path) -> None:
    path = _drug_zip(tmp_path, [("fine", "positive"), ("odd", "5 stars")], [])
    with pytest.raises(ValueError, match=r"drugsComTrain.tsv: line 3: the rating is not"):
        load_drugreview({"path": str(path)}, 0)
    with pytest.raises(ValueError, match="split must be train, test or all"):
        load_drugreview({"path": str(path), "split": "dev"}, 0)


def test_bbc_topic_reads_label_folders_in_either_encoding(tmp_path: Path) -> None:
    root = tmp_path / "bbcnews"
    (root / "business").mkdir(parents=True)
    (root / "tech").mkdir()
    (root / "business" / "001.txt").write_bytes("Profits up\n\nSales hit £5bn this year.".encode())
    (root / "tech" / "001.txt").write_bytes("Caf\xe9 wifi\n\nFree for all.".encode("latin-1"))
    rows = load_bbc_topic({"path": str(root)}, 0)
    assert [(e.fields["text"], e.label) for e in rows] == [
        ("Profits up. Sales hit £5bn this year.", 0),
        ("Café wifi. Free for all.", 4),
    ]
    (root / "weather").mkdir()
    with pytest.raises(ValueError, match="unknown topic folder"):
        load_bbc_topic({"path": str(root)}, 0)


def test_tweet_sentiment_three_classes_latin1(tmp_path: Path) -> None:
    path = tmp_path / "tweets.csv"
    path.write_bytes("sentiment,confidence,text\nnegative,0.7,no way\nneutral,0.5,a car\npositive,0.9,na\xefve fun\n"
                     .encode("latin-1"))
    rows = load_tweet_sentiment({"path": str(path)}, 0)
    assert [(e.fields["text"], e.label) for e in rows] == [("no way", 0), ("a car", 1), ("naïve fun", 2)]
    path.write_text("sentiment,text\nangry,grr\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"tweets.csv: line 2: the sentiment is not one of"):
        load_tweet_sentiment({"path": str(path)}, 0)


def test_tasks_are_registered_with_templates_and_label_words() -> None:
    import zolab.runners.tasks.offline  # noqa: F401  (registers)

    drug = TASKS.get("drugreview")
    assert drug.template.format(text="Great.") == "Review: Great.\nSentiment:"
    assert drug.label_words == [" negative", " positive"]
    assert TASKS.get("bbc-topic").num_labels == 5
    assert TASKS.get("tweet-sentiment").label_words == [" negative", " neutral", " positive"]


def test_missing_cache_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOLAB_CACHE", str(tmp_path))
    with pytest.raises(AssetMissing, match="run `zolab assets fetch`"):
        load_drugreview({}, 0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tweet_sentiment({"path": str(tmp_path / "nope.csv")}, 0)


@pytest.mark.assets
@pytest.mark.slow
def test_real_data_sets_have_the_documented_sizes() -> None:
    drug = load_drugreview({}, 0)
    assert Counter(e.fields["_split"] for e in drug) == {"train": 546, "test": 343}
    assert Counter(e.label for e in drug) == {1: 633, 0: 256}
    assert "&#039;" not in " ".join(e.fields["text"] for e in drug)
    bbc = load_bbc_topic({}, 0)
    assert Counter(e.label for e in bbc) == {0: 510, 1: 386, 2: 417, 3: 511, 4: 401}
    tweets = load_tweet_sentiment({}, 0)
    assert Counter(e.label for e in tweets) == {0: 16186, 1: 15018, 2: 6954}
