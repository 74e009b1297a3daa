"""Air-gapped workflow end to end on CPU: export a plan's jobs, run the job files, import the results.

A tiny random-init model on a small Drugs.com-format file the test writes (the real loader and
template): export -> run -> import (twice: idempotent) -> the leaderboard holds exactly the
imported rows. Bad result files are refused with file/line and nothing is written.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from zolab.cli import app
from zolab.db.repo import jobs as job_repo
from zolab.db.repo.leaderboard import leaderboard
from zolab.db.session import session_scope
from zolab.runners.jobfile import job_files, read_job, result_line
from zolab.runners.reporter import MemoryReporter

GOOD = ["great excellent wonderful", "superb fantastic lovely", "brilliant delightful charming"]
BAD = ["awful horrible poor", "dreadful boring dull", "weak tedious bland"]


def _drug_zip(path: Path) -> Path:
    head = "\tdrugName\tcondition\treview\trating\tdate\tusefulCount\n"

    def rows(n: int, offset: int) -> str:
        out = []
        for i in range(n):
            good = (i + offset) % 2 == 0
            words = (GOOD if good else BAD)[i % 3]
            out.append(f"{i}\tD\tC\t\"\"\"it was {words}\"\"\"\t{'positive' if good else 'negative'}\tJan 1, 2012\t1\n")
        return head + "".join(out)

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("drugsComTrain.tsv", rows(40, 0))
        zf.writestr("drugsComTest.tsv", rows(12, 1))
    return path


@pytest.fixture()
def plan_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZOLAB_DATA_ROOTS", str(tmp_path))  # the data file lives there (issue 17: confined paths)
    data = _drug_zip(tmp_path / "drugsCom.zip")
    plan = {
        "zolab": 1, "name": "transfer-e2e", "zero_shot": True,
        "baseline": {"method": "mezo", "model": "tiny-llama", "lr": 1e-3, "eps": 1e-3, "steps": 4, "batch_size": 4,
                     "eval_every": 2, "max_length": 32, "train_size": 16, "dev_size": 8, "test_size": 8,
                     "device": "cpu", "task_options": {"path": str(data)}},
        "tasks": ["drugreview"], "seeds": [1, 2],
        "ablations": [{"name": "optimizer", "ablated_part": "zeroth-order optimization method", "action": "REPLACE",
                       "replacement": ["Adam"]}],
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def _run_folder(folder: Path, out: Path) -> None:
    """What `zolab run-one --config DIR --out FILE` does: each job file -> one result line."""
    from zolab.runners.train import run

    with out.open("w") as fh:
        for path in job_files(folder):
            job = read_job(path)
            rep = MemoryReporter()
            fh.write(json.dumps(result_line(job, run(job.config, rep), rep.metrics)) + "\n")


def _export(plan_file: Path, folder: Path, url: str) -> None:
    res = CliRunner().invoke(app, ["export", str(plan_file), str(folder), "--db", url])
    assert res.exit_code == 0, res.output
    assert "exported 6 job(s)" in res.output


def _counts(url: str) -> tuple[int, dict[str, int]]:
    with session_scope(url) as s:
        return job_repo.count_results(s), job_repo.status_counts(s)


def test_export_run_import_is_idempotent_and_fills_the_leaderboard(plan_file: Path, tmp_path: Path, sqlite_url: str) -> None:
    folder = tmp_path / "export"
    _export(plan_file, folder, sqlite_url)
    files = job_files(folder)
    jobs = [read_job(p) for p in files]
    assert len(jobs) == 6 and len({j.job_id for j in jobs}) == 6
    assert {(j.meta["variant"], j.config.seed) for j in jobs} >= {("zero-shot", 1), ("baseline", 2)}
    assert all(j.meta["task"] == "drugreview" and j.meta["plan"] == "transfer-e2e" for j in jobs)
    manifest = json.loads((folder / "meta" / "export.json").read_text())
    assert sorted(map(int, manifest["jobs"])) == sorted(j.job_id for j in jobs) and manifest["assets"] == []
    assert all(json.loads(p.read_text())["job_id"] == j.job_id for p, j in zip(files, jobs))

    out = folder / "results.jsonl"
    _run_folder(folder, out)
    first = CliRunner().invoke(app, ["import", str(out), "--db", sqlite_url])
    assert first.exit_code == 0, first.output
    assert "imported 6 result(s); 0 already" in first.output
    again = CliRunner().invoke(app, ["import", str(folder), "--db", sqlite_url])
    assert again.exit_code == 0 and "imported 0 result(s); 6 already" in again.output
    n_results, counts = _counts(sqlite_url)
    assert n_results == 6 and counts.get("succeeded") == 6

    lines = [json.loads(x) for x in out.read_text().splitlines()]
    with session_scope(sqlite_url) as s:
        plan_id = job_repo.get_job(s, jobs[0].job_id).plan_id
        rows = leaderboard(s, plan_id)
        events = [e.to_status for e in job_repo.events_of(s, jobs[0].job_id)]
        points = job_repo.points_of(s, jobs[0].job_id)
    assert sorted((r.label, r.n) for r in rows) == [("baseline", 2), ("method=fo-adam", 2), ("zero-shot", 2)]
    zero = next(r for r in rows if r.label == "zero-shot")
    want = [ln["result"]["accuracy"] for ln in lines if ln["job_id"] in {j.job_id for j in jobs if j.meta["variant"] == "zero-shot"}]
    assert zero.accuracy_mean == pytest.approx(sum(want) / 2)
    assert events[-2:] == ["running", "succeeded"]
    assert len(points) == len(next(ln for ln in lines if ln["job_id"] == jobs[0].job_id)["points"])

    # nothing left to export
    res = CliRunner().invoke(app, ["export", str(plan_id), str(tmp_path / "again"), "--db", sqlite_url])
    assert res.exit_code == 1 and "has no queued jobs" in res.output


def _line(job, config_hash: str | None = None, *, job_id: int | None = None) -> str:
    """A well-formed result line for exported ``job`` (its plan id and config hash unless told)."""
    result = {"accuracy": 0.5, "f1": 0.5, "steps": 4, "forward_passes": 8, "wall_time_s": 1.0, "gpu_hours": 0.0}
    return json.dumps({"job_id": job.job_id if job_id is None else job_id, "plan_id": job.plan_id,
                       "config_hash": config_hash or job.config.config_hash(), "result": result, "points": []})


def test_bad_result_files_are_refused_and_nothing_is_written(plan_file: Path, tmp_path: Path, sqlite_url: str) -> None:
    folder = tmp_path / "export"
    _export(plan_file, folder, sqlite_url)
    job = read_job(job_files(folder)[0])
    assert job.plan_id is not None  # exported job files carry their plan id
    fields = {"job_id": job.job_id, "plan_id": job.plan_id, "config_hash": job.config.config_hash(),
              "result": {"accuracy": 1.0, "color": 1}}
    cases = {
        "unknown.jsonl": (_line(job) + "\n" + _line(job, job_id=99999) + "\n", "line 2: unknown job id 99999"),
        "hash.jsonl": (_line(job, "deadbeefdeadbeef") + "\n", "config hash deadbeefdeadbeef does not match"),
        "broken.jsonl": (_line(job) + "\n{not json\n", "broken.jsonl: line 2: not valid JSON"),
        "fields.jsonl": (json.dumps(fields) + "\n", "result.color: Extra inputs are not permitted"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        res = CliRunner().invoke(app, ["import", str(path), "--db", sqlite_url])
        assert res.exit_code == 1, (name, res.output)
        assert message in " ".join(res.output.split()), (name, res.output)
    n_results, counts = _counts(sqlite_url)
    assert n_results == 0 and counts == {"queued": 6}

    # a remote failure is reported, not imported; the job stays queued
    failed = tmp_path / "failed.jsonl"
    failed.write_text(json.dumps(result_line(job, None, error="CUDA out of memory")) + "\n")
    res = CliRunner().invoke(app, ["import", str(failed), "--db", sqlite_url])
    assert res.exit_code == 0 and "failed on the remote machine: CUDA out of memory" in " ".join(res.output.split())
    assert _counts(sqlite_url) == (0, {"queued": 6})


def test_export_refuses_bad_targets(plan_file: Path, tmp_path: Path, sqlite_url: str) -> None:
    res = CliRunner().invoke(app, ["export", "4242", str(tmp_path / "x"), "--db", sqlite_url])
    assert res.exit_code == 1 and "no plan with id 4242" in res.output
    res = CliRunner().invoke(app, ["export", str(tmp_path / "missing.yaml"), str(tmp_path / "x"), "--db", sqlite_url])
    assert res.exit_code == 1 and "neither a plan id nor a plan file" in res.output
    assert not (tmp_path / "x").exists()


def test_run_one_cli_roundtrip(plan_file: Path, tmp_path: Path, sqlite_url: str) -> None:
    """The real `zolab run-one` over the exported folder, then import (skipped until run-one lands)."""
    if "run-one" not in {c.name for c in app.registered_commands}:
        pytest.skip("`zolab run-one` is not registered in this checkout yet")
    folder = tmp_path / "export"
    _export(plan_file, folder, sqlite_url)
    out = tmp_path / "results.jsonl"
    res = CliRunner().invoke(app, ["run-one", "--config", str(folder), "--out", str(out)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["import", str(out), "--db", sqlite_url])
    assert res.exit_code == 0 and "imported 6 result(s)" in res.output, res.output
    assert _counts(sqlite_url)[0] == 6
    # run-one lines carry no separate points: the curves come from the result's dev/loss curves
    job = read_job(job_files(folder)[0])
    with session_scope(sqlite_url) as s:
        names = {n for _, n, _ in job_repo.points_of(s, job.job_id)}
    assert job.config.steps == 0 or {"dev_accuracy", "train_loss"} <= names


def test_export_with_assets_copies_the_cached_files_the_jobs_need(tmp_path: Path, sqlite_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOLAB_CACHE", str(cache))
    plan = {"zolab": 1, "name": "assets-export", "baseline": {"method": "mezo", "model": "smollm2-135m", "steps": 2},
            "tasks": ["drugreview"], "seeds": [1],
            "ablations": [{"name": "eps", "ablated_part": "perturbation scale", "action": "REPLACE", "replacement": [0.1]}]}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    out = tmp_path / "box"
    res = CliRunner().invoke(app, ["export", str(path), str(out), "--with-assets", "--db", sqlite_url])
    assert res.exit_code == 1, res.output
    assert "data set 'drugreview' is not in the cache" in " ".join(res.output.split())
    assert "run `zolab assets fetch`" in res.output and not out.exists()
    data = cache / "data" / "drugreview"
    data.mkdir(parents=True)
    _drug_zip(data / "drugsCom.zip")
    res = CliRunner().invoke(app, ["export", str(path), str(out), "--with-assets", "--db", sqlite_url])
    assert res.exit_code == 1 and "model alias 'smollm2-135m' is not in the cache" in " ".join(res.output.split())
    assert not out.exists()

    model = cache / "models" / "smollm2-135m"
    (model / "gguf").mkdir(parents=True)
    (model / "gguf" / "big.gguf").write_bytes(b"x")
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    res = CliRunner().invoke(app, ["export", str(path), str(out), "--with-assets", "--db", sqlite_url])
    assert res.exit_code == 0, res.output
    assert (out / "cache/models/smollm2-135m/model.safetensors").read_bytes() == b"weights"
    assert not (out / "cache/models/smollm2-135m/gguf").exists()  # the converted copy is enough
    assert (out / "cache/data/drugreview/drugsCom.zip").is_file()
    manifest = json.loads((out / "meta" / "export.json").read_text())
    assert manifest["assets"] == ["drugreview", "smollm2-135m"] and manifest["assets_included"] is True
    assert len(job_files(out)) == 2
