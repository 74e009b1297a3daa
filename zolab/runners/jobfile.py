"""The file formats between a database machine and an air-gapped GPU box (stdlib only).

``zolab export`` writes one *job file* per queued job; ``zolab run-one --config DIR --out FILE``
runs every job file in the folder and appends one *result line* per job; ``zolab import`` reads
those lines back into the database. This module is the one definition of both formats, so the GPU
side (torch + transformers only) and the DB side agree.

Job file ``DIR/job-000017.json``: the RunConfig's fields plus ``job_id`` and ``plan_id`` (the keys
``run-one`` passes through to the job's result line; ``zolab import`` requires both)::

    {"job_id": 17, "plan_id": 3, "method": "mezo", "model": "smollm2-135m", "task": "drugreview", "seed": 13, ...}

``DIR/meta/export.json`` (a subfolder, so ``run-one`` does not take it for a config) describes
the export: plan, and per job id its key, variant, task and seed.

Result line (``run-one``; ``points`` optional)::

    {"job_id": 17, "plan_id": 3, "config_hash": "...", "config": {...}, "result": {...Result...},
     "points": [[step, name, value]]}
    {"job_id": 17, "plan_id": 3, "config_hash": "...", "error": "CUDA out of memory ..."}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zolab.runners.config import RunConfig
from zolab.runners.reporter import Result

JOB_GLOB = "job-*.json"
MANIFEST = "meta/export.json"


@dataclass
class JobFile:
    """A RunConfig plus the job id that ties its result back to the database."""

    config: RunConfig
    job_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)   # from meta/export.json: key, plan, variant, ...
    plan_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        ids = {"job_id": self.job_id} if self.plan_id is None else {"job_id": self.job_id, "plan_id": self.plan_id}
        return {**ids, **self.config.to_dict()}


def job_filename(job_id: int) -> str:
    return f"job-{job_id:06d}.json"


def yaml_safe_json(value: Any) -> str:
    """JSON that YAML 1.1 loaders read back identically: floats always have a dot (``1.0e-05``).

    ``json.dumps(1e-5)`` gives ``1e-05``, which PyYAML's ``safe_load`` reads as a *string*;
    job files may be read by either parser (``run-one`` accepts YAML and JSON).
    """
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {yaml_safe_json(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_safe_json(v) for v in value) + "]"
    if isinstance(value, float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot be written to a job file")
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    return json.dumps(value)


def write_job(folder: Path, job: JobFile) -> Path:
    if job.job_id is None:
        raise ValueError("an exported job needs a job id")
    path = Path(folder) / job_filename(job.job_id)
    path.write_text(yaml_safe_json(job.to_dict()) + "\n")
    return path


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = Path(folder) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def read_job(path: Path) -> JobFile:
    """Parse a job file (RunConfig fields + optional ``job_id``); errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")  # noqa: TRY004 - bad input, not a caller's bug
    job_id = data.pop("job_id", None)
    plan_id = data.pop("plan_id", None)
    try:
        config = RunConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    meta = read_manifest(path.parent).get("jobs", {}).get(str(job_id), {}) if job_id is not None else {}
    return JobFile(config, int(job_id) if job_id is not None else None, meta,
                   int(plan_id) if plan_id is not None else meta.get("plan_id"))


def job_files(target: Path) -> list[Path]:
    """A single job file, or every ``job-*.json`` in a folder, sorted."""
    target = Path(target)
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise FileNotFoundError(f"{target}: no such file or folder")
    found = sorted(target.glob(JOB_GLOB))
    if not found:
        raise FileNotFoundError(f"{target}: no job files ({JOB_GLOB})")
    return found


def result_line(job: JobFile, result: Result | None, points: list[tuple[int, str, float]] | None = None,
                error: str | None = None) -> dict[str, Any]:
    """One JSON-lines record for ``zolab import`` (the shape ``zolab run-one`` writes)."""
    line: dict[str, Any] = {"job_id": job.job_id, "plan_id": job.plan_id, "config_hash": job.config.config_hash(),
                            "config": job.config.to_dict()}
    if result is None:
        line["error"] = error or "failed"
    else:
        line["result"] = result.to_dict()
        line["points"] = [list(p) for p in (points or [])]
    return line
