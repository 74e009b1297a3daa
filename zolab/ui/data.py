"""Cached read functions for the pages: the only way a page touches the database.

* the engine is a ``st.cache_resource`` per URL (created and migrated once per server);
* query results are ``st.cache_data`` with a short TTL, keyed by the DB URL (``ZOLAB_DB``) and the
  filters, so several tabs share one query per few seconds; :func:`clear` drops them after a write
  (upload, launch, cancel, retry) so the user sees the change at once;
* everything returned is plain data (dataclasses, DataFrames), never ORM objects or SQL.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from zolab import config
from zolab.db.repo import dashboard as dash
from zolab.db.repo import leaderboard as lb
from zolab.db.repo import plans as plans_repo
from zolab.db.session import get_engine, session_scope

#: seconds a cached query result stays fresh (the job monitor refreshes on its own timer)
TTL_S = 3.0
GiB = 1024**3


def db_url() -> str:
    """The database the app shows: ``ZOLAB_DB`` (set by ``zolab ui --db``) or the default file."""
    return config.db_url()


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Any:
    """One engine per URL and server process; the first call brings the schema to head."""
    return get_engine(url)


def _session(url: str):
    _engine(url)
    return session_scope(url)


def clear() -> None:
    """Forget cached query results (after a write)."""
    st.cache_data.clear()


# -- plans --------------------------------------------------------------------------------------
@st.cache_data(ttl=TTL_S, show_spinner=False)
def _plans(url: str) -> list[plans_repo.PlanSummary]:
    with _session(url) as s:
        return plans_repo.list_plans(s)


def plans() -> list[plans_repo.PlanSummary]:
    return _plans(db_url())


def plans_frame(rows: Sequence[plans_repo.PlanSummary]) -> pd.DataFrame:
    statuses = dash.job_status_values()
    return pd.DataFrame(
        [
            {"id": p.id, "name": p.name, "format": p.format, "file": p.source_name,
             "created (UTC)": p.created_at, "ablations": p.n_ablations, "variants": p.n_variants,
             "jobs": p.n_jobs, **{s: p.job_counts.get(s, 0) for s in statuses}}
            for p in rows
        ],
        columns=["id", "name", "format", "file", "created (UTC)", "ablations", "variants", "jobs", *statuses],
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _ablations(url: str, plan_id: int) -> list[dash.AblationInfo]:
    with _session(url) as s:
        return dash.ablations_of(s, plan_id)


def ablations(plan_id: int) -> list[dash.AblationInfo]:
    return _ablations(db_url(), plan_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _variants(url: str, plan_id: int) -> list[dash.VariantInfo]:
    with _session(url) as s:
        return dash.variants_of(s, plan_id)


def variants(plan_id: int) -> list[dash.VariantInfo]:
    return _variants(db_url(), plan_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _plan_document(url: str, plan_id: int) -> dict[str, Any]:
    with _session(url) as s:
        return dash.plan_document(s, plan_id) or {}


def plan_metrics(plan_id: int) -> list[str]:
    """Metrics the plan asked for (plan default first, then each ablation's), in order, no repeats."""
    doc = _plan_document(db_url(), plan_id)
    names: list[str] = [str(m) for m in doc.get("metrics", [])]
    for abl in doc.get("ablations", []):
        names += [str(m) for m in abl.get("metrics", [])]
    for a in ablations(plan_id):
        names += [str(m) for m in a.metrics]
    return list(dict.fromkeys(names))


# -- jobs ---------------------------------------------------------------------------------------
@st.cache_data(ttl=1.0, show_spinner=False)
def _jobs(url: str, plan_id: int | None, statuses: tuple[str, ...] | None,
          variant_ids: tuple[int, ...] | None, limit: int) -> list[dash.JobRow]:
    with _session(url) as s:
        return dash.job_rows(s, plan_id=plan_id, statuses=statuses, variant_ids=variant_ids, limit=limit)


def jobs(plan_id: int | None = None, statuses: Sequence[str] | None = None,
         variant_ids: Sequence[int] | None = None, limit: int = 1000) -> list[dash.JobRow]:
    return _jobs(db_url(), plan_id, tuple(statuses) if statuses is not None else None,
                 tuple(variant_ids) if variant_ids is not None else None, limit)


def jobs_frame(rows: Sequence[dash.JobRow]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"id": j.id, "plan": j.plan_id, "variant": j.variant, "task": j.task, "seed": j.seed,
             "stage": j.stage, "status": j.status, "progress": j.progress,
             "step": f"{j.progress_step}/{j.progress_total}", "loss": j.last_loss,
             "attempts": f"{j.attempts}/{j.max_attempts}", "worker": j.lease_owner or "",
             "error": j.error or "", "updated (UTC)": j.updated_at}
            for j in rows
        ],
        columns=["id", "plan", "variant", "task", "seed", "stage", "status", "progress", "step", "loss",
                 "attempts", "worker", "error", "updated (UTC)"],
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _active_workers(url: str) -> int:
    with _session(url) as s:
        return dash.active_worker_count(s)


def active_workers() -> int:
    return _active_workers(db_url())


# -- leaderboard and curves ---------------------------------------------------------------------
@st.cache_data(ttl=TTL_S, show_spinner=False)
def _leaderboard(url: str, plan_id: int, task: str | None) -> list[lb.LeaderboardRow]:
    with _session(url) as s:
        return lb.leaderboard(s, plan_id, task=task)


def leaderboard(plan_id: int, task: str | None = None) -> list[lb.LeaderboardRow]:
    return _leaderboard(db_url(), plan_id, task)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _tasks(url: str, plan_id: int) -> list[str]:
    with _session(url) as s:
        return lb.leaderboard_tasks(s, plan_id)


def leaderboard_tasks(plan_id: int) -> list[str]:
    return _tasks(db_url(), plan_id)


def _gib(v: float | None) -> float | None:
    return None if v is None else v / GiB


def leaderboard_frame(rows: Sequence[lb.LeaderboardRow]) -> pd.DataFrame:
    """The table users read and download: memory in GiB, CIs as +- half-widths, baseline marked."""
    return pd.DataFrame(
        [
            {"task": r.task, "variant": r.label, "baseline": "★ baseline" if r.is_baseline else "",
             "seeds": r.n,
             "accuracy": r.accuracy_mean, "accuracy ±95% CI": r.accuracy_ci, "Δ accuracy": r.delta_accuracy,
             "F1": r.f1_mean, "F1 ±95% CI": r.f1_ci, "Δ F1": r.delta_f1,
             "peak mem allocated (GiB)": _gib(r.peak_memory_allocated_mean),
             "peak mem reserved (GiB)": _gib(r.peak_memory_reserved_mean),
             "peak RSS (GiB)": _gib(r.peak_rss_mean), "Δ peak mem (GiB)": _gib(r.delta_peak_memory),
             "GPU hours (mean)": r.gpu_hours_mean, "GPU hours (total)": r.gpu_hours_sum,
             "Δ GPU hours": r.delta_gpu_hours, "wall time (s)": r.wall_time_mean,
             "variant id": r.variant_id}
            for r in rows
        ]
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _curves(url: str, variant_ids: tuple[int, ...], names: tuple[str, ...] | None,
            task: str | None) -> pd.DataFrame:
    with _session(url) as s:
        points = lb.metric_curves(s, variant_ids=variant_ids, names=names, task=task)
    return pd.DataFrame([dataclasses.asdict(p) for p in points],
                        columns=["job_id", "variant_id", "task", "seed", "name", "step", "value"])


def curves(variant_ids: Sequence[int], names: Sequence[str] | None = None, task: str | None = None) -> pd.DataFrame:
    """Curve points of the variants' final jobs as a long DataFrame (one row per point)."""
    return _curves(db_url(), tuple(variant_ids), tuple(names) if names is not None else None, task)


# -- Optuna -------------------------------------------------------------------------------------
def optuna_storage(url: str | None = None) -> Any:
    """Where the tuning helper keeps Optuna studies for this DB.

    PostgreSQL: Optuna's RDB storage in the same database. SQLite: a journal file next to the DB
    file (``<db>.optuna.log``), since Optuna warns against SQLite with parallel workers; the
    ``ZOLAB_OPTUNA_STORAGE`` environment variable overrides both.
    """
    from zolab.platform import tuning

    return tuning.storage_for(url or db_url())


def optuna_storage_fallback(url: str) -> Any:
    """The same rule as :func:`optuna_storage`, used when ``zolab.platform.tuning`` is absent.
    None when a SQLite DB has no journal file yet (no study was ever created)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    override = os.environ.get("ZOLAB_OPTUNA_STORAGE")
    if override and "://" in override:
        return override
    if override:
        return optuna.storages.JournalStorage(JournalFileBackend(override))
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///") + ".optuna.log")
        if not path.exists():
            return None
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    return url


def _storage(url: str) -> Any:
    try:
        return optuna_storage(url)
    except (ImportError, AttributeError):
        return optuna_storage_fallback(url)


@st.cache_data(ttl=10.0, show_spinner=False)
def _study_names(url: str) -> list[dict[str, Any]]:
    import optuna

    storage = _storage(url)
    if storage is None:
        return []
    try:
        summaries = optuna.get_all_study_summaries(storage)
    except Exception as exc:
        if "no such table" in str(exc).lower() or isinstance(exc, FileNotFoundError):
            return []
        raise
    return [
        {"study": s.study_name, "trials": s.n_trials,
         "best value": s.best_trial.value if s.best_trial is not None else None,
         "started (UTC)": s.datetime_start}
        for s in summaries
    ]


def studies() -> list[dict[str, Any]]:
    return _study_names(db_url())


def load_study(name: str) -> Any:
    """An Optuna study object (not cached: plots read it directly)."""
    import optuna

    return optuna.load_study(study_name=name, storage=_storage(db_url()))
