"""DB faults seen by workers and the CLI (issue 8, item 3). Every fault is real, injected server-side.

1. PostgreSQL connections cut while a worker runs a real (tiny MeZO) job: mid-claim, mid-heartbeat,
   mid-finish (right before the result insert), plus a storm of ``pg_terminate_backend`` on every
   backend for ~2 s; and all connections cut right before a claim. The worker logs one clear line
   per fault, backs off, and the job ends succeeded exactly once, its curve written exactly once.
2. An outage longer than the retries (``ALLOW_CONNECTIONS false``): see the tests for what the worker does.
3. SQLite: another process holds the write lock while the worker finishes: no "database is locked".
4. A database with a newer schema than the code: ``zolab plan upload``, ``worker``, ``status`` print
   one clear line, exit 2, write nothing.
5. The result insert and the status change are one transaction: an exception between them leaves
   neither.
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import column, table, update
from typer.testing import CliRunner

from tests.platform._factories import make_jobs
from tests.reliability._faults import CutBeforeStatement, PgFaults, hold_sqlite_write_lock
from tests.reliability.db_rows import read
from zolab.cli import app
from zolab.db import migrate
from zolab.db.models import JobStatus
from zolab.db.repo import jobs as repo
from zolab.db.session import dispose_engines, get_engine, raw_engine
from zolab.platform.queue import TRANSITIONS, JobQueue
from zolab.platform.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
RUNNER = "zolab.runners.train:run"
TINY = {"method": "mezo", "model": "tiny-opt", "task": "synthetic-sentiment", "seed": 5, "lr": 1e-3, "eps": 1e-3,
        "steps": 30, "batch_size": 4, "eval_every": 10, "checkpoint_every": 5, "train_size": 32, "dev_size": 8,
        "test_size": 16, "max_length": 32, "device": "cpu"}
RETRY_LOGGER = "zolab.db.retry"


# -- helpers ---------------------------------------------------------------------------------------
def _job(url: str, job_id: int):
    return read(url, lambda s: repo.get_job(s, job_id))


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _worker(url: str, **kw) -> Worker:
    return Worker(url, runner=kw.pop("runner", RUNNER), lease_s=kw.pop("lease_s", 20.0),
                  heartbeat_s=kw.pop("heartbeat_s", 0.05), poll_s=0.1, **kw)


class WorkerThread(threading.Thread):
    """A real Worker (real runner) in a thread, so faults can be injected into its engine."""

    def __init__(self, url: str, **kw) -> None:
        super().__init__(name="zolab-worker", daemon=True)
        self.worker = _worker(url, **kw)
        self.stats = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.stats = self.worker.run()
        except BaseException as exc:  # noqa: BLE001 - the test asserts on it
            self.error = exc

    def result(self, timeout: float = 120.0):
        self.join(timeout)
        assert not self.is_alive(), "worker did not finish"
        return self.stats


def assert_finished_once(url: str, plan_id: int, job_id: int, *, attempts: int = 1, steps: int = TINY["steps"]) -> None:
    """Succeeded once: one result row, the curve written exactly once and equal to the result's own
    curve (no half-written or doubled rows), and a legal, gap-free job_events trail."""
    def rows(s):
        return (repo.get_job(s, job_id), repo.result_of(s, job_id), repo.count_results(s, plan_id),
                repo.points_of(s, job_id), repo.events_of(s, job_id))

    job, result, n_results, points, events = read(url, rows)
    assert job.status == JobStatus.SUCCEEDED.value and job.attempts == attempts
    assert job.lease_owner is None and job.error is None
    assert n_results == 1 and result.job_id == job_id and result.steps == steps
    assert job.progress_step == steps and job.last_loss == pytest.approx(result.final_loss)
    train = [(st, v) for st, name, v in points if name == "train_loss"]
    dev = [(st, v) for st, name, v in points if name == "dev_accuracy"]
    assert train == [tuple(p) for p in result.extra["loss_curve"]]
    assert dev == [tuple(p) for p in result.extra["dev_curve"]]
    assert len(points) == len(train) + len(dev)
    trail = [(e.from_status, e.to_status) for e in events]
    assert trail[0] == (None, "queued")
    for (_, prev_to), (src, dst) in itertools.pairwise(trail):
        assert src == prev_to and JobStatus(dst) in TRANSITIONS[JobStatus(src)], trail
    assert [dst for _, dst in trail].count("succeeded") == 1 and trail[-1][1] == "succeeded"
    assert [dst for _, dst in trail].count("running") == attempts


def _fault_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("zolab")]


@pytest.fixture
def pg_faults(pg_url):
    faults = PgFaults(pg_url)
    yield faults
    faults.unblock()
    faults.close()


# -- 1. connections cut while a real job runs ------------------------------------------------------
def test_pg_cuts_mid_claim_heartbeat_finish_and_a_storm(pg_url, pg_faults, caplog):
    caplog.set_level(logging.WARNING, logger="zolab")
    plan_id, (job_id,) = make_jobs(pg_url, 1, TINY)
    cuts = CutBeforeStatement(get_engine(pg_url), pg_faults, {
        "SKIP LOCKED": 1,                  # inside the claim, after nothing yet
        "INSERT INTO metric_points": 2,    # inside two heartbeats (job row already updated)
        "INSERT INTO results": 1,          # inside finish: curve points and lease already written
    })
    worker = WorkerThread(pg_url)
    worker.start()
    try:
        _wait(lambda: (_job(pg_url, job_id).progress_step or 0) >= 1, 120, "the job to report progress")
        with pg_faults.storm(2.0) as storm:
            time.sleep(2.0)
        stats = worker.result()
    finally:
        worker.join(120)
        cuts.remove()
    assert worker.error is None and stats.succeeded == 1 and stats.job_ids == [job_id]
    assert sorted(cuts.hits) == sorted(["SKIP LOCKED", "INSERT INTO metric_points", "INSERT INTO metric_points",
                                        "INSERT INTO results"])
    assert storm.killed >= 1
    assert_finished_once(pg_url, plan_id, job_id)
    lines = _fault_lines(caplog)
    # the reporter's writer thread tries 3 times a round (then waits and tries again, training goes on);
    # claim/finish try 10 times
    for op, tries in (("claim a job", 10), ("heartbeat", 3), ("finish a job", 10)):
        assert any(f"during {op} (attempt 1/{tries}): lost the connection to PostgreSQL at" in ln
                   and "terminating connection due to administrator command; retrying in" in ln
                   for ln in lines), (op, lines)
    assert all("\n" not in ln and "Traceback" not in ln for ln in lines)
    print(f"\nstorm: {storm.rounds} rounds, {storm.killed} backends cut; {len(lines)} warnings")


def test_pg_all_connections_cut_right_before_claim(pg_url, pg_faults, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="zolab")
    plan_id, (job_id,) = make_jobs(pg_url, 1, TINY)
    claims = []
    original = JobQueue.claim

    def cut_then_claim(self, *args, **kwargs):
        claims.append(pg_faults.cut_all())  # the worker's pooled connections die just before it claims
        return original(self, *args, **kwargs)

    monkeypatch.setattr(JobQueue, "claim", cut_then_claim)
    cuts = CutBeforeStatement(get_engine(pg_url), pg_faults, {"SKIP LOCKED": 2})
    try:
        stats = _worker(pg_url).run()
    finally:
        cuts.remove()
    assert stats.succeeded == 1
    assert claims and claims[0] >= 1  # there was a live pooled connection to cut
    assert cuts.hits.count("SKIP LOCKED") == 2
    assert_finished_once(pg_url, plan_id, job_id)
    lines = _fault_lines(caplog)
    assert sum("during claim a job (attempt" in ln for ln in lines) >= 2, lines


# -- 2. an outage longer than the retries ----------------------------------------------------------
class _Reporter:
    """Passes everything to the worker's reporter; calls ``at_step`` once when ``step`` is reached."""

    def __init__(self, inner, step: int, at_step) -> None:
        self.inner, self.step, self.at_step = inner, step, at_step

    def progress(self, step, total, loss=None):
        if step == self.step and self.at_step is not None:
            self.at_step, fn = None, self.at_step
            fn()
        self.inner.progress(step, total, loss)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def fast_retries(monkeypatch):
    """Shrink every backoff so that ten retries are over in well under a second: an outage of a few
    seconds is then 'longer than the retries' without making the test wait for the real schedule
    (the slow CLI test below uses the real one)."""
    from zolab.db import retry

    monkeypatch.setattr(retry, "backoff_delay", lambda attempt, base, cap: 0.02)


def test_pg_outage_longer_than_retries_mid_job_worker_waits_and_finishes(pg_url, pg_faults, fast_retries, caplog):
    """The database goes away mid-run and stays away past the end of the run: heartbeats fail after
    their retries (logged, the run goes on, its curve is kept in memory), the finish waits for the
    database, and the job ends succeeded once with its whole curve when it returns."""
    caplog.set_level(logging.WARNING, logger="zolab")
    plan_id, (job_id,) = make_jobs(pg_url, 1, TINY)
    from zolab.runners import train

    back = threading.Timer(3.0, pg_faults.unblock)

    def runner(config, reporter, resume):
        result = train.run(config, _Reporter(reporter, 15, pg_faults.block), resume)  # gone at step 15
        back.start()  # back 3 s after the run ended
        return result

    worker = WorkerThread(pg_url, runner=runner)
    worker.start()
    try:
        stats = worker.result()
    finally:
        back.cancel()
        if back.is_alive():
            back.join()
    assert worker.error is None, f"worker died: {worker.error!r}"
    assert stats.succeeded == 1
    assert_finished_once(pg_url, plan_id, job_id)
    lines = _fault_lines(caplog)
    assert any(f"heartbeat of job {job_id} failed, will retry: heartbeat failed after 3 attempts; last error:" in ln
               and "is not currently accepting connections" in ln for ln in lines), lines
    assert any(f"database unreachable during finish of job {job_id}: finish a job failed after 10 attempts" in ln
               and "waits" in ln for ln in lines), lines
    assert all("\n" not in ln and "Traceback" not in ln for ln in lines)


def test_pg_outage_before_the_worker_starts_it_waits_then_claims(pg_url, pg_faults, fast_retries, caplog):
    """The database is away when the worker starts (register, claim): the worker waits it out with one
    error line per round instead of dying, then claims and finishes the job once."""
    caplog.set_level(logging.WARNING, logger="zolab")
    plan_id, (job_id,) = make_jobs(pg_url, 1, TINY)
    worker = _worker(pg_url)  # imports the runner first (seconds), so the outage meets the worker's DB work
    dispose_engines()
    pg_faults.block()
    back = threading.Timer(2.0, pg_faults.unblock)
    back.start()
    try:
        stats = worker.run()
    finally:
        back.cancel()
        if back.is_alive():
            back.join()
    assert stats.succeeded == 1
    assert_finished_once(pg_url, plan_id, job_id)
    lines = _fault_lines(caplog)
    assert any(ln.startswith("database unreachable during register the worker: register a worker failed after 10")
               and "is not currently accepting connections; worker" in ln for ln in lines), lines


@pytest.mark.slow
def test_cli_worker_outlasts_a_20s_outage_with_real_backoff(pg_url, pg_faults):
    """``zolab worker`` as a process with the real retry schedule: the database disappears for 20 s
    mid-job (longer than the ~8-16 s of the queue's own retries). No traceback, clear lines on stderr,
    exit 0, the job succeeded once."""
    plan_id, (job_id,) = make_jobs(pg_url, 1, {**TINY, "steps": 40})
    env = dict(os.environ, ZOLAB_RUNNER=RUNNER, ZOLAB_HEARTBEAT_SECONDS="0.2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen([sys.executable, "-m", "zolab", "worker", "--db", pg_url, "--lease-seconds", "120"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: (_job(pg_url, job_id).progress_step or 0) >= 5, 180, "the job to run")
        dispose_engines()
        pg_faults.block()
        t0 = time.monotonic()
        time.sleep(20.0)
        pg_faults.unblock()
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"\noutage {time.monotonic() - t0:.0f} s; worker stderr:\n" + err[-3000:])
    assert proc.returncode == 0, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    assert "worker done: 1 succeeded, 0 failed" in out
    # heartbeats are written by the reporter's own thread, so training goes on through the outage; the
    # lines are the heartbeats' and, when the run ends first, the finish's
    faults = [ln for ln in err.splitlines() if "unreachable during" in ln]
    # blocking the database first terminates the open backends ("lost the connection"), then refuses new
    # ones ("not currently accepting connections"): which one a given retry meets depends on timing
    assert faults and all("is not currently accepting connections" in ln or "lost the connection to PostgreSQL" in ln
                          for ln in faults), err
    assert any("is not currently accepting connections" in ln for ln in faults), err
    print(f"{len(faults)} fault lines on stderr")
    assert_finished_once(pg_url, plan_id, job_id, steps=40)
    rows = read(pg_url, lambda s: repo.events_of(s, job_id))
    assert [e.to_status for e in rows] == ["queued", "running", "succeeded"]


# -- 3. SQLite: another process holds the write lock -----------------------------------------------
def _sqlite_path(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database


@pytest.mark.parametrize("busy_timeout_s", [30.0, 0.3], ids=["busy-timeout-waits", "locked-then-retried"])
def test_sqlite_write_lock_held_while_the_worker_finishes(sqlite_url, caplog, monkeypatch, busy_timeout_s):
    """A second process holds ``BEGIN IMMEDIATE`` for 3 s from the moment the run ends, so the finish
    (and heartbeats) meet the lock. With the 30 s busy timeout the driver simply waits; with a 0.3 s
    one SQLite says "database is locked" and db/ retries with backoff. Either way nothing surfaces
    and the job completes once."""
    import zolab.db.session as session_mod

    monkeypatch.setattr(session_mod, "SQLITE_BUSY_TIMEOUT_S", busy_timeout_s)
    caplog.set_level(logging.WARNING, logger="zolab")
    plan_id, (job_id,) = make_jobs(sqlite_url, 1, TINY)
    from zolab.runners import train

    held = {}

    def runner(config, reporter, resume):
        result = train.run(config, reporter, resume)
        held["ctx"] = hold_sqlite_write_lock(_sqlite_path(sqlite_url), 3.0)
        held["proc"] = held["ctx"].__enter__()
        held["t0"] = time.monotonic()
        return result

    dispose_engines()
    worker = _worker(sqlite_url, runner=runner)
    try:
        stats = worker.run()
        finished_after = time.monotonic() - held["t0"]
    finally:
        if "ctx" in held:
            held["ctx"].__exit__(None, None, None)
    assert held["proc"].returncode == 0 and held["proc"].stdout.read().strip() == "released"
    assert stats.succeeded == 1 and stats.failed == 0
    assert finished_after >= 2.5  # the finish really waited for the other process's lock
    assert_finished_once(sqlite_url, plan_id, job_id)
    lines = _fault_lines(caplog)
    if busy_timeout_s >= 30:
        assert lines == []
    else:
        assert any("during finish a job (attempt 1/10): SQLite at" in ln and "is busy (database is locked)" in ln
                   for ln in lines), lines
    assert not any("failed after" in ln for ln in lines), lines


# -- 4. a database with a newer schema than the code -----------------------------------------------
def _raw_counts(url: str) -> dict[str, int]:
    from sqlalchemy import MetaData, func, select

    meta = MetaData()
    engine = raw_engine(url)
    meta.reflect(bind=engine)
    with engine.connect() as conn:
        return {name: conn.execute(select(func.count()).select_from(t)).scalar_one() for name, t in meta.tables.items()}


def test_newer_schema_cli_refuses_with_one_line_and_writes_nothing(db_url, capsys):
    plan_id, _ = make_jobs(db_url, 1, {"steps": 2})
    with raw_engine(db_url).begin() as conn:
        conn.execute(update(table("alembic_version", column("version_num"))).values(version_num="9999_future"))
    dispose_engines()
    before = _raw_counts(db_url)
    expected = f"database schema 9999_future is newer than this zolab (knows up to {migrate.head()}): upgrade zolab"
    cli = CliRunner()
    plan = str(ROOT / "ablations" / "quickstart.yaml")
    for args in (["plan", "upload", plan], ["worker"], ["status"], ["status", str(plan_id)]):
        res = cli.invoke(app, [*args, "--db", db_url])
        dispose_engines()
        text = " ".join(res.output.split())
        assert res.exit_code == 2, (args, res.output)
        assert isinstance(res.exception, SystemExit) and "Traceback" not in res.output
        assert text == f"error: {expected}" or text.endswith(f"error: {expected}"), (args, res.output)
        assert text.count("error:") == 1
    # the worker process the executors start (python -m zolab.platform.worker)
    from zolab.platform.worker import main

    assert main(["--db", db_url, "--runner", "tests.platform._runners:instant"]) == 2
    assert capsys.readouterr().err.strip() == f"zolab worker: {expected}"
    dispose_engines()
    assert _raw_counts(db_url) == before  # no plan, no worker row, no job touched
    with raw_engine(db_url).connect() as conn:
        assert conn.execute(table("alembic_version", column("version_num")).select()).scalar_one() == "9999_future"


# -- 5. result write and status change are one transaction -----------------------------------------
def test_exception_between_result_insert_and_status_change_leaves_neither(db_url, monkeypatch):
    """``finish`` dies right after the result row reached the database (flushed) and before the job is
    marked succeeded: the transaction rolls back whole. No result, no curve points of the finish, the
    job still running and held; a later finish (or, after lease expiry, another worker) writes it once."""
    plan_id, (job_id,) = make_jobs(db_url, 1, {"steps": 4})
    q = JobQueue(db_url, lease_s=0.5)
    claim = q.claim("w1")
    q.heartbeat(job_id, "w1", step=2, total=4, points=[(1, "train_loss", 1.0), (2, "train_loss", 0.5)])
    original = repo.add_result
    seen = {}

    def add_result_then_die(session, job, values):
        row = original(session, job, values)
        session.flush()  # the INSERT really ran inside the transaction
        seen["id"] = row.id
        seen["visible_inside"] = repo.count_results(session, plan_id)
        raise RuntimeError("killed between the result write and the status change")

    monkeypatch.setattr(repo, "add_result", add_result_then_die)
    result = {"accuracy": 0.75, "f1": 0.5, "steps": 4, "forward_passes": 8, "wall_time_s": 0.1, "gpu_hours": 0.0,
              "final_loss": 0.25}
    with pytest.raises(RuntimeError, match="killed between"):
        q.finish(job_id, "w1", result, points=[(3, "train_loss", 0.3), (4, "train_loss", 0.25)])
    assert seen["id"] is not None and seen["visible_inside"] == 1

    def state(s):
        return (repo.get_job(s, job_id), repo.count_results(s), repo.points_of(s, job_id),
                [e.to_status for e in repo.events_of(s, job_id)])

    job, n_results, points, events = read(db_url, state)
    assert n_results == 0
    assert (job.status, job.lease_owner, job.finished_at, job.progress_step) == ("running", "w1", None, 2)
    assert points == [(1, "train_loss", 1.0), (2, "train_loss", 0.5)]  # the heartbeat's, not the finish's
    assert events == ["queued", "running"]

    # the worker died with it: its lease expires, the job is requeued and a second worker finishes it once
    monkeypatch.setattr(repo, "add_result", original)
    time.sleep(0.6)
    assert q.requeue_expired() == [job_id]
    again = q.claim("w2")
    assert again.job_id == job_id and again.attempts == 2 and claim.attempts == 1
    q.finish(job_id, "w2", result, points=[(3, "train_loss", 0.3), (4, "train_loss", 0.25)])
    job, n_results, points, events = read(db_url, state)
    assert job.status == "succeeded" and n_results == 1
    assert [p[0] for p in points] == [3, 4]  # w2 restarted from scratch (no checkpoint): its own points only
    assert events == ["queued", "running", "queued", "running", "succeeded"]
