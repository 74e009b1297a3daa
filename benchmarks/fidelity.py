"""Scientific fidelity (issue 9): do the seed plans reproduce MeZO's findings on a real offline model?

Runs ``ablations/seed-000-smollm2.yaml`` and ``seed-001-smollm2.yaml`` the way a user with an
air-gapped GPU box would: upload + enqueue into a fresh database, ``zolab export`` the jobs,
``zolab run-one`` the folder (``--runner direct`` runs the job files in this process instead),
``zolab import`` the results. Then it writes ``benchmarks/results/fidelity-<mode>.{md,json}``:
one row per plan x task x variant (mean and spread over seeds of accuracy and macro-F1, steps,
forward passes, step time, peak memory, GPU hours) and a verdict per expected trend of issue 9.

The verdicts are measured, never tuned: each rule is fixed below (``_verdicts``) and a trend that
did not reproduce is reported as such, with the numbers.

Modes:
  (default)        the plans as written, on the GPU (about 15 minutes on one H100);
                   ``--tasks``/``--seeds`` run them on fewer tasks or seeds.
  --stage export / --stage report   the air-gapped way: export here, run the folders with
                   `python -m zolab.runners.batch` (or `zolab run-one`) on the GPU box, copy the
                   results back, report here (``--results FILE``). ``benchmarks/run_gpu_fidelity.sh``
                   scripts this for the device tool (model wheel carried in two chunks).
  --cpu-small      a shortened CPU run in minutes: tiny random-init model (``--model`` to choose,
                   e.g. ``smollm2-135m`` for the real one, much slower), few steps, small splits,
                   one task. It checks the path end to end; its trend verdicts are not evidence.

Usage:
  python benchmarks/fidelity.py --cpu-small
  python benchmarks/fidelity.py                     # on a GPU machine, after `zolab assets fetch`
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PLANS = [ROOT / "ablations" / "seed-000-smollm2.yaml", ROOT / "ablations" / "seed-001-smollm2.yaml"]
RESULTS_DIR = ROOT / "benchmarks" / "results"

#: --cpu-small: everything a run's cost scales with, shrunk; eval_every 2 keeps the n_samples
#: equal-forwards points (steps/5 = 4, steps/10 = 2) on the dev curve
CPU_SMALL = {"steps": 20, "eval_every": 2, "batch_size": 8, "max_length": 64, "train_size": 64,
             "dev_size": 24, "test_size": 48, "checkpoint_every": 10, "device": "cpu"}


# -- running --------------------------------------------------------------------------------------
def shrink(plan: dict[str, Any], model: str | None, tasks: list[str] | None, seeds: list[int] | None) -> dict[str, Any]:
    plan = json.loads(json.dumps(plan))
    plan["baseline"].update(CPU_SMALL)
    if model:
        plan["baseline"]["model"] = model
    if tasks:
        plan["tasks"] = tasks
    if seeds:
        plan["seeds"] = seeds
    plan["name"] += "-cpu-small"
    plan.pop("budget", None)
    return plan


def rewrite_plans(work: Path, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> list[Path]:
    """Each seed plan, edited, written into ``work`` under its own name (the files to upload)."""
    paths = []
    for plan_file in PLANS:
        path = work / plan_file.name
        path.write_text(yaml.safe_dump(edit(yaml.safe_load(plan_file.read_text())), sort_keys=False))
        paths.append(path)
    return paths


def run_folder_direct(folder: Path, out: Path) -> None:
    """Run every job file of ``folder`` in this process (``python -m zolab.runners.batch``'s loop)."""
    from zolab.runners.batch import run_paths
    from zolab.runners.jobfile import job_files

    run_paths(job_files(folder), out, say=lambda m: print("  " + m, flush=True))


def run_folder_cli(folder: Path, out: Path) -> None:
    cmd = [sys.executable, "-m", "zolab", "run-one", "--config", str(folder), "--out", str(out)]
    subprocess.run(cmd, check=False)  # exit 1 when a job failed: its error line is reported, the rest imported


def has_run_one() -> bool:
    proc = subprocess.run([sys.executable, "-m", "zolab", "run-one", "--help"], capture_output=True, check=False)
    return proc.returncode == 0


def export_stage(plan_files: list[Path], work: Path, url: str, with_assets: bool = False) -> list[dict[str, Any]]:
    """Upload + enqueue + export each plan into ``work/export-<plan id>``; state saved in ``work/state.json``."""
    from zolab.platform.scheduler import expand, schedule
    from zolab.platform.transfer import export_jobs
    from zolab.platform.upload import upload_plan
    from zolab.runners.jobfile import job_files

    state = []
    for plan_file in plan_files:
        up = upload_plan(plan_file, url=url)
        schedule(url, up.plan_id, force=True)
        skipped = [{"name": s.name, "status": s.status, "reason": s.reason} for s in expand(url, up.plan_id).skipped]
        folder = work / f"export-{up.plan_id}"
        export_jobs(url, up.plan_id, folder, with_assets=with_assets)
        print(f"plan {up.plan_id} {plan_file.name}: {len(job_files(folder))} jobs exported to {folder}", flush=True)
        state.append({"plan_id": up.plan_id, "plan_file": str(plan_file), "folder": str(folder), "skipped": skipped})
    (work / "state.json").write_text(json.dumps({"url": url, "plans": state}, indent=2))
    return state


def run_stage(state: list[dict[str, Any]], runner: str) -> None:
    for plan in state:
        folder = Path(plan["folder"])
        out = folder / "results.jsonl"
        out.unlink(missing_ok=True)
        print(f"running {folder} (runner={runner})", flush=True)
        (run_folder_cli if runner == "cli" else run_folder_direct)(folder, out)


def import_stage(state: list[dict[str, Any]], url: str, results: Path | None = None) -> list[dict[str, Any]]:
    """Import each folder's ``results.jsonl`` (or one ``results`` file holding every folder's lines:
    job ids are unique across plans) twice, checking idempotence; one record per job."""
    from zolab.platform.transfer import import_results
    from zolab.runners.jobfile import job_files, read_job

    records = []
    for plan in state:
        folder = Path(plan["folder"])
        out = results or folder / "results.jsonl"
        import_results(url, out)
        again = import_results(url, out)
        assert not again.imported, "import is not idempotent"
        lines = {rec["job_id"]: rec for rec in map(json.loads, out.read_text().splitlines()) if rec}
        for path in job_files(folder):
            job = read_job(path)
            rec = lines.get(job.job_id, {})
            records.append({"plan": job.meta["plan"], "plan_id": plan["plan_id"], "variant": job.meta["variant"],
                            "task": job.config.task, "seed": job.config.seed, "config": job.config.to_dict(),
                            "status": "failed" if rec.get("error") else ("succeeded" if rec.get("result") else "missing"),
                            "error": rec.get("error") or (None if rec else "no result line"),
                            "result": rec.get("result"), "skipped_ablations": plan["skipped"]})
        _check_leaderboard(url, plan["plan_id"], [r for r in records if r["plan_id"] == plan["plan_id"]])
    return records


def _check_leaderboard(url: str, plan_id: int, records: list[dict[str, Any]]) -> None:
    """The DB leaderboard must hold exactly the imported results."""
    from zolab.db.repo.leaderboard import leaderboard
    from zolab.db.session import session_scope

    with session_scope(url) as s:
        rows = leaderboard(s, plan_id)
    got = sum(r.n for r in rows)
    want = sum(1 for r in records if r["status"] == "succeeded")
    assert got == want, f"leaderboard of plan {plan_id} holds {got} results, {want} were imported"


# -- aggregation ----------------------------------------------------------------------------------
def _stats(values: list[float]) -> dict[str, float | int | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"n": 0, "mean": None, "sd": None}
    return {"n": len(vals), "mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else None}


def _memory(r: dict[str, Any]) -> float | None:
    return r.get("peak_memory_allocated") if r.get("peak_memory_allocated") is not None else r.get("peak_rss")


def _dev_at(r: dict[str, Any], step: int) -> float | None:
    """Dev accuracy at ``step`` from the run's dev curve (None when not evaluated there)."""
    for s, acc in (r.get("extra") or {}).get("dev_curve") or []:
        if int(s) == step:
            return float(acc)
    return None


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[(rec["plan"], rec["task"], rec["variant"])].append(rec)
    rows = []
    for (plan, task, variant), recs in groups.items():
        ok = [r["result"] for r in recs if r["status"] == "succeeded"]
        cfg = recs[0]["config"]
        steps = cfg["steps"]
        rows.append({
            "plan": plan, "task": task, "variant": variant, "config": cfg,
            "seeds": len(recs), "failed": [r["error"] for r in recs if r["status"] != "succeeded"],
            "accuracy": _stats([r["accuracy"] for r in ok]), "f1": _stats([r["f1"] for r in ok]),
            "dev_accuracy": _stats([r.get("dev_accuracy") for r in ok]),
            "steps": steps, "forward_passes": _stats([r["forward_passes"] for r in ok]),
            "step_time_s": _stats([r["wall_time_s"] / steps for r in ok] if steps else []),
            "peak_memory": _stats([_memory(r) for r in ok]),
            "gpu_hours": sum(r["gpu_hours"] for r in ok), "wall_time_s": sum(r["wall_time_s"] for r in ok),
            "device": ok[0]["device"] if ok else None,
            "_results": ok,
        })
    return rows


# -- verdicts -------------------------------------------------------------------------------------
def _find(rows: list[dict[str, Any]], plan_prefix: str, task: str, **want: Any) -> dict[str, Any] | None:
    """The row of ``plan_prefix`` x ``task`` whose config differs from the baseline exactly by ``want``."""
    base = _baseline(rows, plan_prefix, task)
    for row in rows:
        if not row["plan"].startswith(plan_prefix) or row["task"] != task:
            continue
        if base is None:
            continue
        diff = {k: v for k, v in row["config"].items() if base["config"].get(k) != v}
        if diff == want:
            return row
    return None


def _baseline(rows: list[dict[str, Any]], plan_prefix: str, task: str) -> dict[str, Any] | None:
    cands = [r for r in rows if r["plan"].startswith(plan_prefix) and r["task"] == task
             and r["config"]["method"] == "mezo" and r["config"]["steps"] > 0]
    # the baseline is the MeZO row every other MeZO row differs from in one knob: the most common config
    for r in cands:
        if r["variant"].startswith("baseline"):
            return r
    return cands[0] if cands else None


def _se(stats: dict[str, Any]) -> float:
    sd, n = stats.get("sd"), stats.get("n") or 0
    return (sd / math.sqrt(n)) if sd is not None and n > 1 else 0.0


def _gap(a: dict[str, Any], b: dict[str, Any], metric: str) -> tuple[float | None, float]:
    """(mean a - mean b, two standard errors of that difference)."""
    ma, mb = a[metric]["mean"], b[metric]["mean"]
    if ma is None or mb is None:
        return None, 0.0
    return ma - mb, 2 * math.sqrt(_se(a[metric]) ** 2 + _se(b[metric]) ** 2)


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}" if pct else f"{x:.3g}"


def _verdicts(rows: list[dict[str, Any]], on_gpu: bool, tasks: list[str]) -> list[dict[str, Any]]:
    """One verdict per expected trend and task. Rules (fixed before measuring):

    * "beats"/"worse": the mean gap exceeds two standard errors of the difference (and a 1-point floor);
    * "at zero-shot level" / "no better" / "same accuracy": the gap is within max(2 SE, 2 points);
    * memory: comparisons only when measured per run (GPU peak allocated); CPU peak RSS is per process.
    """
    out: list[dict[str, Any]] = []
    floor, band = 0.01, 0.02

    def add(trend: str, task: str, verdict: str, detail: str) -> None:
        out.append({"trend": trend, "task": task, "verdict": verdict, "detail": detail})

    def beats(a, b, metric="accuracy") -> tuple[str, str]:
        gap, two_se = _gap(a, b, metric)
        if gap is None:
            return "not measured", "no results"
        ok = gap > max(two_se, floor)
        return ("reproduced" if ok else "not reproduced",
                f"{metric} {_fmt(a[metric]['mean'])} vs {_fmt(b[metric]['mean'])} (gap {_fmt(gap)}, 2 SE {_fmt(two_se)})")

    def level(a, b, metric="accuracy") -> tuple[str, str]:
        gap, two_se = _gap(a, b, metric)
        if gap is None:
            return "not measured", "no results"
        ok = abs(gap) <= max(two_se, band)
        return ("reproduced" if ok else "not reproduced",
                f"{metric} {_fmt(a[metric]['mean'])} vs {_fmt(b[metric]['mean'])} (gap {_fmt(gap)}, band {_fmt(max(two_se, band))})")

    def more_memory(a, b) -> tuple[str, str]:
        ma, mb = a["peak_memory"]["mean"], b["peak_memory"]["mean"]
        if not on_gpu or ma is None or mb is None:
            return "not measured", "peak memory is compared on GPU only (CPU peak RSS is per process)"
        return ("reproduced" if ma > mb else "not reproduced", f"peak allocated {ma / 2**20:.0f} MiB vs {mb / 2**20:.0f} MiB")

    def missing(trend: str, task: str, what: str) -> None:
        add(trend, task, "not measured", f"no {what} row in the results")

    for task in tasks:
        for prefix in ("seed-000", "seed-001"):
            base = _baseline(rows, prefix, task)
            zs = _find(rows, prefix, task, steps=0)
            if base is None:
                continue
            trend = f"{prefix}: MeZO beats zero-shot"
            if zs:
                add(trend, task, *beats(base, zs))
            else:
                missing(trend, task, "zero-shot")
        base0 = _baseline(rows, "seed-000", task)
        base1 = _baseline(rows, "seed-001", task)
        if base0:
            adam = _find(rows, "seed-000", task, method="fo-adam")
            if adam:
                v1, d1 = beats(adam, base0)
                v2, d2 = more_memory(adam, base0)
                add("seed-000: FO Adam beats MeZO (accuracy)", task, v1, d1)
                add("seed-000: FO Adam needs more memory than MeZO", task, v2, d2)
            else:
                missing("seed-000: FO Adam beats MeZO", task, "fo-adam")
            noprompt = _find(rows, "seed-000", task, prompt=False)
            if noprompt:
                add("seed-000: removing the prompt lowers macro-F1", task, *beats(base0, noprompt, "f1"))
            else:
                missing("seed-000: removing the prompt lowers macro-F1", task, "prompt=false")
            naive = _find(rows, "seed-000", task, in_place=False)
            if naive:
                add("seed-000: naive (not in-place) ZO: same accuracy", task, *level(naive, base0))
                add("seed-000: naive (not in-place) ZO: higher peak memory", task, *more_memory(naive, base0))
            else:
                missing("seed-000: naive ZO", task, "in_place=false")
            for kind in ("lora", "prefix"):
                row = _find(rows, "seed-000", task, peft=kind)
                if row:
                    add(f"seed-000: MeZO+{kind} runs at lower memory", task, *more_memory(base0, row))
                else:
                    missing(f"seed-000: MeZO+{kind} lower memory", task, f"peft={kind}")
        if base1:
            zs1 = _find(rows, "seed-001", task, steps=0)
            e01 = _find(rows, "seed-001", task, eps=0.1)
            e1 = _find(rows, "seed-001", task, eps=1.0)
            if e01:
                add("seed-001: eps 0.1 is worse than eps 1e-3", task, *beats(base1, e01))
            else:
                missing("seed-001: eps 0.1 worse", task, "eps=0.1")
            if e1 and zs1:
                add("seed-001: eps 1.0 collapses to zero-shot level", task, *level(e1, zs1))
            else:
                missing("seed-001: eps 1.0 collapses", task, "eps=1.0 or zero-shot")
            n5 = _find(rows, "seed-001", task, n_samples=5)
            if n5:
                steps = base1["steps"]
                at = steps // 5
                dev5 = [_dev_at(r, at) for r in n5["_results"]]
                dev1 = [r.get("dev_accuracy") for r in base1["_results"]]
                if steps % 5 == 0 and all(v is not None for v in dev5) and dev5:
                    a = {"dev": _stats(dev5)}
                    b = {"dev": _stats(dev1)}
                    gap, two_se = _gap(a, b, "dev")
                    ok = gap <= max(two_se, band)
                    add("seed-001: n_samples 5 at the same forwards is no better than n_samples 1", task,
                        "reproduced" if ok else "not reproduced",
                        f"dev accuracy of n=5 at step {at} {_fmt(a['dev']['mean'])} vs n=1 at step {steps} "
                        f"{_fmt(b['dev']['mean'])} (gap {_fmt(gap)}, band {_fmt(max(two_se, band))})")
                else:
                    add("seed-001: n_samples 5 at the same forwards", task, "not measured",
                        f"no dev point at step {at} (eval_every must divide steps/5)")
            else:
                missing("seed-001: n_samples 5", task, "n_samples=5")
    # the no-op ablation: reported, not run (plan level)
    skipped = {}
    for r in rows:
        for s in r["_skipped"]:
            skipped[s["name"]] = s
    layer = [s for name, s in skipped.items() if "layer-wise" in name.lower()]
    if layer:
        add("seed-001: layer-wise adaptive ablation is a no-op, not run", "-",
            "reproduced" if layer[0]["status"] == "no_op" else "not reproduced", layer[0]["reason"])
    elif any(r["plan"].startswith("seed-001") for r in rows):
        add("seed-001: layer-wise adaptive ablation is a no-op, not run", "-", "not reproduced",
            "the ablation was not reported as skipped")
    return out


# -- report ---------------------------------------------------------------------------------------
def _cell(stats: dict[str, Any], pct: bool = True) -> str:
    if stats["mean"] is None:
        return "-"
    scale = 100 if pct else 1
    sd = f" ± {scale * stats['sd']:.1f}" if stats["sd"] is not None else ""
    return f"{scale * stats['mean']:.1f}{sd}"


def _mib(stats: dict[str, Any]) -> str:
    return "-" if stats["mean"] is None else f"{stats['mean'] / 2**20:.0f}"


def write_report(rows: list[dict[str, Any]], verdicts: list[dict[str, Any]], meta: dict[str, Any], stem: str,
                 results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# Fidelity report ({meta['mode']})", "",
             f"- device: {meta['device']}", f"- model: {meta['model']}", f"- tasks: {', '.join(meta['tasks'])}; seeds: {meta['seeds']}",
             (f"- runner: {meta['runner']} (export -> run -> import); wall time {meta['wall_s']:.0f} s; "
             f"GPU hours (sum of runs) {meta['gpu_hours']:.4f}"), f"- date: {meta['date']}", ""]
    if meta["mode"] != "gpu":
        lines += ["> CPU smoke run: tiny sizes (and, by default, a tiny random-init model). It proves the path works;",
                  "> its trend verdicts are NOT evidence about MeZO.", ""]
    lines += ["## Variants (mean ± sd over seeds)", "",
              "| plan | task | variant | n | accuracy % | macro-F1 % | steps | forward passes | step time s | peak memory MiB | GPU hours |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["plan"], r["task"], r["variant"])):
        n = r["accuracy"]["n"]
        fails = f" ({len(r['failed'])} failed)" if r["failed"] else ""
        lines.append(f"| {r['plan']} | {r['task']} | {r['variant']} | {n}{fails} | {_cell(r['accuracy'])} | {_cell(r['f1'])} | "
                     f"{r['steps']} | {_fmt(r['forward_passes']['mean'], False)} | {_fmt(r['step_time_s']['mean'], False)} | "
                     f"{_mib(r['peak_memory'])} | {r['gpu_hours']:.4f} |")
    lines += ["", "## Expected trends (issue 9)", "", "| trend | task | verdict | measured |", "|---|---|---|---|"]
    for v in verdicts:
        lines.append(f"| {v['trend']} | {v['task']} | **{v['verdict']}** | {v['detail']} |")
    failed = [(r["variant"], r["task"], e) for r in rows for e in r["failed"]]
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- {v} / {t}: {e}" for v, t, e in failed]
    md = results_dir / f"{stem}.md"
    md.write_text("\n".join(lines) + "\n")
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    (results_dir / f"{stem}.json").write_text(json.dumps({"meta": meta, "variants": clean, "trends": verdicts}, indent=2))
    return md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-small", action="store_true", help="shortened CPU run (minutes)")
    ap.add_argument("--model", default=None, help="model for --cpu-small (default tiny-llama)")
    ap.add_argument("--tasks", default=None, help="comma-separated tasks (--cpu-small default: drugreview)")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (--cpu-small default: 13,42)")
    ap.add_argument("--runner", choices=("auto", "cli", "direct"), default="auto",
                    help="cli: `zolab run-one` subprocess; direct: in this process; auto: cli when available")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--stage", choices=("all", "export", "report"), default="all",
                    help="all: export, run, import, report here; export: stop after writing the job folders "
                         "(for an air-gapped GPU box); report: import the folders' results.jsonl and report")
    ap.add_argument("--with-assets", action="store_true", help="export: copy the cached model/data into each folder")
    ap.add_argument("--device-name", default=None, help="report: the GPU's name when the runs happened elsewhere")
    ap.add_argument("--results", type=Path, default=None,
                    help="report: one results file for every folder (default: each folder's results.jsonl)")
    ap.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the report goes")
    ap.add_argument("--stem", default=None, help="report file name stem (default fidelity-gpu / fidelity-cpu-small)")
    args = ap.parse_args(argv)

    runner = args.runner
    if runner == "auto":
        runner = "cli" if has_run_one() else "direct"
    if args.stage != "all" and args.work is None:
        ap.error("--stage export/report needs --work (the folder shared by both stages)")
    work = args.work or Path(tempfile.mkdtemp(prefix="zolab-fidelity-"))
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'fidelity.db'}"
    os.environ.setdefault("ZOLAB_HOME", str(work / "home"))

    plan_files = PLANS
    tasks = args.tasks.split(",") if args.tasks else None
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    if args.cpu_small:
        model = args.model or "tiny-llama"
        tasks = tasks or ["drugreview"]
        seeds = seeds or [13, 42]
        plan_files = rewrite_plans(work, lambda plan: shrink(plan, model, tasks, seeds))
    elif tasks or seeds:   # the plans as written, on fewer tasks / seeds
        plan_files = rewrite_plans(work, lambda plan: {**plan, **{k: v for k, v in (("tasks", tasks),
                                                                                     ("seeds", seeds)) if v}})
    start = time.perf_counter()
    if args.stage in ("all", "export"):
        state = export_stage(plan_files, work, url, with_assets=args.with_assets)
        if args.stage == "export":
            print(f"next, on the GPU box: python -m zolab.runners.batch {work}/export-* --out results.jsonl --procs 6\n"
                  f"then here: python benchmarks/fidelity.py --stage report --work {work} --results results.jsonl"
                  + (" --cpu-small" if args.cpu_small else "")
                  + "\n(benchmarks/run_gpu_fidelity.sh does all of it through the device tool)")
            return 0
        run_stage(state, runner)
    else:
        saved = json.loads((work / "state.json").read_text())
        state, url = saved["plans"], saved["url"]
    records = import_stage(state, url, args.results)
    wall = time.perf_counter() - start
    for rec in records:
        rec.setdefault("skipped_ablations", [])
    rows = aggregate(records)
    by_plan = {(r["plan"]): r["skipped_ablations"] for r in records}
    for row in rows:
        row["_skipped"] = by_plan.get(row["plan"], [])
    devices = sorted({r["device"] for r in rows if r["device"]})
    on_gpu = any(d.startswith("cuda") for d in devices)
    gpu_name = args.device_name
    if on_gpu and gpu_name is None and args.stage == "all":
        import torch

        gpu_name = torch.cuda.get_device_name(0)
    all_tasks = sorted({r["task"] for r in rows})
    verdicts = _verdicts(rows, on_gpu, all_tasks)
    meta = {"mode": "cpu-small" if args.cpu_small else "gpu", "device": gpu_name or ", ".join(devices),
            "model": rows[0]["config"]["model"] if rows else None, "tasks": all_tasks,
            "seeds": sorted({r["seed"] for r in records}), "runner": runner if args.stage == "all" else "zolab run-one on another machine", "wall_s": wall,
            "gpu_hours": sum(r["gpu_hours"] for r in rows), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "jobs": len(records), "failed_jobs": sum(1 for r in records if r["status"] != "succeeded")}
    stem = args.stem or ("fidelity-cpu-small" if args.cpu_small else "fidelity-gpu")
    md = write_report(rows, verdicts, meta, stem, args.results_dir)
    print(md.read_text())
    if args.work is None and args.stage == "all":
        shutil.rmtree(work, ignore_errors=True)
    return 0 if meta["failed_jobs"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
