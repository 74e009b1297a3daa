"""Cached read functions for the pages: the only way a page touches the database.

* the engine is a ``st.cache_resource`` per URL (created and migrated once per server);
* query results are ``st.cache_data`` with a short TTL, keyed by the DB URL (``ZOLAB_DB``) and the
  filters, so several tabs share one query per few seconds; :func:`clear` drops them after a write
  (upload, launch, cancel, retry) so the user sees the change at once;
* everything returned is plain data (dataclasses, DataFrames), never ORM objects or SQL; the
  tables the pages show are built from it in :mod:`zolab.ui.tables`.
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
#: the job monitor shows at most this many jobs (it says so when a plan has more)
JOB_LIMIT = 1000


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


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _with_results(url: str) -> list[int]:
    with _session(url) as s:
        return dash.plans_with_results(s)


def plans_with_results() -> list[int]:
    """Ids of the plans with at least one final result, newest first."""
    return _with_results(db_url())


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
def _jobs(url: str, plan_id: int | None, statuses: tuple[str, ...] | None, variant_ids: tuple[int, ...] | None,
          job_ids: tuple[int, ...] | None, limit: int) -> list[dash.JobRow]:
    with _session(url) as s:
        return dash.job_rows(s, plan_id=plan_id, statuses=statuses, variant_ids=variant_ids, job_ids=job_ids,
                             limit=limit)


def _tuple(values: Sequence[Any] | None) -> tuple[Any, ...] | None:
    return tuple(values) if values is not None else None


def jobs(plan_id: int | None = None, statuses: Sequence[str] | None = None,
         variant_ids: Sequence[int] | None = None, job_ids: Sequence[int] | None = None,
         limit: int = JOB_LIMIT) -> list[dash.JobRow]:
    """Jobs in id order, filtered (None: no filter on that field), at most ``limit``."""
    return _jobs(db_url(), plan_id, _tuple(statuses), _tuple(variant_ids), _tuple(job_ids), limit)


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
def _board(url: str, plan_id: int, task: str | None) -> Any:
    from zolab.platform.leaderboard import build_board

    with _session(url) as s:
        return build_board(s, plan_id, task=task)


def board(plan_id: int, task: str | None = None) -> Any:
    """The plan's :class:`zolab.platform.leaderboard.Board`: per task, ranked rows with mean ± CI and
    the paired difference from the baseline (Holm-adjusted), dead columns dropped with a reason."""
    return _board(db_url(), plan_id, task)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _tasks(url: str, plan_id: int) -> list[str]:
    with _session(url) as s:
        return lb.leaderboard_tasks(s, plan_id)


def leaderboard_tasks(plan_id: int) -> list[str]:
    return _tasks(db_url(), plan_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _seed_results(url: str, variant_ids: tuple[int, ...]) -> list[dash.SeedResult]:
    with _session(url) as s:
        return dash.seed_results(s, variant_ids)


def seed_results(variant_ids: Sequence[int]) -> list[dash.SeedResult]:
    """Every final result of these variants (one per task and seed)."""
    return _seed_results(db_url(), tuple(variant_ids))


@st.cache_data(ttl=1.0, show_spinner=False)
def _job_events(url: str, job_ids: tuple[int, ...], limit: int) -> list[dash.EventRow]:
    with _session(url) as s:
        return dash.job_events(s, job_ids, limit)


def job_events(job_ids: Sequence[int], limit: int = 200) -> list[dash.EventRow]:
    return _job_events(db_url(), tuple(job_ids), limit)


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
         "started (UTC)": s.datetime_start, "attrs": dict(s.user_attrs or {})}
        for s in summaries
    ]


def studies() -> list[dict[str, Any]]:
    """Every study of this database: name, trial count, best value, start, and its user attributes
    (``plan_id``, ``variant``, ``task``, ``trials`` planned: set by ``zolab.platform.tuning``)."""
    return _study_names(db_url())


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _study_counts(url: str, names: tuple[str, ...]) -> dict[str, dict[str, int]]:
    storage = _storage(url)
    out = {}
    for name in names:
        trials = storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)
        states = [t.state.name.lower() for t in trials]
        out[name] = {k: states.count(state) for k, state in
                     (("complete", "complete"), ("pruned", "pruned"), ("failed", "fail"), ("running", "running"))}
    return out


def study_counts(names: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per study: how many trials completed, were pruned, failed, are running."""
    return _study_counts(db_url(), tuple(names))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _trial_jobs(url: str, study: str) -> list[dash.TrialJob]:
    with _session(url) as s:
        return dash.trial_jobs(s, study)


def trial_jobs(study: str) -> dict[int, dash.TrialJob]:
    """The tune jobs of a study by trial number."""
    return {j.trial_number: j for j in _trial_jobs(db_url(), study)}


def load_study(name: str) -> Any:
    """An Optuna study object (not cached: plots read it directly)."""
    import optuna

    return optuna.load_study(study_name=name, storage=_storage(db_url()))
