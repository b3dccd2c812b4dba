#!/usr/bin/env bash
# Install check on one GPU: 2 GRPO steps of the real pipeline with a tiny random Qwen2.5-VL built
# offline (no model hub) on the bundled sample of all four tasks mixed, then a checkpoint save, its
# merge to Hugging Face format and a reload of the merged model that answers a few rows. It checks
# that verl, vLLM, the reward manager, the dataset adapter, the pixel frame and the checkpoint layout
# work together; the model is random, so rewards are ~0. Ends with SMOKE OK and the time per phase.
#
#   bash recipes/smoke.sh                     # needs 1 GPU and `pip install -e ".[gpu]"`
#   MODEL_FAMILY=qwen3_vl bash recipes/smoke.sh   # the same with a tiny Qwen3-VL (patch 16, 0..1000 answers)
#   DRY_RUN=1 bash recipes/smoke.sh           # CPU only: builds the tiny model and the sample data,
#                                             # prints the config and runs every preflight check
#
# Everything goes to $SMOKE_DIR (default ${TMPDIR:-/tmp}/verl_perception_smoke).
SMOKE_START=$SECONDS
TINY=1
TINY_STEPS=2
TINY_DIR="${SMOKE_DIR:-${TMPDIR:-/tmp}/verl_perception_smoke}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PHASES=()
phase() { # phase NAME: the time since the previous phase ended goes to NAME
    PHASES+=("$(printf '%-34s %4ds' "$1" $((SECONDS - ${_phase_t:-$SMOKE_START})))")
    _phase_t=$SECONDS
}

EXPERIMENT_NAME="${EXPERIMENT_NAME:-smoke}"
CKPT_DIR="$CKPT_ROOT/$EXPERIMENT_NAME"
use_data coco refcoco pixmo_count pageocr
phase "tiny model + bundled sample"

perception_grpo_args
ARGS=(
    "${PERCEPTION_GRPO[@]}"
    data.train_files="$TRAIN_FILES"
    data.val_files="$VAL_FILES"
    "${TINY_ARGS[@]}"
    trainer.experiment_name="$EXPERIMENT_NAME"
    trainer.default_local_dir="$CKPT_DIR"
    "$@"
)

preflight "${ARGS[@]}"
if [[ "$DRY_RUN" != 0 ]]; then exit 0; fi
phase "preflight"
rm -rf "$CKPT_DIR"
"$PYTHON" -m verl.trainer.main_ppo "${ARGS[@]}"
phase "verl: Ray, workers, vLLM, 2 steps, save"
MERGED="$TINY_DIR/merged_hf"
rm -rf "$MERGED"
merge_to_hf "$CKPT_DIR" "$MERGED"
phase "merge to Hugging Face format"
# The merged model must load as a Hugging Face model with its processor and answer.
ANSWERS="$TINY_DIR/merged_answers.jsonl"
rm -f "$ANSWERS"
"$PYTHON" -m verl_perception.generate --model "$MERGED" --data "$DATA_DIR/coco/val.parquet" --out "$ANSWERS" \
    --backend hf --limit 4 --max-new-tokens 16 --forbid-vision-tokens --no-progress >&2
if [[ "$(wc -l <"$ANSWERS")" -ne 4 ]]; then
    say "SMOKE FAILED: the merged model in $MERGED did not answer 4 rows ($ANSWERS)"
    exit 1
fi
phase "reload merged model, answer 4 rows"
loud "SMOKE OK ($MODEL_FAMILY): 2 GRPO steps, checkpoint $CKPT_DIR/global_step_2, merged model $MERGED reloaded" \
    "${PHASES[@]}" "$(printf '%-34s %4ds' total $((SECONDS - SMOKE_START)))"
