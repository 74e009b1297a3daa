"""Upload: parse, validate, resolve and expand a plan completely, then store it in one transaction.

Only structural problems refuse a plan (syntax, missing fields, bad types, an override naming no
ablation, and the input-safety checks of :mod:`zolab.platform.intake_checks`: job cap from counts before
resolving, known tasks, model values, paths under ``ZOLAB_DATA_ROOTS``, column sizes): they raise :class:`~zolab.platform.errors.PlanError` and nothing is written. What an
ablation *says* never refuses it: an ablation the resolver cannot read, or reads two ways, is
stored with status ``unresolved`` / ``ambiguous`` and its candidates, and is never scheduled; the
other ablations run. ``allow_unresolved=False`` (the CLI's ``--strict``) refuses such plans instead.
The content hash covers the normalised plan (overrides included), so the same plan uploaded twice
returns the first plan's id and writes no rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zolab.db.errors import IntegrityConflictError
from zolab.db.repo import plans as repo
from zolab.db.retry import retry_on_transient
from zolab.db.session import session_scope
from zolab.platform.components import NOT_RUN, Resolution, parse_overrides, resolve_plan
from zolab.platform.errors import Issue, PlanError
from zolab.platform.intake_checks import DEFAULT_MAX_JOBS, check_expansion, check_job_cap, check_plan
from zolab.platform.metrics import metric_warnings
from zolab.platform.parsers import load_source
from zolab.platform.plan import Plan
from zolab.platform.variants import VariantSpec, expand_variants


@dataclass
class Prepared:
    """A plan ready to store: everything computed, nothing written."""

    plan: Plan
    format: str
    text: str
    filename: str | None
    resolutions: list[Resolution]
    variants: list[VariantSpec]
    content_hash: str

    @property
    def unresolved(self) -> list[Resolution]:
        """Ablations stored but not run until the user picks a reading: unresolved and ambiguous."""
        return [r for r in self.resolutions if r.status in ("unresolved", "ambiguous")]

    @property
    def warnings(self) -> list[str]:
        """What the plan asks for that zolab will not show (metrics it does not measure); never a refusal."""
        return metric_warnings(self.plan)

    def not_run_lines(self) -> list[str]:
        """One plain line per ablation that will not run (no_op included), saying why."""
        return [f"not run: {r.ablation!r} is {r.status}: {r.explanation}" for r in self.resolutions
                if r.status in NOT_RUN]


@dataclass
class UploadResult:
    plan_id: int
    created: bool
    prepared: Prepared


def content_hash(plan: Plan) -> str:
    blob = json.dumps(plan.canonical(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _apply_overrides(plan: Plan, overrides: Mapping[str, str]) -> None:
    """The user's picks become each ablation's ``component`` (so they are part of the content hash)."""
    for index, component in parse_overrides(plan, overrides).items():
        plan.ablations[index].component = component


def prepare(
    source: str | bytes | Path,
    *,
    filename: str | None = None,
    fmt: str | None = None,
    baseline: str | Path | dict[str, Any] | None = None,
    tasks: list[str] | None = None,
    seeds: list[int] | None = None,
    overrides: Mapping[str, str] | None = None,
    max_jobs: int | None = DEFAULT_MAX_JOBS,
) -> Prepared:
    """Parse, validate, apply ``overrides={ablation name: component}``, resolve and expand; at most
    ``max_jobs`` jobs (None: no cap), refused from the plan's counts before anything is resolved."""
    loaded = load_source(source, filename=filename, fmt=fmt, baseline=baseline, tasks=tasks, seeds=seeds)
    plan = loaded.plan
    check_job_cap(plan, max_jobs)
    if overrides:
        _apply_overrides(plan, overrides)
    check_plan(plan)
    resolutions = resolve_plan(plan)
    variants = expand_variants(plan, resolutions)
    check_expansion(plan, variants, filename=loaded.filename, max_jobs=max_jobs)
    return Prepared(plan, loaded.format, loaded.text, loaded.filename, resolutions, variants, content_hash(plan))


def refuse_unresolved(prepared: Prepared) -> None:
    """PlanError listing every unresolved or ambiguous ablation, each at its place in the file."""
    issues = []
    for i, (ab, res) in enumerate(zip(prepared.plan.ablations, prepared.resolutions)):
        if res.status in ("unresolved", "ambiguous"):
            where = prepared.plan.locate(("ablations", i, "ablated_part"))
            picks = ", ".join(c.component for c in res.candidates)
            issues.append(Issue(
                f"ablation {ab.name!r} is {res.status}: {res.explanation} (set 'component:'"
                + (f", e.g. one of {picks}" if picks else "") + ")",
                where.file, where.line, where.column, where.field))
    if issues:
        raise PlanError(issues)


def _rows(prepared: Prepared) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ablations = []
    for ab, res in zip(prepared.plan.ablations, prepared.resolutions):
        ablations.append({
            "name": ab.name, "ablated_part": ab.ablated_part, "action": ab.action.value,
            "replacement": list(ab.replacement), "metrics": list(ab.metrics or []), "component": res.component,
            "status": res.status, "confidence": res.confidence, "explanation": res.explanation,
            "changes": res.to_dict()["changes"], "overridden": res.overridden,
            "candidates": [c.to_dict() for c in res.candidates],
        })
    variants = [{"label": v.label, "is_baseline": v.is_baseline, "config": v.config,
                 "config_hash": v.config_hash, "ablations": list(v.ablations)} for v in prepared.variants]
    return ablations, variants


def store(prepared: Prepared, *, url: str | None = None, allow_unresolved: bool = True) -> UploadResult:
    """Write a prepared plan (one transaction); the same content again returns the same id.

    Unresolved and ambiguous ablations are stored (not run) unless ``allow_unresolved=False``."""
    if not allow_unresolved:
        refuse_unresolved(prepared)
    ablations, variants = _rows(prepared)
    plan = prepared.plan

    def write() -> tuple[int, bool]:
        try:
            with session_scope(url) as session:
                row, created = repo.save_plan(
                    session, name=plan.name, description=plan.description, format=prepared.format,
                    source_name=prepared.filename or "", source_text=prepared.text,
                    content_hash=prepared.content_hash, plan_json=plan.canonical(),
                    ablations=ablations, variants=variants,
                )
                return row.id, created
        except IntegrityConflictError:  # the same content stored concurrently: that row is ours
            with session_scope(url) as session:
                row = repo.get_plan_by_hash(session, prepared.content_hash)
                if row is None:
                    raise
                return row.id, False

    plan_id, created = retry_on_transient(write, what="upload plan")
    return UploadResult(plan_id, created, prepared)


def upload_plan(
    source: str | bytes | Path,
    *,
    filename: str | None = None,
    fmt: str | None = None,
    baseline: str | Path | dict[str, Any] | None = None,
    tasks: list[str] | None = None,
    seeds: list[int] | None = None,
    url: str | None = None,
    allow_unresolved: bool = True,
    overrides: Mapping[str, str] | None = None,
    max_jobs: int | None = DEFAULT_MAX_JOBS,
) -> UploadResult:
    """Validate and resolve fully, then store; raises PlanError (nothing written) on bad input."""
    prepared = prepare(source, filename=filename, fmt=fmt, baseline=baseline, tasks=tasks, seeds=seeds,
                       overrides=overrides, max_jobs=max_jobs)
    return store(prepared, url=url, allow_unresolved=allow_unresolved)
