"""Dashboard data at scale: time the leaderboard aggregation (and the paired-statistics board) with 100k
result rows on SQLite.

Issue 6 asks that the leaderboard's data function return in < 0.5 s with 100k result rows. This
script fills a fresh SQLite file (migrated like any zolab DB) with one plan of
``--variants`` x ``--tasks`` x seeds final results (plus a second plan, so the query must filter),
then times ``zolab.db.repo.leaderboard.leaderboard`` (wall and process CPU time: on a shared, loaded
machine wall time includes waiting for a core; the load average is reported) and prints a JSON report.

    .venv/bin/python benchmarks/ui_bench.py [--rows 100000] [--out benchmarks/results/ui_bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from zolab.db.models import Job, Plan, Result, Variant
from zolab.db.repo.leaderboard import leaderboard, metric_curves
from zolab.db.session import dispose_engines, get_engine, session_scope
from zolab.platform.leaderboard import build_board


def fill(url: str, rows: int, variants: int, tasks: int) -> int:
    """Insert plans, variants, jobs and ``rows`` results (90% in the measured plan); returns its id."""
    rng = random.Random(0)
    with session_scope(url) as s:
        plans = [Plan(name=f"bench {i}", format="yaml", source_text="", content_hash=f"bench{i}",
                      plan_json={}) for i in range(2)]
        s.add_all(plans)
        s.flush()
        cells = []  # (plan, variant, task)
        for p in plans:
            for v in range(variants):
                var = Variant(plan_id=p.id, label=f"variant {v}", is_baseline=v == 0, config={},
                              config_hash=f"{p.id}-{v}")
                s.add(var)
                s.flush()
                cells += [(p.id, var.id, f"task{t}") for t in range(tasks)]
        main_cells = [c for c in cells if c[0] == plans[0].id]
        other_cells = [c for c in cells if c[0] != plans[0].id]
        n_main = int(rows * 0.9)
        jobs, results = [], []
        for i in range(rows):
            plan_id, variant_id, task = (main_cells[i % len(main_cells)] if i < n_main
                                         else other_cells[i % len(other_cells)])
            seed = i // len(main_cells)
            jobs.append({"id": i + 1, "key": f"b{i}", "plan_id": plan_id, "variant_id": variant_id,
                         "task": task, "seed": seed, "stage": "final", "config": {}, "status": "succeeded"})
            results.append({"job_id": i + 1, "plan_id": plan_id, "variant_id": variant_id, "task": task,
                            "seed": seed, "stage": "final", "accuracy": rng.random(), "f1": rng.random(),
                            "steps": 100, "forward_passes": 200, "wall_time_s": 60 * rng.random(),
                            "gpu_hours": rng.random() / 10, "peak_memory_allocated": rng.randrange(1, 1 << 34),
                            "peak_memory_reserved": rng.randrange(1, 1 << 34), "device": "cuda", "extra": {}})
        for start in range(0, rows, 20000):
            s.execute(insert(Job), jobs[start:start + 20000])
            s.execute(insert(Result), results[start:start + 20000])
        return plans[0].id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--variants", type=int, default=20)
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        t0 = time.perf_counter()
        plan_id = fill(url, args.rows, args.variants, args.tasks)
        fill_s = time.perf_counter() - t0
        dispose_engines()
        get_engine(url)  # the schema check runs once per process (the UI caches its engine too)

        times, cpu = [], []
        for _ in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            with session_scope(url) as s:
                board = leaderboard(s, plan_id)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        board_times, board_cpu = [], []
        for _ in range(args.repeat):  # the paired statistics (window over task x seed) + Holm + notes
            t, c = time.perf_counter(), time.process_time()
            with session_scope(url) as s:
                build_board(s, plan_id)
            board_times.append(time.perf_counter() - t)
            board_cpu.append(time.process_time() - c)
        t = time.perf_counter()
        with session_scope(url) as s:
            one_task = leaderboard(s, plan_id, task="task0")
        one_task_s = time.perf_counter() - t
        t = time.perf_counter()
        with session_scope(url) as s:
            metric_curves(s, variant_ids=[board[0].variant_id, board[1].variant_id])
        curves_s = time.perf_counter() - t
        dispose_engines()

    report = {
        "backend": "sqlite",
        "result_rows": args.rows,
        "rows_in_plan": sum(r.n for r in board),
        "leaderboard_rows": len(board),
        "fill_s": round(fill_s, 2),
        "leaderboard_first_s": round(times[0], 4),
        "leaderboard_median_s": round(statistics.median(times), 4),
        "leaderboard_max_s": round(max(times), 4),
        "leaderboard_median_cpu_s": round(statistics.median(cpu), 4),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "board_median_s": round(statistics.median(board_times), 4),
        "board_median_cpu_s": round(statistics.median(board_cpu), 4),
        "leaderboard_one_task_s": round(one_task_s, 4),
        "leaderboard_one_task_rows": len(one_task),
        "metric_curves_s": round(curves_s, 4),
        "target_s": 0.5,
        "ok": max(times) < 0.5 and max(board_times) < 0.5,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
