#!/usr/bin/env bash
# The R-101 Table V comparison on one GPU in one command, or its CPU rehearsal (docs/results.md).
#
#   tools/gpu_table5.sh              # GPU: maskrcnn_r101_scratch and maskrcnnpp_r101_scratch, seeds 0 and 1:
#                                    # four runs trained at once on the one GPU, scored on the test split
#   tools/gpu_table5.sh --rehearse   # CPU: the same steps with the tiny configs and a one-minute budget
#
# Steps:
#  1. Detectron2 and its pure-Python needs are installed from the wheels in .whl/ (into $SITE)
#     when they are not importable: the GPU machine has torch but no Detectron2
#     (docs/results.md says how .whl/ is made).
#  2. Data: $DSB if it holds a prepared DSB 2018 split (annotations/train.json), else it is
#     prepared there from $ZIP (datasets/prepare_dsb2018.py). To send the data to a GPU machine,
#     carry the smaller copy made by datasets/compact_copy.py.
#  3. A preflight: the packages import and $DEVICE is usable, or exit 2 before anything trains.
#  4. One tools/experiment.py per seed into $RUNS/seed<S> (config override SEED S), all at once,
#     each training every config of $CONFIGS at once (--jobs): equal iteration budget ($ITERS),
#     $EVALS validations on the val split, the best checkpoint scored on the test split.
#  5. Every $REFRESH s and at the end: $RESULTS/table5.{md,json} (tools/seed_table.py),
#     $RESULTS/logs.tar.gz (each run's log, metrics, budget and result) and $RESULTS/status.txt
#     (what happened when, with the GPU's load), so a command cut at its limit still leaves what
#     finished. At $DEADLINE seconds the experiments are stopped (SIGTERM: their training
#     processes too; the same command resumes them) and the last table is written.
#
# Settings (environment; defaults for the GPU / --rehearse): ITERS (200 / 4), EVALS (1), SEEDS ("0 1"),
# CONFIGS ("maskrcnn_r101_scratch maskrcnnpp_r101_scratch" / the _tiny ones), DEVICE (cuda / cpu),
# DSB (datasets/dsb2018), ZIP (../shared/data/dsb2018/stage1_train.zip), RUNS (runs/gpu_table5 /
# runs/gpu_table5_rehearsal), RESULTS ($OUT, else $RUNS/results), DEADLINE (530 / 600 s),
# REFRESH (30 / 15 s), PY (.venv/bin/python if present, else python3), SITE (/tmp/maskrcnnpp-site).
# Exit status: 0 every run finished; 1 a run failed; 124 stopped at the deadline; 2 bad setup.
set -uo pipefail
cd "$(dirname "$0")/.."

source tools/gpu_common.sh
gpu_mode "$@"
if [ "$MODE" = gpu ]; then
  : "${ITERS:=200}" "${CONFIGS:=maskrcnn_r101_scratch maskrcnnpp_r101_scratch}" "${DEVICE:=cuda}"
  : "${RUNS:=runs/gpu_table5}" "${DEADLINE:=530}" "${REFRESH:=30}"
else
  : "${ITERS:=4}" "${CONFIGS:=maskrcnn_tiny maskrcnnpp_tiny}" "${DEVICE:=cpu}"
  : "${RUNS:=runs/gpu_table5_rehearsal}" "${DEADLINE:=600}" "${REFRESH:=15}"
fi
: "${EVALS:=1}" "${SEEDS:=0 1}" "${DSB:=datasets/dsb2018}" "${ZIP:=../shared/data/dsb2018/stage1_train.zip}"
: "${SITE:=/tmp/maskrcnnpp-site}" "${RESULTS:=${OUT:-$RUNS/results}}"
gpu_check_counts ITERS EVALS DEADLINE REFRESH
[ -n "${SEEDS// /}" ] || { echo "error: SEEDS is empty" >&2; exit 2; }
for seed in $SEEDS; do
  [[ "$seed" =~ ^[0-9]+$ ]] || { echo "error: SEEDS must be whole numbers, got '$seed'" >&2; exit 2; }
done
NJOBS=$(wc -w <<<"$CONFIGS")
[ "$NJOBS" -ge 1 ] || { echo "error: CONFIGS is empty" >&2; exit 2; }

gpu_results
note "gpu_table5 $MODE: configs '$CONFIGS', seeds '$SEEDS', $ITERS iterations, $EVALS validation(s), device $DEVICE, deadline ${DEADLINE} s"

# 1.-3. packages, data, preflight (tools/gpu_common.sh)
gpu_packages
gpu_data
gpu_preflight $CONFIGS

refresh() {
  "$PY" tools/seed_table.py "$RUNS" --out "$RESULTS" >/dev/null 2>>"$STATUS" || note "tools/seed_table.py failed"
  # logs grow while they are archived: tar says so with status 1, and the archive is still good
  (cd "$RUNS" && find . \( -name log.txt -o -name metrics.json -o -name result.json -o -name budget.json \
      -o -name model_best.json -o -name 'experiment.*' -o -name 'seed*.log' \) -print0 \
      | tar --null --warning=no-file-changed -czf "$RESULTS/.logs.tar.gz.tmp" -T - 2>/dev/null
   [ $? -le 1 ]) && mv "$RESULTS/.logs.tar.gz.tmp" "$RESULTS/logs.tar.gz"
  if [ "$DEVICE" = cuda ] && command -v nvidia-smi >/dev/null; then
    note "gpu $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader | head -1)"
  fi
}

# 4. one experiment per seed, all at once
declare -A PIDS=()
for seed in $SEEDS; do
  "$PY" tools/experiment.py --data dsb2018 --dsb-root "$DSB" --device "$DEVICE" --budget-iters "$ITERS" \
    --evals "$EVALS" --jobs "$NJOBS" --configs $CONFIGS --out "$RUNS/seed$seed" SEED "$seed" \
    >"$RUNS/seed$seed.log" 2>&1 &
  PIDS[$seed]=$!
  note "seed $seed: tools/experiment.py started (pid ${PIDS[$seed]}, log $RUNS/seed$seed.log)"
done

alive() { for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done; return 1; }
STOPPED=0
last=$SECONDS
while alive; do
  if [ "$SECONDS" -ge "$DEADLINE" ]; then
    note "deadline ${DEADLINE} s reached: stopping the experiments"
    kill -TERM "${PIDS[@]}" 2>/dev/null
    STOPPED=1
    break
  fi
  sleep 1
  if [ $((SECONDS - last)) -ge "$REFRESH" ]; then refresh; last=$SECONDS; fi
done
FAILED=0
for seed in "${!PIDS[@]}"; do
  wait "${PIDS[$seed]}"; rc=$?
  note "seed $seed: tools/experiment.py exited with status $rc"
  [ "$rc" -eq 0 ] || FAILED=1
done

# 5. the last table
refresh
note "table: $RESULTS/table5.md"
cat "$RESULTS/table5.md"
if [ "$STOPPED" -eq 1 ]; then exit 124; fi
exit "$FAILED"
