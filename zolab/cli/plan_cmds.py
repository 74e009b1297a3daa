"""``zolab plan validate|upload|list|show|expand``: plans from files to the database.

Exit codes: 0 ok, 1 bad input or refused (each problem on its own line with file:line:column and
field), 2 database/internal error. Plan text is printed escaped (it may contain rich markup).
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from zolab.cli.common import DB_OPTION, EXIT_BAD_INPUT, console, err_console, fail, guard

plan_app = typer.Typer(help="Ablation plans: validate, upload, list, show, expand.", no_args_is_help=True)
BASELINE_OPTION = typer.Option(
    None, "--baseline", help="Baseline YAML for JSONL/markdown plans (default: ablations/baselines/mezo-opt.yaml)."
)
TASKS_OPTION = typer.Option(None, "--tasks", help="Comma-separated tasks, replacing the plan's (e.g. sst2,rte).")
SEEDS_OPTION = typer.Option(None, "--seeds", help="Comma-separated integer seeds, replacing the plan's.")
FORMAT_OPTION = typer.Option(None, "--format", help="yaml | jsonl | markdown (default: from extension/content).")
OVERRIDE_OPTION = typer.Option(
    None, "--override", "-o", help="ABLATION=COMPONENT: force an ablation's component (repeatable)."
)
STATUS_STYLE = {"resolved": "green", "inverted": "cyan", "no_op": "yellow", "unresolved": "red"}


def _csv(value: str | None, kind: str) -> list[Any] | None:
    if not value:
        return None
    items = [x.strip() for x in value.split(",") if x.strip()]
    if kind == "int":
        try:
            return [int(x) for x in items]
        except ValueError:
            fail(f"--seeds must be comma-separated integers, got {value!r}", EXIT_BAD_INPUT)
    return items


def _overrides(values: list[str] | None) -> dict[str, str]:
    out = {}
    for item in values or []:
        name, sep, comp = item.rpartition("=")
        if not sep or not name.strip() or not comp.strip():
            fail(f"--override must be ABLATION=COMPONENT, got {item!r}", EXIT_BAD_INPUT)
        out[name.strip()] = comp.strip()
    return out


def _prepare(file: str, fmt: str | None, baseline: str | None, tasks: str | None, seeds: str | None,
             override: list[str] | None):
    from pathlib import Path

    from zolab.platform.upload import prepare

    prepared = prepare(Path(file), filename=file, fmt=fmt, baseline=baseline, tasks=_csv(tasks, "str"),
                       seeds=_csv(seeds, "int"), overrides=_overrides(override))
    if baseline and prepared.format == "yaml":
        err_console.print("[yellow]note:[/] --baseline is ignored for YAML plans (they carry their own baseline)")
    return prepared


def _is_baseline_file(file: str, fmt: str | None) -> bool:
    from pathlib import Path

    from zolab.platform.parsers import detect_format
    from zolab.platform.parsers.source import decode, read_bytes
    from zolab.platform.parsers.yaml import load_yaml_data

    text = decode(read_bytes(Path(file), file), file)
    if (fmt or detect_format(text, file)) != "yaml":
        return False
    data, _ = load_yaml_data(text, file)
    return isinstance(data, dict) and "ablations" not in data and "name" not in data


def _load_defaults(file: str) -> dict[str, Any]:
    from zolab.platform.parsers.defaults import load_defaults

    return load_defaults(file)


def _changes_text(changes: list[dict[str, Any]]) -> str:
    return "\n".join(c["label"] for c in changes) or "-"


def _resolution_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=escape(title), show_lines=True, expand=True)
    table.add_column("#", no_wrap=True)
    table.add_column("ablation", ratio=2, min_width=14)
    table.add_column("action", no_wrap=True)
    table.add_column("component", overflow="fold", min_width=9)
    table.add_column("status", no_wrap=True)
    table.add_column("conf.", no_wrap=True)
    table.add_column("runs", ratio=2, overflow="fold", min_width=12)
    table.add_column("explanation", ratio=5)
    for i, r in enumerate(rows, start=1):
        style = STATUS_STYLE.get(r["status"], "")
        table.add_row(
            str(i), escape(r["name"]), r["action"], escape(r["component"] or "-"),
            f"[{style}]{r['status']}[/]", f"{r['confidence']:.2f}", escape(_changes_text(r["changes"])),
            escape(r["explanation"]),
        )
    return table


def _report(prepared) -> dict[str, Any]:
    ablations = []
    for ab, res in zip(prepared.plan.ablations, prepared.resolutions):
        ablations.append({**res.to_dict(), "ablated_part": ab.ablated_part, "action": ab.action.value,
                          "replacement": list(ab.replacement), "metrics": list(ab.metrics or [])})
    return {
        "ok": not prepared.unresolved, "format": prepared.format, "file": prepared.filename,
        "content_hash": prepared.content_hash, "plan": prepared.plan.canonical(), "ablations": ablations,
        "variants": [v.to_dict() for v in prepared.variants],
    }


def _print_plan_header(plan, fmt: str, file: str | None) -> None:
    b = plan.baseline
    console.print(
        f"[bold]{escape(plan.name)}[/] ({fmt}{', ' + escape(file) if file else ''}): baseline "
        f"{escape(b.method)} on {escape(b.model)} (peft={escape(b.peft)}, lr={b.lr:g}, eps={b.eps:g}, "
        f"steps={b.steps}); tasks {escape(', '.join(plan.tasks))}; seeds {', '.join(map(str, plan.seeds))}"
    )


@plan_app.command("validate")
def validate_cmd(
    file: str = typer.Argument(..., help="Plan file: YAML, AblationBench JSONL or LM-planner markdown."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan and every resolution as JSON."),
    baseline: str | None = BASELINE_OPTION,
    tasks: str | None = TASKS_OPTION,
    seeds: str | None = SEEDS_OPTION,
    fmt: str | None = FORMAT_OPTION,
    override: list[str] | None = OVERRIDE_OPTION,
    allow_unresolved: bool = typer.Option(False, "--allow-unresolved", help="Exit 0 even with unresolved ablations."),
) -> None:
    """Parse, validate and resolve a plan; show how each ablation maps to runner config changes.

    A YAML file without ``name`` and ``ablations`` is a baseline file (for ``--baseline``) and is
    validated as one.
    """
    if guard(lambda: _is_baseline_file(file, fmt)):
        defaults = guard(lambda: _load_defaults(file))
        if as_json:
            typer.echo(json.dumps({"ok": True, "kind": "baseline", "file": file, "defaults": defaults},
                                  indent=2, default=str))
        else:
            b = defaults["baseline"]
            console.print(f"baseline file [bold]{escape(file)}[/] is valid: {escape(str(b.get('method', 'mezo')))} "
                          f"on {escape(str(b.get('model', '-')))}; tasks {escape(', '.join(defaults['tasks']))}; "
                          f"seeds {', '.join(map(str, defaults['seeds']))}")
        return
    prepared = guard(lambda: _prepare(file, fmt, baseline, tasks, seeds, override))
    report = _report(prepared)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        _print_plan_header(prepared.plan, prepared.format, prepared.filename)
        console.print(_resolution_table(report["ablations"], "Ablations"))
        n_jobs = len(prepared.variants) * len(prepared.plan.tasks) * len(prepared.plan.seeds)
        console.print(f"{len(prepared.variants)} variants (baseline included) x {len(prepared.plan.tasks)} tasks "
                      f"x {len(prepared.plan.seeds)} seeds = {n_jobs} runs")
    if prepared.unresolved and not allow_unresolved:
        names = ", ".join(r.ablation for r in prepared.unresolved)
        fail(f"unresolved ablations (set 'component:' or use --allow-unresolved): {names}", EXIT_BAD_INPUT)


@plan_app.command("upload")
def upload_cmd(
    file: str = typer.Argument(..., help="Plan file: YAML, AblationBench JSONL or LM-planner markdown."),
    allow_unresolved: bool = typer.Option(False, "--allow-unresolved",
                                          help="Store unresolved ablations (marked, never scheduled)."),
    db: str | None = DB_OPTION,
    baseline: str | None = BASELINE_OPTION,
    tasks: str | None = TASKS_OPTION,
    seeds: str | None = SEEDS_OPTION,
    fmt: str | None = FORMAT_OPTION,
    override: list[str] | None = OVERRIDE_OPTION,
) -> None:
    """Validate, resolve and store a plan (the same content twice gives the same plan id)."""
    from zolab.platform.upload import store

    prepared = guard(lambda: _prepare(file, fmt, baseline, tasks, seeds, override))
    result = guard(lambda: store(prepared, url=db, allow_unresolved=allow_unresolved))
    verb = "stored as" if result.created else "already stored as"
    console.print(f"plan [bold]{escape(prepared.plan.name)}[/] {verb} id [bold]{result.plan_id}[/]: "
                  f"{len(prepared.resolutions)} ablations, {len(prepared.variants)} variants")
    typer.echo(f"plan_id={result.plan_id}")


@plan_app.command("list")
def list_cmd(db: str | None = DB_OPTION) -> None:
    """Stored plans, newest first, with job counts by status."""
    from zolab.db.repo import plans as repo
    from zolab.db.session import session_scope

    def read():
        with session_scope(db) as s:
            return repo.list_plans(s)

    rows = guard(read)
    if not rows:
        console.print("no plans stored yet: `zolab plan upload FILE`")
        return
    table = Table(title="Plans")
    for col in ("id", "name", "format", "created (UTC)", "ablations", "variants", "jobs"):
        table.add_column(col)
    for p in rows:
        jobs = ", ".join(f"{k} {v}" for k, v in sorted(p.job_counts.items())) or "-"
        table.add_row(str(p.id), escape(p.name), p.format, p.created_at.strftime("%Y-%m-%d %H:%M"),
                      str(p.n_ablations), str(p.n_variants), jobs)
    console.print(table)


def _load_stored(ref: str, db: str | None):
    """(plan, ablations, variants) of a stored plan given by id or name; unknown: exit 1, one line."""
    from zolab.db.repo import plans as repo
    from zolab.db.session import session_scope
    from zolab.platform.lookup import plan_id_of

    def read():
        plan_id = plan_id_of(db, ref)
        with session_scope(db) as s:
            plan = repo.get_plan(s, plan_id)
            return plan, repo.plan_ablations(s, plan_id), repo.plan_variants(s, plan_id)

    return guard(read)


@plan_app.command("show")
def show_cmd(plan_ref: str = typer.Argument(..., metavar="PLAN", help="Plan id or stored plan name."),
             db: str | None = DB_OPTION,
             as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """A stored plan: its ablations with their resolution and explanation."""
    plan, ablations, variants = _load_stored(plan_ref, db)
    tuned = [(v.label, task, params) for v in variants for task, params in sorted((v.tuned_params or {}).items())]
    rows = [{"name": a.name, "action": a.action, "component": a.component, "status": a.status,
             "confidence": a.confidence, "changes": a.changes, "explanation": a.explanation,
             "ablated_part": a.ablated_part, "replacement": a.replacement, "metrics": a.metrics,
             "overridden": a.overridden} for a in ablations]
    if as_json:
        typer.echo(json.dumps({"id": plan.id, "name": plan.name, "format": plan.format,
                               "content_hash": plan.content_hash, "plan": plan.plan_json, "ablations": rows,
                               "tuned": [{"variant": lab, "task": t, "params": p} for lab, t, p in tuned]},
                              indent=2, default=str))
        return
    data = plan.plan_json
    console.print(f"plan [bold]{plan.id}[/] [bold]{escape(plan.name)}[/] ({plan.format}, "
                  f"{escape(plan.source_name or '-')}); tasks {escape(', '.join(data.get('tasks', [])))}; "
                  f"seeds {', '.join(map(str, data.get('seeds', [])))}")
    if plan.description:
        console.print(escape(plan.description[:500]))
    console.print(_resolution_table(rows, "Ablations"))
    if tuned:  # Optuna's best params per variant x task (zolab.platform.tuning)
        table = Table(title="Tuned hyperparameters (Optuna best trial)")
        for col in ("variant", "task", "params"):
            table.add_column(col, overflow="fold")
        for label, task, params in tuned:
            table.add_row(escape(label), escape(task), escape(", ".join(f"{k}={v:.3g}" if isinstance(v, float)
                                                                        else f"{k}={v}" for k, v in params.items())))
        console.print(table)


@plan_app.command("expand")
def expand_cmd(plan_ref: str = typer.Argument(..., metavar="PLAN", help="Plan id or stored plan name."),
               db: str | None = DB_OPTION,
               as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """The variants a stored plan runs (after resolution and merging duplicates); no jobs yet."""
    plan, ablations, variants = _load_stored(plan_ref, db)
    base = next((v.config for v in variants if v.is_baseline), {})
    skipped = [(a.name, a.status, a.explanation) for a in ablations if a.status in ("no_op", "unresolved")]
    if as_json:
        typer.echo(json.dumps({
            "plan_id": plan.id,
            "variants": [{"id": v.id, "label": v.label, "is_baseline": v.is_baseline, "config_hash": v.config_hash,
                          "ablations": v.ablations, "config": v.config} for v in variants],
            "skipped": [{"name": n, "status": s, "reason": e} for n, s, e in skipped],
        }, indent=2, default=str))
        return
    table = Table(title=f"Variants of plan {plan.id} ({escape(plan.name)})", show_lines=True)
    for col in ("id", "label", "changes vs baseline", "config hash", "ablations served"):
        table.add_column(col, overflow="fold")
    for v in variants:
        diff = ", ".join(f"{k}={json.dumps(v.config[k])}" for k in v.config if base.get(k) != v.config[k]) or "-"
        table.add_row(str(v.id), escape(v.label) + (" (baseline)" if v.is_baseline else ""), escape(diff),
                      v.config_hash, escape("\n".join(v.ablations)))
    console.print(table)
    data = plan.plan_json
    n_runs = len(variants) * len(data.get("tasks", [])) * len(data.get("seeds", []))
    console.print(f"{len(variants)} variants x {len(data.get('tasks', []))} tasks x {len(data.get('seeds', []))} "
                  f"seeds = {n_runs} runs")
    for name, status, reason in skipped:
        console.print(f"[yellow]not run[/] {escape(name)} ({status}): {escape(reason)}")


def register(app: typer.Typer) -> None:
    app.add_typer(plan_app, name="plan")
