# shellcheck shell=bash
# Shared pieces of the Perception-R1 GRPO recipes; every recipe sources this file.
#
# Environment (all optional):
#   MODEL_PATH       policy to train            (default Qwen/Qwen2.5-VL-3B-Instruct; Qwen3-VL works too,
#                    e.g. Qwen/Qwen3-VL-4B-Instruct, with parquet preprocessed --model-family qwen3_vl)
#   MODEL_FAMILY     qwen2_5_vl or qwen3_vl: resize factor, pixel bounds and coordinate convention
#                    (default: read from MODEL_PATH's config.json, or its hub name)
#   DATA_DIR         parquet root: $DATA_DIR/<name>/{train,val}.parquet, <name> in coco, refcoco,
#                    refcoco+, refcocog, pixmo_count, pageocr   (default $HOME/data/verl_perception)
#   N_GPUS_PER_NODE  GPUs per node               (default: the CUDA devices visible here; 8, the paper's
#                    node, where none are, as in a dry run on a CPU machine)
#   NNODES           nodes of the Ray cluster    (default 1; multi-node: start Ray first, see docs/recipes.md)
#   PROJECT_NAME     tracker project             (default verl_perception)
#   EXPERIMENT_NAME  tracker run / checkpoint dir (default per recipe)
#   LOGGER           comma list of console, wandb, tensorboard (default console)
#   CKPT_ROOT        checkpoint root             (default checkpoints; verl writes
#                    $CKPT_ROOT/$PROJECT_NAME/$EXPERIMENT_NAME/global_step_N/actor)
#   MIN_PIXELS / MAX_PIXELS  processor pixel bounds (default: the family's in verl_perception/frame.py,
#                    qwen2_5_vl 3136..1003520, qwen3_vl 65536..1310720: at most 1280 image tokens either way);
#                    must equal the bounds the parquet was preprocessed with (preflight checks it)
#   DRY_RUN=1        print the composed config (main_ppo --cfg job), run the preflight checks, exit
#   DRY_RUN=args     print the Hydra overrides, NUL-separated, and exit (for scripts and tests)
#   SKIP_PREFLIGHT=1 start training without the preflight checks
#   PYTHON           interpreter (default python3)
#   ATTN_IMPL        attention of the FSDP actor/reference: flash_attention_2 (flash-attn, with verl's
#                    padding removal), flash_varlen_torch (PyTorch's own flash kernel, torch >= 2.10, with
#                    padding removal; verl_perception/packed_attention.py), sdpa (padded batches) or auto
#                    (default: flash_attention_2 when flash-attn is installed, else flash_varlen_torch when
#                    torch has it, else sdpa, said loudly)
#   DYNAMIC_SAMPLING=1  DAPO dynamic sampling: groups whose rollouts all get the same score (zero GRPO
#                    advantage) are dropped and replaced by fresh prompts before the update (verl's
#                    algorithm.filter_groups, applied by our sampler; costs extra generation, see docs/recipes.md)
#   TINY=1           any recipe on 1 GPU (or N_GPUS_PER_NODE) in minutes: a tiny random model of
#                    MODEL_FAMILY built offline, the bundled sample, 4 prompts x 2 rollouts, TINY_STEPS steps per stage (default 1), everything
#                    under TINY_DIR (default ${TMPDIR:-/tmp}/verl_perception_tiny). Checks the pipeline,
#                    not the paper.
# Extra Hydra overrides given on the recipe's command line are appended last and win.

# shellcheck disable=SC2034  # TRAIN_FILES, VAL_FILES, PERCEPTION_GRPO are read by the recipes
set -euo pipefail

PYTHON="${PYTHON:-python3}"

MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-VL-3B-Instruct}"
DATA_DIR="${DATA_DIR:-$HOME/data/verl_perception}"
TINY="${TINY:-0}"
if [[ "$TINY" == 1 ]]; then N_GPUS_PER_NODE="${N_GPUS_PER_NODE:-1}"; fi  # TINY: 1 GPU unless told
if [[ -z "${N_GPUS_PER_NODE:-}" ]]; then
    # torch's count honours CUDA_VISIBLE_DEVICES; without an NVIDIA driver it is 0, so skip the import (~2 s)
    if [[ -e /dev/nvidiactl ]] || command -v nvidia-smi >/dev/null 2>&1; then
        N_GPUS_PER_NODE="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || true)"
    fi
    if ! [[ "${N_GPUS_PER_NODE:-}" =~ ^[1-9][0-9]*$ ]]; then N_GPUS_PER_NODE=8; fi
fi
NNODES="${NNODES:-1}"
PROJECT_NAME="${PROJECT_NAME:-verl_perception}"
LOGGER="${LOGGER:-console}"
CKPT_ROOT="${CKPT_ROOT:-checkpoints}"
DRY_RUN="${DRY_RUN:-0}"
case "$DRY_RUN" in
    0 | 1 | args) ;;
    *) echo "DRY_RUN must be 0, 1 or args, got '$DRY_RUN'" >&2; exit 1 ;;
esac
SKIP_PREFLIGHT="${SKIP_PREFLIGHT:-0}"
DYNAMIC_SAMPLING="${DYNAMIC_SAMPLING:-0}"
case "$DYNAMIC_SAMPLING" in
    0 | 1) ;;
    *) echo "DYNAMIC_SAMPLING must be 0 or 1, got '$DYNAMIC_SAMPLING'" >&2; exit 1 ;;
esac

# The model family and its pixel bounds live in one place (verl_perception/frame.py); read them
# rather than repeat them, and only when needed.
# model_family: MODEL_FAMILY, else the family of MODEL_PATH (its config.json, or its hub name).
model_family() {
    if [[ -z "${MODEL_FAMILY:-}" ]]; then
        MODEL_FAMILY="$("$PYTHON" -m verl_perception.frame family "$MODEL_PATH")" || {
            echo "set MODEL_FAMILY (qwen2_5_vl or qwen3_vl) for MODEL_PATH=$MODEL_PATH" >&2
            exit 1
        }
    fi
}
# family_bounds: FAMILY_MIN_PIXELS, FAMILY_MAX_PIXELS (the recipes' bounds) and FRAME_FACTOR of the family.
family_bounds() {
    model_family
    read -r FAMILY_MIN_PIXELS FAMILY_MAX_PIXELS FRAME_FACTOR < <("$PYTHON" -m verl_perception.frame bounds "$MODEL_FAMILY")
    if [[ -z "${FRAME_FACTOR:-}" ]]; then
        echo "unknown MODEL_FAMILY=$MODEL_FAMILY (qwen2_5_vl or qwen3_vl)" >&2
        exit 1
    fi
}
# (TINY=1 sets its own family and bounds below.)
if [[ "$TINY" != 1 && ( -z "${MIN_PIXELS:-}" || -z "${MAX_PIXELS:-}" ) ]]; then
    family_bounds
    MIN_PIXELS="${MIN_PIXELS:-$FAMILY_MIN_PIXELS}"
    MAX_PIXELS="${MAX_PIXELS:-$FAMILY_MAX_PIXELS}"
fi

# Attention: verl builds the actor with flash_attention_2 and packs sequences (use_remove_padding)
# unless told otherwise, and both need flash-attn, which is built per CUDA/torch and often missing.
# Without it, auto takes flash_varlen_torch: the same padding-free packing on PyTorch's own FA2 kernel
# (torch >= 2.10; registered by this package's verl plugin). Only where torch lacks that kernel does it
# fall back to sdpa, which costs speed and memory on padded batches (and one attention call per vision
# window), never correctness. Preflight refuses an implementation this machine cannot run.
ATTN_IMPL="${ATTN_IMPL:-auto}"
case "$ATTN_IMPL" in
    auto)
        if "$PYTHON" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("flash_attn") is None)' 2>/dev/null; then
            ATTN_IMPL=flash_attention_2
        elif "$PYTHON" -c 'import importlib.util as u, os, sys; t = u.find_spec("torch")  # no torch import: seconds
sys.exit(t is None or not os.path.exists(os.path.join(os.path.dirname(t.origin), "nn", "attention", "varlen.py")))' 2>/dev/null; then
            ATTN_IMPL=flash_varlen_torch
        else
            ATTN_IMPL=sdpa
            ATTN_FALLBACK=1
        fi ;;
    flash_attention_2 | flash_varlen_torch | sdpa | eager) ;;
    *) echo "ATTN_IMPL must be auto, flash_attention_2, flash_varlen_torch, sdpa or eager, got '$ATTN_IMPL'" >&2; exit 1 ;;
esac
case "$ATTN_IMPL" in
    flash_attention_2 | flash_varlen_torch) REMOVE_PADDING=True ;;
    *) REMOVE_PADDING=False ;;
esac

say() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

loud() {
    printf '\n%s\n' "########################################################################" >&2
    printf '# %s\n' "$@" >&2
    printf '%s\n\n' "########################################################################" >&2
}

# "console,wandb" -> "[console,wandb]" (Hydra list syntax for trainer.logger)
hydra_list() { local IFS=','; read -r -a _items <<<"$1"; printf '[%s]' "$(IFS=','; echo "${_items[*]}")"; }

# Quote one path for a Hydra list element (paths may hold '+', as refcoco+ does).
hydra_quote() { printf "'%s'" "$1"; }

# parquet_files SPLIT NAME... -> Hydra list of $DATA_DIR/<name>/<split>.parquet that exist
parquet_files() {
    local split=$1 name out=()
    shift
    for name in "$@"; do
        if [[ -f "$DATA_DIR/$name/$split.parquet" ]]; then
            out+=("$(hydra_quote "$DATA_DIR/$name/$split.parquet")")
        fi
    done
    (IFS=','; printf '[%s]' "${out[*]-}")
}

# use_data NAME... : point TRAIN_FILES/VAL_FILES at $DATA_DIR/<name>/{train,val}.parquet. When none
# of the names has both files, preprocess the bundled raw sample (made by this project, a few dozen
# rows per task) with this recipe's pixel bounds and use it instead, saying so loudly. The sample
# goes to its own directory so it never overwrites real data.
use_data() {
    local name have=()
    for name in "$@"; do
        if [[ -f "$DATA_DIR/$name/train.parquet" && -f "$DATA_DIR/$name/val.parquet" ]]; then
            have+=("$name")
        fi
    done
    if ((${#have[@]} == 0)); then
        model_family
        local sample_dir="${SAMPLE_DIR:-$DATA_DIR/bundled_sample_${MODEL_FAMILY}_${MIN_PIXELS}_${MAX_PIXELS}}"
        loud "NO PARQUET FOR [$*] UNDER DATA_DIR=$DATA_DIR" \
            "Using the BUNDLED SAMPLE (a few dozen generated rows per task), preprocessed into" \
            "  $sample_dir" \
            "This checks the pipeline end to end; it does NOT reproduce the paper. Preprocess the" \
            "real dataset with data_preprocess/ (docs/data.md) and set DATA_DIR."
        if [[ ! -f "$sample_dir/$1/train.parquet" ]]; then
            "$PYTHON" -m verl_perception.preprocess.samples --output-dir "$sample_dir" \
                --model-family "$MODEL_FAMILY" --min-pixels "$MIN_PIXELS" --max-pixels "$MAX_PIXELS" >&2
        fi
        DATA_DIR="$sample_dir"
        have=()
        for name in "$@"; do
            if [[ -f "$DATA_DIR/$name/train.parquet" ]]; then have+=("$name"); fi
        done
        if ((${#have[@]} == 0)); then
            say "the bundled sample has no parquet for [$*] under $DATA_DIR"
            exit 1
        fi
    elif ((${#have[@]} < $#)); then
        say "training on [${have[*]}]; not found under $DATA_DIR: the rest of [$*]"
    fi
    TRAIN_FILES="$(parquet_files train "${have[@]}")"
    VAL_FILES="$(parquet_files val "${have[@]}")"
}

if [[ "${ATTN_FALLBACK:-0}" == 1 && "$DRY_RUN" != args ]]; then
    say "neither flash-attn nor torch's varlen attention (torch >= 2.10) is installed: training with" \
        "ATTN_IMPL=sdpa (padded batches; slower, same results). Install either, or set ATTN_IMPL=sdpa to silence this."
fi

# TINY=1: the tiny model, sample data and small batches (TINY_ARGS, appended by each recipe after its
# own settings and before the command line's).
if [[ "$TINY" == 1 ]]; then
    TINY_DIR="${TINY_DIR:-${TMPDIR:-/tmp}/verl_perception_tiny}"
    MODEL_FAMILY="${MODEL_FAMILY:-qwen2_5_vl}"
    family_bounds
    # Small images (4 to 64 image tokens of the family's factor) keep the run short; the tiny
    # processor and the sample are both built with these bounds.
    MIN_PIXELS=$((4 * FRAME_FACTOR * FRAME_FACTOR))
    MAX_PIXELS=$((64 * FRAME_FACTOR * FRAME_FACTOR))
    NNODES=1
    MODEL_PATH="$TINY_DIR/tiny_${MODEL_FAMILY}_${MIN_PIXELS}_${MAX_PIXELS}"
    if [[ ! -f "$MODEL_PATH/config.json" && "$DRY_RUN" != args ]]; then
        say "building the tiny random $MODEL_FAMILY in $MODEL_PATH"
        "$PYTHON" -m verl_perception.tiny_model --out "$MODEL_PATH" --family "$MODEL_FAMILY" \
            --min-pixels "$MIN_PIXELS" --max-pixels "$MAX_PIXELS" >&2
    fi
    DATA_DIR="$TINY_DIR/data"                 # empty: use_data preprocesses the bundled sample here
    CKPT_ROOT="$TINY_DIR/checkpoints"
    TINY_ARGS=(
        data.train_batch_size=4                          # 4 prompts x 2 rollouts per step
        actor_rollout_ref.actor.ppo_mini_batch_size=4
        actor_rollout_ref.rollout.n=2
        data.max_prompt_length=1024                      # >= 64 image tokens + the longest instruction (preflight checks)
        data.max_response_length=32                      # gibberish from a random model: keep it short
        data.filter_overlong_prompts=False               # the bound above holds for every row: nothing to filter
        actor_rollout_ref.rollout.gpu_memory_utilization=0.3
        actor_rollout_ref.rollout.enforce_eager=True     # no CUDA-graph capture: faster start
        trainer.total_training_steps="${TINY_STEPS:-1}"
        trainer.val_before_train=False                   # a greedy random model may emit an <|image_pad|> token
        trainer.test_freq=-1
        trainer.save_freq="${TINY_STEPS:-1}"             # save the last step (merged by the recipes)
        trainer.resume_mode=disable
    )
fi

# ------------------------------------------------------------------------------------------------
# The Perception-R1 GRPO setup shared by the four tasks. Sources:
#   [paper]  arXiv 2504.07954 (Perception-R1; v2 trains Qwen2.5-VL-3B-Instruct)
#   [PR1]    the authors' scripts, github.com/linkangheng/PR1: local_scripts/train/
#            train_qwen2_2b_vl_{grounding,counting,detection}.sh and src/open_r1/trainer/
#            grpo_trainer_vllm.py (TRL GRPOTrainer + vLLM on 7+1 GPUs, DeepSpeed ZeRO-3)
#   [TRL]    trl's GRPOConfig defaults, which [PR1] inherits where its scripts say nothing
#            (trl is unpinned in [PR1]'s setup.py; defaults of trl 0.14-0.16)
#   [verl]   verl's examples/grpo_trainer/run_qwen2_5_vl-7b.sh, where the paper is silent
# Batch arithmetic of [PR1]: 8 completions per GPU x 7 training GPUs x 2 gradient-accumulation
# steps = 112 completions = 14 prompts x 8 rollouts per optimizer step, one step per rollout batch.
# verl counts prompts, not completions, hence train_batch_size = ppo_mini_batch_size = 14.
# ------------------------------------------------------------------------------------------------
perception_grpo_args() {
    PERCEPTION_GRPO=(
        algorithm.adv_estimator=grpo                         # [paper] GRPO, rule-based rewards
        algorithm.use_kl_in_reward=False                     # [paper] KL is a loss term in the GRPO objective
        # policy / reference: FSDP (verl's dp engine); the reference model is verl's FSDP ref worker
        actor_rollout_ref.model.path="${POLICY_PATH:-$MODEL_PATH}"  # policy and reference start here
        actor_rollout_ref.actor.strategy=fsdp                # FSDP actor (verl default, stated: the recipe relies on it)
        actor_rollout_ref.ref.strategy=fsdp                  # FSDP reference policy
        actor_rollout_ref.actor.optim.lr=1e-6                # [PR1] --learning_rate 1e-6 (= verl default)
        actor_rollout_ref.actor.optim.weight_decay=0.0       # [PR1] HF TrainingArguments default (verl: 0.01)
        actor_rollout_ref.actor.use_kl_loss=True             # [PR1]/[TRL] use_kl=True: beta * KL(pi || pi_ref) in the loss
        actor_rollout_ref.actor.kl_loss_coef=0.04            # [TRL] beta=0.04 ([PR1] scripts do not set --beta)
        actor_rollout_ref.actor.kl_loss_type=low_var_kl      # [PR1] kl_approximator=k3 (Schulman's k3 = verl low_var_kl)
        actor_rollout_ref.actor.entropy_coeff=0              # [PR1] entropy_reg=False
        actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean  # [paper] eq. of J_GRPO: 1/G sum_i 1/|o_i| sum_t
        data.train_batch_size=14                             # [PR1] 14 prompts x 8 rollouts = 112 completions per step
        actor_rollout_ref.actor.ppo_mini_batch_size=14       # [PR1] one optimizer step per rollout batch (on-policy)
        actor_rollout_ref.actor.use_dynamic_bsz=True         # [verl] token-packed micro-batches (VL prompts vary in length)
        actor_rollout_ref.model.enable_gradient_checkpointing=True  # [PR1] --gradient_checkpointing true
        actor_rollout_ref.model.use_remove_padding="$REMOVE_PADDING"  # [verl] example: True; needs flash-attn (ATTN_IMPL above)
        +actor_rollout_ref.model.override_config.attn_implementation="$ATTN_IMPL"
        # rollout: vLLM
        actor_rollout_ref.rollout.name=vllm                  # [PR1] vLLM generation
        actor_rollout_ref.rollout.n=8                        # [PR1] --num_generations 8
        actor_rollout_ref.rollout.top_p=0.9                  # [PR1] SamplingParams(top_p=0.9) in grpo_trainer_vllm.py
        actor_rollout_ref.rollout.top_k=50                   # [PR1] SamplingParams(top_k=50)
        actor_rollout_ref.rollout.tensor_model_parallel_size=1   # 3B fits one GPU; use 2 for 7B ([verl] example)
        actor_rollout_ref.rollout.gpu_memory_utilization=0.6     # [verl] example
        # ([verl]'s example also turns off chunked prefill and vLLM's multimodal preprocessor cache,
        # workarounds for older vLLM; verl 0.9's defaults are kept here.)
        # data: the adapter checks the stored frame against the processor at load time
        data.custom_cls.path=pkg://verl_perception.dataset
        data.custom_cls.name=PerceptionRLHFDataset
        data.max_prompt_length=2048                          # [PR1] --max_prompt_length 2048
        data.filter_overlong_prompts=True                    # [verl] example; the adapter decides per row from token
                                                             # counts per distinct text and frame, in-process (verl's
                                                             # default of 1 filter worker kept): 20,000 COCO-like rows
                                                             # in 1.1 s vs verl's ~110 s + 147 ms/row (docs/data.md)
        data.dataloader_num_workers=0                        # 14 rows a step; 5,000 rows: 1,731 rows/s in-process vs
                                                             # 152 with 2 workers, 133 with 8 (start-up; docs/data.md)
        data.truncation=error                                # [verl] example: never cut an image's tokens
        # [PR1] --max_pixels 1000000 with the default min 3136; ours are frame.py's bounds of MODEL_FAMILY
        # (Qwen2.5-VL 3136 .. 1280 x 28 x 28 = 1003520; Qwen3-VL 64 x 32 x 32 .. 1280 x 32 x 32), which the
        # preprocessing pins into the parquet. 1280 image tokens at most either way: the same prompt budget.
        # verl threads data.mm_processor_kwargs to the processor at load time and to vLLM at rollout.
        +data.mm_processor_kwargs.min_pixels="$MIN_PIXELS"
        +data.mm_processor_kwargs.max_pixels="$MAX_PIXELS"
        # reward
        reward.reward_manager.name=perception                # this package's reward manager (verl.plugins entry point)
        # per-task reward metrics (perception/<data_source>/score, format, iou, f1, ...) every step:
        # verl's replay buffer plus the metrics; with trainer.v1.trainer_mode=*_async use PerceptionReplayBufferAsync
        trainer.v1.sampler.custom_sampler.path=pkg://verl_perception.replay_buffer
        trainer.v1.sampler.custom_sampler.name=PerceptionReplayBuffer
        # (it also logs perception/<data_source>/zero_variance_groups, the share of groups GRPO learns nothing from)
        # trainer
        trainer.total_epochs=1                               # [PR1] --num_train_epochs 1
        trainer.save_freq=100                                # [PR1] --save_steps 100 (verl also saves the last step)
        trainer.test_freq=100                                # paper silent ([PR1] has no in-training eval; [verl] uses 5): validate when saving
        trainer.n_gpus_per_node="$N_GPUS_PER_NODE"
        trainer.nnodes="$NNODES"
        trainer.project_name="$PROJECT_NAME"
        trainer.logger="$(hydra_list "$LOGGER")"
    )
    if [[ "$DYNAMIC_SAMPLING" == 1 ]]; then
        PERCEPTION_GRPO+=(
            # [DAPO] dynamic sampling (Yu et al., 2025), verl's algorithm.filter_groups, applied by our sampler:
            # a group whose rollouts all score alike has zero advantage; it is dropped and refilled
            algorithm.filter_groups.enable=True
            algorithm.filter_groups.metric=score         # our reward manager's per-rollout score (= the reward)
        )
    fi
}

# preflight OVERRIDE... : in a dry run print the composed config and check it (DRY_RUN=1) or print
# the overrides (DRY_RUN=args); otherwise check it, failing the recipe before any GPU is allocated.
# Callers stop after it when DRY_RUN != 0.
preflight() {
    local extra=()
    if [[ "${PENDING_MODEL:-0}" == 1 ]]; then extra+=(--pending-model); fi
    if [[ "$DRY_RUN" == 1 ]]; then extra+=(--dry-run); fi
    if [[ "$DRY_RUN" == args ]]; then
        printf '%s\0' "$@"
        return
    fi
    if [[ "$DRY_RUN" == 1 ]]; then
        "$PYTHON" -m verl_perception.preflight --print-config "${extra[@]+"${extra[@]}"}" -- "$@"
        return
    fi
    if [[ "$SKIP_PREFLIGHT" == 1 ]]; then
        say "SKIP_PREFLIGHT=1: starting without the consistency checks"
        return
    fi
    "$PYTHON" -m verl_perception.preflight "${extra[@]+"${extra[@]}"}" -- "$@"
}

# latest_step CKPT_DIR -> N of the newest global_step_N verl recorded there, or nothing
latest_step() {
    local tracker="$1/latest_checkpointed_iteration.txt"
    if [[ -f "$tracker" ]]; then tr -d '[:space:]' <"$tracker"; fi
}

# merge_to_hf CKPT_DIR TARGET : verl's model merger on the newest FSDP actor checkpoint
merge_to_hf() {
    local ckpt_dir=$1 target=$2 step
    step="$(latest_step "$ckpt_dir")"
    if [[ -z "$step" ]]; then
        say "no checkpoint under $ckpt_dir (latest_checkpointed_iteration.txt missing); run that stage first"
        return 1
    fi
    say "merging $ckpt_dir/global_step_$step/actor -> $target"
    "$PYTHON" -m verl.model_merger merge --backend fsdp \
        --local_dir "$ckpt_dir/global_step_$step/actor" --target_dir "$target"
}
