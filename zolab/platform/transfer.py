"""Export a plan's queued jobs to files and import their results: work on a GPU box without the DB.

``export_jobs`` writes one job file per queued job (format: :mod:`zolab.runners.jobfile`) plus
``meta/export.json`` (plan, per job its key/variant/task/seed, the assets the jobs need) and, with ``with_assets``, a copy of the
cached model/data they use under ``<dir>/cache`` (``ZOLAB_CACHE=<dir>/cache`` on the box).
``import_results`` validates every result line first (strict schema: :mod:`zolab.platform.result_lines`;
then known job ids, the line's plan id and config hash matching the database's job), then records
every new result in ONE transaction through the queue (queued -> running -> succeeded, the same
transitions and events as a local worker): a bad line anywhere imports nothing, and no job is left
claimed by the import. A job that already has a result is skipped, so importing twice is safe.
"""

from __future__ import annotations

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
from zolab.platform.queue import ImportItem, JobQueue, RowRefused
from zolab.platform.result_lines import LineError, ParsedLine, parse_line
from zolab.runners import assets
from zolab.runners.config import RunConfig
from zolab.runners.jobfile import JobFile, write_job, write_manifest

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
        files.append(write_job(folder, JobFile(RunConfig.from_dict(config), job_id, plan_id=plan_id)))
    if with_assets:
        _copy_assets(need, folder / "cache")
    write_manifest(folder, {
        "plan": plan_name, "plan_id": plan_id, "jobs": metas, "assets": need, "assets_included": with_assets,
        "run": ("ZOLAB_CACHE=cache " if with_assets else "") + "zolab run-one --config . --out results.jsonl",
    })
    return ExportReport(folder, files, len(rows) - len(queued), need)


# -- import -------------------------------------------------------------------------------------
MAX_PROBLEMS_SHOWN = 20


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


def _refuse(problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    head = "nothing imported: " + (f"{len(problems)} problems" if len(problems) > 1 else "1 problem")
    raise TransferError(head + "\n" + "\n".join(shown) + (f"\n... and {more} more" if more else ""))


def read_result_lines(target: Path) -> list[ParsedLine]:
    """Every line of the result file(s), validated (:mod:`zolab.platform.result_lines`); all
    problems are collected and raised together, each naming its file, line and field."""
    records, problems = [], []
    for path in _result_files(target):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot read ({exc})")
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}: line {lineno}"
            try:
                records.append(parse_line(line, where))
            except LineError as exc:
                problems.append(f"{where}: {exc}")
    _refuse(problems)
    return records


def _check_against_db(url: str | None, records: list[ParsedLine]) -> None:
    """Each line's job exists, belongs to the line's plan and has the line's config hash."""
    def check():
        problems = []
        with session_scope(url) as s:
            for rec in records:
                job = repo.get_job(s, rec.job_id)
                if job is None:
                    problems.append(f"{rec.where}: unknown job id {rec.job_id} (not in this database)")
                    continue
                if job.plan_id != rec.plan_id:
                    problems.append(f"{rec.where}: job {job.id} belongs to plan {job.plan_id}, the line says plan "
                                    f"{rec.plan_id}: results from another database or export?")
                    continue
                have = RunConfig.from_dict(dict(job.config)).config_hash()
                if rec.config_hash != have:
                    problems.append(f"{rec.where}: job {job.id}: config hash {rec.config_hash} does not match the "
                                    f"database's job ({have}): results from another database?")
        return problems

    _refuse(retry_on_transient(check, what="check imported jobs"))


def import_results(url: str | None, target: Path) -> ImportReport:
    """Load result lines into the database: the whole file is validated first (schema, then each
    job against the database), then every new result is written in ONE transaction: a problem
    anywhere imports nothing, and no job is ever left claimed by the import."""
    records = read_result_lines(Path(target))
    _check_against_db(url, records)
    report = ImportReport()
    items: list[ImportItem] = []
    seen: set[int] = set()
    for rec in records:
        if not rec.succeeded:
            report.not_imported.append((rec.job_id, f"failed on the remote machine: {rec.error}"))
        elif rec.job_id in seen:  # the same job twice in the file: its first result counts
            report.already.append(rec.job_id)
        else:
            seen.add(rec.job_id)
            items.append(ImportItem(rec.job_id, rec.where, rec.result or {}, rec.points))
    if items:
        try:
            outcome = JobQueue(url).import_finished(items, worker=IMPORT_WORKER)
        except RowRefused as exc:
            raise TransferError(f"nothing imported: {exc}") from exc
        report.imported += outcome.imported
        report.already += outcome.already
        report.not_imported += outcome.skipped
    return report
