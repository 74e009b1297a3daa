"""Hostile result files for ``zolab import`` (issue 17, point 8), on SQLite and PostgreSQL.

Each file is refused as a whole with exit 1 and one message naming the file, the line and the field,
and the database is exactly as before: no result, no curve point, no event, every job still queued
(before: a boolean job id was taken as job 1, a missing config hash let another plan's job in,
out-of-range and non-finite metrics were stored or left the job ``running`` claimed by the import,
and a bad line after good ones imported the good ones).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.platform._factories import make_jobs
from tests.reliability.db_rows import count_rows
from zolab.cli import app
from zolab.db.repo import jobs as repo
from zolab.db.session import session_scope
from zolab.platform import transfer
from zolab.platform.transfer import TransferError, import_results
from zolab.runners.config import RunConfig

RESULT = {"accuracy": 0.75, "f1": 0.5, "steps": 4, "forward_passes": 8, "wall_time_s": 1.0, "gpu_hours": 0.0,
          "final_loss": 0.3, "dev_accuracy": 0.7}


@pytest.fixture
def jobs(db_url):
    """Two plans: three queued jobs in the first (the export), one in another plan."""
    plan_id, ids = make_jobs(db_url, 3, {"steps": 4})
    other_plan, (other,) = make_jobs(db_url, 1, {"steps": 4, "seed": 7})
    with session_scope(db_url) as s:
        rows = {j.id: j for j in repo.jobs_of_plan(s)}
    hashes = {i: RunConfig.from_dict(dict(rows[i].config)).config_hash() for i in rows}
    return {"url": db_url, "plan": plan_id, "ids": ids, "other_plan": other_plan, "other": other, "hash": hashes}


def line(jobs, jid: int, **changes) -> dict:
    rec = {"job_id": jid, "plan_id": jobs["plan"], "config_hash": jobs["hash"].get(jid, "0" * 16),
           "result": dict(RESULT), "points": [[2, "train_loss", 0.5], [4, "train_loss", 0.3]]}
    for key, value in changes.items():
        if key.startswith("result."):
            rec["result"][key[len("result."):]] = value
        elif value is ...:
            rec.pop(key)
        else:
            rec[key] = value
    return rec


def _write(tmp_path: Path, records: list, name: str = "results.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, allow_nan=True)) + "\n" for r in records))
    return path


def _state(url: str):
    with session_scope(url) as s:
        jobs = repo.jobs_of_plan(s)
        return {j.id: (j.status, j.attempts, j.lease_owner) for j in jobs}, count_rows(url)


def _refused(jobs, tmp_path, records, *expected: str) -> str:
    before = _state(jobs["url"])
    path = _write(tmp_path, records)
    res = CliRunner().invoke(app, ["import", str(path), "--db", jobs["url"]])
    text = " ".join(res.output.split())
    after = _state(jobs["url"])
    assert res.exit_code == 1, res.output
    for part in expected:
        assert part in text, (part, res.output)
    assert after == before, "the database changed"
    return text


def test_good_lines_import_in_one_go(jobs, tmp_path):
    path = _write(tmp_path, [line(jobs, i) for i in jobs["ids"]])
    report = import_results(jobs["url"], path)
    assert sorted(report.imported) == sorted(jobs["ids"])
    with session_scope(jobs["url"]) as s:
        for i in jobs["ids"]:
            job = repo.get_job(s, i)
            assert (job.status, job.attempts, job.lease_owner) == ("succeeded", 1, None)
            assert [e.to_status for e in repo.events_of(s, i)] == ["queued", "running", "succeeded"]
            assert repo.points_of(s, i) == [(2, "train_loss", 0.5), (4, "train_loss", 0.3)]
    again = import_results(jobs["url"], path)
    assert again.imported == [] and sorted(again.already) == sorted(jobs["ids"])


CASES = {
    # name: (changes to the first job's line, words the refusal must contain)
    "boolean job id": ({"job_id": True}, ["line 1", "job_id: Input should be a valid integer (got True)"]),
    "string job id": ({"job_id": "1"}, ["line 1", "job_id: Input should be a valid integer"]),
    "float job id": ({"job_id": 1.0}, ["line 1", "job_id: Input should be a valid integer"]),
    "no config hash": ({"config_hash": ...}, ["line 1", "config_hash: Field required"]),
    "no plan id": ({"plan_id": ...}, ["line 1", "plan_id: Field required"]),
    "accuracy above 1": ({"result.accuracy": 1.5}, ["line 1", "result.accuracy: Input should be less than or equal to 1"]),
    "negative f1": ({"result.f1": -0.1}, ["line 1", "result.f1: Input should be greater than or equal to 0"]),
    "NaN accuracy": ({"result.accuracy": math.nan}, ["line 1", "result.accuracy: Input should be a finite number"]),
    "infinite wall time": ({"result.wall_time_s": math.inf}, ["result.wall_time_s: Input should be a finite number"]),
    "huge step count": ({"result.steps": 2**40}, ["result.steps: Input should be less than or equal to 2147483647"]),
    "huge memory": ({"result.peak_rss": 2**70}, ["result.peak_rss: Input should be less than or equal to"]),
    "accuracy as a string": ({"result.accuracy": "0.5"}, ["result.accuracy: Input should be a valid number"]),
    "boolean steps": ({"result.steps": True}, ["result.steps: Input should be a valid integer"]),
    "NUL in device": ({"result.device": "cuda\x00"}, ["result.device: Value error, a string contains a NUL"]),
    "NaN in extra": ({"result.extra": {"curve": [1.0, math.nan]}}, ["result.extra: Value error, curve[1] is nan"]),
    "unknown result field": ({"result.colour": "red"}, ["result.colour: Extra inputs are not permitted"]),
    "NaN curve point": ({"points": [[1, "train_loss", math.nan]]}, ["points[0]: value: Input should be a finite number"]),
    "dev accuracy curve above 1": ({"points": [[1, "dev_accuracy", 7.0]]}, ["points[0]: dev_accuracy must be in [0, 1]"]),
    "point not a triple": ({"points": [[1, 0.5]]}, ["points[0]: must be a [step, name, value] triple"]),
}


@pytest.mark.parametrize("case", list(CASES), ids=lambda c: c.replace(" ", "-"))
def test_a_hostile_line_is_refused_and_nothing_changes(jobs, tmp_path, case):
    changes, words = CASES[case]
    _refused(jobs, tmp_path, [line(jobs, jobs["ids"][0], **changes)], "nothing imported", *words)


def test_a_job_of_another_plan_is_refused(jobs, tmp_path):
    other = jobs["other"]
    rec = line(jobs, other, config_hash=jobs["hash"][other])  # right hash, wrong plan id
    _refused(jobs, tmp_path, [rec], f"line 1: job {other} belongs to plan {jobs['other_plan']}, the line says plan "
             f"{jobs['plan']}")
    wrong_hash = line(jobs, jobs["ids"][0], config_hash=jobs["hash"][jobs["ids"][1]])
    _refused(jobs, tmp_path, [wrong_hash], "line 1:", "does not match the database's job")


def test_a_bad_line_after_good_ones_imports_nothing_and_names_the_line(jobs, tmp_path):
    a, b, c = jobs["ids"]
    records = [line(jobs, a), line(jobs, b), line(jobs, c, **{"result.accuracy": 2.0})]
    _refused(jobs, tmp_path, records, "results.jsonl: line 3: result.accuracy")
    # every problem of the file is listed, not only the first
    records = [line(jobs, a, job_id=True), line(jobs, b), "{broken", line(jobs, c, **{"result.f1": math.inf})]
    text = _refused(jobs, tmp_path, records, "3 problems", "line 1: job_id", "line 3: not valid JSON",
                    "line 4: result.f1")
    assert "line 2" not in text


def test_a_refusal_by_the_database_mid_import_rolls_everything_back(jobs, tmp_path, monkeypatch):
    """The third result's write fails inside the transaction (after two were written): nothing is
    imported, no job is left running/claimed by the import, and the error names the line."""
    from zolab.db.repo import jobs as jobs_repo

    original, calls = jobs_repo.add_result, []

    def add_result(session, job, values):
        calls.append(job.id)
        if len(calls) == 3:
            values = {**values, "steps": 2**70}  # past the column: the database (driver) itself refuses it
        return original(session, job, values)

    monkeypatch.setattr(jobs_repo, "add_result", add_result)
    before = _state(jobs["url"])
    path = _write(tmp_path, [line(jobs, i) for i in jobs["ids"]])
    with pytest.raises(TransferError) as err:
        import_results(jobs["url"], path)
    assert f"results.jsonl: line 3: job {jobs['ids'][2]}: the database refused the result" in str(err.value)
    assert len(calls) >= 3
    assert _state(jobs["url"]) == before


def test_a_job_not_queued_is_reported_not_claimed(jobs, tmp_path):
    from zolab.platform.queue import JobQueue

    a, b, _c = jobs["ids"]
    JobQueue(jobs["url"]).cancel(b, by="test")
    report = import_results(jobs["url"], _write(tmp_path, [line(jobs, a), line(jobs, b)]))
    assert report.imported == [a] and report.not_imported == [(b, "job is cancelled, not queued (retry it first)")]
    with session_scope(jobs["url"]) as s:
        assert repo.get_job(s, b).status == "cancelled" and repo.result_of(s, b) is None


def test_the_result_schema_covers_every_result_field():
    """A new Result field must get a validation rule (else imports would refuse it as unknown)."""
    import dataclasses

    from zolab.platform.result_lines import ResultValues
    from zolab.runners.reporter import Result

    assert set(ResultValues.model_fields) == {f.name for f in dataclasses.fields(Result)}
    assert transfer.MAX_PROBLEMS_SHOWN >= 10
