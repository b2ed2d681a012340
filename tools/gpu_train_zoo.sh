#!/usr/bin/env bash
# Train the default model's architecture on one GPU for about 8 minutes in one command, or its CPU
# rehearsal; fp16 weights, the out-of-distribution table and prediction speed land in $RESULTS.
#
#   tools/gpu_train_zoo.sh              # GPU: $CONFIG from $FROM, batch $BATCH, stopped at $TRAIN_SECONDS
#   tools/gpu_train_zoo.sh --rehearse   # CPU: the same steps, 4 iterations at batch 2
#
# Steps:
#  1.-3. Packages from .whl/, the data ($DSB, or prepared from $ZIP), a preflight (tools/gpu_common.sh).
#  4. tools/train_net.py --resume: $CONFIG (default the out-of-distribution recipe, from the shipped
#     weights) on $DSB's train split at batch $BATCH and learning rate $LR for $ITERS iterations,
#     a checkpoint every $CKPT; stopped at $TRAIN_SECONDS (the same command resumes it, from
#     $RUNS/train/last_checkpoint, or from a carried checkpoint given as FROM).
#  5. The newest checkpoint as fp16 weights, split into parts of at most 15 MiB:
#     $RESULTS/weights_fp16.pth.part-00, -01, ... (`cat` them back together; weights_fp16.sha256).
#  6. tools/ood_check.py on those weights: $SETS, default every split of $DSB but train and every
#     datasets/ext_* folder that is here; $RESULTS/ood_check.{md,json}.
#  7. tools/predict.py --device $DEVICE at --batch-size 1 and 8 on $SPEED_IMAGES images of $DSB:
#     images per second into $RESULTS/predict_speed.txt.
# $RESULTS/status.txt says what happened when. At $DEADLINE seconds whatever runs is stopped.
#
# Settings (environment; defaults for the GPU / --rehearse): CONFIG (nuclei_maskrcnnpp_r18_ood),
# FROM (the config's MODEL.WEIGHTS, the shipped model), ITERS (3000 / 4), BATCH (16 / 2),
# LR (0.04 / 0.01), CKPT (250 / 2), WORKERS (8 / 0), DEVICE (cuda / cpu), TRAIN_SECONDS (480 / 300),
# DEADLINE (570 / 900), SPEED_IMAGES (64 / 4), DSB (datasets/dsb2018), ZIP
# (../shared/data/dsb2018/stage1_train.zip), RUNS (runs/gpu_train_zoo / runs/gpu_train_zoo_rehearsal),
# RESULTS ($OUT, else $RUNS/results), SETS ("--set NAME=FOLDER[:SPLIT] ..." of tools/ood_check.py), PY,
# SITE (/tmp/maskrcnnpp-site).
# Exit status: 0 done (training finished or stopped at TRAIN_SECONDS); 1 a step failed; 2 bad setup.
set -uo pipefail
cd "$(dirname "$0")/.."

source tools/gpu_common.sh
gpu_mode "$@"
if [ "$MODE" = gpu ]; then
  : "${ITERS:=3000}" "${BATCH:=16}" "${LR:=0.04}" "${CKPT:=250}" "${WORKERS:=8}" "${DEVICE:=cuda}"
  : "${TRAIN_SECONDS:=480}" "${DEADLINE:=570}" "${SPEED_IMAGES:=64}" "${RUNS:=runs/gpu_train_zoo}"
else
  : "${ITERS:=4}" "${BATCH:=2}" "${LR:=0.01}" "${CKPT:=2}" "${WORKERS:=0}" "${DEVICE:=cpu}"
  : "${TRAIN_SECONDS:=300}" "${DEADLINE:=900}" "${SPEED_IMAGES:=4}" "${RUNS:=runs/gpu_train_zoo_rehearsal}"
fi
: "${CONFIG:=nuclei_maskrcnnpp_r18_ood}" "${FROM:=}" "${DSB:=datasets/dsb2018}"
: "${ZIP:=../shared/data/dsb2018/stage1_train.zip}" "${SITE:=/tmp/maskrcnnpp-site}" "${RESULTS:=${OUT:-$RUNS/results}}"
gpu_check_counts ITERS BATCH CKPT TRAIN_SECONDS DEADLINE SPEED_IMAGES
[[ "$WORKERS" =~ ^[0-9]+$ ]] || { echo "error: WORKERS must be a whole number, got '$WORKERS'" >&2; exit 2; }
[[ "$LR" =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "error: LR must be a positive number, got '$LR'" >&2; exit 2; }
[ "$TRAIN_SECONDS" -lt "$DEADLINE" ] || { echo "error: TRAIN_SECONDS ($TRAIN_SECONDS) must be below DEADLINE ($DEADLINE)" >&2; exit 2; }

gpu_results
note "gpu_train_zoo $MODE: $CONFIG${FROM:+ from $FROM}, $ITERS iterations at batch $BATCH, lr $LR, device $DEVICE, training stopped at ${TRAIN_SECONDS} s, deadline ${DEADLINE} s"

# 1.-3.
gpu_packages
gpu_data
gpu_preflight "$CONFIG"
left() { echo $((DEADLINE - SECONDS)); }

# 4. training, resumable
TRAIN="$RUNS/train"
STEP=$((ITERS * 3 / 4)); [ "$STEP" -ge 1 ] || STEP=1
EXTRA=()
[ -n "$FROM" ] && EXTRA+=(MODEL.WEIGHTS "$FROM")
timeout -s TERM "$TRAIN_SECONDS" "$PY" tools/train_net.py --config "$CONFIG" --device "$DEVICE" --resume \
  SOLVER.IMS_PER_BATCH "$BATCH" SOLVER.BASE_LR "$LR" SOLVER.MAX_ITER "$ITERS" SOLVER.STEPS "($STEP,)" \
  SOLVER.CHECKPOINT_PERIOD "$CKPT" TEST.EVAL_PERIOD 0 DATASETS.VAL "()" DATASETS.TEST "()" \
  DATASETS.NUCLEI.DSB2018_ROOT "$DSB" DATALOADER.NUM_WORKERS "$WORKERS" OUTPUT_DIR "$TRAIN" "${EXTRA[@]}" \
  >"$RUNS/train.log" 2>&1
rc=$?
if [ "$rc" -eq 124 ]; then note "training stopped at ${TRAIN_SECONDS} s (resumable)"
elif [ "$rc" -ne 0 ]; then tail -20 "$RUNS/train.log" >>"$STATUS"; fail "tools/train_net.py exited with status $rc (log tail above)"
else note "training finished"; fi
cp "$TRAIN/metrics.json" "$RESULTS/metrics.json" 2>/dev/null

# 5. fp16 weights of the newest checkpoint, in parts
CHECKPOINT=$("$PY" - "$TRAIN" <<'PYEOF'
import os, sys
train = sys.argv[1]
final = os.path.join(train, "model_final.pth")
if os.path.isfile(final):
    print(final)
elif os.path.isfile(os.path.join(train, "last_checkpoint")):
    print(os.path.join(train, open(os.path.join(train, "last_checkpoint")).read().strip()))
PYEOF
)
[ -n "$CHECKPOINT" ] && [ -f "$CHECKPOINT" ] || fail "no checkpoint in $TRAIN: training stopped before its first one (lower CKPT)"
FP16="$RUNS/weights_fp16.pth"
"$PY" -c "import sys; from maskrcnnpp.model_zoo import export_fp16_weights as e; print(e(sys.argv[1], sys.argv[2]))" \
  "$CHECKPOINT" "$FP16" >"$RESULTS/weights_fp16.sha256" 2>>"$STATUS" || fail "fp16 export of $CHECKPOINT failed"
rm -f "$RESULTS"/weights_fp16.pth.part-*
split -b 15M -d -a 2 "$FP16" "$RESULTS/weights_fp16.pth.part-"
note "weights: $(basename "$CHECKPOINT") as fp16 ($(du -h "$FP16" | cut -f1), sha256 $(cut -c1-12 "$RESULTS/weights_fp16.sha256")), $(ls "$RESULTS"/weights_fp16.pth.part-* | wc -l) part(s)"

# 6. the out-of-distribution table
if [ -z "${SETS:-}" ]; then
  SETS=""
  for split in val test; do [ -f "$DSB/annotations/$split.json" ] && SETS+=" --set dsb_$split=$DSB:$split"; done
  for folder in datasets/ext_*; do [ -f "$folder/annotations/test.json" ] && SETS+=" --set ${folder#datasets/ext_}=$folder:test"; done
fi
if [ -n "${SETS// /}" ]; then
  rm -rf "$RUNS/ood"
  timeout -s TERM "$(left)" "$PY" tools/ood_check.py --config "$TRAIN/config.yaml" --weights "$FP16" --device "$DEVICE" \
    --out "$RUNS/ood" $SETS >"$RESULTS/ood_check.md" 2>>"$RUNS/ood.log" \
    && cp "$RUNS/ood/ood_check.json" "$RESULTS/" && note "out-of-distribution table: $RESULTS/ood_check.md" \
    || note "tools/ood_check.py failed or ran out of time (tail of $RUNS/ood.log: $(tail -1 "$RUNS/ood.log" | cut -c1-200))"
else
  note "no check set here: no out-of-distribution table"
fi

# 7. prediction speed at batch 1 and 8
SPEED="$RUNS/speed_images"
rm -rf "$SPEED" && mkdir -p "$SPEED"
ls "$DSB/images" | head -n "$SPEED_IMAGES" | while read -r name; do ln -s "$(cd "$DSB/images" && pwd)/$name" "$SPEED/$name"; done
: >"$RESULTS/predict_speed.txt"
for batch in 1 8; do
  rm -rf "$RUNS/speed_out"
  start=$(date +%s.%N)
  if timeout -s TERM "$(left)" "$PY" tools/predict.py --config "$TRAIN/config.yaml" --weights "$FP16" --device "$DEVICE" \
      --input "$SPEED" --output "$RUNS/speed_out" --batch-size "$batch" >>"$RUNS/speed.log" 2>&1; then
    end=$(date +%s.%N)
    echo "$SPEED_IMAGES $batch $start $end" | awk '{printf "batch %d: %d images in %.1f s, %.2f images/s (model load included)\n", $2, $1, $4 - $3, $1 / ($4 - $3)}' \
      | tee -a "$RESULTS/predict_speed.txt" >>"$STATUS"
  else
    note "tools/predict.py --batch-size $batch failed or ran out of time ($RUNS/speed.log)"
  fi
done
note "done"
exit 0
