#!/usr/bin/env bash
# Perception-R1 page-level OCR: GRPO on PageOCR (transcribe the whole page).
# Reward: 1 - normalised edit distance to the page text (verl_perception/rewards/ocr.py).
# Target [paper]: PageOCR +4.2 over the base model. [PR1] has not released its OCR training script:
# the shared settings are the other tasks' ([PR1] uses one setup for all), the lengths are ours.
#
#   bash recipes/pageocr.sh
#   DRY_RUN=1 bash recipes/pageocr.sh
#
# Sources of the values: see recipes/common.sh ([paper], [PR1], [TRL], [verl]).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

EXPERIMENT_NAME="${EXPERIMENT_NAME:-pageocr}"
use_data pageocr

perception_grpo_args
ARGS=(
    "${PERCEPTION_GRPO[@]}"
    data.train_files="$TRAIN_FILES"
    data.val_files="$VAL_FILES"
    data.max_response_length=2048                        # paper silent; a full page needs more than 768; [verl] example: 2048
    actor_rollout_ref.rollout.temperature=1.0            # paper silent; [PR1] counting/detection value (= verl default)
    trainer.experiment_name="$EXPERIMENT_NAME"
    trainer.default_local_dir="$CKPT_ROOT/$PROJECT_NAME/$EXPERIMENT_NAME"
    "${TINY_ARGS[@]+"${TINY_ARGS[@]}"}"
    "$@"
)

preflight "${ARGS[@]}"
if [[ "$DRY_RUN" != 0 ]]; then exit 0; fi
exec "$PYTHON" -m verl.trainer.main_ppo "${ARGS[@]}"
