"""Platform benchmark: how fast the DB job queue is, next to Optuna's own ask/tell on the same server.

For SQLite (a fresh file) and PostgreSQL (a fresh database on ``ZOLAB_TEST_PG_URL`` / ``--pg-url``):

1. enqueue 1000 jobs (one ``JobQueue.enqueue`` transaction, job_events included);
2. claim + finish throughput: 4 processes each loop ``claim`` -> ``finish`` (an empty result) until
   the queue is empty; timed from a barrier after start-up, so imports are not counted;
3. Optuna ask/tell throughput: 4 processes on one study (RDB storage), ``ask`` + ``tell`` of a
   constant, for the same wall time budget. Optuna gets its own SQLite file / its own PostgreSQL
   schema in the same database: its ``alembic_version`` table would clash with zolab's.

Prints a table and writes ``benchmarks/results/platform_bench-<UTC time>.json``.
Run: ``python benchmarks/platform_bench.py [--jobs 1000] [--workers 4] [--no-pg]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
EMPTY_RESULT = {"accuracy": 0.5, "f1": 0.5, "steps": 1, "forward_passes": 2, "wall_time_s": 0.0, "gpu_hours": 0.0}


# -- databases ------------------------------------------------------------------------------------
class PgDatabase:
    """A throw-away database on a PostgreSQL server (identifiers composed by psycopg.sql)."""

    def __init__(self, server_url: str) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        self.server = make_url(server_url)
        self.name = f"zolab_bench_{uuid.uuid4().hex[:10]}"
        libpq = self.server.set(drivername="postgresql").render_as_string(hide_password=False)
        self.admin = psycopg.connect(libpq, autocommit=True, connect_timeout=5)

    def __enter__(self) -> str:
        from psycopg import sql

        self.admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        url = self.server.set(drivername="postgresql+psycopg", database=self.name)
        return url.render_as_string(hide_password=False)

    def optuna_url(self, url: str) -> str:
        """Same database, schema ``optuna`` (created here) via the connection's search_path."""
        import psycopg
        from psycopg import sql
        from sqlalchemy.engine import make_url

        u = make_url(url)
        with psycopg.connect(u.set(drivername="postgresql").render_as_string(hide_password=False),
                             autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier("optuna")))
        return u.update_query_dict({"options": "-csearch_path=optuna"}).render_as_string(hide_password=False)

    def __exit__(self, *exc) -> None:
        from psycopg import sql

        from zolab.db.session import dispose_engines

        dispose_engines()
        self.admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
        self.admin.close()


# -- workloads ------------------------------------------------------------------------------------
def _make_jobs(url: str, n: int) -> tuple[int, float]:
    from zolab.db.models import Job, Plan, Variant
    from zolab.db.session import session_scope
    from zolab.platform.queue import JobQueue
    from zolab.runners.config import RunConfig

    cfg = RunConfig(steps=1).to_dict()
    with session_scope(url) as s:
        plan = Plan(name="bench", format="yaml", source_text="{}", content_hash=uuid.uuid4().hex, plan_json={})
        s.add(plan)
        s.flush()
        variant = Variant(plan_id=plan.id, label="baseline", config=cfg, config_hash=uuid.uuid4().hex[:16])
        s.add(variant)
        s.flush()
        plan_id, variant_id = plan.id, variant.id
    jobs = [Job(key=f"bench:{plan_id}:{i}", plan_id=plan_id, variant_id=variant_id, task="t", seed=i,
                config=dict(cfg, seed=i)) for i in range(n)]
    t0 = time.perf_counter()
    created, _ = JobQueue(url).enqueue(jobs)
    elapsed = time.perf_counter() - t0
    assert len(created) == n
    return plan_id, elapsed


def _claim_finish_loop(url: str, barrier, out) -> None:
    from zolab.platform.queue import JobQueue

    q = JobQueue(url)
    q.counts()  # connect + schema check before the clock starts
    wid = f"bench-{os.getpid()}"
    barrier.wait()
    n, t0 = 0, time.perf_counter()
    while (c := q.claim(wid)) is not None:
        q.finish(c.job_id, wid, EMPTY_RESULT)
        n += 1
    out.put((n, time.perf_counter() - t0))


def _optuna_loop(url: str, study: str, seconds: float, barrier, out) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    s = optuna.load_study(study_name=study, storage=optuna.storages.RDBStorage(url))
    barrier.wait()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        trial = s.ask()
        trial.suggest_float("lr", 1e-6, 1e-3, log=True)
        s.tell(trial, 0.5)
        n += 1
    out.put((n, time.perf_counter() - t0))


def _parallel(target, args, workers: int) -> tuple[int, float]:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    results = [out.get(timeout=600) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join(timeout=60)
    return sum(n for n, _ in results), wall


def bench_backend(name: str, url: str, optuna_url: str, jobs: int, workers: int) -> dict:
    import optuna

    from zolab.db.repo import jobs as repo
    from zolab.db.session import dispose_engines, session_scope

    plan_id, enqueue_s = _make_jobs(url, jobs)
    dispose_engines()  # no connection inherited by the children
    done, wall = _parallel(_claim_finish_loop, (url,), workers)
    with session_scope(url) as s:
        results, counts = repo.count_results(s, plan_id), repo.status_counts(s, plan_id)
        attempts = {j.attempts for j in repo.jobs_of_plan(s, plan_id)}
    assert results == jobs == done and counts == {"succeeded": jobs} and attempts == {1}, (results, counts)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = f"bench-{uuid.uuid4().hex[:6]}"
    optuna.create_study(study_name=study, storage=optuna.storages.RDBStorage(optuna_url))
    trials, o_wall = _parallel(_optuna_loop, (optuna_url, study, min(30.0, max(5.0, wall))), workers)
    return {
        "backend": name, "jobs": jobs, "workers": workers,
        "enqueue_s": enqueue_s, "enqueue_jobs_per_s": jobs / enqueue_s,
        "claim_finish_s": wall, "claim_finish_jobs_per_s": done / wall,
        "duplicates": done - results, "attempts": sorted(attempts),
        "optuna_trials": trials, "optuna_s": o_wall, "optuna_ask_tell_per_s": trials / o_wall,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--pg-url", default=os.environ.get("ZOLAB_TEST_PG_URL"))
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args(argv)

    from zolab.db import migrate
    from zolab.db.session import dispose_engines

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        migrate.upgrade(url)
        dispose_engines()
        rows.append(bench_backend("sqlite", url, f"sqlite:///{tmp}/optuna.db", args.jobs, args.workers))
    if args.pg_url and not args.no_pg:
        db = PgDatabase(args.pg_url)
        with db as url:
            migrate.upgrade(url)
            dispose_engines()
            rows.append(bench_backend("postgresql", url, db.optuna_url(url), args.jobs, args.workers))

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"zolab queue vs Optuna ask/tell ({args.workers} processes, {os.cpu_count()} CPUs)")
    for col in ("backend", "enqueue 1000 jobs", "claim+finish jobs/s", "Optuna ask+tell/s", "duplicates"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["backend"], f"{r['enqueue_s']:.2f} s ({r['enqueue_jobs_per_s']:.0f}/s)",
                      f"{r['claim_finish_jobs_per_s']:.0f}", f"{r['optuna_ask_tell_per_s']:.0f}", str(r["duplicates"]))
    Console().print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"platform_bench-{stamp}.json"
    out.write_text(json.dumps({"when": stamp, "host": platform.node(), "cpus": os.cpu_count(),
                               "load_avg": os.getloadavg(), "rows": rows}, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
