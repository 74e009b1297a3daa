#!/usr/bin/env bash
# The one prepared GPU session script (issues 4 and 7): kernel correctness, the MeZO step benchmark,
# then the every-method smoke run. Everything lands under $OUT (default benchmarks/results/gpu-run);
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
export TOKENIZERS_PARALLELISM=false
status=0
start=$(date +%s)

stage() {  # stage NAME LIMIT_S CMD...: run with a time limit, log to $OUT/NAME.log, record rc + seconds
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$(( $(date +%s) - t0 ))" | tee -a "$OUT/stages.txt"
  tail -n 40 "$OUT/$name.log"
  [ "$rc" -eq 0 ] || status=1
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  "$PY" -c 'import torch, transformers, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "triton", triton.__version__); print(torch.cuda.get_device_name())' 2>&1
  "$PY" -c 'import peft; print("peft", peft.__version__)' 2>&1
} | tee "$OUT/env.txt"

stage triton_check 120 "$PY" benchmarks/triton_check.py --out "$OUT"
stage mezo_step 300 "$PY" benchmarks/mezo_step.py --sizes "$SIZES" --budget-s 200 --out "$OUT"
stage gpu_smoke 130 "$PY" benchmarks/gpu_smoke.py --steps 6 --out "$OUT"

echo "total seconds=$(( $(date +%s) - start )) status=$status" | tee -a "$OUT/stages.txt"
exit $status
