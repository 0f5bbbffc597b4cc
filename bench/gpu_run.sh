#!/usr/bin/env bash
# One lent GPU's work, prepared in advance (shared/notes/gpu.md), as one command of at most
# DEADLINE seconds, in order of importance:
#
#   env        date, nvidia-smi, commit, python/torch/CUDA versions
#   data       Multi30k loads from data/cache in every direction of DIRS (else reproduce is
#              skipped: it would fall back to the numbers task)
#   reproduce  `reproduce --profile gpu --record` in every direction of DIRS (de-en en-de):
#              BUDGET minutes of training each (the recipe's 5), then averaging, test decoding
#              and scoring; multi30k-<src>-<tgt>-gpu.json (the file --record writes to
#              results/runs/) written to $OUT, with the run's log.jsonl.  With PARALLEL=1 (default)
#              the directions train side by side on the one GPU, so that both fit in one
#              command: one run alone leaves most of the GPU idle (each of four side by side
#              trains at about 77% of one alone's speed: results/gpu-logs/2026-11-30b/), and
#              each JSON records its steps, tokens/s and gpu_run.side_by_side.  PARALLEL=0: one
#              after the other, each a step of its own (reproduce_de_en ...), which takes two
#              commands at BUDGET=5.  With SIDE_VARIANTS=1 the VARIANTS (below) other than
#              "recipe" train side by side with them too (the recorded run of their direction
#              is the recipe's row), in the same step and time limit: a lease then records the
#              runs and compares settings of the recipe at once, the recorded runs slowed by
#              sharing the GPU with more runs (gpu_run.side_by_side names them all).
#   test_cuda  tests/test_cuda.py
#   bench_train_compiled  bench/bench_train.py --compile: the base model's step, bf16, and
#              where its time goes (profile_train_<device>_compiled.txt: kernels by device time)
#
# Each step runs under its own time limit, cut to the time left of DEADLINE; a step that needs
# more than is left is skipped and named at the end.  Logs and JSON go to $OUT, with $OUT's own
# path removed from the logs (files are named relative to it); checkpoints stay in $RUNS and are
# deleted.  TREE (the commit whose working tree runs; the device's copy of .git may be older)
# is written into every JSON as provenance.
#
#   OUT=/path/out TREE=<commit> bash bench/gpu_run.sh     # on the GPU machine (python3 there),
#                                                         # with data/cache and .whl/ carried
#   QUICK=1 DEVICE=cpu OUT=build/gpu-rehearsal PYTHON=.venv/bin/python bash bench/gpu_run.sh
#                                                         # rehearsal on the CPU, tiny budgets
#   SIDE_VARIANTS=1 OUT=/path/out TREE=<commit> bash bench/gpu_run.sh
#                                                         # the recorded runs and VARIANTS at once
#   ONLY="test_cuda bench_decode" ...                     # only the steps named (a step is
#       named by its name or its first word: "smoke" = smoke_train smoke_resume smoke_evaluate)
#
# Steps run only when named in ONLY: bench_decode (decoding speed), bench_train
# (eager), smoke_train, smoke_resume, smoke_evaluate (torchrun, a checkpoint, a resume, evaluate),
# and variants: settings of the reproduce-gpu recipe measured side by side (VARIANTS, ";"
# between them, each "NAME DIR TRAIN-OPTIONS...", default: the recipe and two larger batches
# at the same peak rate, en-de), each trained for BUDGET minutes with `train --recipe
# reproduce-gpu`, its averaged checkpoint scored greedy and beam 5 on the test set; a table
# in variants.json (steps, tokens/s, best validation perplexity, BLEU), logs beside it.
set -u -o pipefail
T0=$(date +%s)
OUT=${OUT:-build/gpu_run}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
ONLY=${ONLY:-env data reproduce test_cuda bench_train_compiled}
DIRS=${DIRS:-de-en en-de}
PARALLEL=${PARALLEL:-1}
SIDE_VARIANTS=${SIDE_VARIANTS:-0}
TREE=${TREE:-}
RUNS=${RUNS:-build/gpu_run_runs}
VARIANTS=${VARIANTS:-"recipe en-de;
  b8k en-de --max-tokens 8192 --warmup 2000 --lr-scale 0.71 --clip-grad 1.0;
  b16k en-de --max-tokens 16384 --warmup 1000 --lr-scale 0.5 --clip-grad 1.0"}
if [ "$QUICK" = 1 ]; then
  BUDGET=${BUDGET:-0.01}    # training minutes per reproduce run: one step, then the rest
  DEADLINE=${DEADLINE:-3600}
  SCORED=(--limit 8)        # test sentences scored
  REPRODUCE_S=1500          # the base model on a CPU: a minute a step, minutes to validate
else
  BUDGET=${BUDGET:-5}       # the recipe's default
  DEADLINE=${DEADLINE:-570}  # the device tool allows 600 s per command
  SCORED=()
  REPRODUCE_S=150           # start-up, final validation, averaging, decoding, scoring
fi
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# the rehearsal runs the gpu profile on a CPU, which reproduce otherwise refuses
[ "$DEVICE" = cpu ] && export TRANSFORMER_REHEARSAL=1
LOG="$OUT/run.log"
: > "$LOG"
: > "$OUT/steps.tsv"
FAILED=()
SKIPPED=()

selected() {  # selected NAME: whether ONLY names the step or its first word
  [[ " $ONLY " == *" $1 "* || " $ONLY " == *" ${1%%_*} "* ]]
}

step() {  # step NAME NEED LIMIT COMMAND...: run COMMAND (a program or a function of this
  # script, which reads STEP_LIMIT) under min(LIMIT, time left), log it, go on either way
  local name=$1 need=$2 limit=$3 start rc left
  shift 3
  if ! selected "$name"; then
    echo "=== $name: skipped (not in ONLY)" | tee -a "$LOG"
    return
  fi
  left=$(( DEADLINE - ($(date +%s) - T0) ))
  if [ "$left" -lt "$need" ]; then
    echo "=== $name: skipped: it needs about $need s, $left s are left of DEADLINE=$DEADLINE" \
      | tee -a "$LOG"
    SKIPPED+=("$name")
    printf '%s\tskipped\t0\t%s\n' "$name" "$limit" >> "$OUT/steps.tsv"
    return
  fi
  [ "$limit" -le "$left" ] || limit=$left
  echo "=== $name (limit ${limit} s): $*" | tee -a "$LOG"
  start=$(date +%s)
  if declare -F "$1" > /dev/null; then
    STEP_LIMIT=$limit "$@" >> "$LOG" 2>&1
  else
    timeout -k 10 "$limit" "$@" >> "$LOG" 2>&1
  fi
  rc=$?
  echo "=== $name: exit $rc after $(( $(date +%s) - start )) s" | tee -a "$LOG"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" "$limit" \
    >> "$OUT/steps.tsv"
  [ $rc -eq 0 ] || FAILED+=("$name (exit $rc)")
}

reproduce_dirs() {  # reproduce_dirs DIR...: `reproduce --profile gpu --record` in each
  # direction (de-en ...), side by side, each under STEP_LIMIT and logging to its own file
  local dir src tgt pids=() rc=0 r
  for dir in "$@"; do
    src=${dir%-*} tgt=${dir#*-}
    local cmd=("$PY" -m transformer reproduce --profile gpu --src "$src" --tgt "$tgt"
               --time-budget "$BUDGET" --record --results-dir "$OUT" --runs-dir "$RUNS"
               "${SCORED[@]}")
    echo "$src->$tgt: ${cmd[*]} > $OUT/reproduce_${src}_${tgt}.log"
    timeout -k 10 "$STEP_LIMIT" "${cmd[@]}" > "$OUT/reproduce_${src}_${tgt}.log" 2>&1 &
    pids+=($!)
  done
  if [ "$SIDE_VARIANTS" = 1 ] && [ "$PARALLEL" = 1 ]; then
    echo "the VARIANTS but recipe, side by side with these: > $OUT/variants.log"
    variants recipe > "$OUT/variants.log" 2>&1 &
    pids+=($!)
  fi
  for r in "${pids[@]}"; do
    wait "$r" || rc=$?
  done
  [ "$SIDE_VARIANTS" = 1 ] && [ "$PARALLEL" = 1 ] && cat "$OUT/variants.log"
  for dir in "$@"; do  # the scores, then the training log; checkpoints stay behind
    src=${dir%-*} tgt=${dir#*-}
    echo "--- $src->$tgt, the end of reproduce_${src}_${tgt}.log:"
    tail -n 30 "$OUT/reproduce_${src}_${tgt}.log"
    cp "$RUNS/multi30k-$src-$tgt-gpu/log.jsonl" "$OUT/multi30k-$src-$tgt-gpu_log.jsonl" \
      2> /dev/null
    rm -rf "$RUNS/multi30k-$src-$tgt-gpu"
  done
  return $rc
}

variant() {  # variant NAME DIR OPTION...: train the reproduce-gpu recipe with OPTIONs for
  # BUDGET minutes, then score its averaged checkpoint greedy and beam 5 (limit: STEP_LIMIT)
  local name=$1 dir=$2 run="$RUNS/variant_$1" ckpt beam end
  shift 2
  end=$(( $(date +%s) + STEP_LIMIT ))
  timeout -k 10 $(( STEP_LIMIT - 60 )) "$PY" -m transformer train --recipe reproduce-gpu \
    --src "${dir%-*}" --tgt "${dir#*-}" --time-budget "$BUDGET" --device "$DEVICE" \
    --run-dir "$run" --overwrite --no-progress "$@" || return
  cp "$run/log.jsonl" "$OUT/variant_${name}_log.jsonl"
  ckpt="$run/averaged.pt"
  [ -f "$ckpt" ] || ckpt=$(ls "$run"/checkpoints/step_*.pt | tail -1)
  for beam in 1 5; do
    timeout -k 10 $(( end - $(date +%s) )) "$PY" -m transformer evaluate --checkpoint "$ckpt" \
      --beam "$beam" --device "$DEVICE" "${SCORED[@]}" \
      --json "$OUT/variant_${name}_beam$beam.json" || return
  done
  rm -rf "$run"
}

variants() {  # variants [NOT]: the VARIANTS (but the one named NOT) side by side, each under
  # STEP_LIMIT and logging to its own file; then variants.json: their settings, training, scores
  local entry entries words pids=() names=() kept="" rc=0 i r
  IFS=';' read -ra entries <<< "${VARIANTS//$'\n'/ }"
  for entry in "${entries[@]}"; do
    read -ra words <<< "$entry"
    [ ${#words[@]} -ge 2 ] && [ "${words[0]}" != "${1:-}" ] || continue
    kept+="${words[*]};"
    echo "variant ${words[*]} > $OUT/variant_${words[0]}.log"
    variant "${words[@]}" > "$OUT/variant_${words[0]}.log" 2>&1 &
    pids+=($!)
    names+=("${words[0]}")
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    r=$?
    echo "variant ${names[$i]}: exit $r"
    [ $r -eq 0 ] || rc=$r
  done
  "$PY" bench/variants_table.py "$OUT" "$kept" || rc=$?
  return $rc
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
BUDGET_S=$(awk "BEGIN { print int($BUDGET * 60 + 0.999) }")
RUN="$RUNS/smoke"
echo "gpu_run.sh: DEVICE=$DEVICE QUICK=$QUICK BUDGET=$BUDGET min DEADLINE=$DEADLINE s" \
  "PARALLEL=$PARALLEL DIRS=\"$DIRS\" TREE=${TREE:-?} ONLY=\"$ONLY\"" | tee -a "$LOG"

step env 5 30 bash -c "date -u; nvidia-smi || true; git rev-parse HEAD 2>/dev/null || true;
  $PY -c 'import torch, platform; print(\"python\", platform.python_version(), \"torch\",
  torch.__version__, \"cuda\", torch.version.cuda, \"gpu\", torch.cuda.is_available()
  and torch.cuda.get_device_name(0))'"
# Multi30k from data/cache, every direction: without it reproduce would train on the numbers
# task (and a missing tokenizer would spend minutes on BPE)
step data 10 60 "$PY" -c "
from transformer.data import load_dataset
for pair in '$DIRS'.split():
    src, tgt = pair.split('-')
    d = load_dataset('multi30k', src, tgt, progress=False)
    print(pair, d, len(d.examples('train')), 'training pairs')"
DATA_OK=$(awk -F'\t' '$1 == "data" && $2 == 0 { print 1 }' "$OUT/steps.tsv")
if [ "$PARALLEL" = 1 ]; then
  REPRODUCE=("reproduce:$DIRS")
else
  REPRODUCE=()
  for dir in $DIRS; do REPRODUCE+=("reproduce_${dir/-/_}:$dir"); done
fi
for entry in "${REPRODUCE[@]}"; do
  name=${entry%%:*}
  if selected data && [ -z "$DATA_OK" ] && selected "$name"; then
    echo "=== $name: skipped: the data step did not pass (Multi30k must load from" \
      "data/cache: carry it)" | tee -a "$LOG"
    SKIPPED+=("$name (no data)")
    printf '%s\tskipped\t0\t0\n' "$name" >> "$OUT/steps.tsv"
    continue
  fi
  # shellcheck disable=SC2086
  step "$name" $(( BUDGET_S + 45 )) $(( BUDGET_S + REPRODUCE_S )) reproduce_dirs ${entry#*:}
done
# The CUDA tests: bf16 autocast, fused Adam, --compile, decoding, CUDA-graph decoding.
step test_cuda 80 180 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py -rA
# One training step of the base model at the paper's batch, bf16, ours vs nn.Transformer, both
# compiled (compiling takes 60-90 s of it), then three of ours profiled: the kernels by time.
step bench_train_compiled 100 180 "$PY" bench/bench_train.py --device "$DEVICE" "${TRAIN[@]}" \
  --compile --out "$OUT/bench_train_${DEVICE}_compiled.json" \
  --profile "$OUT/profile_train_${DEVICE}_compiled.txt"

# Named in ONLY only: decoding speed, the eager training step, and the command line as a
# user runs it on one GPU: torchrun (nccl), a checkpoint, a resume, evaluate (beam 4, bf16).
step bench_decode 70 240 "$PY" bench/bench_decode.py --device "$DEVICE" "${DECODE[@]}" \
  --out "$OUT/bench_decode_$DEVICE.json"
step bench_train 30 60 "$PY" bench/bench_train.py --device "$DEVICE" "${TRAIN[@]}" \
  --out "$OUT/bench_train_$DEVICE.json"
step smoke_train 30 60 "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 \
  -m transformer train --device "$DEVICE" "${SMOKE[@]}" --run-dir "$RUN" --no-progress \
  --overwrite
step smoke_resume 20 40 "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 \
  -m transformer train --device "$DEVICE" "${SMOKE[@]}" --max-steps "$RESUMED" \
  --run-dir "$RUN" --resume auto --no-progress
step smoke_evaluate 20 40 bash -c "$PY -m transformer evaluate --device $DEVICE \
  --dtype bfloat16 --checkpoint \$(ls $RUN/checkpoints/step_*.pt | tail -1) \
  --json $OUT/smoke_evaluate.json"
# Settings of the recipe compared side by side: BUDGET minutes of training, then two decodes.
step variants $(( BUDGET_S + 60 )) $(( BUDGET_S + REPRODUCE_S )) variants
cp "$RUN/log.jsonl" "$OUT/smoke_log.jsonl" 2>/dev/null
rm -rf "$RUN"  # checkpoints stay on the machine: only logs and JSON come back

# Provenance: the steps, the tree that ran and the settings, in gpu_run.json and in every JSON
# of $OUT; then $OUT's own path out of the logs, so that files are named relative to it.
"$PY" - "$OUT" "$TREE" "$BUDGET" "$PARALLEL" "$DIRS" "$DEADLINE" "$(( $(date +%s) - T0 ))" \
  "$SIDE_VARIANTS" <<'EOF' >> "$LOG" 2>&1
import json, os, re, sys
from pathlib import Path
out, tree, budget, parallel, dirs, deadline, wall, side_variants = sys.argv[1:]
out = Path(out)
steps = [{k: int(v) if v.isdigit() else v
          for k, v in zip(("step", "exit", "seconds", "limit_s"), line.split("\t"))}
         for line in (out / "steps.tsv").read_text().splitlines()]
runs = [f"multi30k-{d}-gpu" for d in dirs.split()]
if side_variants == "1" and parallel == "1" and (out / "variants.json").exists():
    runs += [f"variant_{v['name']}" for v in json.loads((out / "variants.json").read_text())]
info = {"script": "bench/gpu_run.sh", "tree": tree or None, "budget_minutes": float(budget),
        "side_by_side": runs if parallel == "1" and len(runs) > 1 else None,
        "deadline_s": int(deadline), "wall_s": int(wall), "steps": steps}
(out / "gpu_run.json").write_text(json.dumps(info, indent=2) + "\n")
(out / "steps.tsv").unlink()
written = []
for path in sorted(out.glob("*.json")):
    data = json.loads(path.read_text())
    if path.name != "gpu_run.json" and isinstance(data, dict):
        keys = ("script", "tree") + (("budget_minutes", "side_by_side")
                                     if path.name.startswith("multi30k-") else ())
        data["gpu_run"] = {k: info[k] for k in keys}
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        written.append(path.name)
print("provenance written to gpu_run.json and", ", ".join(written) or "no other JSON")
names = sorted({str(out.resolve()), os.path.relpath(out.resolve())}, key=len, reverse=True)
names = [name for name in names if name[0] != "."]  # the longer first; never "." or "../"
for path in out.glob("*.log"):
    text = path.read_text(errors="replace")
    for name in names:  # files in $OUT by their own name, $OUT itself as $OUT
        text = text.replace(name + "/", "")
        text = re.sub(re.escape(name) + r"(?=[\s'\"]|$)", "$OUT", text, flags=re.M)
    path.write_text(text)
EOF

if [ ${#FAILED[@]} -gt 0 ] || [ ${#SKIPPED[@]} -gt 0 ]; then
  echo "FAILED: ${FAILED[*]:-none}; SKIPPED for time or data: ${SKIPPED[*]:-none}" | tee -a "$LOG"
  exit 1
fi
echo "all steps passed in $(( $(date +%s) - T0 )) s" | tee -a "$LOG"
