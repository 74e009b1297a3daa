"""``zolab run-one``: run RunConfigs without a database (GPU boxes, debugging, export/import).

* ``zolab run-one --config run.yaml [--set lr=1e-3 ...] [--json]``: one run with a progress bar,
  then the Result (accuracy before -> after).
* ``zolab run-one --config DIR --out results.jsonl``: every ``*.yaml``/``*.yml``/``*.json`` in DIR
  (sorted), one JSON line per config: ``{"job_id", "config_file", "config_hash", "config",
  "result"}`` or ``{"job_id", "config_file", "error"}``. A config file's extra top-level
  ``job_id`` key is passed through to its line (the export/import workflow relies on it).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from zolab.cli.common import console, fail
from zolab.runners.config import RunConfig
from zolab.runners.reporter import Checkpoint, Result

PASSTHROUGH = ("job_id",)
_SUFFIXES = (".yaml", ".yml", ".json")


_NUMERIC = {f.name: f.type for f in dataclasses.fields(RunConfig) if f.type in ("float", "int")}


def _coerce(data: dict[str, Any], path: Path) -> None:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string: turn numeric-looking strings of numeric fields into numbers."""
    for key, kind in _NUMERIC.items():
        value = data.get(key)
        if isinstance(value, str):
            try:
                data[key] = float(value) if kind == "float" else int(value)
            except ValueError:
                raise ValueError(f"{path}: field {key!r} must be a number, got {value!r}") from None


def load_run_file(path: Path, overrides: list[str] | None = None) -> tuple[RunConfig, dict[str, Any]]:
    """(RunConfig, passthrough keys) from a YAML/JSON mapping; errors name the file and field."""
    try:
        text = path.read_text(encoding="utf-8")
        # job files are JSON (zolab export): read them as JSON so '1e-05' stays a number
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f": line {mark.line + 1}" if mark else ""
        raise ValueError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of RunConfig fields, got {type(data).__name__}")
    extra = {k: data.pop(k) for k in PASSTHROUGH if k in data}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected key=value")
        data[key.strip()] = yaml.safe_load(raw)
    _coerce(data, path)
    try:
        return RunConfig.from_dict(data), extra
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


class BarReporter:
    """Reporter that drives a rich progress bar (steps, loss) and keeps the metric points."""

    def __init__(self, bar: Progress, label: str) -> None:
        self.bar = bar
        self.task = bar.add_task(label, total=None, loss="")
        self.metrics: list[tuple[int, str, float]] = []
        self.checkpoints = 0

    def progress(self, step: int, total: int, loss: float | None = None) -> None:
        shown = f"loss {loss:.4f}" if loss is not None else ""
        self.bar.update(self.task, completed=step, total=total, loss=shown)

    def metric(self, step: int, name: str, value: float) -> None:
        self.metrics.append((step, name, value))

    def heartbeat(self) -> None:
        pass

    def checkpoint(self, ckpt: Checkpoint) -> None:
        self.checkpoints += 1


def _bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console)


def _execute(cfg: RunConfig, label: str, quiet: bool) -> Result:
    from zolab.runners.train import run  # heavy: torch + transformers

    if quiet:
        return run(cfg)
    with _bar() as bar:
        return run(cfg, BarReporter(bar, label))


def _show(cfg: RunConfig, res: Result) -> None:
    table = Table(title=f"{cfg.method} on {cfg.task} ({cfg.model}, {res.device})", show_header=False)
    before = "n/a" if res.zero_shot_accuracy is None else f"{100 * res.zero_shot_accuracy:.1f}%"
    table.add_row("test accuracy before -> after", f"{before} -> {100 * res.accuracy:.1f}%")
    table.add_row("test macro-F1", f"{100 * res.f1:.1f}%")
    table.add_row("steps / forward passes", f"{res.steps} / {res.forward_passes}")
    table.add_row("final train loss", "n/a" if res.final_loss is None else f"{res.final_loss:.4f}")
    table.add_row("wall time", f"{res.wall_time_s:.1f} s")
    if res.peak_memory_allocated is not None:
        table.add_row("peak GPU memory (alloc/reserved)",
                      f"{res.peak_memory_allocated / 2**20:.0f} / {res.peak_memory_reserved / 2**20:.0f} MiB")
    if res.method_memory_bytes is not None:
        table.add_row("method memory (weights + state + z)", f"{res.method_memory_bytes / 2**20:.1f} MiB")
    if res.peak_rss is not None:
        table.add_row("peak RSS (process)", f"{res.peak_rss / 2**20:.0f} MiB")
    console.print(table)


def _run_folder(folder: Path, overrides: list[str], out: Path | None) -> None:
    files = sorted(p for p in folder.iterdir() if p.suffix in _SUFFIXES and p.is_file())
    if not files:
        fail(f"{folder}: no *.yaml, *.yml or *.json run configs")
    loaded = []
    for f in files:  # validate everything before running anything
        try:
            loaded.append((f, *load_run_file(f, overrides)))
        except ValueError as exc:
            fail(str(exc))
    sink = out.open("a", encoding="utf-8") if out else None
    failures = 0
    try:
        for f, cfg, extra in loaded:
            line: dict[str, Any] = {**extra, "config_file": str(f), "config_hash": cfg.config_hash(),
                                    "config": cfg.to_dict()}
            try:
                line["result"] = _execute(cfg, f.name, quiet=sink is None).to_dict()
            except Exception as exc:  # noqa: BLE001 -- one failing config must not lose the others' results
                failures += 1
                line["error"] = f"{type(exc).__name__}: {exc}"
            text = json.dumps(line, default=str)
            if sink:
                sink.write(text + "\n")
                sink.flush()
                console.print(f"{f.name}: " + ("[red]failed[/]" if "error" in line else "done"))
            else:
                print(text)
    finally:
        if sink:
            sink.close()
    if failures:
        raise typer.Exit(1)


def run_one(
    config: Annotated[Path, typer.Option("--config", "-c", help="run config YAML/JSON, or a folder of them")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field: key=value (YAML value)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the Result as JSON")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="append the result(s) here as JSON lines")] = None,
) -> None:
    """Run one RunConfig (or a folder of them) without a database and print the Result."""
    set_ = set_ or []
    if config.is_dir():
        _run_folder(config, set_, out)
        return
    try:
        cfg, extra = load_run_file(config, set_)
    except ValueError as exc:
        fail(str(exc))
    try:
        res = _execute(cfg, config.name, quiet=as_json)
    except Exception as exc:  # noqa: BLE001 -- a clear one-line error, not a traceback
        fail(f"run failed: {type(exc).__name__}: {exc}", code=2)
    if as_json:
        print(json.dumps({**extra, "config_hash": cfg.config_hash(), "config": cfg.to_dict(),
                          "result": res.to_dict()}, default=str))
    else:
        _show(cfg, res)
    if out:
        with out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({**extra, "config_file": str(config), "config_hash": cfg.config_hash(),
                                 "config": cfg.to_dict(), "result": res.to_dict()}, default=str) + "\n")


def register(app: typer.Typer) -> None:
    app.command("run-one")(run_one)
