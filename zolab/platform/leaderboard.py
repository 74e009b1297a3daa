"""The leaderboard a researcher reads: per task, each variant against the baseline, paired over seeds.

:func:`build_board` turns the database's moments (``zolab.db.repo.leaderboard.aggregates``) into a
:class:`Board`: per task a :class:`TaskBoard` whose rows hold, per metric, the mean with its 95%
Student-t interval over seeds and, for accuracy and macro-F1, the paired difference from the
baseline (same seed = same data sample and test set) with its t-interval, p-value and the Holm
adjusted p-value. The Holm family is one task x one metric: the comparisons of every variant of
the plan with the baseline on that task (m = those with >= 2 paired seeds).

Ranking: the baseline first (the reference row), then variants by the mean of the plan's first
accuracy-like metric, best first; variants with a diverged seed go last, marked. Columns with no
information (never measured, or GPU hours 0 on CPU for every run) are dropped with a note.

Formatting (text cells, markdown, LaTeX, CSV) is :mod:`zolab.platform.board_format`; this module
holds numbers only, in the results' own units (accuracy as a fraction, memory in bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from zolab.db.models import JobStage
from zolab.db.repo import leaderboard as repo
from zolab.db.repo import plans as plans_repo
from zolab.db.retry import retry_on_transient
from zolab.db.session import session_scope
from zolab.platform import stats
from zolab.platform.lookup import NotFound


@dataclass(frozen=True)
class MetricSpec:
    """How a result column is summarised and shown: ``scale`` turns stored values into ``unit``."""

    key: str                    # a key of zolab.db.repo.leaderboard.SUMMARY_COLUMNS
    label: str
    unit: str                   # "%" | "bytes" | "h" | "s" | "steps" | ""
    scale: float = 1.0
    paired: bool = False        # compared with the baseline seed by seed
    higher_is_better: bool | None = None
    why_missing: str = "not recorded by these runs"


METRICS: dict[str, MetricSpec] = {s.key: s for s in (
    MetricSpec("accuracy", "accuracy", "%", 100.0, paired=True, higher_is_better=True),
    MetricSpec("f1", "macro-F1", "%", 100.0, paired=True, higher_is_better=True),
    MetricSpec("method_memory", "method memory", "bytes", higher_is_better=False,
               why_missing="not recorded by these runs: older zolab runners did not count weights + optimizer "
                           "state + z buffers"),
    MetricSpec("peak_memory_allocated", "GPU peak allocated", "bytes", higher_is_better=False,
               why_missing="no CUDA runs: torch's allocator peaks exist on GPUs only"),
    MetricSpec("peak_memory_reserved", "GPU peak reserved", "bytes", higher_is_better=False,
               why_missing="no CUDA runs: torch's allocator peaks exist on GPUs only"),
    MetricSpec("peak_rss", "peak RSS (process)", "bytes", higher_is_better=False),
    MetricSpec("gpu_hours", "GPU hours", "h", higher_is_better=False),
    MetricSpec("wall_time", "wall time", "s", higher_is_better=False),
    MetricSpec("convergence_step", "steps to 90% of final dev acc.", "steps", higher_is_better=False),
    MetricSpec("final_loss", "final train loss", "", higher_is_better=False),
)}

#: columns of every board, in order; ``convergence`` in the plan's metrics adds the last two
CORE_METRICS = ("accuracy", "f1", "method_memory", "peak_memory_allocated", "peak_memory_reserved",
                "peak_rss", "gpu_hours", "wall_time")
CONVERGENCE_METRICS = ("convergence_step", "final_loss")


@dataclass(frozen=True)
class Cell:
    """One metric of one row: the mean over seeds and, for paired metrics, the difference from the baseline."""

    summary: stats.MeanCI
    delta: stats.PairedDiff | None = None


@dataclass
class BoardRow:
    task: str
    variant_id: int
    label: str
    is_baseline: bool
    n_seeds: int
    diverged_seeds: int
    cells: dict[str, Cell]

    @property
    def diverged(self) -> bool:
        """At least one seed diverged: its mean is not a fair number, so the row ranks last."""
        return self.diverged_seeds > 0

    def mean(self, key: str) -> float | None:
        cell = self.cells.get(key)
        return None if cell is None else cell.summary.mean


@dataclass(frozen=True)
class DroppedColumn:
    key: str
    label: str
    reason: str


@dataclass
class TaskBoard:
    """One task's table: ranked rows, the columns worth showing, and why others are not shown."""

    task: str
    baseline: str | None                       # the baseline's label (None: no baseline result)
    rows: list[BoardRow]
    columns: list[MetricSpec]
    dropped: list[DroppedColumn] = field(default_factory=list)
    family_size: dict[str, int] = field(default_factory=dict)   # paired metric -> m of its Holm family
    rank_metric: str = "accuracy"
    confidence: float = stats.DEFAULT_CONFIDENCE

    @property
    def shown(self) -> list[str]:
        return [c.key for c in self.columns]

    def primary_memory(self) -> str | None:
        """The memory column that measures the method: torch's peak allocated on CUDA, else the
        bytes the method holds (weights + optimizer state + z buffers); RSS is secondary."""
        for key in ("peak_memory_allocated", "method_memory"):
            if key in self.shown:
                return key
        return None

    def row(self, label: str) -> BoardRow:
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(label)


@dataclass
class Board:
    plan_id: int
    plan_name: str
    stage: str
    tasks: list[TaskBoard]
    confidence: float = stats.DEFAULT_CONFIDENCE
    alpha: float = stats.DEFAULT_ALPHA

    @property
    def empty(self) -> bool:
        return not self.tasks

    def task(self, name: str) -> TaskBoard:
        for t in self.tasks:
            if t.task == name:
                return t
        raise KeyError(name)


def metrics_for(plan_metrics: Sequence[str] | None) -> list[str]:
    """The metric keys a board shows for a plan whose ``metrics`` are ``plan_metrics``."""
    keys = list(CORE_METRICS)
    if plan_metrics and "convergence" in plan_metrics:
        keys += CONVERGENCE_METRICS
    return keys


def _rank_metric(plan_metrics: Sequence[str] | None) -> str:
    for m in plan_metrics or ():
        if m in ("accuracy", "f1"):
            return m
    return "accuracy"


def _dead(spec: MetricSpec, cells: Sequence[repo.CellAggregate]) -> str | None:
    """Why a column carries no information on this task (None: keep it)."""
    moments = [c.metrics[spec.key] for c in cells]
    if all(m.n == 0 for m in moments):
        return spec.why_missing
    if spec.key == "gpu_hours" and all((m.mean or 0.0) == 0.0 and (m.sum_sq or 0.0) == 0.0 for m in moments):
        return "0 for every run: CPU runs hold no GPU; see wall time"
    return None


def _row(cell: repo.CellAggregate, keys: Sequence[str], confidence: float) -> BoardRow:
    cells: dict[str, Cell] = {}
    for key in keys:
        m = cell.metrics[key]
        summary = stats.mean_ci_from_moments(m.n, m.mean, m.sum_sq, confidence)
        delta = None
        if METRICS[key].paired and not cell.is_baseline:
            pm = cell.paired.get(key)
            delta = (stats.paired_diff_from_moments(pm.n, pm.mean, pm.sum_sq, confidence) if pm is not None
                     else stats.PairedDiff(0, None, confidence=confidence, reason="no paired seeds"))
        cells[key] = Cell(summary, delta)
    return BoardRow(cell.task, cell.variant_id, cell.label, cell.is_baseline, cell.n, cell.diverged, cells)


def _with_holm(rows: list[BoardRow], key: str) -> int:
    """Holm over the non-baseline rows' differences on ``key`` (in place); returns m."""
    targets = [r for r in rows if not r.is_baseline and r.cells[key].delta is not None]
    adjusted = stats.with_holm([r.cells[key].delta for r in targets])  # type: ignore[misc]
    for r, d in zip(targets, adjusted):
        r.cells[key] = Cell(r.cells[key].summary, d)
    return stats.family_size(adjusted)


def _rank(rows: list[BoardRow], key: str) -> list[BoardRow]:
    def order(r: BoardRow) -> tuple[int, float, int]:
        mean = r.mean(key)
        return (2 if r.diverged else 1, -(mean if mean is not None else float("-inf")), r.variant_id)

    base = [r for r in rows if r.is_baseline]
    return base + sorted((r for r in rows if not r.is_baseline), key=order)


def board_from_aggregates(plan_id: int, plan_name: str, cells: Sequence[repo.CellAggregate], *,
                          plan_metrics: Sequence[str] | None = None, stage: str = JobStage.FINAL.value,
                          confidence: float = stats.DEFAULT_CONFIDENCE, alpha: float = stats.DEFAULT_ALPHA) -> Board:
    """The statistics of a board from the repo's moments (pure: no database)."""
    keys = metrics_for(plan_metrics)
    rank_key = _rank_metric(plan_metrics)
    by_task: dict[str, list[repo.CellAggregate]] = {}
    for c in cells:
        by_task.setdefault(c.task, []).append(c)
    tasks: list[TaskBoard] = []
    for task, group in by_task.items():
        rows = [_row(c, keys, confidence) for c in group]
        family = {k: _with_holm(rows, k) for k in keys if METRICS[k].paired}
        dropped, columns = [], []
        for k in keys:
            reason = _dead(METRICS[k], group)
            if reason is None:
                columns.append(METRICS[k])
            else:
                dropped.append(DroppedColumn(k, METRICS[k].label, reason))
        baseline = next((c.label for c in group if c.is_baseline), None)
        tasks.append(TaskBoard(task, baseline, _rank(rows, rank_key), columns, dropped, family, rank_key,
                               confidence))
    return Board(plan_id, plan_name, stage, tasks, confidence, alpha)


def build_board(session: Session, plan_id: int, *, task: str | None = None, stage: str = JobStage.FINAL.value,
                confidence: float = stats.DEFAULT_CONFIDENCE, alpha: float = stats.DEFAULT_ALPHA) -> Board:
    """The board of a stored plan (:class:`NotFound` for an unknown plan or a task it does not list)."""
    plan = plans_repo.get_plan(session, plan_id)
    if plan is None:
        raise NotFound(f"no plan with id {plan_id} (see `zolab plan list`)")
    pj = plan.plan_json or {}
    if task is not None and task not in (pj.get("tasks") or []):
        raise NotFound(f"plan {plan_id} has no task {task!r} (its tasks: {', '.join(pj.get('tasks') or []) or 'none'})")
    cells = repo.aggregates(session, plan_id, task, stage, keys=metrics_for(pj.get("metrics")))
    return board_from_aggregates(plan_id, plan.name, cells, plan_metrics=pj.get("metrics"), stage=stage,
                                 confidence=confidence, alpha=alpha)


def load_board(url: str | None, plan_id: int, **kw) -> Board:
    """:func:`build_board` in its own read transaction, retried on transient database errors."""

    def read() -> Board:
        with session_scope(url) as s:
            return build_board(s, plan_id, **kw)

    return retry_on_transient(read, what="read a leaderboard")


# -- noise-aware comparisons (the accuracy-vs-memory Pareto chart) -----------------------------------
def separated(a: stats.MeanCI, b: stats.MeanCI) -> bool:
    """The two means differ by more than their intervals allow (the intervals do not overlap).

    A cell without an interval (one seed) separates nothing: its run-to-run noise is unknown. A
    deterministic metric (the method's bytes: the same every seed) has intervals of width 0, so
    any difference separates."""
    if a.mean is None or b.mean is None or a.half is None or b.half is None:
        return False
    return abs(a.mean - b.mean) > a.half + b.half


def distinguishable(rows: Sequence[BoardRow], key: str) -> bool:
    """Whether any two rows differ on ``key`` beyond their run-to-run spread: a paired difference
    from the baseline whose interval excludes 0, or two means whose intervals do not overlap."""
    if any(r.cells[key].delta is not None and r.cells[key].delta.excludes_zero  # type: ignore[union-attr]
           for r in rows if key in r.cells):
        return True
    cells = [r.cells[key].summary for r in rows if key in r.cells]
    return any(separated(x, y) for i, x in enumerate(cells) for y in cells[i + 1:])


@dataclass(frozen=True)
class ParetoFront:
    """Rows not dominated on (memory lower, accuracy higher); empty with a sentence when within noise."""

    x: str
    y: str
    labels: list[str]
    x_separates: bool
    y_separates: bool
    note: str


def pareto_front(board: TaskBoard, x: str | None = None, y: str = "accuracy") -> ParetoFront:
    """The accuracy-vs-memory front of one task (``x`` default: :meth:`TaskBoard.primary_memory`),
    drawn only where the differences on both axes exceed the run-to-run noise. Diverged rows and
    rows with one seed (noise unknown) are left out."""
    x = x or board.primary_memory()
    if x is None or x not in board.shown:
        return ParetoFront(x or "method_memory", y, [], False, False,
                           "no measure of the method's memory on this task (process RSS measures the process, "
                           "not the method); no front drawn")
    rows = [r for r in board.rows
            if r.mean(x) is not None and r.mean(y) is not None and not r.diverged and r.n_seeds >= 2]
    xs, ys = distinguishable(rows, x), distinguishable(rows, y)
    if not (xs and ys):
        which = " and ".join(METRICS[k].label for k, ok in ((x, xs), (y, ys)) if not ok)
        return ParetoFront(x, y, [], xs, ys, f"{which}: the variants are within run-to-run noise "
                                             f"({board.confidence:.0%} intervals overlap); no front drawn")
    front = []
    for r in rows:
        dominated = any(
            (o.mean(x) <= r.mean(x) and o.mean(y) >= r.mean(y)  # type: ignore[operator]
             and (o.mean(x) < r.mean(x) or o.mean(y) > r.mean(y)))  # type: ignore[operator]
            for o in rows if o is not r)
        if not dominated:
            front.append(r.label)
    return ParetoFront(x, y, front, xs, ys, f"{len(front)} of {len(rows)} variants on the front")


__all__ = [
    "CORE_METRICS",
    "METRICS",
    "Board",
    "BoardRow",
    "Cell",
    "DroppedColumn",
    "MetricSpec",
    "ParetoFront",
    "TaskBoard",
    "board_from_aggregates",
    "build_board",
    "distinguishable",
    "load_board",
    "metrics_for",
    "pareto_front",
    "separated",
]
