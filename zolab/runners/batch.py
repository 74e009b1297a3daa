"""Run folders of exported job files on a machine without the database (stdlib + torch only).

``python -m zolab.runners.batch DIR [DIR ...] --out results.jsonl [--procs N]`` is the lean
counterpart of ``zolab run-one --config DIR --out FILE`` for GPU images that have torch,
transformers and peft but not typer, rich or pydantic. It adds what a time-limited GPU session
needs:

* **resumable**: a job whose id already has a line in ``--out`` is skipped, so a run cut short by
  a time limit continues where it stopped on the next call (``--retry-failed`` reruns error lines);
  a job cut short mid-run resumes from its last trajectory checkpoint, kept (with its curve points)
  in ``<out>.checkpoints/`` until its line is written; its result is the whole run's (the checkpoint
  carries the run's totals and curves, see :mod:`zolab.runners.checkpoint`);
* **packing**: ``--procs N`` runs N worker processes (job k of the pending list goes to worker
  k mod N; worker w sees GPU w mod #GPUs through ``CUDA_VISIBLE_DEVICES``), so small jobs share a GPU;
* **safe appends**: every finished job is one JSON line (:func:`zolab.runners.jobfile.result_line`)
  appended under an exclusive ``flock``, so workers never interleave and a killed worker loses at
  most the job it was running.

``zolab import results.jsonl`` loads the lines into the database (idempotent by job id).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zolab.runners.jobfile import JobFile, job_files, read_job, result_line
from zolab.runners.reporter import Checkpoint, MemoryReporter

Say = Callable[[str], None]


@dataclass
class BatchSummary:
    """What one call did: jobs run (and how many failed), jobs skipped as already done."""

    ran: int = 0
    failed: int = 0
    skipped: int = 0


def done_ids(out: Path, *, retry_failed: bool = False) -> set[int]:
    """Job ids that already have a line in ``out`` (only result lines with ``retry_failed``)."""
    if not out.is_file():
        return set()
    done: set[int] = set()
    for line in out.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill mid-write: that job runs again
            continue
        if isinstance(rec, dict) and rec.get("job_id") is not None and (rec.get("result") or not retry_failed):
            done.add(int(rec["job_id"]))
    return done


def pending_jobs(targets: Sequence[Path], out: Path, *, retry_failed: bool = False) -> tuple[list[Path], int]:
    """(job files still to run, in folder order; how many were skipped as done). Every file is
    parsed first, so a bad one stops the batch before anything runs."""
    done = done_ids(out, retry_failed=retry_failed)
    todo: list[Path] = []
    skipped = 0
    for target in targets:
        for path in job_files(Path(target)):
            job = read_job(path)
            if job.job_id is not None and job.job_id in done:
                skipped += 1
            else:
                todo.append(path)
    return todo, skipped


def append_line(out: Path, record: dict[str, Any]) -> None:
    """Append one JSON line under an exclusive lock (several worker processes share ``out``)."""
    text = json.dumps(record, default=str) + "\n"
    with out.open("a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def checkpoint_file(out: Path, job: JobFile) -> Path:
    """Where a running job's latest checkpoint lives until its line is in ``out``."""
    return out.with_name(out.name + ".checkpoints") / f"job-{job.job_id}-{job.config.config_hash()}.json"


class FileCheckpointReporter(MemoryReporter):
    """Keeps the metric points; each checkpoint replaces ``path`` (atomically) with the checkpoint and
    the points up to its step, so a killed batch resumes the job there. Only the latest is kept."""

    def __init__(self, path: Path, points: list[tuple[int, str, float]] | None = None) -> None:
        super().__init__()
        self.path = path
        self.metrics = list(points or [])

    def checkpoint(self, ckpt: Checkpoint) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        points = [list(p) for p in self.metrics if p[0] <= ckpt.step]
        tmp.write_text(json.dumps({"checkpoint": ckpt.to_dict(), "points": points}))
        os.replace(tmp, self.path)


def saved_checkpoint(path: Path) -> tuple[Checkpoint | None, list[tuple[int, str, float]]]:
    """(checkpoint, points) saved by :class:`FileCheckpointReporter`; (None, []) when absent or unreadable."""
    try:
        saved = json.loads(path.read_text())
        return Checkpoint.from_dict(saved["checkpoint"]), [(int(s), str(n), float(v)) for s, n, v in saved["points"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None, []


def run_job(job: JobFile, out: Path | None = None) -> dict[str, Any]:
    """Run one job in this process (resuming from its checkpoint next to ``out`` when one is there);
    its result line (an error line when it raised)."""
    from zolab.runners.train import run

    path = checkpoint_file(out, job) if out is not None else None
    resume, points = saved_checkpoint(path) if path is not None else (None, [])
    rep = FileCheckpointReporter(path, points) if path is not None else MemoryReporter()
    try:
        result = run(job.config, rep, resume)
    except Exception as exc:  # noqa: BLE001 -- a failed job is a line; the other jobs go on
        return result_line(job, None, error=f"{type(exc).__name__}: {exc}")
    return result_line(job, result, rep.metrics)


def _label(job: JobFile) -> str:
    meta = job.meta or {}
    parts = [str(meta.get("variant") or job.config.method), job.config.task, f"seed {job.config.seed}"]
    return f"job {job.job_id} ({', '.join(parts)})"


def run_paths(paths: Sequence[Path], out: Path, say: Say = print, tag: str = "") -> BatchSummary:
    """Run ``paths`` one after another in this process, appending a line per job."""
    summary = BatchSummary()
    for k, path in enumerate(paths, 1):
        job = read_job(path)
        start = time.perf_counter()
        line = run_job(job, out)
        append_line(out, line)
        checkpoint_file(out, job).unlink(missing_ok=True)  # its line is written: nothing to resume
        summary.ran += 1
        status = "failed: " + line["error"] if "error" in line else "succeeded"
        summary.failed += "error" in line
        say(f"{tag}[{k}/{len(paths)}] {_label(job)} {status} in {time.perf_counter() - start:.0f} s")
    return summary


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 -- no torch/CUDA: workers get no pinning
        return 0


def run_batch(targets: Sequence[Path], out: Path, *, procs: int = 1, retry_failed: bool = False,
              say: Say = print) -> BatchSummary:
    """Run every pending job of ``targets`` (folders or job files), ``procs`` at a time."""
    if procs < 1:
        raise ValueError(f"procs must be >= 1, got {procs}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    todo, skipped = pending_jobs(targets, out, retry_failed=retry_failed)
    say(f"{len(todo)} job(s) to run, {skipped} already in {out}" + (f", {procs} workers" if procs > 1 else ""))
    if procs == 1 or len(todo) <= 1:
        summary = run_paths(todo, out, say)
        summary.skipped = skipped
        return summary
    gpus = _gpu_count()
    children = []
    for w in range(min(procs, len(todo))):
        share = todo[w::procs]
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(w % gpus)
        cmd = [sys.executable, "-m", "zolab.runners.batch", *map(str, share), "--out", str(out),
               "--tag", f"w{w} "]
        if retry_failed:
            cmd.append("--retry-failed")
        children.append(subprocess.Popen(cmd, env=env))
    for child in children:
        child.wait()
    after = {}
    for line in out.read_text().splitlines() if out.is_file() else []:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        after[rec.get("job_id")] = rec
    ids = {read_job(p).job_id for p in todo}
    ran = [after[i] for i in ids if i in after]
    return BatchSummary(ran=len(ran), failed=sum("error" in r for r in ran) + len(ids) - len(ran), skipped=skipped)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zolab.runners.batch", description=__doc__.split("\n\n")[0],
                                 epilog="Exit status: 0 when every job has a result line, 1 otherwise.")
    ap.add_argument("targets", nargs="+", type=Path, help="folders from `zolab export`, or job files")
    ap.add_argument("--out", type=Path, required=True, help="JSON-lines file to append results to")
    ap.add_argument("--procs", type=int, default=1, help="worker processes sharing the GPU(s) (default 1)")
    ap.add_argument("--retry-failed", action="store_true", help="rerun jobs whose line in --out is an error")
    ap.add_argument("--tag", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        if args.tag:  # a worker started by run_batch: run exactly the files it was given
            summary = run_paths(pending_jobs(args.targets, args.out, retry_failed=args.retry_failed)[0],
                                args.out, lambda m: print(m, flush=True), args.tag)
        else:
            summary = run_batch(args.targets, args.out, procs=args.procs, retry_failed=args.retry_failed,
                                say=lambda m: print(m, flush=True))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.tag:
        print(f"done: {summary.ran} run ({summary.failed} failed), {summary.skipped} skipped; results in {args.out}")
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
