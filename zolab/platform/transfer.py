"""Export a plan's queued jobs to files and import their results: work on a GPU box without the DB.

``export_jobs`` writes one job file per queued job (format: :mod:`zolab.runners.jobfile`) plus
``meta/export.json`` (plan, per job its key/variant/task/seed, the assets the jobs need) and, with ``with_assets``, a copy of the
cached model/data they use under ``<dir>/cache`` (``ZOLAB_CACHE=<dir>/cache`` on the box).
``import_results`` validates every result line first (JSON, known job ids, matching config
hashes), then records each new result through the queue (claim + finish: the same transitions and
events as a local worker). A job that already has a result is skipped, so importing twice is safe.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zolab.db.models import JobStatus
from zolab.db.repo import jobs as repo
from zolab.db.repo import plans as plan_repo
from zolab.db.retry import retry_on_transient
from zolab.db.session import session_scope
from zolab.platform.queue import JobQueue
from zolab.runners import assets
from zolab.runners.config import RunConfig
from zolab.runners.jobfile import JobFile, write_job, write_manifest
from zolab.runners.reporter import Result

IMPORT_WORKER = "import"


class TransferError(ValueError):
    """Bad export target or bad result file (the message names the file and line)."""


@dataclass
class ExportReport:
    folder: Path
    files: list[Path]
    skipped: int                       # jobs of the plan that are not queued
    assets: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    imported: list[int] = field(default_factory=list)
    already: list[int] = field(default_factory=list)     # had a result: skipped (idempotent)
    not_imported: list[tuple[int, str]] = field(default_factory=list)  # failed lines / jobs not queued


# -- export -------------------------------------------------------------------------------------
def needed_assets(configs: Iterable[dict[str, Any]]) -> list[str]:
    """Names of the offline assets (model aliases, data sets) that these configs use."""
    names = set()
    for c in configs:
        if c.get("model") in assets.ASSETS:
            names.add(c["model"])
        if c.get("task") in assets.ASSETS and not (c.get("task_options") or {}).get("path"):
            names.add(c["task"])
    return sorted(names)


def _copy_assets(names: list[str], dest: Path) -> None:
    for name in names:
        src = assets.asset_dir(name)
        if assets.ASSETS[name].kind == "model":
            assets.resolve_model_alias(name)  # raises AssetMissing with the fetch hint
        else:
            assets.data_path(name)
        target = dest / assets.ASSETS[name].subdir
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(src, target, ignore=shutil.ignore_patterns("gguf"))


def export_jobs(url: str | None, plan_id: int, folder: Path, *, with_assets: bool = False) -> ExportReport:
    """Write every queued job of ``plan_id`` as a job file into ``folder``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise TransferError(f"{folder} exists and is not a folder")

    def read():
        with session_scope(url) as s:
            plan = plan_repo.get_plan(s, plan_id)
            if plan is None:
                raise TransferError(f"no plan with id {plan_id}")
            jobs = repo.jobs_of_plan(s, plan_id)
            labels = repo.variant_labels(s, {j.variant_id for j in jobs})
            rows = [(j.id, j.key, j.variant_id, j.task, j.seed, dict(j.config), j.status) for j in jobs]
            return plan.name, rows, labels

    plan_name, rows, labels = retry_on_transient(read, what="read a plan's jobs")
    queued = [r for r in rows if r[6] == JobStatus.QUEUED.value]
    if not queued:
        raise TransferError(f"plan {plan_id} ({plan_name}) has no queued jobs: run `zolab run {plan_id}` "
                            "to enqueue them (or they have all run)")
    need = needed_assets(r[5] for r in queued)
    if with_assets:  # fail before writing anything when the cache lacks an asset
        for name in need:
            (assets.resolve_model_alias if assets.ASSETS[name].kind == "model" else assets.data_path)(name)
    folder.mkdir(parents=True, exist_ok=True)
    files, metas = [], {}
    for job_id, key, variant_id, task, seed, config, _ in queued:
        metas[str(job_id)] = {"key": key, "plan": plan_name, "plan_id": plan_id, "variant": labels.get(variant_id, ""),
                              "variant_id": variant_id, "task": task, "seed": seed}
        files.append(write_job(folder, JobFile(RunConfig.from_dict(config), job_id)))
    if with_assets:
        _copy_assets(need, folder / "cache")
    write_manifest(folder, {
        "plan": plan_name, "plan_id": plan_id, "jobs": metas, "assets": need, "assets_included": with_assets,
        "run": ("ZOLAB_CACHE=cache " if with_assets else "") + "zolab run-one --config . --out results.jsonl",
    })
    return ExportReport(folder, files, len(rows) - len(queued), need)


# -- import -------------------------------------------------------------------------------------
def _result_files(target: Path) -> list[Path]:
    target = Path(target)
    if target.is_file():
        return [target]
    if target.is_dir():
        found = sorted(target.glob("*.jsonl"))  # meta/ is a subfolder: never read as results
        if found:
            return found
        raise TransferError(f"{target}: no result files (*.jsonl)")
    raise TransferError(f"{target}: no such file or folder")


def _curves(result: dict[str, Any]) -> list[tuple[int, str, float]]:
    """Curve points from a result's own ``extra`` (``run-one`` lines carry no separate points)."""
    extra = result.get("extra") or {}
    points = [(s, "dev_accuracy", v) for s, v in extra.get("dev_curve") or []]
    return points + [(s, "train_loss", v) for s, v in extra.get("loss_curve") or []]


def _parse_line(path: Path, lineno: int, text: str) -> dict[str, Any]:
    where = f"{path}: line {lineno}"
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TransferError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(rec, dict) or not isinstance(rec.get("job_id"), int):
        raise TransferError(f"{where}: a result line needs an integer job_id")
    rec["status"] = "failed" if rec.get("error") is not None or rec.get("status") == "failed" else "succeeded"
    if rec["status"] == "succeeded":
        payload = rec.get("result")
        if not isinstance(payload, dict):
            raise TransferError(f"{where}: job {rec['job_id']}: 'result' must be an object")
        try:
            rec["result"] = Result.from_dict(payload).to_dict()
        except TypeError as exc:
            raise TransferError(f"{where}: job {rec['job_id']}: bad result ({exc})") from exc
        try:
            rec["points"] = [(int(s), str(n), float(v)) for s, n, v in rec.get("points") or _curves(rec["result"])]
        except (TypeError, ValueError) as exc:
            raise TransferError(f"{where}: job {rec['job_id']}: points must be [step, name, value] triples") from exc
    rec["_where"] = where
    return rec


def read_result_lines(target: Path) -> list[dict[str, Any]]:
    records = []
    for path in _result_files(target):
        for lineno, text in enumerate(path.read_text().splitlines(), 1):
            if text.strip():
                records.append(_parse_line(path, lineno, text))
    return records


def import_results(url: str | None, target: Path) -> ImportReport:
    """Load result lines into the DB; validates everything before writing anything."""
    records = read_result_lines(Path(target))

    def check():
        with session_scope(url) as s:
            state = {}
            for rec in records:
                job = repo.get_job(s, rec["job_id"])
                if job is None:
                    raise TransferError(f"{rec['_where']}: unknown job id {rec['job_id']} (not in this database)")
                want = rec.get("config_hash")
                have = RunConfig.from_dict(dict(job.config)).config_hash()
                if want and want != have:
                    raise TransferError(f"{rec['_where']}: job {job.id}: config hash {want} does not match the "
                                        f"database's job ({have}): results from another database?")
                state[job.id] = (job.status, repo.result_of(s, job.id) is not None)
            return state

    state = retry_on_transient(check, what="check imported jobs")
    queue = JobQueue(url)
    report = ImportReport()
    for rec in records:
        job_id = rec["job_id"]
        status, has_result = state[job_id]
        if has_result:
            report.already.append(job_id)
            continue
        if rec["status"] != "succeeded":
            report.not_imported.append((job_id, f"failed on the remote machine: {rec.get('error') or 'no reason given'}"))
            continue
        if status != JobStatus.QUEUED.value:
            report.not_imported.append((job_id, f"job is {status}, not queued (retry it first)"))
            continue
        claim = queue.claim(IMPORT_WORKER, job_id=job_id)
        if claim is None:  # taken by a worker meanwhile
            report.not_imported.append((job_id, "job was claimed by a worker meanwhile"))
            continue
        final = queue.finish(job_id, IMPORT_WORKER, rec["result"], rec["points"])  # succeeded or diverged
        state[job_id] = (final.value, True)
        report.imported.append(job_id)
    return report
