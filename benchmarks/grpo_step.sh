#!/usr/bin/env bash
# GRPO step time, throughput and memory of a recipe at the real model's shapes: the recipe's own settings
# on a real-shape twin (random weights of Qwen2.5-VL-3B-Instruct's or Qwen3-VL-4B-Instruct's exact config,
# verl_perception/twins.py) and data at real image sizes, on the GPUs of this node. A benchmark, not a test.
#
#   RECIPE=coco_detection TWIN=3b STEPS=2 bash benchmarks/grpo_step.sh [hydra overrides...]
#
#   RECIPE    coco_detection (default; stage 1), refcoco_grounding, pixmo_counting or pageocr
#   TWIN      3b (Qwen2.5-VL-3B-Instruct, default) or 4b (Qwen3-VL-4B-Instruct)
#   STEPS     GRPO steps (default 2: step 1 carries first-call costs, later steps are the steady state)
#   ROWS      COCO-like training rows for coco_detection (default 112: 8 steps of 14 prompts)
#   WORK      twins and data, reused by later runs (default /tmp/grpo_step)
#   OUT_DIR   console.log and report.json (default $WORK/<recipe>_<twin>)
#   DRY_RUN=1 on a CPU: the twin's config without weights, the data, and the recipe's own dry run (the
#             composed config and its preflight); nothing is trained
#
# The twin is built on the GPU the first time (seconds; 7.5 / 8.9 GB on disk). coco_detection trains on
# COCO-like rows (synthetic JPEGs of COCO's sizes, 1-15 boxes, the 80-class instruction) made by this
# project's preprocessing for the twin's family; the other recipes on their task's bundled sample, which
# the recipe preprocesses at its pixel bounds. A twin never ends a rollout, so every response is
# max_response_length long: the worst case. Validation, checkpoints and the stage merge are off.
# Prints the start-up phases and, per step, verl's timing_s/*, tokens/s/GPU (perf/throughput), actor MFU
# and peak memory (benchmarks/grpo_step_report.py); exits non-zero unless STEPS steps finished.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
RECIPE="${RECIPE:-coco_detection}"
TWIN="${TWIN:-3b}"
STEPS="${STEPS:-2}"
ROWS="${ROWS:-112}"
WORK="${WORK:-/tmp/grpo_step}"
OUT_DIR="${OUT_DIR:-$WORK/${RECIPE}_$TWIN}"

case "$TWIN" in
    3b) FAMILY=qwen2_5_vl ;;
    4b) FAMILY=qwen3_vl ;;
    *) echo "error: TWIN must be 3b or 4b, got '$TWIN'" >&2; exit 2 ;;
esac
case "$RECIPE" in
    coco_detection | refcoco_grounding | pixmo_counting | pageocr) ;;
    *) echo "error: RECIPE must be coco_detection, refcoco_grounding, pixmo_counting or pageocr, got '$RECIPE'" >&2
       exit 2 ;;
esac
mkdir -p "$OUT_DIR"
t0=$(date +%s)

DRY_RUN="${DRY_RUN:-0}"
MODEL="$WORK/twin_$TWIN"
if [[ "$DRY_RUN" == 1 ]]; then
    [[ -f "$MODEL/config.json" ]] || "$PYTHON" -m verl_perception.tiny_model --out "$MODEL" --family "$FAMILY" \
        --size "$TWIN" --config-only >&2
elif ! ls "$MODEL"/*.safetensors >/dev/null 2>&1; then
    echo "[grpo_step] building the $TWIN twin ($FAMILY) on the GPU in $MODEL" >&2
    "$PYTHON" -m verl_perception.tiny_model --out "$MODEL" --family "$FAMILY" --size "$TWIN" --device cuda >&2
fi
t_twin=$(date +%s)

DATA="$WORK/data_${RECIPE}_$FAMILY"           # empty for the bundled-sample recipes: the recipe fills it
if [[ "$RECIPE" == coco_detection && ! -f "$DATA/coco/val.parquet" ]]; then
    "$PYTHON" - "$DATA" "$ROWS" "$FAMILY" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from dataset_throughput import build_parquet
data, rows, family = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for split, n, seed in (("train", rows, 0), ("val", 14, 1)):
    build_parquet(data / "work", n, seed, model_family=family, split=split, out=data / "coco")
EOF
fi
t_data=$(date +%s)
echo "[grpo_step] twin $((t_twin - t0)) s, data $((t_data - t_twin)) s" >&2

cd "$ROOT"
# The recipe as it is, for STEPS steps, without what is not a training step.
BENCH=(
    trainer.total_training_steps="$STEPS"
    trainer.val_before_train=False trainer.test_freq=-1  # no validation
    trainer.save_freq=-1 trainer.resume_mode=disable     # no checkpoint, a fresh run
)
export MODEL_PATH="$MODEL" MODEL_FAMILY="$FAMILY" DATA_DIR="$DATA" STAGE=1 CKPT_ROOT="$WORK/checkpoints" \
    EXPERIMENT_NAME="grpo_step_${RECIPE}_$TWIN"
# verl sets vLLM's log level to WARN in its workers unless the launching shell sets one; INFO makes vLLM
# report its own start-up durations (weight load, torch.compile, CUDA graph capture, engine init).
export VLLM_LOGGING_LEVEL="${VLLM_LOGGING_LEVEL:-INFO}"
if [[ "$DRY_RUN" == 1 ]]; then
    N_GPUS_PER_NODE="${N_GPUS_PER_NODE:-1}" exec bash "recipes/$RECIPE.sh" "${BENCH[@]}" "$@"
fi
rc=0
bash "recipes/$RECIPE.sh" "${BENCH[@]}" "$@" 2>&1 \
    | "$PYTHON" benchmarks/grpo_step_report.py --stamp > "$OUT_DIR/console.log" || rc=$?
echo "[grpo_step] recipe exit status $rc (the stage merge fails by design: no checkpoint is saved)" >&2
"$PYTHON" benchmarks/grpo_step_report.py "$OUT_DIR/console.log" --json "$OUT_DIR/report.json" \
    --gpus "${N_GPUS_PER_NODE:-$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))')}"
"$PYTHON" - "$OUT_DIR/report.json" "$STEPS" <<'EOF'
import json, sys
rep = json.load(open(sys.argv[1]))
sys.exit(0 if len(rep["steps"]) >= int(sys.argv[2]) else 1)
EOF
