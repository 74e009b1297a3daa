"""``zolab run`` survives what its workers survive (issue 17, point 2), on SQLite and PostgreSQL.

Real worker processes (the fast fake runner, so a job takes seconds) under the local executor:

* a database outage longer than one read's retries: the orchestrator waits with its workers and
  never signals them (before: it gave up after ~5 s, SIGTERMed the workers and lost their results);
  PostgreSQL: the database really goes away (``ALLOW_CONNECTIONS false``); SQLite: WAL readers are
  never blocked, so the orchestrator's own reads are made to fail;
* SIGTERM to ``zolab run`` is handled like Ctrl-C: the workers give their jobs back (attempt
  refunded) and are waited for (before: the orchestrator died at once and its workers ran on, orphaned);
* a worker SIGKILLed mid-job is replaced and its job requeued at once, with a job event; the
  restarts are bounded (before: never replaced, the job waited out its lease, the run ended in error);
* the final progress line shows the worker count asked for (before: "workers 1" for 2).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy.engine import make_url

from tests.platform._factories import make_jobs
from tests.reliability._faults import PgFaults
from tests.reliability.db_rows import read
from zolab.db.errors import TransientDatabaseError
from zolab.db.repo import jobs as repo
from zolab.db.session import dispose_engines
from zolab.platform.executors import local
from zolab.platform.executors.local import run_local

ROOT = Path(__file__).resolve().parents[2]
RUNNER = "tests.platform._runners:instant"
DIES = "tests.reliability._attack_runners:dies"


def _jobs(url: str):
    return read(url, lambda s: [(j, [e for e in repo.events_of(s, j.id)]) for j in repo.jobs_of_plan(s)])


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _running(url: str) -> list:
    return read(url, lambda s: [j for j in repo.jobs_of_plan(s) if j.status == "running"])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def assert_each_succeeded_once(url: str, n: int, attempts: int = 1) -> None:
    rows = _jobs(url)
    assert len(rows) == n
    for job, events in rows:
        assert job.status == "succeeded" and job.attempts == attempts, (job.id, job.status, job.attempts,
                                                                        [e.message for e in events])
        assert [e.to_status for e in events].count("succeeded") == 1
    assert read(url, lambda s: repo.count_results(s)) == n


# -- 1. an outage longer than the orchestrator's read retries --------------------------------------------
OUTAGE_S = 12.0


@pytest.fixture
def outage(db_url, monkeypatch):
    """``start()`` begins an outage of OUTAGE_S seconds in the background; ``.seconds`` says how long
    the orchestrator's reads really failed."""
    class Outage:
        def __init__(self) -> None:
            self.thread: threading.Thread | None = None
            self.started = threading.Event()
            self.over = threading.Event()

        def start(self) -> None:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
            self.started.wait(30)

        def _run(self) -> None:
            if make_url(db_url).get_backend_name() == "postgresql":
                faults = PgFaults(db_url)
                try:
                    faults.block()
                    self.started.set()
                    time.sleep(OUTAGE_S)
                finally:
                    faults.unblock()
                    faults.close()
            else:
                self.started.set()
                time.sleep(OUTAGE_S)
            self.over.set()

    out = Outage()
    if make_url(db_url).get_backend_name() == "sqlite":
        real = local.session_scope

        def failing(*args, **kwargs):  # the orchestrator's own reads fail while the outage lasts
            if out.started.is_set() and not out.over.is_set():
                raise TransientDatabaseError("database unreachable (injected for the orchestrator)")
            return real(*args, **kwargs)

        monkeypatch.setattr(local, "session_scope", failing)
    yield out
    if out.thread is not None:
        out.thread.join(OUTAGE_S + 30)


def test_an_outage_longer_than_the_read_retries_does_not_stop_the_workers(db_url, outage, caplog):
    plan_id, _ids = make_jobs(db_url, 4, {"steps": 40, "checkpoint_every": 5, "task_options": {"sleep": 0.15}})
    started = {}

    def on_tick(prog):
        if "t" not in started and prog.counts.get("running", 0) >= 1:
            started["t"] = time.monotonic()
            outage.start()  # mid-run: jobs are running, each worker holds one

    dispose_engines()
    t0 = time.monotonic()
    final = run_local(db_url, 2, plan_id=plan_id, runner=RUNNER, show_progress=False, poll_s=0.3, on_tick=on_tick)
    elapsed = time.monotonic() - t0
    print(f"\n{db_url.split(':')[0]}: {OUTAGE_S:.0f} s outage mid-run: run ended after {elapsed:.0f} s, {final.counts}")
    assert "t" in started and outage.over.is_set()
    assert final.counts == {"succeeded": 4} and final.workers == 2
    assert_each_succeeded_once(db_url, 4)  # attempt 1 each: nobody was stopped, nothing rerun
    for _job, events in _jobs(db_url):
        assert not any("worker stopped" in e.message for e in events)
    assert any("progress read failed" in r.getMessage() for r in caplog.records)


# -- 2. SIGTERM to `zolab run` ----------------------------------------------------------------------------
PLAN = """\
zolab: 1
name: sigterm-the-orchestrator
baseline: {method: mezo, model: tiny-opt, lr: 1.0e-3, steps: 400, batch_size: 4, eval_every: 400,
           checkpoint_every: 5, train_size: 32, dev_size: 8, test_size: 8, max_length: 32, device: cpu,
           task_options: {sleep: 0.05}}
tasks: [synthetic-sentiment]
seeds: [1, 2, 3]
ablations:
  - {name: bigger eps, ablated_part: perturbation scale, action: REPLACE, replacement: [1.0e-2]}
"""


def _zolab_run(url: str, plan: Path, *extra: str, runner: str = RUNNER, **kw) -> subprocess.Popen:
    env = dict(os.environ, ZOLAB_DB=url, ZOLAB_RUNNER=runner, ZOLAB_HEARTBEAT_SECONDS="0.2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen([sys.executable, "-m", "zolab", "run", str(plan), "--workers", "2", "--no-progress",
                             *extra], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kw)


def _worker_pids(url: str) -> list[int]:
    return read(url, lambda s: [w.pid for w in repo.list_workers(s)])


def test_sigterm_to_zolab_run_stops_and_waits_for_its_workers(db_url, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    proc = _zolab_run(db_url, plan)
    pids: list[int] = []
    try:
        running = _wait(lambda: len(_running(db_url)) == 2 and all((j.checkpoint or {}).get("step", 0) >= 5
                                                                   for j in _running(db_url)) and _running(db_url),
                        180, "two jobs running with a checkpoint")
        held = {j.id for j in running}
        pids = _worker_pids(db_url)
        proc.send_signal(signal.SIGTERM)  # the orchestrator only, as `kill PID` or a service manager does
        t0 = time.monotonic()
        out, _ = proc.communicate(timeout=90)
        stopped_in = time.monotonic() - t0
        still = [p for p in pids if _alive(p)]
        print(f"\n{db_url.split(':')[0]}: SIGTERM -> exit {proc.returncode} in {stopped_in:.1f} s; "
              f"workers still alive: {len(still)} of {len(pids)}")
        assert proc.returncode == 143, out
        assert "stopped by SIGTERM: the workers gave their jobs back to the queue" in " ".join(out.split())
        assert "Traceback" not in out
        assert still == [], f"orphaned workers: {still}"
        rows = {j.id: (j, ev) for j, ev in _jobs(db_url)}
        assert not [j.id for j, _ in rows.values() if j.status == "running"]
        for job_id in held:  # given back with their checkpoint, the attempt refunded
            job, events = rows[job_id]
            assert job.status == "queued" and job.attempts == 0 and job.lease_owner is None
            assert (job.checkpoint or {}).get("step", 0) >= 5
            assert events[-1].message == "worker stopped; requeued with its checkpoint"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in pids:  # never leak a worker, whatever the outcome
            if _alive(p):
                os.kill(p, signal.SIGKILL)


# -- 3. a worker killed mid-job ---------------------------------------------------------------------------
def test_a_worker_killed_mid_job_is_replaced_and_its_job_requeued_at_once(db_url):
    plan_id, _ids = make_jobs(db_url, 4, {"steps": 25, "checkpoint_every": 5, "task_options": {"sleep": 0.12}})
    killed = {}

    def on_tick(prog):
        if killed:
            return
        for job in _running(db_url):
            if (job.checkpoint or {}).get("step", 0) >= 5 and job.lease_owner:
                pid = int(job.lease_owner.split(":")[1])  # worker ids are host:pid:uuid
                os.kill(pid, signal.SIGKILL)
                killed.update(job=job.id, pid=pid, at=time.monotonic())
                return

    dispose_engines()
    t0 = time.monotonic()
    final = run_local(db_url, 2, plan_id=plan_id, runner=RUNNER, show_progress=False, poll_s=0.2,
                      lease_s=120, on_tick=on_tick)
    elapsed = time.monotonic() - t0
    print(f"\n{db_url.split(':')[0]}: worker {killed.get('pid')} SIGKILLed holding job {killed.get('job')}: "
          f"run done in {elapsed:.0f} s (lease 120 s), {final.restarts} restart(s)")
    assert killed and final.counts == {"succeeded": 4} and final.restarts == 1
    assert elapsed < 60  # well inside the 120 s lease: requeued at once, not after the lease
    rows = {j.id: (j, ev) for j, ev in _jobs(db_url)}
    job, events = rows[killed["job"]]
    assert job.attempts == 2 and read(db_url, lambda s: repo.result_of(s, job.id)).extra["resumed_from"] >= 5
    death = [e for e in events if "died (killed by SIGKILL)" in e.message]
    assert len(death) == 1 and (death[0].from_status, death[0].to_status) == ("running", "queued")
    assert f"worker process {killed['pid']} of zolab run died" in death[0].message
    assert "worker restarted (1 of at most 3)" in death[0].message
    assert read(db_url, lambda s: repo.count_results(s)) == 4


def test_restarts_are_bounded(db_url):
    """A worker that dies on every job: restarted twice (the bound here), then left dead; every death
    gives its job back at once and says what was decided; the run ends with an error naming it."""
    plan_id, _ids = make_jobs(db_url, 2, {"steps": 5, "task_options": {"die": True}}, max_attempts=10)
    dispose_engines()
    with pytest.raises(RuntimeError, match=r"1 worker process\(es\) exited with an error \(codes \[-9\]\) after 2 "):
        run_local(db_url, 1, plan_id=plan_id, runner=DIES, show_progress=False, poll_s=0.2, max_restarts=2)
    messages = [e.message for _j, events in _jobs(db_url) for e in events if "died" in e.message]
    assert len(messages) == 3, messages
    assert sum("worker restarted (1 of at most 2)" in m for m in messages) == 1
    assert sum("worker restarted (2 of at most 2)" in m for m in messages) == 1
    assert sum("not restarted: 2 restarts used" in m for m in messages) == 1
    assert not [j for j, _ in _jobs(db_url) if j.status == "running"]  # nothing left claimed by the dead


# -- 4. the final progress line ---------------------------------------------------------------------------
def test_the_final_progress_line_shows_the_workers_asked_for(sqlite_url):
    plan_id, _ = make_jobs(sqlite_url, 4, {"steps": 3})
    out = io.StringIO()
    final = run_local(sqlite_url, 2, plan_id=plan_id, runner=RUNNER, show_progress=True, poll_s=0.2,
                      console=Console(file=out, force_terminal=False, width=160))
    last = [ln for ln in out.getvalue().splitlines() if "elapsed" in ln][-1]
    assert final.counts == {"succeeded": 4}
    assert "workers 2 " in last and "workers 1 " not in last, last


# -- 5. the 45 s outage, the real CLI and the real backoff ------------------------------------------------
@pytest.mark.slow
def test_zolab_run_outlasts_a_45s_postgres_outage(pg_url, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.replace("steps: 400", "steps: 200").replace("seeds: [1, 2, 3]", "seeds: [1, 2]"))
    proc = _zolab_run(pg_url, plan)
    faults = PgFaults(pg_url)
    try:
        _wait(lambda: len(_running(pg_url)) == 2, 180, "two jobs running")
        dispose_engines()
        faults.block()
        time.sleep(45)
        faults.unblock()
        out, _ = proc.communicate(timeout=600)
    finally:
        faults.unblock()
        faults.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"\n45 s outage: zolab run exit {proc.returncode}; tail:\n" + out[-1500:])
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert_each_succeeded_once(pg_url, 4)
