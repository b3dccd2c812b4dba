#!/usr/bin/env bash
# Perception-R1 visual grounding: GRPO on RefCOCO / RefCOCO+ / RefCOCOg (one box per expression).
# Reward: IoU^2 of the answered box with the referred box, gated by the answer format
# (verl_perception/rewards/grounding.py). Target [paper]: RefCOCO+ +4.2 over the base model.
#
#   bash recipes/refcoco_grounding.sh                        # 1 node x 8 GPUs
#   DRY_RUN=1 bash recipes/refcoco_grounding.sh              # print the config, run the checks, exit
#   bash recipes/refcoco_grounding.sh trainer.total_epochs=2 # extra Hydra overrides win
#
# Sources of the values: see recipes/common.sh ([paper], [PR1], [TRL], [verl]).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

EXPERIMENT_NAME="${EXPERIMENT_NAME:-refcoco_grounding}"
# [PR1] trains on linkangheng/refcoco_320k: the RefCOCO, RefCOCO+ and RefCOCOg train splits together.
# Validation during training: RefCOCO val (all splits: python -m verl_perception.evaluate, docs/evaluation.md).
GROUNDING_DATASETS="${GROUNDING_DATASETS:-refcoco refcoco+ refcocog}"
# shellcheck disable=SC2086  # word splitting of the dataset list is intended
use_data $GROUNDING_DATASETS
if [[ -f "$DATA_DIR/refcoco/val.parquet" ]]; then VAL_FILES="$(parquet_files val refcoco)"; fi

perception_grpo_args
ARGS=(
    "${PERCEPTION_GRPO[@]}"
    data.train_files="$TRAIN_FILES"
    data.val_files="$VAL_FILES"
    data.train_max_samples=5000                          # [PR1] --train_sample_size 5000 (random, of ~320k expressions)
    data.max_response_length=768                         # [PR1] --max_completion_length 768
    actor_rollout_ref.rollout.temperature=0.9            # [TRL] default temperature ([PR1] grounding script sets none)
    trainer.experiment_name="$EXPERIMENT_NAME"
    trainer.default_local_dir="$CKPT_ROOT/$PROJECT_NAME/$EXPERIMENT_NAME"
    "${TINY_ARGS[@]+"${TINY_ARGS[@]}"}"
    "$@"
)

preflight "${ARGS[@]}"
if [[ "$DRY_RUN" != 0 ]]; then exit 0; fi
exec "$PYTHON" -m verl.trainer.main_ppo "${ARGS[@]}"
