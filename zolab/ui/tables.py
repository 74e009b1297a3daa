"""The tables the pages show and export, built from the plain rows ``zolab.ui.data`` returns.

Pure functions (rows in, DataFrame out), so tests check every cell without a browser. Conventions:

* accuracy and F1 are percentages; a mean and its 95% CI are one cell (``81.0 ± 4.2``);
* a column with no value in any row (GPU memory on a CPU-only plan, GPU hours of CPU runs) is
  dropped, and :func:`drop_empty` says which and why, so the page can print one sentence;
* exports (CSV) hold numbers in the units of their header, rounded to what the data supports
  (no 17-digit floats).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from zolab.db.repo import dashboard as dash
from zolab.db.repo import plans as plans_repo
from zolab.db.repo.leaderboard import LeaderboardRow

GiB = 1024**3
MiB = 1024**2

#: why a column can be empty, for the sentence under a table that hid it
EMPTY_REASONS = {
    "peak GPU mem (GiB)": "no run was on a GPU",
    "peak GPU reserved (GiB)": "no run was on a GPU",
    "peak RSS (GiB)": "no run was on a CPU",
    "GPU hours (total)": "every run was on CPU",
    "GPU hours": "every run was on CPU",
    "Δ F1 (pts)": "no baseline row",
    "Δ accuracy (pts)": "no baseline row",
    "worker": "no job has been claimed yet",
    "error": "no job has an error",
}


def _missing(v: Any) -> bool:
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


def drop_empty(frame: pd.DataFrame, keep: Iterable[str] = ()) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` without the columns that have no value in any row (``keep`` stays); the dropped names."""
    keep = set(keep)
    dropped = [c for c in frame.columns if c not in keep and len(frame) and all(_missing(v) for v in frame[c])]
    return frame.drop(columns=dropped), dropped


def hidden_sentence(dropped: Sequence[str]) -> str | None:
    """One sentence naming the hidden columns and why (None when nothing was hidden)."""
    if not dropped:
        return None
    parts = [f"{c} ({EMPTY_REASONS[c]})" if c in EMPTY_REASONS else c for c in dropped]
    return "Hidden because no row has a value: " + "; ".join(parts) + "."


# -- number formatting ----------------------------------------------------------------------------
def pct(v: float | None) -> float | None:
    return None if v is None else 100.0 * v


def mean_ci_text(mean: float | None, ci: float | None, *, scale: float = 1.0, digits: int = 1) -> str:
    """``81.0 ± 4.2`` (``± n/a`` needs 2 seeds: shown as the mean alone); empty when no mean."""
    if mean is None:
        return ""
    text = f"{mean * scale:.{digits}f}"
    return text if ci is None else f"{text} ± {ci * scale:.{digits}f}"


def signed(v: float | None, *, scale: float = 1.0, digits: int = 1) -> str:
    return "" if v is None else f"{v * scale:+.{digits}f}"


def _gib(v: float | None) -> float | None:
    return None if v is None else v / GiB


def _nonzero(v: float | None) -> float | None:
    return None if v is None or v == 0 else v


def round_sig(v: Any, sig: int = 4) -> Any:
    """Round floats to ``sig`` significant digits (CSV exports); other values unchanged."""
    if not isinstance(v, float) or math.isnan(v) or math.isinf(v) or v == 0:
        return v
    return round(v, sig - 1 - math.floor(math.log10(abs(v))))


def export_csv(frame: pd.DataFrame, sig: int = 4) -> bytes:
    """The frame as CSV, floats rounded to ``sig`` significant digits."""
    return frame.map(lambda v: round_sig(v, sig)).to_csv(index=False).encode()


# -- plans ----------------------------------------------------------------------------------------
def job_states_text(counts: Mapping[str, int]) -> str:
    """``18 queued · 2 running · 7 succeeded`` (states in queue order, zeros left out)."""
    return " · ".join(f"{counts[s]} {s}" for s in dash.job_status_values() if counts.get(s))


def plans_frame(rows: Sequence[plans_repo.PlanSummary], with_results: Iterable[int] = ()) -> pd.DataFrame:
    """The stored plans, newest first: one "job states" cell instead of a column per state (fits 1280 px)."""
    done = set(with_results)
    return pd.DataFrame(
        [
            {"id": p.id, "name": p.name, "format": p.format, "file": p.source_name,
             "created (UTC)": p.created_at, "ablations": p.n_ablations, "variants": p.n_variants,
             "jobs": p.n_jobs, "job states": job_states_text(p.job_counts),
             "results": "yes" if p.id in done else ""}
            for p in rows
        ],
        columns=["id", "name", "format", "file", "created (UTC)", "ablations", "variants", "jobs", "job states",
                 "results"],
    )


# -- jobs -----------------------------------------------------------------------------------------
JOB_COLUMNS = ["id", "variant", "task", "seed", "stage", "status", "progress", "loss", "attempts", "start (UTC)",
               "end (UTC)", "duration (s)", "worker", "error"]


def short_worker(worker: str | None) -> str:
    """``host:pid:uuid`` -> ``host:pid`` (the uuid only tells restarts apart)."""
    if not worker:
        return ""
    parts = worker.split(":")
    return ":".join(parts[:2]) if len(parts) > 2 else worker


def last_line(text: str | None, width: int = 120) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:width] if lines else ""


def jobs_frame(rows: Sequence[dash.JobRow], now: datetime) -> pd.DataFrame:
    """The job monitor: one row per job, with start, end, duration and the worker that ran it."""
    out = []
    for j in rows:
        stage = j.stage if j.trial_number is None else f"{j.stage} #{j.trial_number}"
        dur = j.duration_s(now)
        out.append({"id": j.id, "variant": j.variant, "task": j.task, "seed": j.seed, "stage": stage,
                    "status": j.status, "progress": j.progress, "loss": j.last_loss,
                    "attempts": f"{j.attempts}/{j.max_attempts}", "start (UTC)": j.started_at,
                    "end (UTC)": j.finished_at, "duration (s)": None if dur is None else round(dur, 1),
                    "worker": short_worker(j.worker), "error": last_line(j.error)})
    return pd.DataFrame(out, columns=JOB_COLUMNS)


# -- leaderboard ----------------------------------------------------------------------------------
def leaderboard_frame(rows: Sequence[LeaderboardRow]) -> pd.DataFrame:
    """What the Leaderboard page shows: one "mean ± CI" cell per metric, percentages, the baseline
    marked; columns without values are dropped by the page with :func:`drop_empty`."""
    return pd.DataFrame(
        [
            {"task": r.task, "variant": ("★ " if r.is_baseline else "") + r.label, "seeds": r.n,
             "accuracy (%)": mean_ci_text(r.accuracy_mean, r.accuracy_ci, scale=100),
             "Δ accuracy (pts)": "" if r.is_baseline else signed(r.delta_accuracy, scale=100),
             "F1 (%)": mean_ci_text(r.f1_mean, r.f1_ci, scale=100),
             "Δ F1 (pts)": "" if r.is_baseline else signed(r.delta_f1, scale=100),
             "peak GPU mem (GiB)": _gib(r.peak_memory_allocated_mean),
             "peak RSS (GiB)": _gib(r.peak_rss_mean),
             "GPU hours": _nonzero(r.gpu_hours_mean),
             "wall time (s)": r.wall_time_mean,
             "variant id": r.variant_id}
            for r in rows
        ],
        columns=["task", "variant", "seeds", "accuracy (%)", "Δ accuracy (pts)", "F1 (%)", "Δ F1 (pts)",
                 "peak GPU mem (GiB)", "peak RSS (GiB)", "GPU hours", "wall time (s)", "variant id"],
    )


def leaderboard_export(rows: Sequence[LeaderboardRow]) -> pd.DataFrame:
    """The leaderboard as numbers for a spreadsheet: percent and percentage points, GiB, hours."""
    return pd.DataFrame(
        [
            {"task": r.task, "variant": r.label, "baseline": r.is_baseline, "seeds": r.n,
             "accuracy_pct": pct(r.accuracy_mean), "accuracy_ci95_pct": pct(r.accuracy_ci),
             "delta_accuracy_pts": None if r.is_baseline else pct(r.delta_accuracy),
             "f1_pct": pct(r.f1_mean), "f1_ci95_pct": pct(r.f1_ci),
             "delta_f1_pts": None if r.is_baseline else pct(r.delta_f1),
             "peak_gpu_mem_gib": _gib(r.peak_memory_allocated_mean), "peak_rss_gib": _gib(r.peak_rss_mean),
             "gpu_hours_mean": _nonzero(r.gpu_hours_mean), "wall_time_s": r.wall_time_mean}
            for r in rows
        ]
    )


# -- drill-down -----------------------------------------------------------------------------------
def config_diff(baseline: Mapping[str, Any], variant: Mapping[str, Any]) -> pd.DataFrame:
    """The RunConfig fields where the variant differs from the baseline (values as text)."""
    keys = sorted(set(baseline) | set(variant))
    rows = [{"field": k, "baseline": _txt(baseline.get(k)), "this variant": _txt(variant.get(k))}
            for k in keys if baseline.get(k) != variant.get(k)]
    return pd.DataFrame(rows, columns=["field", "baseline", "this variant"])


def _txt(v: Any) -> str:
    return "(not set)" if v is None else str(v)


def tuned_frame(tuned: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Optuna's best params per task (``{task: {param: value}}``) as rows."""
    return pd.DataFrame([{"task": t, **{k: v for k, v in p.items()}} for t, p in tuned.items()])


def seeds_frame(mine: Sequence[dash.SeedResult], baseline: Sequence[dash.SeedResult]) -> pd.DataFrame:
    """Per task and seed: this variant's values, the baseline's on the same seed, the difference."""
    base = {(b.task, b.seed): b for b in baseline}
    out = []
    for r in mine:
        b = base.get((r.task, r.seed))
        out.append({"task": r.task, "seed": r.seed, "status": "diverged" if r.diverged else r.status,
                    "accuracy (%)": pct(r.accuracy),
                    "baseline accuracy (%)": None if b is None else pct(b.accuracy),
                    "Δ vs baseline (pts)": None if b is None else pct(r.accuracy - b.accuracy),
                    "F1 (%)": pct(r.f1), "final loss": r.final_loss, "wall time (s)": r.wall_time_s,
                    "job": r.job_id})
    return pd.DataFrame(out, columns=["task", "seed", "status", "accuracy (%)", "baseline accuracy (%)",
                                      "Δ vs baseline (pts)", "F1 (%)", "final loss", "wall time (s)", "job"])


def events_frame(events: Sequence[dash.EventRow]) -> pd.DataFrame:
    return pd.DataFrame([{"job": e.job_id, "at (UTC)": e.at, "from": e.from_status or "", "to": e.to_status,
                          "worker": short_worker(e.worker), "message": e.message} for e in events],
                        columns=["job", "at (UTC)", "from", "to", "worker", "message"])


# -- tuning ---------------------------------------------------------------------------------------
def trial_state(state: str, job: dash.TrialJob | None) -> str:
    """An Optuna trial state in words; a pruned trial says where it was stopped."""
    state = state.lower()
    if state == "pruned" and job is not None and job.error:
        return job.error.strip().splitlines()[0]  # "pruned at step 40 by the median pruner"
    if state == "fail":
        return "failed" + (f": {last_line(job.error, 80)}" if job is not None and job.error else "")
    return state


def trials_frame(trials: Sequence[Any], jobs: Mapping[int, dash.TrialJob], params: Sequence[str]) -> pd.DataFrame:
    """One row per Optuna trial: state (pruned shown as pruned), dev accuracy, its params, its job."""
    out = []
    for t in trials:
        job = jobs.get(t.number)
        value = t.value if t.state.name == "COMPLETE" else None
        last = max(t.intermediate_values) if t.intermediate_values else None
        out.append({"trial": t.number, "state": trial_state(t.state.name, job),
                    "dev accuracy (%)": pct(value),
                    "last reported (%)": pct(t.intermediate_values[last]) if last is not None else None,
                    **{p: t.params.get(p) for p in params},
                    "job": None if job is None else job.job_id,
                    "duration (s)": (None if t.datetime_start is None or t.datetime_complete is None
                                     else round((t.datetime_complete - t.datetime_start).total_seconds(), 1))})
    return pd.DataFrame(out, columns=["trial", "state", "dev accuracy (%)", "last reported (%)", *params, "job",
                                      "duration (s)"])


__all__ = [
    "config_diff",
    "drop_empty",
    "events_frame",
    "export_csv",
    "hidden_sentence",
    "job_states_text",
    "jobs_frame",
    "leaderboard_export",
    "leaderboard_frame",
    "mean_ci_text",
    "pct",
    "plans_frame",
    "round_sig",
    "seeds_frame",
    "short_worker",
    "signed",
    "trial_state",
    "trials_frame",
    "tuned_frame",
]
