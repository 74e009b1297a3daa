"""Optuna tuning before the final seeds: one study per variant x task, its trials run as ``tune`` jobs.

A plan with a ``tuning:`` block (``zolab.platform.plan.Tuning``) is scheduled in two stages:

1. **tune**: every variant x task gets a study named :func:`study_name` (``zolab-p<plan>-v<variant>-<task>``)
   in the plan's database (:func:`storage_for`). Each trial is one job of stage ``tune``: the plan's first
   seed, fewer steps (``tuning.steps``, default a quarter of the variant's), and the params the study
   asked for (any baseline field of ``tuning.space``: lr, eps, n_samples, ...). At most ``parallel``
   trials of a study are in flight, so TPE learns from finished ones.
2. **final**: when all trials of a study have ended, its best params (max dev accuracy) are stored in
   ``Variant.tuned_params[task]`` and the final jobs (all seeds, the variant's full steps) are enqueued
   with them.

The study (Optuna's trials) and the queue (tune jobs) must agree; :func:`advance` is the one function
that asks and tells, and it reconciles the two so that a crash between any two steps is repaired by the
next call (a trial number is tied to its job by the job key ``p..:v..:<task>:s<seed>:tune:t<n>``):

* a RUNNING trial with no job (crash after ``ask``) gets its job;
* a trial whose job has ended is told: succeeded -> its dev accuracy; cancelled by the pruner ->
  PRUNED; failed for good or cancelled by a user -> FAIL (a job still queued for a retry is waited for);
* while fewer than ``trials`` were asked and fewer than ``parallel`` run, new trials are asked;
* once every trial has ended: tuned params + final jobs (idempotent by their keys).

It runs in one transaction holding the variant's row lock (PostgreSQL ``FOR UPDATE``; SQLite
``BEGIN IMMEDIATE``), so two workers finishing trials at once never ask one trial too many.
:func:`start` calls it when ``zolab run`` schedules the plan; :func:`on_job_finished` when a worker
is done with a tune job (running ``zolab run PLAN`` again also repairs anything left behind).

Pruning: the worker wraps its reporter with :func:`trial_reporter`; every dev accuracy after step 0 (the
zero-shot eval is the same for every trial of a study, so it says nothing about the params) is
reported to the trial, and when the pruner says so the run stops with :class:`TrialPruned`. The worker
then cancels the job with the message "pruned at step N by the median pruner" (never retried) and
the next :func:`advance` tells the trial PRUNED.

Optuna is imported lazily: the worker imports this module for every job, tuned or not.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from zolab import config as settings
from zolab.db.models import Job, JobStage, JobStatus
from zolab.db.repo import jobs as jobs_repo
from zolab.db.repo import tuning as repo
from zolab.db.retry import retry_on_transient
from zolab.db.session import session_scope
from zolab.platform.estimates import JobEstimate, StepTimeModel, estimate_job
from zolab.platform.scheduler import JobSpec, SchedulerError, default_device, job_key
from zolab.runners.config import RunConfig
from zolab.runners.reporter import Checkpoint, JobCancelled, Reporter

if TYPE_CHECKING:
    import optuna

    from zolab.platform.plan import Tuning
    from zolab.platform.queue import Claim

log = logging.getLogger(__name__)

#: environment override of where studies live (an RDB URL, or a journal file path)
STORAGE_ENV = "ZOLAB_OPTUNA_STORAGE"
#: trials of one study in flight at once (asked before earlier ones have finished)
DEFAULT_PARALLEL = 2
#: tune jobs run this fraction of the variant's steps when ``tuning.steps`` is not set
TUNE_STEP_FRACTION = 0.25
#: tune jobs evaluate on dev at least this many times (the pruner needs intermediate values)
MIN_EVALS = 4
#: the curve reported to trials, and the objective (maximised)
OBJECTIVE_CURVE = "dev_accuracy"
PRUNED_PREFIX = "pruned at step"
#: PostgreSQL schema of Optuna's tables (same database as zolab's)
OPTUNA_SCHEMA = "optuna"
MAX_ATTEMPTS = 3


class TuningError(SchedulerError):
    """The plan's tuning block cannot run as written (one human line)."""


class TrialPruned(JobCancelled):
    """Raised from a tune job's reporter when its trial should stop; the job ends ``cancelled``."""

    def __init__(self, step: int, pruner: str) -> None:
        super().__init__(f"{PRUNED_PREFIX} {step} by the {pruner} pruner")
        self.step, self.pruner = step, pruner


def is_pruned(job: Job) -> bool:
    return job.status == JobStatus.CANCELLED.value and (job.error or "").startswith(PRUNED_PREFIX)


# -- storage ----------------------------------------------------------------------------------------
def storage_for(url: str | None = None) -> optuna.storages.BaseStorage:
    """Where the studies of the database ``url`` (default ``ZOLAB_DB``) live.

    PostgreSQL: Optuna's RDB storage in the same database, in the schema ``optuna`` (Optuna runs
    its own Alembic, whose ``alembic_version`` table would collide with zolab's in ``public``).
    SQLite: a journal file next to the DB file (``<db file>.optuna.log``), because Optuna warns
    against SQLite with parallel workers. ``ZOLAB_OPTUNA_STORAGE`` overrides both (a URL, or a
    journal file path).
    """
    override = os.environ.get(STORAGE_ENV)
    if override:
        return _storage(override if "://" in override else f"journal:{override}", os.getpid())
    parsed = make_url(settings.db_url(url))
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise TuningError("tuning needs a SQLite file or a server database, not an in-memory SQLite database")
        return _storage(f"journal:{parsed.database}.optuna.log", os.getpid())
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    where = parsed.render_as_string(hide_password=False)
    if parsed.get_backend_name() == "postgresql":
        if (where, os.getpid(), OPTUNA_SCHEMA) not in _STORAGES:
            repo.ensure_schema(where, OPTUNA_SCHEMA)
        return _storage(where, os.getpid(), OPTUNA_SCHEMA)
    return _storage(where, os.getpid())


_STORAGES: dict[tuple[str, int, str | None], Any] = {}


def _storage(where: str, pid: int, schema: str | None = None) -> optuna.storages.BaseStorage:
    """One storage per target and process (an RDB storage holds an engine: never share it across fork)."""
    key = (where, pid, schema)
    if key not in _STORAGES:
        import optuna
        from optuna.storages.journal import JournalFileBackend

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "trial finished" line per tell in worker logs
        if where.startswith("journal:"):
            _STORAGES[key] = optuna.storages.JournalStorage(JournalFileBackend(where.removeprefix("journal:")))
        else:
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if schema:
                kwargs["connect_args"] = {"options": f"-csearch_path={schema}"}
            _STORAGES[key] = optuna.storages.RDBStorage(where, engine_kwargs=kwargs)
    return _STORAGES[key]


def dispose_storages() -> None:
    """Forget the cached storages and close their connections (tests that drop databases)."""
    for st in _STORAGES.values():
        engine = getattr(st, "engine", None)
        if engine is not None:
            engine.dispose()
    _STORAGES.clear()


def study_name(plan_id: int, variant_id: int, task: str) -> str:
    return f"zolab-p{plan_id}-v{variant_id}-{task}"


# -- settings -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TuneSettings:
    """A plan's tuning block with the values derived from the plan."""

    tuning: Tuning
    seed: int                      # the plan's first seed: every trial runs it
    tasks: list[str]
    seeds: list[int]
    parallel: int = DEFAULT_PARALLEL

    @property
    def trials(self) -> int:
        return self.tuning.trials

    def steps_for(self, variant_steps: int) -> int:
        return self.tuning.steps or max(1, math.ceil(variant_steps * TUNE_STEP_FRACTION))

    def pruner_spec(self, steps: int, eval_every: int) -> dict[str, Any]:
        """What the pruner is, as stored in the study (the worker rebuilds it from there)."""
        kind = self.tuning.pruner
        if kind == "median":
            return {"kind": kind, "n_startup_trials": max(1, min(5, self.trials // 3)), "n_warmup_steps": 0}
        if kind == "hyperband":
            return {"kind": kind, "min_resource": eval_every, "max_resource": max(steps, eval_every + 1)}
        return {"kind": "none"}


def settings_of(plan_json: dict[str, Any]) -> TuneSettings | None:
    """The tuning settings of a stored plan (its normalised JSON), or None without a tuning block."""
    raw = plan_json.get("tuning")
    if not raw:
        return None
    from zolab.platform.plan import Tuning

    tuning = Tuning.model_validate(raw)
    if not tuning.space:
        raise TuningError("the tuning block has an empty space: name what to tune (e.g. lr: {low: 1e-7, high: 1e-5, log: true})")
    if tuning.metric != "accuracy":
        raise TuningError(f"tuning maximises dev accuracy; metric {tuning.metric!r} is not supported")
    if tuning.sampler == "grid" and any(r.choices is None for r in tuning.space.values()):
        raise TuningError("the grid sampler needs choices (not low/high) for every key of tuning.space")
    seeds = [int(s) for s in plan_json.get("seeds") or []]
    tasks = list(plan_json.get("tasks") or [])
    if not seeds or not tasks:
        raise TuningError("a plan with tuning needs tasks and seeds")
    return TuneSettings(tuning, seeds[0], tasks, seeds, parallel=int(raw.get("parallel", DEFAULT_PARALLEL)))


def distributions(tuning: Tuning) -> dict[str, optuna.distributions.BaseDistribution]:
    """The search space as Optuna distributions: choices are categorical, RunConfig int fields
    (n_samples, batch_size, ...) integer, the rest float; ``log`` as written."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    types = {f.name: f.type for f in dataclasses.fields(RunConfig)}
    out: dict[str, Any] = {}
    for key, r in tuning.space.items():
        if r.choices is not None:
            out[key] = CategoricalDistribution(r.choices)
        elif types.get(key) in ("int", int):
            out[key] = IntDistribution(int(r.low), int(r.high), log=r.log)
        else:
            out[key] = FloatDistribution(float(r.low), float(r.high), log=r.log)
    return out


def make_sampler(tuning: Tuning, seed: int) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded; TPE starts model-based after a third of the trials (at most 10)."""
    import optuna

    startup = max(2, min(10, tuning.trials // 3))
    if tuning.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if tuning.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
    if tuning.sampler == "grid":
        return grid_sampler({k: list(r.choices or []) for k, r in tuning.space.items()})
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def grid_sampler(space: dict[str, list[Any]]) -> optuna.samplers.BaseSampler:
    """Optuna's grid sampler, fit for :func:`advance`, which rebuilds the sampler on every call:

    * a fixed seed: trial ``n`` gets grid point ``n`` of the sampler's seeded shuffle of the grid, so a
      seed that changed between calls would map trials to points anew and repeat some;
    * no ``study.stop()`` once the grid is covered: ``stop`` is only legal inside ``study.optimize``,
      and under ask/tell it raised out of the ``tell`` of the last grid points (those trials stayed
      RUNNING, the study never finished, its final jobs never came). :func:`advance` stops asking
      at ``tuning.trials`` itself."""
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            return None

    return AskTellGridSampler(space, seed=0)


def make_pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    import optuna

    kind = spec.get("kind", "none")
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec["n_startup_trials"],
                                           n_warmup_steps=spec["n_warmup_steps"])
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=spec["min_resource"], max_resource=spec["max_resource"])
    return optuna.pruners.NopPruner()


def trial_config(variant_config: dict[str, Any], task: str, settings_: TuneSettings,
                 params: dict[str, Any]) -> RunConfig:
    """The config of one trial: the variant's, on the first seed, with fewer steps, denser dev evals
    (at least ``MIN_EVALS``, for the pruner) and the asked params."""
    base = RunConfig.from_dict({**variant_config, "task": task, "seed": settings_.seed})
    steps = settings_.steps_for(base.steps)
    eval_every = min(base.eval_every, max(1, steps // MIN_EVALS))
    return base.replace(steps=steps, eval_every=eval_every, **params)


def is_tunable(variant_config: dict[str, Any]) -> bool:
    """A variant that does not train (``steps: 0``, the zero-shot row) has nothing to tune: its
    final jobs are enqueued at once, with no study."""
    return int(variant_config.get("steps", 1)) > 0


def final_config(variant_config: dict[str, Any], task: str, seed: int, params: dict[str, Any]) -> RunConfig:
    return RunConfig.from_dict({**variant_config, "task": task, "seed": seed, **params})


# -- dry run ----------------------------------------------------------------------------------------
def planned_trials(plan_id: int, plan_json: dict[str, Any], variant_id: int, label: str,
                   variant_config: dict[str, Any], task: str,
                   estimate: Callable[[RunConfig], JobEstimate]) -> list[JobSpec]:
    """The tune jobs a plan will run for one variant x task (for ``--dry-run`` and the budget);
    their params are the variant's until the study asks."""
    s = settings_of(plan_json)
    if s is None or not is_tunable(variant_config):
        return []
    cfg = trial_config(variant_config, task, s, {})
    est = estimate(cfg)
    return [JobSpec(job_key(plan_id, variant_id, task, s.seed, JobStage.TUNE.value, n), variant_id, label, task,
                    s.seed, cfg.to_dict(), est, stage=JobStage.TUNE.value) for n in range(s.trials)]


# -- the reconciler ----------------------------------------------------------------------------------
@dataclass
class StudyState:
    """Where one study stands after :func:`advance`."""

    name: str
    variant_id: int
    variant_label: str
    task: str
    trials: int                      # planned
    asked: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    finished: bool = False           # every trial ended; final jobs enqueued

    @property
    def ended(self) -> int:
        return self.complete + self.pruned + self.failed


@dataclass
class AdvanceReport:
    created: list[int] = field(default_factory=list)   # new job ids (tune and final)
    known: int = 0                                      # tune jobs that already existed
    studies: list[StudyState] = field(default_factory=list)


def start(url: str | None, plan_id: int, *, device: str | None = None) -> AdvanceReport:
    """Create the plan's studies and enqueue their first trials (``zolab run``); idempotent."""
    return advance(url, plan_id, device=device)


def on_job_finished(url: str | None, job_id: int) -> AdvanceReport | None:
    """After a worker is done with a job: if it was a trial, tell its study and ask/enqueue the next
    (or the final jobs). Safe to call for any job, any number of times."""
    def read():
        with session_scope(url) as s:
            job = jobs_repo.get_job(s, job_id)
            return None if job is None else (job.stage, job.plan_id, job.variant_id, job.task)

    got = retry_on_transient(read, what="read a finished job")
    if got is None or got[0] != JobStage.TUNE.value:
        return None
    _stage, plan_id, variant_id, task = got
    return advance(url, plan_id, variant_id=variant_id, task=task)


def _plan_and_variants(url: str | None, plan_id: int) -> tuple[dict[str, Any], list[tuple[int, str, dict]]]:
    """The stored plan document and its variants' (id, label, config); TuningError when there is no such plan."""
    def read():
        with session_scope(url) as s:
            parts = jobs_repo.plan_parts(s, plan_id)
            if parts is None:
                raise TuningError(f"no plan with id {plan_id}")
            plan, _ablations, variants = parts
            return dict(plan.plan_json or {}), [(v.id, v.label, dict(v.config or {})) for v in variants]

    return retry_on_transient(read, what="read a plan")


def advance(url: str | None, plan_id: int, *, variant_id: int | None = None, task: str | None = None,
            device: str | None = None) -> AdvanceReport:
    """Reconcile the studies of a plan (or of one variant x task) with their jobs; see the module doc."""
    plan_json, variants = _plan_and_variants(url, plan_id)
    s = settings_of(plan_json)
    report = AdvanceReport()
    if s is None:
        return report
    device = device or default_device()
    for vid, label, _cfg in variants:
        if variant_id is not None and vid != variant_id:
            continue
        for t in s.tasks:
            if task is not None and t != task:
                continue
            state, created, known = retry_on_transient(
                lambda vid=vid, label=label, t=t: _advance_study(url, plan_id, vid, label, t, s, device),
                what="advance a tuning study")
            report.studies.append(state)
            report.created += created
            report.known += known
    return report


def _load_study(name: str, url: str | None, attrs: dict[str, Any]) -> optuna.Study:
    """Create or load the study (its sampler is set by the caller, once it knows the trial count)."""
    import optuna

    study = optuna.create_study(storage=storage_for(url), study_name=name, direction="maximize",
                                pruner=make_pruner(attrs["pruner"]), load_if_exists=True)
    if not study.user_attrs:
        for k, v in attrs.items():
            study.set_user_attr(k, v)
    return study


def _advance_study(url: str | None, plan_id: int, variant_id: int, label: str, task: str, s: TuneSettings,
                   device: str) -> tuple[StudyState, list[int], int]:
    from optuna.trial import TrialState

    name = study_name(plan_id, variant_id, task)
    with session_scope(url, immediate=True) as ses:
        variant = repo.lock_variant(ses, variant_id)
        if variant is None:
            raise TuningError(f"no variant {variant_id} in plan {plan_id}")
        if not is_tunable(variant.config):  # no study: the final jobs with the variant's own values
            state = StudyState(name, variant_id, label, task, 0, finished=True)
            new = [_final_job(ses, plan_id, variant, task, seed, {}, device) for seed in s.seeds]
            have = jobs_repo.existing_keys(ses, [j.key for j in new])
            fresh = [j for j in new if j.key not in have]
            jobs_repo.add_jobs(ses, fresh)
            return state, [j.id for j in fresh], 0
        jobs = repo.tune_jobs(ses, name)
        probe = trial_config(variant.config, task, s, {})
        attrs = {"plan_id": plan_id, "variant_id": variant_id, "variant": label, "task": task,
                 "pruner": s.pruner_spec(probe.steps, probe.eval_every), "trials": s.trials}
        study = _load_study(name, url, attrs)
        trials = study.get_trials(deepcopy=False)  # one read: RDB storages make this the costly call
        # seeded with (study, trials asked so far): a fresh sampler per call must not repeat the
        # previous call's draws, yet a rerun stays reproducible
        study.sampler = make_sampler(s.tuning, zlib.crc32(f"{name}:{len(trials)}".encode()))
        dists = distributions(s.tuning)
        new: list[Job] = []

        # 1. tell trials whose job ended; give orphaned trials (asked, job never written) their job
        running = 0
        for tr in trials:
            if tr.state != TrialState.RUNNING:
                continue
            job = jobs.get(tr.number)
            if job is None:
                new.append(_trial_job(ses, plan_id, variant, task, s, name, tr.number, tr.params, device))
            running += job is None or not _tell(ses, study, tr.number, job)

        # 2. ask while the study has trials to give and room in flight
        asked = len(trials)
        while asked < s.trials and running < s.parallel:
            tr = study.ask(fixed_distributions=dists)
            new.append(_trial_job(ses, plan_id, variant, task, s, name, tr.number, tr.params, device))
            asked += 1
            running += 1

        # 3. every trial ended: best params -> variant, final jobs for all seeds
        trials = study.get_trials(deepcopy=False)
        state = _state(name, variant_id, label, task, s, trials)
        if len(trials) >= s.trials and state.running == 0:
            best = state.best_params
            if state.complete == 0:
                log.warning("study %s: no trial completed; final jobs use the plan's values", name)
            repo.set_tuned_params(variant, task, best)
            for seed in s.seeds:
                new.append(_final_job(ses, plan_id, variant, task, seed, best, device))
            state.finished = True

        have = jobs_repo.existing_keys(ses, [j.key for j in new])
        fresh = [j for j in new if j.key not in have]
        jobs_repo.add_jobs(ses, fresh)
        return state, [j.id for j in fresh], len(jobs)


def _tell(ses, study: optuna.Study, number: int, job: Job) -> bool:
    """Tell the trial how its job ended; False while the job is still queued or running."""
    from optuna.trial import TrialState

    if job.status == JobStatus.SUCCEEDED.value:
        result = jobs_repo.result_of(ses, job.id)
        value = None if result is None else (result.dev_accuracy if result.dev_accuracy is not None else result.accuracy)
        if value is None or not math.isfinite(value):
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            study.tell(number, float(value), skip_if_finished=True)
    elif is_pruned(job):
        study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
    elif job.status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value, JobStatus.DIVERGED.value):
        # a diverged trial has a result, but its settings blew up: never the study's best
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    else:
        return False
    return True


def _state(name: str, variant_id: int, label: str, task: str, s: TuneSettings,
           trials: list[optuna.trial.FrozenTrial]) -> StudyState:
    from optuna.trial import TrialState

    st = StudyState(name, variant_id, label, task, s.trials, asked=len(trials))
    for t in trials:
        st.complete += t.state == TrialState.COMPLETE
        st.pruned += t.state == TrialState.PRUNED
        st.failed += t.state == TrialState.FAIL
        st.running += t.state == TrialState.RUNNING
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if done:
        best = max(done, key=lambda t: (t.value, -t.number))  # Optuna's best_trial: the first of the best
        st.best_value, st.best_params = float(best.value), dict(best.params)
    return st


def _estimate(ses, cfg: RunConfig, device: str) -> JobEstimate:
    kind = "cpu" if cfg.device == "cpu" else "gpu" if cfg.device.startswith("cuda") else device
    return estimate_job(cfg, StepTimeModel(jobs_repo.step_time_samples(ses, cfg.model, cfg.method)), kind)


def _job(plan_id: int, variant_id: int, task: str, seed: int, stage: str, cfg: RunConfig, est: JobEstimate,
         *, study: str | None = None, trial: int | None = None) -> Job:
    return Job(key=job_key(plan_id, variant_id, task, seed, stage, trial), plan_id=plan_id, variant_id=variant_id,
               task=task, seed=seed, stage=stage, study_name=study, trial_number=trial, config=cfg.to_dict(),
               status=JobStatus.QUEUED.value, max_attempts=MAX_ATTEMPTS, est_memory_bytes=est.memory_bytes,
               est_gpu_hours=est.gpu_hours, est_step_seconds=est.step_seconds, progress_total=cfg.steps)


def _trial_job(ses, plan_id: int, variant, task: str, s: TuneSettings, name: str, number: int,
               params: dict[str, Any], device: str) -> Job:
    cfg = trial_config(variant.config, task, s, params)
    return _job(plan_id, variant.id, task, s.seed, JobStage.TUNE.value, cfg, _estimate(ses, cfg, device),
                study=name, trial=number)


def _final_job(ses, plan_id: int, variant, task: str, seed: int, params: dict[str, Any], device: str) -> Job:
    cfg = final_config(variant.config, task, seed, params)
    return _job(plan_id, variant.id, task, seed, JobStage.FINAL.value, cfg, _estimate(ses, cfg, device))


# -- status -------------------------------------------------------------------------------------------
def status(url: str | None, plan_id: int) -> list[StudyState]:
    """Where each study of a plan stands (reads only; no ask, no tell)."""
    import optuna

    plan_json, variants = _plan_and_variants(url, plan_id)
    s = settings_of(plan_json)
    if s is None:
        return []
    storage = storage_for(url)
    out = []
    for vid, label, cfg in variants:
        if not is_tunable(cfg):  # a variant with nothing to tune (zero-shot) has no study
            continue
        for task in s.tasks:
            name = study_name(plan_id, vid, task)
            try:
                trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
            except KeyError:
                trials = []
            st = _state(name, vid, label, task, s, trials)
            st.finished = len(trials) >= s.trials and st.running == 0
            out.append(st)
    return out


# -- pruning in the worker --------------------------------------------------------------------------
class TrialReporter:
    """A tune job's reporter: forwards everything to the worker's reporter and reports each dev
    accuracy after step 0 to the trial; raises :class:`TrialPruned` when the pruner says stop."""

    def __init__(self, inner: Reporter, trial: optuna.Trial, pruner: str) -> None:
        self.inner, self.trial, self.pruner = inner, trial, pruner

    def progress(self, step: int, total: int, loss: float | None = None) -> None:
        self.inner.progress(step, total, loss)

    def heartbeat(self) -> None:
        self.inner.heartbeat()

    def checkpoint(self, ckpt: Checkpoint) -> None:
        self.inner.checkpoint(ckpt)

    def metric(self, step: int, name: str, value: float) -> None:
        self.inner.metric(step, name, value)
        if name != OBJECTIVE_CURVE or step <= 0 or not math.isfinite(value):
            return
        self.trial.report(float(value), step)  # a step already reported (resumed run) is ignored by Optuna
        if self.trial.should_prune():
            raise TrialPruned(step, self.pruner)


def trial_reporter(url: str | None, claim: Claim, inner: Reporter) -> Reporter:
    """Wrap ``inner`` for a claimed tune job whose trial is still running; any other job keeps
    ``inner`` (a trial already told, e.g. a user's retry of a cancelled trial, is not pruned)."""
    if claim.study_name is None or claim.trial_number is None:
        return inner
    import optuna
    from optuna.trial import TrialState

    storage = storage_for(url)
    try:
        study_id = storage.get_study_id_from_name(claim.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, claim.trial_number)
    except KeyError:
        log.warning("job %s: no trial %s in study %s; running without pruning",
                    claim.job_id, claim.trial_number, claim.study_name)
        return inner
    if storage.get_trial(trial_id).state != TrialState.RUNNING:
        return inner
    spec = storage.get_study_user_attrs(study_id).get("pruner", {"kind": "none"})
    study = optuna.load_study(study_name=claim.study_name, storage=storage, pruner=make_pruner(spec))
    return TrialReporter(inner, optuna.trial.Trial(study, trial_id), spec.get("kind", "none"))


__all__ = [
    "DEFAULT_PARALLEL",
    "STORAGE_ENV",
    "AdvanceReport",
    "StudyState",
    "TrialPruned",
    "TrialReporter",
    "TuneSettings",
    "TuningError",
    "advance",
    "dispose_storages",
    "distributions",
    "is_pruned",
    "make_pruner",
    "make_sampler",
    "on_job_finished",
    "planned_trials",
    "settings_of",
    "start",
    "status",
    "storage_for",
    "study_name",
    "trial_reporter",
]
