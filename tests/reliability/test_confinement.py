"""File access from plans is confined (issue 17, item 6).

``task_options.path`` (data), ``checkpoint_dir`` and ``cache_dir`` must resolve, after symlinks, under
``ZOLAB_DATA_ROOTS`` (default: the working directory and zolab's cache): checked at upload and again
by the runner (job files of ``run-one``/batch never saw an upload). Before, a plan could read any file
the worker can read (and a row of it reached the job's error text, shown in the UI) and write
checkpoints anywhere. Job errors never quote data rows now.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.platform._factories import make_jobs
from tests.reliability.db_rows import count_rows
from zolab.config import data_roots
from zolab.db.repo import jobs as repo
from zolab.db.session import session_scope
from zolab.platform.errors import PlanError
from zolab.platform.upload import upload_plan
from zolab.platform.worker import Worker
from zolab.runners import train
from zolab.runners.config import RunConfig
from zolab.runners.confine import PathNotAllowed, confined
from zolab.runners.tasks import get_task

PLAN = """\
zolab: 1
name: files
baseline:
  method: fo-sgd
  model: tiny-opt
  lr: 1.0e-3
  steps: 2
  batch_size: 2
  task_options: {OPTIONS}
tasks: [csv]
seeds: [1]
ablations:
  - name: lr
    ablated_part: learning rate
    action: REPLACE
    replacement: [1.0e-2]
"""
SECRET_ROWS = ["alice,hunter2-secret-token", "bob,correct-horse-battery"]
SMALL_RUN = {"method": "fo-sgd", "model": "tiny-opt", "steps": 2, "batch_size": 2, "train_size": 4, "dev_size": 2,
             "test_size": 2, "max_length": 16, "device": "cpu", "eval_every": 2, "checkpoint_every": 1}


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """An allowed root with a data file, a secret file outside it, and a symlink in the root to the secret."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    secret = outside / "secret.csv"
    secret.write_text("text,label\n" + "\n".join(SECRET_ROWS) + "\n")
    good = allowed / "data.csv"
    good.write_text("text,label\n" + "\n".join(f"row {i} is {'good' if i % 2 else 'bad'},{i % 2}" for i in range(12)))
    (allowed / "link.csv").symlink_to(secret)
    monkeypatch.setenv("ZOLAB_DATA_ROOTS", str(allowed))
    monkeypatch.chdir(allowed)
    return {"allowed": allowed, "outside": outside, "secret": secret, "good": good, "link": allowed / "link.csv"}


def _plan(options: str) -> str:
    return PLAN.replace("{OPTIONS}", options)


def test_default_roots_are_the_working_directory_and_the_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("ZOLAB_DATA_ROOTS", raising=False)
    monkeypatch.setenv("ZOLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert data_roots() == [tmp_path.resolve(), (tmp_path / "cache").resolve()]
    monkeypatch.setenv("ZOLAB_DATA_ROOTS", os.pathsep.join(["/a", "/b"]))
    assert data_roots() == [Path("/a"), Path("/b")]


# -- at upload -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("options", "field", "words"), [
    ("{path: /etc/passwd}", "baseline.task_options.path", "resolves to /etc/passwd, outside"),
    ("{path: ../outside/secret.csv}", "baseline.task_options.path", "outside the allowed folders"),
    ("{path: link.csv}", "baseline.task_options.path", "secret.csv, outside"),   # a symlink pointing out
    ("{checkpoint_dir: /var/tmp/zolab-anywhere}", "baseline.task_options.checkpoint_dir", "outside"),
    ("{cache_dir: /root}", "baseline.task_options.cache_dir", "outside"),
    ("{path: 'file:///etc/passwd'}", "baseline.task_options.path", "URL"),
], ids=["etc-passwd", "traversal", "symlink-out", "checkpoint-dir", "cache-dir", "file-url"])
def test_upload_refuses_paths_outside_the_roots(db_url, roots, options, field, words):
    with pytest.raises(PlanError) as info:
        upload_plan(_plan(options), fmt="yaml", filename="files.yaml", url=db_url)
    issue = info.value.issues[0]
    assert (issue.field, issue.line) == (field, 9) and words in issue.message, str(info.value)
    assert not any(count_rows(db_url).values())


def test_upload_accepts_paths_under_the_roots(db_url, roots):
    res = upload_plan(_plan(f"{{path: data.csv, checkpoint_dir: {roots['allowed'] / 'ckpt'}}}"), fmt="yaml",
                      filename="files.yaml", url=db_url)
    assert res.created


# -- at run time (the runner, no upload) --------------------------------------------------------------
def _config(**options) -> RunConfig:
    return RunConfig(**SMALL_RUN, task="csv", task_options=options)


@pytest.mark.parametrize("which", ["secret", "link", "traversal"])
def test_the_runner_refuses_before_opening_anything(roots, which, monkeypatch):
    raw = {"secret": str(roots["secret"]), "link": "link.csv", "traversal": "../outside/secret.csv"}[which]
    opened = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self) or real_open(self, *a, **k))
    with pytest.raises(PathNotAllowed, match="outside the allowed folders") as info:
        train.run(_config(path=raw))
    assert not any(p.resolve() == roots["secret"] for p in opened)
    assert not any(row in str(info.value) for row in SECRET_ROWS)


def test_the_runner_refuses_a_checkpoint_dir_outside(roots):
    with pytest.raises(PathNotAllowed, match="checkpoint_dir"):
        train.run(_config(path="data.csv", checkpoint_dir=str(roots["outside"] / "ckpt")))
    assert not (roots["outside"] / "ckpt").exists()


def test_the_runner_runs_with_paths_inside(roots):
    result = train.run(_config(path="data.csv", checkpoint_dir="ckpt"))
    assert result.steps == 2 and any((roots["allowed"] / "ckpt").iterdir())


def test_a_local_model_folder_outside_the_roots_is_refused_by_the_runner(roots):
    with pytest.raises(PathNotAllowed, match="model '/etc'"):
        train.run(RunConfig(**{**SMALL_RUN, "model": "/etc"}))


def test_confined_resolves_symlinks_and_collapses_dotdot(roots):
    assert confined("data.csv", "x") == roots["good"].resolve()
    assert confined("sub/../data.csv", "x") == roots["good"].resolve()  # '..' that stays inside is fine
    with pytest.raises(PathNotAllowed):
        confined(str(roots["link"]), "x")


# -- the worker: a job stored without an upload (old plan, direct insert) ------------------------------
def test_worker_fails_such_a_job_once_and_its_error_holds_no_data_row(db_url, roots):
    _, (job_id,) = make_jobs(db_url, 1, {**SMALL_RUN, "task": "csv", "task_options": {"path": str(roots["secret"])}})
    stats = Worker(db_url, poll_s=0.05, runner="zolab.runners.train:run").run()
    with session_scope(db_url) as s:
        job = repo.get_job(s, job_id)
        events = " ".join(e.message for e in repo.events_of(s, job_id))
    assert stats.failed == 1 and job.status == "failed" and job.attempts == 1  # not retried
    assert "outside the allowed folders" in job.error
    assert not any(row in job.error or row in events for row in SECRET_ROWS)


# -- loaders never quote file content --------------------------------------------------------------
@pytest.mark.parametrize(("kind", "options"), [
    ("csv", {"text_field": "text", "label_field": "label"}),
    ("csv", {"text_field": "text", "label_field": "label", "labels": ["neg", "pos"]}),
    ("csv", {"text_field": "label", "label_field": "text"}),
])
def test_loader_errors_name_file_line_field_but_not_content(roots, kind, options):
    """The file is inside a root here (confinement is not what stops it): a bad label still must not
    bring the row into the error (before: "label 'hunter2-secret-token' is not an integer")."""
    inside = roots["allowed"] / "secret.csv"
    inside.write_text(roots["secret"].read_text())
    with pytest.raises(ValueError) as info:
        get_task(kind).loader({"path": str(inside), **options}, 0)
    text = str(info.value)
    assert str(inside) in text and "line 2" in text
    assert not any(part in text for row in SECRET_ROWS for part in row.split(","))
