#!/usr/bin/env bash
# One lent GPU's work, prepared in advance (shared/notes/gpu.md): every CUDA check and
# measurement this project needs, in order of importance, each under its own time limit, so
# that one failing or slow step costs only its own minutes.  Logs and JSON go to $OUT.
#
#   OUT=build/gpu bash bench/gpu_run.sh            # on the GPU machine (python3 there),
#                                                  # with data/cache and .whl/ carried
#   QUICK=1 DEVICE=cpu OUT=build/gpu-rehearsal PYTHON=.venv/bin/python bash bench/gpu_run.sh
#                                                  # rehearsal on the CPU, tiny budgets
#   ONLY="env test_cuda bench_decode" ...          # only the steps named
set -u -o pipefail
OUT=${OUT:-build/gpu_run}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
ONLY=${ONLY:-}
mkdir -p "$OUT"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
LOG="$OUT/run.log"
: > "$LOG"
FAILED=()

step() {  # step NAME SECONDS COMMAND...: run it under a time limit, log it, go on either way
  local name=$1 limit=$2 start rc
  shift 2
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then
    echo "=== $name: skipped (not in ONLY)" | tee -a "$LOG"
    return
  fi
  echo "=== $name (limit ${limit} s): $*" | tee -a "$LOG"
  start=$(date +%s)
  timeout "$limit" "$@" >> "$LOG" 2>&1
  rc=$?
  echo "=== $name: exit $rc after $(( $(date +%s) - start )) s" | tee -a "$LOG"
  [ $rc -eq 0 ] || FAILED+=("$name (exit $rc)")
}

# The GPU machine's python has no sacremoses (the package imports it): install the wheel
# brought in .whl/ (shared/notes/gpu.md), or stop here with the reason.
if ! "$PY" -c "import sacremoses" 2>/dev/null; then
  if ls .whl/sacremoses-*.whl >/dev/null 2>&1; then
    DEPS=$(mktemp -d)
    "$PY" -m pip install --quiet --no-index --no-deps --target "$DEPS" .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:$DEPS"
  else
    echo "sacremoses is missing and .whl/ holds no wheel of it: on the CPU machine run" \
      "pip download --only-binary=:all: --python-version 3.12 --no-deps -d .whl sacremoses," \
      "and carry .whl" | tee -a "$LOG"
    exit 1
  fi
fi

if [ "$QUICK" = 1 ]; then
  DECODE=(--repeats 1 --batch 4 --steps 5 --sentences 40 --train-steps 5)
  TRAIN=(--steps 1 --warmup-steps 1 --tokens 200 --gpu-tokens 2000)
  SMOKE=(--preset tiny --max-steps 4 --eval-every 2 --save-every 2)
  RESUMED=6
else
  DECODE=(--repeats 3)
  TRAIN=()
  SMOKE=(--recipe reproduce-gpu --max-steps 300 --eval-every 100 --save-every 100)
  RESUMED=340
fi
RUN="$OUT/smoke"

step env 20 bash -c "date -u; nvidia-smi || true; git rev-parse HEAD 2>/dev/null || true;
  $PY -c 'import torch, platform; print(\"python\", platform.python_version(), \"torch\",
  torch.__version__, \"cuda\", torch.version.cuda, \"gpu\", torch.cuda.is_available()
  and torch.cuda.get_device_name(0))'"
# 1. The CUDA tests: bf16 autocast, fused Adam, --compile, decoding, CUDA-graph decoding.
step test_cuda 180 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py -rA
# 2. Decoding speed (#14): greedy vs torch.nn.Transformer (eager, inductor, CUDA graphs per
#    decoder call and per whole step) and beam 4 / greedy over Multi30k's test set vs the
#    pre-#14 decoder.
step bench_decode 240 "$PY" bench/bench_decode.py --device "$DEVICE" "${DECODE[@]}" \
  --out "$OUT/bench_decode_$DEVICE.json"
# 3. One training step of the base model at the paper's batch, bf16: ours vs nn.Transformer,
#    eager, then both compiled.
step bench_train 45 "$PY" bench/bench_train.py --device "$DEVICE" "${TRAIN[@]}" \
  --out "$OUT/bench_train_$DEVICE.json"
step bench_train_compiled 150 "$PY" bench/bench_train.py --device "$DEVICE" "${TRAIN[@]}" \
  --compile --out "$OUT/bench_train_${DEVICE}_compiled.json"
# 4. The command line as a user runs it on one GPU: torchrun (nccl), a checkpoint, a resume,
#    then evaluate (beam 4, bfloat16) on the test set.
step smoke_train 50 "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 \
  -m transformer train --device "$DEVICE" "${SMOKE[@]}" --run-dir "$RUN" --no-progress \
  --overwrite
step smoke_resume 30 "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 \
  -m transformer train --device "$DEVICE" "${SMOKE[@]}" --max-steps "$RESUMED" \
  --run-dir "$RUN" --resume auto --no-progress
step smoke_evaluate 40 bash -c "$PY -m transformer evaluate --device $DEVICE --dtype bfloat16 \
  --checkpoint \$(ls $RUN/checkpoints/step_*.pt | tail -1) --json $OUT/smoke_evaluate.json"
cp "$RUN/log.jsonl" "$OUT/smoke_log.jsonl" 2>/dev/null
rm -rf "$RUN"  # checkpoints stay on the machine: only logs and JSON come back

if [ ${#FAILED[@]} -gt 0 ]; then
  echo "FAILED: ${FAILED[*]}" | tee -a "$LOG"
  exit 1
fi
echo "all steps passed" | tee -a "$LOG"
