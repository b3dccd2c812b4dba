#!/usr/bin/env bash
# Several learning-check runs side by side on one GPU, to measure run-to-run noise in one sitting: the
# small model leaves an H200 mostly idle, and each run spends ~5 minutes starting up (Ray, FSDP, vLLM),
# so runs started together cost little more than one. The data and the warm start are made once
# (learning_check.sh PHASE=warm), then one GRPO run per RUNS entry starts, each in its own Ray cluster,
# then the before/after figures of every run and the spread of their gains are printed.
#
#   bash recipes/learning_check_seeds.sh                       # seeds 1 and 2 at GRPO_LR
#   SEEDS="1 2 3" GRPO_LR=2e-4 bash recipes/learning_check_seeds.sh
#   RUNS="2e-4:1 2e-4:2 0:3" bash recipes/learning_check_seeds.sh   # LR:SEED pairs; LR 0 = the noise floor
#   bash recipes/learning_check_seeds.sh trainer.total_training_steps=20   # overrides go to every run
#
# Each run writes $LC_DIR/runs/lr<LR>_seed<SEED>/ (as learning_check.sh: console.log, metrics.jsonl,
# reward_curve.png, summary.json) and its output to $LC_DIR/runs/lr<LR>_seed<SEED>.log; all runs' curves
# go on one figure, $LC_DIR/runs/reward_curves.png. Exit status: 0 when every run passed its check, 1 otherwise.
#
# Why one Ray cluster per run, and why the job ids: verl 0.9.1 names the trainer-to-vLLM weight socket
# after the Ray job id, and every fresh cluster's first job is 01000000, so two runs in two plain clusters
# would share it (verl_perception/ray_cluster.py). Run 1 starts its own cluster; run k joins a cluster
# whose next job is k. vLLM gets a fixed KV cache (2 GiB, plenty for 256 answers of <= 64 tokens), which
# skips its start-up memory profiling: that profiling reads the whole GPU's free memory and fails when
# another run frees memory meanwhile.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
export LC_DIR="${LC_DIR:-${TMPDIR:-/tmp}/verl_perception_learning_check}"
GRPO_LR="${GRPO_LR:-1e-4}"
SEEDS="${SEEDS:-1 2}"
if [[ -z "${RUNS:-}" ]]; then
    RUNS=""
    for seed in $SEEDS; do RUNS+="$GRPO_LR:$seed "; done
fi
STAGGER_S="${STAGGER_S:-10}"             # seconds between run starts (spreads the start-up work)
KV_CACHE_BYTES="${KV_CACHE_BYTES:-2147483648}"
say() { echo "[learning_check_seeds.sh] $*" >&2; }
run_dir_of() { echo "$LC_DIR/runs/lr$1_seed$2"; }  # LR SEED

KV_OVERRIDE="+actor_rollout_ref.rollout.engine_kwargs.vllm.kv_cache_memory_bytes=$KV_CACHE_BYTES"
if [[ "${DRY_RUN:-0}" != 0 ]]; then  # each run's config and checks, one after another (no Ray, no GPU)
    for spec in $RUNS; do
        lr="${spec%%:*}" seed="${spec##*:}"
        say "dry run: GRPO_LR=$lr SEED=$seed"
        SEED="$seed" GRPO_LR="$lr" RUN_DIR="$(run_dir_of "$lr" "$seed")" \
            bash "$HERE/learning_check.sh" "$KV_OVERRIDE" "$@" || exit $?
    done
    exit 0
fi

PHASE=warm bash "$HERE/learning_check.sh" || { say "data or warm start failed"; exit 1; }

mkdir -p "$LC_DIR/runs" "$LC_DIR/ray"
pids=() dirs=() clusters=()
k=0 failed=0
for spec in $RUNS; do
    k=$((k + 1))
    lr="${spec%%:*}" seed="${spec##*:}"
    run_dir="$(run_dir_of "$lr" "$seed")"
    extra_env=()
    if (( k > 1 )); then
        address_file="$LC_DIR/ray/run$k.address"
        rm -f "$address_file"
        "$PYTHON" -m verl_perception.ray_cluster --address-file "$address_file" --job "$k" \
            > "$LC_DIR/ray/run$k.log" 2>&1 &
        clusters+=($!)
        for _ in $(seq 120); do [[ -s "$address_file" ]] && break; sleep 1; done
        if [[ ! -s "$address_file" ]]; then
            say "run $k: its Ray cluster did not start ($LC_DIR/ray/run$k.log)"; failed=1; continue
        fi
        extra_env=(RAY_ADDRESS="$(cat "$address_file")" RAY_AUTH_MODE=token)
    fi
    say "run $k: GRPO_LR=$lr SEED=$seed -> $run_dir (log $run_dir.log)"
    dirs+=("$run_dir")
    env "${extra_env[@]}" SEED="$seed" GRPO_LR="$lr" RUN_DIR="$run_dir" EXPERIMENT_NAME="learning_check_lr${lr}_seed${seed}" \
        bash "$HERE/learning_check.sh" "$KV_OVERRIDE" "$@" > "$run_dir.log" 2>&1 &
    pids+=($!)
    sleep "$STAGGER_S"
done

for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
done
if (( ${#clusters[@]} )); then kill "${clusters[@]}" 2>/dev/null; fi
for d in "${dirs[@]}"; do
    tail -n 12 "$d.log" | grep -E "LEARNING CHECK|cannot judge" | sed "s|^|$(basename "$d"): |" >&2
done
if (( ${#dirs[@]} )); then
    "$PYTHON" -m verl_perception.learning_check --compare "${dirs[@]}" --plot "$LC_DIR/runs/reward_curves.png"
fi
exit "$failed"
