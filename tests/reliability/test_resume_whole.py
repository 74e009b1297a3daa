"""A resumed run's result is the whole run's, in every column (issue 17, item 1).

Before: a run resumed from a checkpoint reported its last segment only (forward passes, wall time,
convergence step and loss slope of that segment, no zero-shot accuracy, a dev/loss curve starting at
the resume point), because each segment started from an empty meter and the checkpoint carried no
totals. Now every checkpoint carries :class:`~zolab.runners.checkpoint.RunTotals`.

Compared against an uninterrupted run of the same config: every Result column exactly, except the
measured ones (wall time: the checkpointed time of the earlier segments plus the last segment's, within
0.25 s; memory peaks: the maximum over segments), and the curves (``extra`` and, on the DB path, the
stored metric points). Three paths: in process (MemoryReporter ``stop_at``), the DB worker (a worker
that dies without releasing its job, then lease expiry and another worker; SQLite and PostgreSQL), and
``python -m zolab.runners.batch`` killed with SIGKILL mid-job, its line then imported into the DB.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.platform._factories import make_jobs
from tests.reliability._whole import assert_whole, plain
from zolab.db.repo import jobs as repo
from zolab.db.session import session_scope
from zolab.platform.transfer import import_results
from zolab.platform.worker import Worker
from zolab.runners import batch, train
from zolab.runners.config import RunConfig
from zolab.runners.jobfile import JobFile, write_job
from zolab.runners.reporter import Checkpoint, JobCancelled, MemoryReporter, Result

ROOT = Path(__file__).resolve().parents[2]
# log_every = 40 // 13 = 3 and checkpoint_every = 4: some checkpoints fall inside a loss window
TINY = {"method": "mezo", "model": "tiny-opt", "task": "synthetic-sentiment", "seed": 3, "lr": 1e-3, "eps": 1e-3,
        "steps": 40, "batch_size": 4, "eval_every": 10, "checkpoint_every": 4, "train_size": 64, "dev_size": 16,
        "test_size": 32, "max_length": 32, "device": "cpu"}
CURVE_POINTS = 13
WALL_TOLERANCE_S = 0.25


@pytest.fixture(autouse=True)
def _windowed_loss_curve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train, "_MAX_CURVE_POINTS", CURVE_POINTS)


def _config(method: str = "mezo", tmp: Path | None = None) -> RunConfig:
    options = {"checkpoint_dir": str(tmp)} if tmp is not None else {}
    return RunConfig(**{**TINY, "method": method, "task_options": options})


def _run(config: RunConfig, rep: MemoryReporter, resume: Checkpoint | None = None) -> tuple[Result | None, float]:
    start = time.perf_counter()
    try:
        result = train.run(config, rep, resume)
    except JobCancelled:
        result = None
    return result, time.perf_counter() - start


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Result, MemoryReporter]]:
    """Uninterrupted runs (a ZO, a stateful ZO and a first-order method) with their reporters."""
    out = {}
    mp = pytest.MonkeyPatch()
    mp.setattr(train, "_MAX_CURVE_POINTS", CURVE_POINTS)
    tmp = tmp_path_factory.mktemp("ckpt")
    mp.setenv("ZOLAB_DATA_ROOTS", str(tmp))
    try:
        for method in ("mezo", "zo-adam", "fo-sgd"):
            rep = MemoryReporter()
            out[method] = (train.run(_config(method, tmp if method == "fo-sgd" else None), rep), rep)
    finally:
        mp.undo()
    return out


def _kill_chain(config: RunConfig, stops: list[int]) -> tuple[Result, list[Checkpoint], float]:
    """Run, stopping at each step of ``stops`` and resuming from the last checkpoint; returns the
    final result, the checkpoints resumed from, and the final segment's measured wall time."""
    resume, used = None, []
    for stop in stops:
        rep = MemoryReporter(stop_at=stop)
        result, _ = _run(config, rep, resume)
        assert result is None and rep.checkpoints, f"no checkpoint before step {stop}"
        resume = rep.checkpoints[-1]
        used.append(resume)
    result, wall = _run(config, MemoryReporter(), resume)
    assert result is not None
    return result, used, wall


def _check_wall(result: Result, resumed_from: Checkpoint, last_segment_wall: float) -> None:
    """Wall time = the time the earlier segments had checkpointed + the last segment's."""
    before = resumed_from.totals["wall_time_s"]
    assert before > 0
    assert result.wall_time_s == pytest.approx(before + last_segment_wall, abs=WALL_TOLERANCE_S)
    assert result.wall_time_s > last_segment_wall + before / 2  # not the last segment's alone
    assert result.gpu_hours == 0.0  # CPU


# -- in process: MemoryReporter stop_at -----------------------------------------------------------
@pytest.mark.parametrize("stops", [[5], [13], [22], [40], [9, 30]],
                         ids=["in-window", "on-log-point", "after-eval", "after-last-step", "killed-twice"])
def test_resumed_result_equals_uninterrupted(stops, references):
    ref, ref_rep = references["mezo"]
    result, used, wall = _kill_chain(_config(), stops)
    assert_whole(result.to_dict(), ref.to_dict())
    assert result.extra["segments"] == len(stops) + 1
    assert result.extra["resumed_from"] == used[-1].step
    _check_wall(result, used[-1], wall)
    # the totals the checkpoint carried are what the uninterrupted run had at that step
    at = used[-1].step
    carried = plain(used[-1].totals)
    assert carried["dev_curve"] == plain([p for p in ref_rep.series("dev_accuracy") if p[0] <= at])
    assert carried["forward_passes"] == 2 * at


@pytest.mark.parametrize("method", ["zo-adam", "fo-sgd"])
def test_resumed_result_is_whole_for_stateful_and_first_order_methods(method, references, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOLAB_DATA_ROOTS", str(tmp_path))
    ref, _ = references[method]
    result, used, wall = _kill_chain(_config(method, tmp_path if method == "fo-sgd" else None), [22])
    assert_whole(result.to_dict(), ref.to_dict())
    _check_wall(result, used[-1], wall)


def test_checkpoint_totals_survive_json_with_non_finite_losses():
    """JSON (the DB's checkpoint column) stores NaN as null; it comes back as NaN, not as a crash."""
    from zolab.runners.checkpoint import RunTotals

    t = RunTotals(loss_curve=[(1, float("nan")), (2, 0.5)], loss_window=[float("inf")], forward_passes=4)
    via_db = json.loads(json.dumps(t.to_dict()).replace("NaN", "null"))
    back = RunTotals.from_dict(via_db)
    assert back.forward_passes == 4 and back.loss_curve[1] == (2, 0.5)
    assert back.loss_curve[0][1] != back.loss_curve[0][1]  # NaN


def test_checkpoint_without_totals_marks_the_result_incomplete(references):
    """A checkpoint written before totals existed: the result says so instead of passing off a segment."""
    rep = MemoryReporter(stop_at=13)
    _run(_config(), rep)
    old = rep.checkpoints[-1]
    old.totals = {}
    result, _ = _run(_config(), MemoryReporter(), old)
    assert result is not None and result.extra["totals_incomplete"] is True
    assert "totals_incomplete" not in references["mezo"][0].extra


# -- the DB worker: dies holding the job, another worker resumes ------------------------------------
class _Died(BaseException):
    """Not an Exception, not a stop: the worker dies with the job (like SIGKILL) and releases nothing."""


class _DyingReporter:
    def __init__(self, inner: Any, at: int) -> None:
        self.inner, self.at = inner, at

    def progress(self, step: int, total: int, loss: float | None = None) -> None:
        self.inner.progress(step, total, loss)
        if step >= self.at:
            raise _Died()

    def metric(self, step: int, name: str, value: float) -> None:
        self.inner.metric(step, name, value)

    def heartbeat(self) -> None:
        self.inner.heartbeat()

    def checkpoint(self, ckpt: Checkpoint) -> None:
        self.inner.checkpoint(ckpt)


def _dies_at(at: int):
    def run(config, reporter, resume):
        return train.run(config, _DyingReporter(reporter, at), resume)

    return run


def _result_columns(url: str, job_id: int) -> dict[str, Any]:
    with session_scope(url) as s:
        row = repo.result_of(s, job_id)
        return {k: getattr(row, k) for k in Result.__dataclass_fields__}


def _stored(url: str, job_id: int, name: str) -> list[tuple[int, float]]:
    with session_scope(url) as s:
        return [(step, value) for step, _, value in repo.points_of(s, job_id, name)]


LEASE_S = 1.0


@pytest.mark.parametrize("stops", [[9], [22, 31]], ids=["killed-once", "killed-twice"])
def test_resumed_db_job_stores_the_whole_result_and_curves(db_url, stops, references):
    ref, ref_rep = references["mezo"]
    _, (job_id,) = make_jobs(db_url, 1, {**TINY, "task_options": {}})
    for at in stops:
        victim = Worker(db_url, lease_s=LEASE_S, heartbeat_s=0.05, poll_s=0.05, runner=_dies_at(at))
        with pytest.raises(_Died):
            victim.run()
        with session_scope(db_url) as s:
            job = repo.get_job(s, job_id)
            assert job.status == "running" and job.checkpoint["step"] <= at  # nobody released it
        time.sleep(LEASE_S + 0.2)
    survivor = Worker(db_url, lease_s=30, heartbeat_s=0.05, poll_s=0.05, runner="zolab.runners.train:run")
    assert survivor.run().succeeded == 1
    got = _result_columns(db_url, job_id)
    assert_whole(got, ref.to_dict())
    assert got["extra"]["segments"] == len(stops) + 1
    for name in ("dev_accuracy", "train_loss"):
        assert _stored(db_url, job_id, name) == ref_rep.series(name), name


# -- python -m zolab.runners.batch, SIGKILLed mid-job, then imported -------------------------------
def _batch(folder: Path, out: Path, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = (f"import sys; from zolab.runners import train; train._MAX_CURVE_POINTS = {CURVE_POINTS}; "
            "from zolab.runners.batch import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.Popen([sys.executable, "-c", code, str(folder), "--out", str(out)], env=env, cwd=ROOT, **kw)


@pytest.mark.slow
def test_batch_killed_mid_job_resumes_and_imports_the_whole_run(db_url, tmp_path, references):
    ref, ref_rep = references["mezo"]
    plan_id, (job_id,) = make_jobs(db_url, 1, {**TINY, "task_options": {}})
    folder = tmp_path / "export"
    folder.mkdir()
    job = JobFile(RunConfig(**{**TINY, "task_options": {}}), job_id, plan_id=plan_id)  # as `zolab export` writes it
    write_job(folder, job)
    out = tmp_path / "results.jsonl"
    ckpt_file = batch.checkpoint_file(out, job)

    victim = _batch(folder, out, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and victim.poll() is None:
            saved, _ = batch.saved_checkpoint(ckpt_file)
            if saved is not None and saved.step >= 20:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the batch finished or stalled before its checkpoint at step 20")
        os.killpg(victim.pid, signal.SIGKILL)
    finally:
        victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL and not out.exists()
    saved, points = batch.saved_checkpoint(ckpt_file)
    assert saved is not None and all(p[0] <= saved.step for p in points)

    again = _batch(folder, out, stdout=subprocess.PIPE, text=True)
    assert again.wait(timeout=300) == 0, again.stdout.read() if again.stdout else ""
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["result"]["extra"]["resumed_from"] >= saved.step
    assert_whole(line["result"], ref.to_dict())
    assert not ckpt_file.exists()  # done: nothing left to resume

    report = import_results(db_url, out)
    assert report.imported == [job_id]
    assert_whole(_result_columns(db_url, job_id), ref.to_dict())
    for name in ("dev_accuracy", "train_loss"):
        assert _stored(db_url, job_id, name) == ref_rep.series(name), name
