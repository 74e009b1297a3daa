#!/usr/bin/env bash
# The one prepared GPU session script (issues 4 and 7): kernel correctness, the MeZO step benchmark,
# then the every-method smoke run. Everything lands under $OUT (default benchmarks/results/gpu-run)
# in 8 files (the device tool brings back at most 8): run.txt (environment, stage times), logs.txt
# (every stage's output) and a .json + .md per stage;
# each stage has its own time limit and writes partial results as it goes, so the whole run stays
# under ~9.5 minutes even when a stage is cut short. Run from the repository root:
#     OUT=/some/dir bash benchmarks/run_gpu_checks.sh
# Needs: python with torch + transformers + peft + triton, one CUDA device. Exit status: 1 if any stage failed.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu-run}"
PY="${PYTHON:-python3}"
SIZES="${SIZES:-opt-125m,opt-1.3b,opt-6.7b,opt-13b}"
mkdir -p "$OUT"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
status=0
start=$(date +%s)

stage() {  # stage NAME LIMIT_S CMD...: run with a time limit, log to $OUT/NAME.log, record rc + seconds
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s)"
  local log
  log=$(mktemp)
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$(( $(date +%s) - t0 ))" | tee -a "$OUT/run.txt"
  { echo "===== $name (rc=$rc)"; cat "$log"; } >>"$OUT/logs.txt"
  tail -n 30 "$log"
  rm -f "$log"
  [ "$rc" -eq 0 ] || status=1
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  "$PY" -c 'import torch, transformers, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "triton", triton.__version__); print(torch.cuda.get_device_name())' 2>&1
  "$PY" -c 'import peft; print("peft", peft.__version__)' 2>&1
} | tee "$OUT/run.txt"

if [ "${CPU_DRY_RUN:-0}" = 1 ]; then  # checks this script's plumbing on a CPU box (tiny shapes, no kernel stage)
  stage mezo_step 300 "$PY" benchmarks/mezo_step.py --device cpu --sizes opt-tiny --batch 2 --seq 16 --reps 1 --warm 0 --no-fo --out "$OUT"
  stage gpu_smoke 300 "$PY" benchmarks/gpu_smoke.py --device cpu --model tiny-opt --steps 2 --only mezo,fo-adam --out "$OUT"
else
  stage triton_check 120 "$PY" benchmarks/triton_check.py --out "$OUT"
  stage mezo_step 300 "$PY" benchmarks/mezo_step.py --sizes "$SIZES" --budget-s 200 --out "$OUT"
  stage gpu_smoke 130 "$PY" benchmarks/gpu_smoke.py --steps 6 --out "$OUT"
fi

echo "total seconds=$(( $(date +%s) - start )) status=$status" | tee -a "$OUT/run.txt"
exit $status
