#!/usr/bin/env bash
# Learning check on one GPU: does GRPO with our rewards measurably improve a model? A small offline
# Qwen2.5-VL is warm-started (supervised) on a synthetic grounding task the project generates, then
# trained with GRPO and the `perception` reward manager for a fixed number of steps, validating on a
# held-out split before and after; the check passes when the validation reward and Acc@0.5 rise by a
# margin. It proves the pieces teach (reward, frame, parser, advantage sign, verl wiring); it is not
# the paper's result (docs/recipes.md, "Learning check").
#
#   PHASE=warm bash recipes/learning_check.sh       # data + supervised warm start (one GPU call)
#   SEED=1 bash recipes/learning_check.sh           # GRPO + validation before/after + verdict (one call)
#   SEED=2 bash recipes/learning_check.sh           # a second seed: run-to-run noise
#   DRY_RUN=1 bash recipes/learning_check.sh        # CPU: build the data, print the config, run the checks
#   bash recipes/learning_check.sh trainer.total_training_steps=60   # extra Hydra overrides win
#
# Phases (PHASE): data, warm, grpo, check, all (default: every phase whose output is missing, then
# grpo and check). Everything goes to $LC_DIR (default ${TMPDIR:-/tmp}/verl_perception_learning_check):
#   data/synthetic_shapes/{train,val}.parquet     the task (DATA_SEED; the same for every SEED)
#   warm_start/                                   the warm-started model (Hugging Face directory)
#   runs/seed_$SEED/{console.log,metrics.jsonl,reward_curve.png,summary.json}
#
# Environment: SEED (GRPO seed, default 1), DATA_SEED (0), BACKGROUND (position), MAX_SHAPES (1), TRAIN_ROWS (8000), VAL_ROWS (256), RUN_DIR,
# GRPO_STEPS (10), GRPO_LR (1e-4), MIN_REWARD_GAIN / MIN_ACC_GAIN (the verdict's margins; the defaults
# and why: verl_perception/learning_check.py, MARGINS), WARM_* (below), plus common.sh's (ATTN_IMPL
# included; MODEL_FAMILY, MIN/MAX_PIXELS, N_GPUS_PER_NODE, NNODES and TINY are fixed here).

# A Qwen2.5-VL: the warm start builds tiny_model.SIZES["small"], defined for that family only, and the
# generated rows are written in its frame.
if [[ -n "${MODEL_FAMILY:-}" && "$MODEL_FAMILY" != qwen2_5_vl ]]; then
    echo "[learning_check.sh] the learning check trains a Qwen2.5-VL; got MODEL_FAMILY=$MODEL_FAMILY" >&2
    exit 1
fi
MODEL_FAMILY=qwen2_5_vl
TINY=0                                                   # its own model and data, not TINY=1's
# Small images (at most 64 image tokens, as smoke.sh): the 300x400 drawings are seen at 168x252.
MIN_PIXELS=3136
MAX_PIXELS=$((64 * 28 * 28))
N_GPUS_PER_NODE=1
NNODES=1
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LC_DIR="${LC_DIR:-${TMPDIR:-/tmp}/verl_perception_learning_check}"
PHASE="${PHASE:-all}"
case "$PHASE" in
    data | warm | grpo | check | all) ;;
    *) say "PHASE must be data, warm, grpo, check or all, got '$PHASE'"; exit 1 ;;
esac
SEED="${SEED:-1}"
DATA_SEED="${DATA_SEED:-0}"
# position: colour ramps that give a shape's position away; texture: random stripes and blotches
BACKGROUND="${BACKGROUND:-position}"
# The named shape alone (MAX_SHAPES=1): with up to 3 shapes the small model did not learn to tell them
# apart in 1,500 CPU warm-start steps (mean IoU <= 0.12); alone, it placed boxes at mean IoU 0.20-0.23 by
# step 300-400 (docs/recipes.md). MAX_SHAPES=3 adds distractors.
MAX_SHAPES="${MAX_SHAPES:-1}"
TRAIN_ROWS="${TRAIN_ROWS:-8000}"
VAL_ROWS="${VAL_ROWS:-256}"
# 10 steps: on an H200, two runs side by side reached the step-10 validation 9-10 minutes after starting
# (~4 of them start-up), with validation gains of 2-3x the verdict's margins (docs/recipes.md)
GRPO_STEPS="${GRPO_STEPS:-10}"
GRPO_LR="${GRPO_LR:-1e-4}"
EXPERIMENT_NAME="${EXPERIMENT_NAME:-learning_check_seed$SEED}"
DATA_DIR="$LC_DIR/data"
WARM_DIR="${WARM_DIR:-$LC_DIR/warm_start}"
RUN_DIR="${RUN_DIR:-$LC_DIR/runs/seed_$SEED}"
DATA_SOURCE=synthetic_shapes
mkdir -p "$LC_DIR"

# ---- data: generated, deterministic by DATA_SEED ---------------------------------------------------
for split in train val; do
    rows=$TRAIN_ROWS
    if [[ $split == val ]]; then rows=$VAL_ROWS; fi
    if [[ ! -f "$DATA_DIR/$DATA_SOURCE/$split.parquet" ]]; then
        say "generating $rows $DATA_SOURCE $split rows (seed $DATA_SEED) in $DATA_DIR/$DATA_SOURCE"
        "$PYTHON" -m verl_perception.preprocess.synthetic_shapes --output-dir "$DATA_DIR/$DATA_SOURCE" \
            --split "$split" --num-rows "$rows" --seed "$DATA_SEED" \
            --min-pixels "$MIN_PIXELS" --max-pixels "$MAX_PIXELS" --background "$BACKGROUND" --max-shapes "$MAX_SHAPES" \
            --workers "${DATA_WORKERS:-8}" --quiet >&2
    fi
done
TRAIN_FILES="$(parquet_files train "$DATA_SOURCE")"
VAL_FILES="$(parquet_files val "$DATA_SOURCE")"
if [[ "$PHASE" == data ]]; then exit 0; fi

# ---- warm start: supervised, until the answers are JSON with a mean IoU in GRPO's window -----------
# transformers' Trainer (verl_perception/warm_start.py says why not verl's SFT trainer). It stops at
# the first evaluation whose mean IoU reaches WARM_TARGET_MIOU, leaving GRPO room to improve.
WARM_ARGS=(
    --train "$DATA_DIR/$DATA_SOURCE/train.parquet"
    --val "$DATA_DIR/$DATA_SOURCE/val.parquet"
    --out "$WARM_DIR"
    --size "${WARM_SIZE:-small}"                         # tiny_model.SIZES["small"]: 4 x 256 text, 4 x 128 vision, 8,320 words
    --max-steps "${WARM_MAX_STEPS:-3000}"                # H200: ~4 steps/s (full vocabulary, evals included); 2 CPU cores: ~0.45
    --batch-size "${WARM_BATCH_SIZE:-128}"               # the H200 was 15-30% busy at 32 rows a step (kernel
                                                         # launches, not arithmetic, bound a small model): 4x the rows
    --lr "${WARM_LR:-1e-3}"                              # a fresh small model: 1e-3 with 30 warm-up steps
    --eval-every "${WARM_EVAL_EVERY:-50}"
    --eval-rows 128
    --target-miou "${WARM_TARGET_MIOU:-0.3}"
    --max-minutes "${WARM_MAX_MINUTES:-7}"               # then evaluate and save: one 10-minute GPU call in all
    --seed "$DATA_SEED"
)
if [[ ! -f "$WARM_DIR/warm_start.json" && "$PHASE" != check ]]; then
    if [[ "$DRY_RUN" != 0 ]]; then
        say "warm start pending (dry run): $PYTHON -m verl_perception.warm_start ${WARM_ARGS[*]}"
        PENDING_MODEL=1
    elif [[ "$PHASE" == warm || "$PHASE" == all ]]; then
        say "warm start -> $WARM_DIR"
        "$PYTHON" -m verl_perception.warm_start "${WARM_ARGS[@]}" >&2
    else
        say "no warm-started model in $WARM_DIR: run PHASE=warm first"
        exit 1
    fi
fi
if [[ "$PHASE" == warm ]]; then exit 0; fi

# ---- GRPO from the warm start, validating before and after -------------------------------------------
# verl's file logger too: metrics.jsonl, which the verdict reads (console.log is the fallback)
if [[ ",$LOGGER," != *",file,"* ]]; then LOGGER="$LOGGER,file"; fi
POLICY_PATH="$WARM_DIR" perception_grpo_args
ARGS=(
    "${PERCEPTION_GRPO[@]}"
    data.train_files="$TRAIN_FILES"
    data.val_files="$VAL_FILES"
    # size: a small model, short answers, a fixed number of steps
    data.train_batch_size=32                             # 32 prompts x 8 rollouts = 256 answers per step
    actor_rollout_ref.actor.ppo_mini_batch_size=32       # one optimizer step per batch (on-policy, as [PR1])
    data.max_prompt_length=256                           # <= 64 image tokens + the ~100-token chat prompt
    data.max_response_length=64                          # the answer is ~30 tokens of JSON
    # ours: [PR1]'s 1e-6 is for a pretrained 3B model; this one is small, warm-started at 1e-3, with 10 steps
    # to move. At 1e-4 on an H200: no collapse (format 0.99-1.00, KL loss <= 0.02 but once 0.096), validation
    # reward +0.027/+0.028 after 10 steps for two seeds (docs/recipes.md).
    actor_rollout_ref.actor.optim.lr="$GRPO_LR"
    actor_rollout_ref.rollout.temperature=1.0            # [PR1] --temperature 1.0
    actor_rollout_ref.rollout.gpu_memory_utilization=0.3 # a 7.7M-parameter model: most of the GPU stays free
    actor_rollout_ref.rollout.enforce_eager=True         # no CUDA-graph capture: faster start, as smoke.sh
    actor_rollout_ref.model.enable_gradient_checkpointing=False  # a small model (8,320-word head): small activations
    actor_rollout_ref.rollout.agent.num_workers=2        # 256 short answers a step: 2 agent-loop and reward workers
    reward.num_workers=2                                 # keep up, and start faster than verl's 8 + 8
    # seeds: data order and rollout sampling change with SEED; the data and the warm start do not
    data.seed="$SEED"
    actor_rollout_ref.rollout.seed="$SEED"
    actor_rollout_ref.actor.data_loader_seed="$SEED"
    # validation: greedy on the whole held-out split, before training, every 5 steps and at the end (~20 s each)
    trainer.val_before_train=True
    trainer.test_freq=5
    trainer.total_training_steps="$GRPO_STEPS"
    trainer.save_freq=-1                                 # nothing to resume: the check is one short run
    trainer.resume_mode=disable
    trainer.experiment_name="$EXPERIMENT_NAME"
    trainer.default_local_dir="$RUN_DIR/checkpoints"
    # verl's file logger reads VERL_FILE_LOGGER_PATH in its Ray actor: given to Ray too, because an actor of a
    # cluster this run joins (learning_check_seeds.sh) inherits that cluster's environment, not this shell's
    +ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH="$RUN_DIR/metrics.jsonl"
    "$@"
)

if [[ "$PHASE" == all || "$PHASE" == grpo || "$DRY_RUN" != 0 ]]; then
    preflight "${ARGS[@]}"
    if [[ "$DRY_RUN" != 0 ]]; then exit 0; fi
    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR"
    say "GRPO seed $SEED for $GRPO_STEPS steps -> $RUN_DIR"
    # verl's file logger writes here; the console goes to console.log too (the verdict reads either)
    VERL_FILE_LOGGER_PATH="$RUN_DIR/metrics.jsonl" "$PYTHON" -m verl.trainer.main_ppo "${ARGS[@]}" 2>&1 \
        | tee "$RUN_DIR/console.log"
fi

# ---- verdict ----------------------------------------------------------------------------------------
CHECK_ARGS=(--run-dir "$RUN_DIR" --data-source "$DATA_SOURCE" --title "learning check, seed $SEED")
if [[ -n "${MIN_REWARD_GAIN:-}" ]]; then CHECK_ARGS+=(--min-reward-gain "$MIN_REWARD_GAIN"); fi
if [[ -n "${MIN_ACC_GAIN:-}" ]]; then CHECK_ARGS+=(--min-acc-gain "$MIN_ACC_GAIN"); fi
exec "$PYTHON" -m verl_perception.learning_check "${CHECK_ARGS[@]}"
