#!/usr/bin/env bash
# Perception-R1 object detection: multi-stage GRPO on COCO 2017 (every object of 80 categories).
# Reward: the authors' composite (format, F1 of Hungarian-matched boxes, class accuracy, mean IoU,
# FP/FN penalty; verl_perception/rewards/detection.py). Target [paper]: 31.9 AP on COCO val2017.
#
#   bash recipes/coco_detection.sh                 # all stages, each from the previous one's weights
#   STAGE=2 bash recipes/coco_detection.sh         # one stage (stage 1 must have finished)
#   DRY_RUN=1 bash recipes/coco_detection.sh       # print every stage's config, run the checks, exit
#   TINY=1 bash recipes/coco_detection.sh          # every stage for 1 step on 1 GPU: tiny model, bundled sample
#   bash recipes/coco_detection.sh trainer.save_freq=50   # extra Hydra overrides apply to every stage
#
# Stage k writes verl checkpoints to $CKPT_ROOT/$PROJECT_NAME/$EXPERIMENT_NAME/stage<k>/global_step_N/actor
# and, when it finishes, the merged Hugging Face model to .../stage<k>/hf (verl.model_merger), which
# stage k+1 trains from (policy and reference) and which verl_perception.evaluate can load.
# Re-running a stage resumes from its newest checkpoint (trainer.resume_mode=auto, verl's default);
# with STAGE=all, stages whose hf/ model exists are skipped.
#
# Sources of the values: see recipes/common.sh ([paper], [PR1], [TRL], [verl]).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

EXPERIMENT_NAME="${EXPERIMENT_NAME:-coco_detection}"
STAGE="${STAGE:-all}"
RUN_DIR="$CKPT_ROOT/$PROJECT_NAME/$EXPERIMENT_NAME"

# What changes between stages; everything else is shared (below and in common.sh).
# The paper trains detection with multi-stage RL; the sources we could read ([PR1]'s released
# detection script is a single run) do not give the per-stage schedule, so the stages below are
# ours: stage 1 is [PR1]'s released detection run; stage 2 continues from stage 1's policy with the
# KL reference re-anchored to it (what starting a new stage from a checkpoint means in GRPO) and a
# larger rollout group, so that crowded images, where 8 samples often all score alike, still give
# a non-zero group advantage. Edit these arrays to change the schedule; add STAGE_3=(...) for more.
# shellcheck disable=SC2034  # read through ${!stage_var}
STAGE_1=()                                               # [PR1]'s released detection run, as is
# shellcheck disable=SC2034
STAGE_2=(
    actor_rollout_ref.rollout.n=16                       # ours (see above)
)
NUM_STAGES=2
while declare -p "STAGE_$((NUM_STAGES + 1))" >/dev/null 2>&1; do NUM_STAGES=$((NUM_STAGES + 1)); done

use_data coco

stage_args() { # stage_args K MODEL -> ARGS
    local k=$1 stage_var="STAGE_$1[@]"
    POLICY_PATH=$2 perception_grpo_args
    ARGS=(
        "${PERCEPTION_GRPO[@]}"
        data.train_files="$TRAIN_FILES"
        data.val_files="$VAL_FILES"
        data.max_response_length=2048                    # [PR1] --max_completion_length 2048 (dense scenes: long JSON lists)
        actor_rollout_ref.rollout.temperature=1.0        # [PR1] --temperature 1.0 (= verl default)
        trainer.experiment_name="${EXPERIMENT_NAME}_stage$k"
        trainer.default_local_dir="$RUN_DIR/stage$k"
        "${!stage_var+"${!stage_var}"}"
        "${TINY_ARGS[@]+"${TINY_ARGS[@]}"}"
        "${EXTRA_OVERRIDES[@]+"${EXTRA_OVERRIDES[@]}"}"
    )
}

run_stage() { # run_stage K
    local k=$1 model="$MODEL_PATH"
    PENDING_MODEL=0
    if ((k > 1)); then
        model="$RUN_DIR/stage$((k - 1))/hf"
        if [[ ! -f "$model/config.json" ]]; then
            if [[ -n "$(latest_step "$RUN_DIR/stage$((k - 1))")" ]]; then
                merge_to_hf "$RUN_DIR/stage$((k - 1))" "$model"
            elif [[ "$DRY_RUN" != 0 ]]; then
                say "dry run: stage $k will start from $model, written when stage $((k - 1)) finishes"
                PENDING_MODEL=1
            else
                say "stage $k starts from stage $((k - 1)), which has no checkpoint under $RUN_DIR/stage$((k - 1));" \
                    "run STAGE=$((k - 1)) first (or STAGE=all)"
                exit 1
            fi
        fi
    fi
    stage_args "$k" "$model"
    loud "coco_detection stage $k/$NUM_STAGES from $model"
    preflight "${ARGS[@]}"
    if [[ "$DRY_RUN" != 0 ]]; then return 0; fi
    "$PYTHON" -m verl.trainer.main_ppo "${ARGS[@]}"
    merge_to_hf "$RUN_DIR/stage$k" "$RUN_DIR/stage$k/hf"
}

EXTRA_OVERRIDES=("$@")
if [[ "$STAGE" == all ]]; then
    for ((k = 1; k <= NUM_STAGES; k++)); do
        if [[ "$DRY_RUN" == 0 && -f "$RUN_DIR/stage$k/hf/config.json" ]]; then
            say "stage $k already finished ($RUN_DIR/stage$k/hf); skipping"
            continue
        fi
        run_stage "$k"
    done
elif [[ "$STAGE" =~ ^[0-9]+$ ]] && ((STAGE >= 1 && STAGE <= NUM_STAGES)); then
    run_stage "$STAGE"
else
    say "STAGE must be 'all' or 1..$NUM_STAGES, got '$STAGE'"
    exit 1
fi
