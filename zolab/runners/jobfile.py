"""The file format between a database machine and an air-gapped GPU box (stdlib only).

``zolab export`` writes one *job file* per queued job; ``zolab run-one`` runs job files (or a
folder of them) and appends one *result line* per job to a JSON-lines file; ``zolab import``
reads those lines back into the database. This module is the one definition of both formats, so
the GPU side (torch + transformers only) and the DB side agree.

Job file (``job-<id>.json``)::

    {"zolab_job": 1, "job_id": 17, "key": "p1:v3:drugreview:s13:final", "plan": "...",
     "plan_id": 1, "variant": "...", "variant_id": 3, "task": "drugreview", "seed": 13,
     "config": {...RunConfig...}, "config_hash": "..."}

A bare RunConfig dict is accepted too (no ids: its results cannot be imported).

Result line::

    {"job_id": 17, "key": "...", "config_hash": "...", "status": "succeeded",
     "result": {...Result...}, "points": [[step, name, value], ...], "error": null}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zolab.runners.config import RunConfig
from zolab.runners.reporter import Result

FORMAT_VERSION = 1
JOB_GLOB = "job-*.json"


@dataclass
class JobFile:
    """A RunConfig plus the ids that tie its result back to the database."""

    config: RunConfig
    job_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)   # key, plan, variant, task, seed, ...

    def to_dict(self) -> dict[str, Any]:
        return {"zolab_job": FORMAT_VERSION, "job_id": self.job_id, **self.meta,
                "config": self.config.to_dict(), "config_hash": self.config.config_hash()}


def job_filename(job_id: int) -> str:
    return f"job-{job_id:06d}.json"


def write_job(folder: Path, job: JobFile) -> Path:
    if job.job_id is None:
        raise ValueError("an exported job needs a job id")
    path = Path(folder) / job_filename(job.job_id)
    path.write_text(json.dumps(job.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_job(path: Path) -> JobFile:
    """Parse a job file or a bare RunConfig JSON; errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")  # noqa: TRY004 - bad input, not a caller's bug
    try:
        if "zolab_job" not in data:
            return JobFile(RunConfig.from_dict(data))
        if data["zolab_job"] != FORMAT_VERSION:
            raise ValueError(f"job format {data['zolab_job']!r} is not {FORMAT_VERSION}")
        config = RunConfig.from_dict(data["config"])
        want = data.get("config_hash")
        if want and want != config.config_hash():
            raise ValueError(f"config_hash {want} does not match the config ({config.config_hash()}): edited by hand?")
        meta = {k: v for k, v in data.items() if k not in ("zolab_job", "job_id", "config", "config_hash")}
        return JobFile(config, int(data["job_id"]) if data.get("job_id") is not None else None, meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def job_files(target: Path) -> list[Path]:
    """A single job file, or every ``job-*.json`` (then any other ``*.json``) in a folder, sorted."""
    target = Path(target)
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise FileNotFoundError(f"{target}: no such file or folder")
    found = sorted(target.glob(JOB_GLOB)) or sorted(p for p in target.glob("*.json") if p.name != "export.json")
    if not found:
        raise FileNotFoundError(f"{target}: no job files ({JOB_GLOB})")
    return found


def result_line(job: JobFile, result: Result | None, points: list[tuple[int, str, float]] | None = None,
                error: str | None = None) -> dict[str, Any]:
    """One JSON-lines record for ``zolab import``."""
    return {
        "job_id": job.job_id,
        "key": job.meta.get("key"),
        "config_hash": job.config.config_hash(),
        "status": "succeeded" if result is not None else "failed",
        "result": result.to_dict() if result is not None else None,
        "points": [list(p) for p in (points or [])],
        "error": error,
    }
