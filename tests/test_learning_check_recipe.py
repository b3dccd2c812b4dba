"""recipes/learning_check.sh without a GPU: its phases, with a stand-in python for the warm start and
verl's trainer (the stand-in writes the metrics a run would log), and the real verdict at the end.
The recipe's dry run (real verl config, preflight) is in tests/test_recipes_dry_run.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _recipes_support import RECIPES, recipe_env

from verl_perception.preprocess import synthetic_shapes as ss

FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for python: records the call, fakes the warm start and verl's run (metrics from $FAKE_METRICS).
printf '%s\\n' "$*" >> "$FAKE_LOG"
if [[ "$1" == -m && "$2" == verl_perception.warm_start ]]; then
    while (($#)); do [[ "$1" == --out ]] && out="$2"; shift; done
    mkdir -p "$out" && echo '{}' > "$out/config.json" && echo '{}' > "$out/warm_start.json"
    exit 0
fi
if [[ "$1" == -m && "$2" == verl.trainer.main_ppo ]]; then
    echo "env RAY_ADDRESS=${RAY_ADDRESS:-} RAY_AUTH_MODE=${RAY_AUTH_MODE:-}" >> "$FAKE_LOG"
    cp "$FAKE_METRICS" "$VERL_FILE_LOGGER_PATH"
    echo "(TaskRunner pid=1) step:0 - fake:1"
    exit 0
fi
exec "$REAL_PYTHON" "$@"
"""
DS = "synthetic_shapes"


def _metrics(path: Path, before: tuple[float, float], after: tuple[float, float]) -> Path:
    lines = []
    for step, (reward, acc) in ((0, before), (40, after)):
        data = {f"val-core/{DS}/reward/mean@1": reward, f"val-aux/{DS}/hit50/mean@1": acc}
        lines.append(json.dumps({"step": step, "data": data}))
    lines.insert(1, json.dumps({"step": 1, "data": {"critic/score/mean": 1.0}}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory) -> Path:
    """A small generated dataset, shared: $LC_DIR/data of each run links to it."""
    root = tmp_path_factory.mktemp("lc_data")
    for split, n in (("train", 8), ("val", 4)):
        ss.convert(root / DS, split, n, min_pixels=3136, max_pixels=64 * 28 * 28)
    return root


@pytest.fixture
def lc(tmp_path, shapes_data):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    lc_dir = tmp_path / "lc"
    lc_dir.mkdir()
    (lc_dir / "data").symlink_to(shapes_data)
    log = tmp_path / "calls.log"

    def run(*args, before=(1.0, 0.20), after=(1.3, 0.35), recipe="learning_check.sh", **env):
        e = recipe_env(
            tmp_path, DRY_RUN=0, SKIP_PREFLIGHT=1, PYTHON=fake, REAL_PYTHON=sys.executable, FAKE_LOG=log,
            FAKE_METRICS=_metrics(tmp_path / "fake_metrics.jsonl", before, after), LC_DIR=lc_dir,
            MIN_PIXELS=3136, MAX_PIXELS=1003520, **env,
        )  # fmt: skip
        res = subprocess.run(["bash", str(RECIPES / recipe), *args], cwd=tmp_path, env=e,
                             capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        calls = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        run.env_lines = [c for c in calls if c.startswith("env ")]
        return res, [c for c in calls if c.startswith("-m ")]

    run.dir = lc_dir
    return run


def test_full_run_warm_starts_then_trains_then_judges(lc):
    res, calls = lc("trainer.total_training_steps=12", SEED=7)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [c.split()[1] for c in calls] == ["verl_perception.warm_start", "verl.trainer.main_ppo",
                                             "verl_perception.learning_check"]  # fmt: skip
    warm, train, check = calls
    assert f"--out {lc.dir}/warm_start" in warm and "--target-miou 0.3" in warm
    args = train.split()[2:]
    assert f"actor_rollout_ref.model.path={lc.dir}/warm_start" in args
    assert "reward.reward_manager.name=perception" in args and "trainer.val_before_train=True" in args
    assert "data.seed=7" in args and "trainer.logger=[console,file]" in args
    assert args[-1] == "trainer.total_training_steps=12"  # pass-through overrides come last
    assert f"--run-dir {lc.dir}/runs/seed_7" in check
    run_dir = lc.dir / "runs" / "seed_7"
    assert "LEARNING CHECK PASSED" in res.stdout
    assert (run_dir / "reward_curve.png").is_file() and json.loads((run_dir / "summary.json").read_text())["passed"]
    assert "step:0 - fake:1" in (run_dir / "console.log").read_text()

    # again: the warm start exists, only GRPO and the verdict run
    res, calls = lc(SEED=7)
    assert res.returncode == 0 and [c.split()[1] for c in calls] == ["verl.trainer.main_ppo",
                                                                     "verl_perception.learning_check"]  # fmt: skip


def test_no_rise_fails_the_recipe(lc):
    res, _ = lc(before=(1.0, 0.2), after=(1.0, 0.2))
    assert res.returncode == 1 and "LEARNING CHECK FAILED" in res.stdout


def test_margins_reach_the_verdict(lc):
    res, calls = lc(MIN_REWARD_GAIN="0.5", MIN_ACC_GAIN="0.01")
    assert res.returncode == 1 and "reward rose by +0.3000 < 0.5000" in res.stdout
    assert "--min-reward-gain 0.5 --min-acc-gain 0.01" in calls[-1]


def test_phases(lc):
    res, calls = lc(PHASE="grpo")
    assert res.returncode == 1 and "run PHASE=warm first" in res.stderr and not calls
    res, calls = lc(PHASE="warm")
    assert res.returncode == 0 and [c.split()[1] for c in calls] == ["verl_perception.warm_start"]
    res, calls = lc(PHASE="grpo", SEED=2)
    assert res.returncode == 0 and [c.split()[1] for c in calls] == ["verl.trainer.main_ppo",
                                                                     "verl_perception.learning_check"]  # fmt: skip
    res, calls = lc(PHASE="check", SEED=2)  # the verdict alone, on the run just made
    assert res.returncode == 0 and [c.split()[1] for c in calls] == ["verl_perception.learning_check"]
    res, _ = lc(PHASE="nope")
    assert res.returncode == 1 and "PHASE must be" in res.stderr


def test_seeds_side_by_side_each_in_its_own_ray_cluster(lc):
    """learning_check_seeds.sh: one warm start, then one run per LR:SEED at once (run 2 joins a Ray
    cluster of its own, started for it), each with its learning rate, seed and run directory, then the
    comparison of their gains."""
    res, calls = lc(recipe="learning_check_seeds.sh", RUNS="1e-4:1 0:2", STAGGER_S=0)
    assert res.returncode == 0, res.stderr[-3000:]
    assert sum(c.startswith("-m verl_perception.warm_start") for c in calls) == 1
    trains = [c for c in calls if c.startswith("-m verl.trainer.main_ppo")]
    assert len(trains) == 2
    for lr, seed in (("1e-4", 1), ("0", 2)):
        (call,) = [c for c in trains if f"actor_rollout_ref.actor.optim.lr={lr} " in c]
        assert f"data.seed={seed} " in call and f"runs/lr{lr}_seed{seed}/checkpoints" in call
        assert "+actor_rollout_ref.rollout.engine_kwargs.vllm.kv_cache_memory_bytes=2147483648" in call
        # the file logger's path reaches the actors of a joined cluster through Ray's runtime env
        logger_path = lc.dir / "runs" / f"lr{lr}_seed{seed}" / "metrics.jsonl"
        assert f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={logger_path} " in call
        assert json.loads((lc.dir / "runs" / f"lr{lr}_seed{seed}" / "summary.json").read_text())["passed"]
    # run 1 starts its own cluster (no address); run 2 joins the one started for it, with Ray's token
    assert sorted(lc.env_lines)[0] == "env RAY_ADDRESS= RAY_AUTH_MODE="
    joined = sorted(lc.env_lines)[1]
    assert joined.startswith("env RAY_ADDRESS=") and joined.endswith("RAY_AUTH_MODE=token") and ":" in joined
    assert "reward mean +0.3000 spread 0.0000" in res.stdout
    assert (lc.dir / "runs" / "reward_curves.png").stat().st_size > 20_000  # every run's curves on one figure
