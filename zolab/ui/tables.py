"""The tables the pages show and export, built from the plain rows ``zolab.ui.data`` returns.

Pure functions (rows in, DataFrame out), so tests check every cell without a browser. Conventions:

* accuracy and F1 are percentages; the leaderboard's cells are ``zolab.platform.board_format``'s
  (the same text as ``zolab leaderboard`` and its exports);
* a column with no value in any row is dropped, and :func:`drop_empty` says which and why, so the
  page can print one sentence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from zolab.db.repo import dashboard as dash
from zolab.db.repo import plans as plans_repo

#: why a column can be empty, for the sentence under a table that hid it
EMPTY_REASONS = {
    "worker": "no job has been claimed yet",
    "error": "no job has an error",
    "baseline accuracy (%)": "the baseline has no result on these seeds",
    "Δ vs baseline (pts)": "the baseline has no result on these seeds",
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


#: background of a row with a diverged seed (the board ranks it last and marks it "[diverged k/n]")
DIVERGED_BG = "#fde7e7"


#: the leaderboard's main table: these columns (and the first memory column) fit 1280 px; the rest of
#: the board's measurements go to a second table under it
MAIN_PREFIXES = ("variant", "seeds", "accuracy", "Δ accuracy", "macro-F1", "Δ macro-F1")


def board_frame(board: Any, tb: Any) -> tuple[pd.DataFrame, pd.DataFrame, list[int], list[bool]]:
    """One task of a :class:`~zolab.platform.leaderboard.Board` as ``zolab leaderboard`` shows it
    (``board_format.task_table``: percent ``mean ± CI`` cells, ``+6.0 pts [-1.2, +13.2] *†`` paired
    differences), the baseline starred. Returns the main table (variant, seeds, accuracy and F1 with
    their differences, the primary memory column), the other measurements (variant + the rest), and
    the rows' variant ids and diverged flags, in row order."""
    from zolab.platform import board_format as bf

    t = bf.task_table(board, tb)
    frame = pd.DataFrame(t.rows, columns=t.headers)
    frame["variant"] = [("★ " if r.is_baseline else "") + text for r, text in zip(tb.rows, frame["variant"])]
    # "(1 paired seed: no interval)" is said once in the notes; the cell keeps the number and "no interval"
    for c in frame.columns:
        if c.startswith("Δ"):
            frame[c] = frame[c].str.replace("(1 paired seed: no interval)", "(no interval)", regex=False)
    memory = next((c for c in frame.columns if c.startswith(("method memory", "peak GPU allocated"))), None)
    main = [c for c in frame.columns if c.startswith(MAIN_PREFIXES) or c == memory]
    rest = ["variant", *[c for c in frame.columns if c not in main]]
    return frame[main], frame[rest] if len(rest) > 1 else frame[[]], \
        [r.variant_id for r in tb.rows], [r.diverged for r in tb.rows]


def style_diverged(frame: pd.DataFrame, diverged: Sequence[bool]) -> Any:
    """A Styler that gives rows with a diverged seed their own background."""
    flags = list(diverged)

    def row_style(row: pd.Series) -> list[str]:
        bg = f"background-color: {DIVERGED_BG}" if flags[row.name] else ""
        return [bg] * len(row)

    return frame.style.apply(row_style, axis=1)


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
    "DIVERGED_BG",
    "board_frame",
    "config_diff",
    "drop_empty",
    "events_frame",
    "hidden_sentence",
    "job_states_text",
    "jobs_frame",
    "pct",
    "plans_frame",
    "seeds_frame",
    "short_worker",
    "style_diverged",
    "trial_state",
    "trials_frame",
    "tuned_frame",
]
