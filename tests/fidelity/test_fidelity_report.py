"""benchmarks/fidelity.py: aggregation over seeds and the fixed verdict rules, on hand-made results.

The rules must be able to say "not reproduced": each trend is checked both ways.
"""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fid():
    spec = importlib.util.spec_from_file_location("fidelity_bench", ROOT / "benchmarks" / "fidelity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


BASE = {"method": "mezo", "model": "m", "steps": 100, "eps": 1e-3, "n_samples": 1, "in_place": True, "peft": "none",
        "prompt": True, "lr": 1e-5, "objective": "ce"}


def _rec(plan: str, variant: str, seed: int, acc: float, f1: float | None = None, mem: int = 1000,
         device: str = "cuda:0", dev_curve: list | None = None, **changes: Any) -> dict[str, Any]:
    cfg = {**BASE, **changes, "task": "drugreview", "seed": seed}
    result = {"accuracy": acc, "f1": acc if f1 is None else f1, "steps": cfg["steps"], "forward_passes": 2 * cfg["steps"],
              "wall_time_s": 10.0, "gpu_hours": 10 / 3600, "peak_memory_allocated": mem, "peak_rss": None,
              "dev_accuracy": acc, "device": device, "extra": {"dev_curve": dev_curve or []}}
    return {"plan": plan, "plan_id": 1, "variant": variant, "task": "drugreview", "seed": seed, "config": cfg,
            "status": "succeeded", "error": None, "result": result}


def _rows(fid, records, skipped=()):
    rows = fid.aggregate(records)
    for r in rows:
        r["_skipped"] = list(skipped)
    return rows


def _verdict(verdicts, trend_start: str) -> dict[str, Any]:
    return next(v for v in verdicts if v["trend"].startswith(trend_start))


def test_aggregate_means_and_spread_over_seeds(fid) -> None:
    recs = [_rec("seed-000-x", "baseline", s, a) for s, a in ((1, 0.70), (2, 0.74), (3, 0.78))]
    (row,) = fid.aggregate(recs)
    assert row["accuracy"]["n"] == 3
    assert row["accuracy"]["mean"] == pytest.approx(0.74)
    assert row["accuracy"]["sd"] == pytest.approx(statistics.stdev([0.70, 0.74, 0.78]))
    assert row["step_time_s"]["mean"] == pytest.approx(0.1)
    assert row["gpu_hours"] == pytest.approx(30 / 3600)


def test_mezo_vs_zero_shot_both_ways(fid) -> None:
    good = [_rec("seed-000-x", "baseline", s, a) for s, a in ((1, 0.80), (2, 0.82), (3, 0.81))]
    zs = [_rec("seed-000-x", "zero-shot", s, a, steps=0) for s, a in ((1, 0.70), (2, 0.71), (3, 0.69))]
    v = _verdict(fid._verdicts(_rows(fid, good + zs), True, ["drugreview"]), "seed-000: MeZO beats zero-shot")
    assert v["verdict"] == "reproduced"
    flat = [_rec("seed-000-x", "baseline", s, a) for s, a in ((1, 0.70), (2, 0.72), (3, 0.69))]
    v = _verdict(fid._verdicts(_rows(fid, flat + zs), True, ["drugreview"]), "seed-000: MeZO beats zero-shot")
    assert v["verdict"] == "not reproduced" and "gap" in v["detail"]


def test_memory_trends_need_gpu_measurements(fid) -> None:
    base = [_rec("seed-000-x", "baseline", s, 0.8, mem=1000) for s in (1, 2)]
    adam = [_rec("seed-000-x", "method=fo-adam", s, 0.9, mem=3000, method="fo-adam") for s in (1, 2)]
    lora = [_rec("seed-000-x", "peft=lora", s, 0.8, mem=1500, peft="lora") for s in (1, 2)]
    verdicts = fid._verdicts(_rows(fid, base + adam + lora), True, ["drugreview"])
    assert _verdict(verdicts, "seed-000: FO Adam needs more memory")["verdict"] == "reproduced"
    assert _verdict(verdicts, "seed-000: MeZO+lora runs at lower memory")["verdict"] == "not reproduced"
    cpu = fid._verdicts(_rows(fid, base + adam), False, ["drugreview"])
    assert _verdict(cpu, "seed-000: FO Adam needs more memory")["verdict"] == "not measured"


def test_eps_collapse_and_equal_forward_n_samples(fid) -> None:
    base = [_rec("seed-001-x", "baseline", s, a) for s, a in ((1, 0.80), (2, 0.81))]
    zs = [_rec("seed-001-x", "zero-shot", s, 0.70, steps=0) for s in (1, 2)]
    e1 = [_rec("seed-001-x", "eps=1.0", s, 0.705, eps=1.0) for s in (1, 2)]
    e01 = [_rec("seed-001-x", "eps=0.1", s, 0.805, eps=0.1) for s in (1, 2)]
    # n=5 better at the same forwards (step 20) than n=1 at the end: the trend does NOT reproduce
    n5 = [_rec("seed-001-x", "n_samples=5", s, 0.9, n_samples=5, dev_curve=[[20, 0.9], [100, 0.9]]) for s in (1, 2)]
    verdicts = fid._verdicts(_rows(fid, base + zs + e1 + e01 + n5, [{"name": "Ablation of Layer-Wise Adaptive Optimization",
                                                                   "status": "no_op", "reason": "MeZO has none"}]),
                             True, ["drugreview"])
    assert _verdict(verdicts, "seed-001: eps 1.0 collapses")["verdict"] == "reproduced"
    assert _verdict(verdicts, "seed-001: eps 0.1 is worse")["verdict"] == "not reproduced"
    n = _verdict(verdicts, "seed-001: n_samples 5")
    assert n["verdict"] == "not reproduced" and "step 20" in n["detail"]
    assert _verdict(verdicts, "seed-001: layer-wise")["verdict"] == "reproduced"


def test_report_files(fid, tmp_path: Path) -> None:
    recs = [_rec("seed-000-x", "baseline", 1, 0.8), _rec("seed-000-x", "zero-shot", 1, 0.7, steps=0)]
    recs.append({**_rec("seed-000-x", "peft=lora", 1, 0.0, peft="lora"), "status": "failed", "result": None,
                 "error": "CUDA out of memory"})
    rows = _rows(fid, recs)
    meta = {"mode": "gpu", "device": "NVIDIA H100", "model": "m", "tasks": ["drugreview"], "seeds": [1],
            "runner": "cli", "wall_s": 1.0, "gpu_hours": 0.01, "date": "today"}
    md = fid.write_report(rows, fid._verdicts(rows, True, ["drugreview"]), meta, "t", tmp_path)
    text = md.read_text()
    assert "| seed-000-x | drugreview | zero-shot | 1 | 70.0 |" in text
    assert "1 (1 failed)" not in text and "0 (1 failed)" in text and "CUDA out of memory" in text
    assert (tmp_path / "t.json").is_file()
