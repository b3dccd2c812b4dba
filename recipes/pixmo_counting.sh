#!/usr/bin/env bash
# Perception-R1 object counting: GRPO on PixMo-Count (point every instance of one category).
# Reward: count ratio x (1 - mean matched point distance / image diagonal), Hungarian matching
# (verl_perception/rewards/counting.py). Target [paper]: PixMo-Count +17.9 over the base model.
#
#   bash recipes/pixmo_counting.sh
#   DRY_RUN=1 bash recipes/pixmo_counting.sh
#
# Sources of the values: see recipes/common.sh ([paper], [PR1], [TRL], [verl]).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

EXPERIMENT_NAME="${EXPERIMENT_NAME:-pixmo_counting}"
use_data pixmo_count

perception_grpo_args
ARGS=(
    "${PERCEPTION_GRPO[@]}"
    data.train_files="$TRAIN_FILES"
    data.val_files="$VAL_FILES"
    data.train_max_samples=10000                         # [PR1] --train_sample_size 10000 (pr1_counting_10k)
    data.max_response_length=768                         # [PR1] --max_completion_length 768
    actor_rollout_ref.rollout.temperature=1.0            # [PR1] --temperature 1.0 (= verl default)
    trainer.experiment_name="$EXPERIMENT_NAME"
    trainer.default_local_dir="$CKPT_ROOT/$PROJECT_NAME/$EXPERIMENT_NAME"
    "${TINY_ARGS[@]+"${TINY_ARGS[@]}"}"
    "$@"
)

preflight "${ARGS[@]}"
if [[ "$DRY_RUN" != 0 ]]; then exit 0; fi
exec "$PYTHON" -m verl.trainer.main_ppo "${ARGS[@]}"
