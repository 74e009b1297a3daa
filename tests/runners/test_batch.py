"""`python -m zolab.runners.batch`: exported job folders on a machine without the database.

Resumable (done ids skipped), packed (N worker processes, one lock-guarded results file), and a
failing job is an error line while the others go on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zolab.runners.batch import done_ids, main, pending_jobs, run_batch
from zolab.runners.config import RunConfig
from zolab.runners.jobfile import JobFile, write_job

ROOT = Path(__file__).resolve().parents[2]
TINY = {"model": "tiny-llama-h16-l1", "task": "synthetic-sentiment", "steps": 3, "train_size": 24, "dev_size": 8,
            "test_size": 8, "batch_size": 4, "eval_every": 3, "device": "cpu"}


def export(folder: Path, seeds: list[int], start_id: int = 1, **over) -> list[int]:
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for k, seed in enumerate(seeds):
        job_id = start_id + k
        write_job(folder, JobFile(RunConfig(**{**TINY, **over, "seed": seed}), job_id))
        ids.append(job_id)
    return ids


def lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in out.read_text().splitlines()]


def test_runs_every_job_once_and_resumes_where_it_stopped(tmp_path):
    folder = tmp_path / "export-1"
    ids = export(folder, [0, 1, 2])
    out = tmp_path / "results.jsonl"
    # a first call that "was cut short": only job 1 finished
    first = run_batch([folder / "job-000001.json"], out, say=lambda m: None)
    assert (first.ran, first.failed) == (1, 0)
    todo, skipped = pending_jobs([folder], out)
    assert skipped == 1 and [p.name for p in todo] == ["job-000002.json", "job-000003.json"]
    again = run_batch([folder], out, say=lambda m: None)
    assert (again.ran, again.skipped, again.failed) == (2, 1, 0)
    got = lines(out)
    assert sorted(r["job_id"] for r in got) == ids
    assert all(r["result"]["steps"] == 3 and r["result"]["forward_passes"] == 6 for r in got)
    assert all(r["points"] for r in got)      # curves travel with the result
    assert run_batch([folder], out, say=lambda m: None).ran == 0 and len(lines(out)) == 3


def test_a_failing_job_is_an_error_line_and_can_be_retried(tmp_path):
    folder = tmp_path / "export-2"
    export(folder, [0], start_id=1)
    export(folder, [1], start_id=2, task_options={"no_such_option": 1}, task="jsonl")   # no path: fails at load
    out = tmp_path / "r.jsonl"
    summary = run_batch([folder], out, say=lambda m: None)
    assert (summary.ran, summary.failed) == (2, 1)
    by_id = {r["job_id"]: r for r in lines(out)}
    assert "result" in by_id[1] and "error" in by_id[2]
    assert done_ids(out) == {1, 2} and done_ids(out, retry_failed=True) == {1}
    assert [p.name for p in pending_jobs([folder], out, retry_failed=True)[0]] == ["job-000002.json"]


def test_packed_workers_share_one_results_file(tmp_path):
    folder = tmp_path / "export-3"
    ids = export(folder, [0, 1, 2, 3, 4])
    out = tmp_path / "results.jsonl"
    proc = subprocess.run([sys.executable, "-m", "zolab.runners.batch", str(folder), "--out", str(out), "--procs", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = lines(out)                                  # every line parses: no interleaved writes
    assert sorted(r["job_id"] for r in got) == ids and all("result" in r for r in got)
    assert "w0 " in proc.stdout and "w1 " in proc.stdout and "done: 5 run (0 failed)" in proc.stdout


def test_bad_input_stops_before_anything_runs(tmp_path, capsys):
    folder = tmp_path / "export-4"
    export(folder, [0])
    (folder / "job-000009.json").write_text('{"job_id": 9, "colour": "red"}')
    out = tmp_path / "r.jsonl"
    assert main([str(folder), "--out", str(out)]) == 2
    assert "job-000009.json" in capsys.readouterr().err and not out.exists()
    assert main([str(tmp_path / "missing"), "--out", str(out)]) == 2
    with pytest.raises(ValueError, match="procs"):
        run_batch([folder], out, procs=0)
