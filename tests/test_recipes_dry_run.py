"""Every recipe, dry-run as CI runs it: composed against the installed verl's real Hydra config,
checked by the preflight, and validated again here through verl's own config dataclasses.

The dry runs are separate processes (each imports verl, ~6 s of CPU); one session fixture runs
them all, a few side by side, and the tests read their results.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from _recipes_support import RECIPES, bundled_sample, recipe_args, recipe_env

# Keep the two-core CI machine's process count sane while the dry runs run side by side.
MAX_PARALLEL = int(os.environ.get("RECIPES_TEST_PARALLEL", "4"))
_env = recipe_env


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    return bundled_sample(tmp_path_factory)


@pytest.fixture(scope="session")
def dry_runs(sample_data, tmp_path_factory, tiny_model_dir) -> dict[str, subprocess.CompletedProcess]:
    """Run every dry run once, a few at a time; ``{name: CompletedProcess}``."""
    tmp = tmp_path_factory.mktemp("recipe_runs")
    # Detection's stage 2 starts from stage 1's merged model: stand the tiny model in for it.
    staged_root = tmp / "staged"
    stage1 = staged_root / "verl_perception" / "coco_detection" / "stage1"
    stage1.mkdir(parents=True)
    (stage1 / "hf").symlink_to(tiny_model_dir)
    data = dict(DATA_DIR=sample_data)
    jobs = {
        "refcoco_grounding": (["refcoco_grounding.sh", "trainer.total_epochs=2"], _env(tmp, **data)),
        "pixmo_counting": (["pixmo_counting.sh"], _env(tmp, **data)),
        "pageocr": (["pageocr.sh"], _env(tmp, **data)),
        # all stages; stage 1's merged model already exists (the stand-in), so stage 2 trains from it
        "coco_detection": (["coco_detection.sh"], _env(tmp, CKPT_ROOT=staged_root, **data)),
        "smoke": (["smoke.sh"], _env(tmp, SMOKE_DIR=tmp / "smoke")),
        # generated data, a few rows; the warm-started model is pending (built by the recipe's first phase)
        "learning_check": (["learning_check.sh"], _env(tmp, LC_DIR=tmp / "lc", TRAIN_ROWS=16, VAL_ROWS=8,
                                                       DATA_WORKERS=1)),
        "wrong_key": (["pixmo_counting.sh", "actor_rollout_ref.actor.no_such_key=1"], _env(tmp, **data)),
        "dynamic_sampling": (["refcoco_grounding.sh"], _env(tmp, DYNAMIC_SAMPLING=1, **data)),
    }
    results: dict[str, subprocess.CompletedProcess] = {}
    pending = list(jobs.items())
    running: dict[str, subprocess.Popen] = {}
    while pending or running:
        while pending and len(running) < MAX_PARALLEL:
            name, (argv, env) = pending.pop(0)
            script, *args = argv
            running[name] = subprocess.Popen(
                ["bash", str(RECIPES / script), *args],
                cwd=tmp,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        name = next(iter(running))
        proc = running.pop(name)
        out, err = proc.communicate(timeout=600)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


def _ok(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0, f"dry run failed ({run.returncode}):\n{run.stderr[-4000:]}"
    assert "preflight: all checks passed" in run.stderr, run.stderr[-4000:]


def _configs(run: subprocess.CompletedProcess) -> list[dict]:
    """The YAML documents main_ppo --cfg job printed (one per stage)."""
    docs, cur = [], []
    for line in run.stdout.splitlines():
        if line.startswith("model_engine:") and cur:  # first key of verl's ppo_trainer config
            docs.append("\n".join(cur))
            cur = []
        cur.append(line)
    if cur:
        docs.append("\n".join(cur))
    return [yaml.safe_load(d) for d in docs]


SINGLE = ["refcoco_grounding", "pixmo_counting", "pageocr"]


@pytest.mark.parametrize("name", SINGLE + ["coco_detection", "smoke", "learning_check"])
def test_recipe_dry_run_passes_preflight(dry_runs, name):
    _ok(dry_runs[name])


@pytest.mark.parametrize("name", SINGLE + ["coco_detection", "smoke", "learning_check"])
def test_recipe_is_grpo_vllm_fsdp_with_perception_pieces(dry_runs, name, sample_data):
    for cfg in _configs(dry_runs[name]):
        arr = cfg["actor_rollout_ref"]
        assert cfg["algorithm"]["adv_estimator"] == "grpo"
        assert arr["rollout"]["name"] == "vllm"
        assert arr["actor"]["strategy"] == "fsdp" and arr["ref"]["strategy"] == "fsdp"
        assert cfg["reward"]["reward_manager"]["name"] == "perception"
        assert cfg["data"]["custom_cls"] == {
            "path": "pkg://verl_perception.dataset",
            "name": "PerceptionRLHFDataset",
        }
        files = cfg["data"]["train_files"] + cfg["data"]["val_files"]
        assert files and all(Path(f).is_file() for f in files), files


def test_single_stage_recipes_print_one_config(dry_runs):
    for name in SINGLE + ["smoke"]:
        assert len(_configs(dry_runs[name])) == 1, name


def _verl_objects(cfg: dict):
    """Build verl's own config dataclasses from a printed config, as verl's workers do."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    conf = OmegaConf.create(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Disabled critic as algorithm.adv_estimator != gae": intended
        use_critic = need_critic(conf)
    validate_config(conf, use_reference_policy=need_reference_policy(conf), use_critic=use_critic)
    OmegaConf.resolve(conf)
    actor = omega_conf_to_dataclass(conf.actor_rollout_ref.actor)
    rollout = omega_conf_to_dataclass(conf.actor_rollout_ref.rollout)
    algo = omega_conf_to_dataclass(conf.algorithm)
    return conf, actor, rollout, algo


@pytest.mark.parametrize("name", SINGLE + ["coco_detection"])
def test_paper_hyperparameters_reach_verl_dataclasses(dry_runs, name):
    from verl.trainer.config import AlgoConfig
    from verl.workers.config import FSDPActorConfig, RolloutConfig

    from verl_perception.frame import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

    for cfg in _configs(dry_runs[name]):
        conf, actor, rollout, algo = _verl_objects(cfg)
        assert isinstance(actor, FSDPActorConfig) and isinstance(rollout, RolloutConfig)
        assert isinstance(algo, AlgoConfig) and algo.adv_estimator == "grpo"
        assert actor.optim.lr == pytest.approx(1e-6)
        assert actor.use_kl_loss and actor.kl_loss_coef == pytest.approx(0.04)
        assert actor.kl_loss_type == "low_var_kl"
        assert actor.loss_agg_mode == "seq-mean-token-mean"
        assert conf.data.train_batch_size == 14 and actor.ppo_mini_batch_size == 14
        assert rollout.top_p == pytest.approx(0.9) and rollout.top_k == 50
        assert conf.data.max_prompt_length == 2048 and rollout.prompt_length == 2048
        assert rollout.response_length == conf.data.max_response_length
        assert conf.data.mm_processor_kwargs == {"min_pixels": DEFAULT_MIN_PIXELS, "max_pixels": DEFAULT_MAX_PIXELS}
        assert conf.trainer.n_gpus_per_node == 8 and conf.trainer.nnodes == 1


def test_task_specific_values(dry_runs):
    g = _configs(dry_runs["refcoco_grounding"])[0]
    assert g["data"]["max_response_length"] == 768 and g["data"]["train_max_samples"] == 5000
    c = _configs(dry_runs["pixmo_counting"])[0]
    assert c["data"]["max_response_length"] == 768 and c["data"]["train_max_samples"] == 10000
    assert _configs(dry_runs["pageocr"])[0]["data"]["max_response_length"] == 2048


def test_extra_hydra_overrides_pass_through_and_win(dry_runs):
    assert _configs(dry_runs["refcoco_grounding"])[0]["trainer"]["total_epochs"] == 2
    assert _configs(dry_runs["pixmo_counting"])[0]["trainer"]["total_epochs"] == 1


def test_detection_is_multi_stage_chained(dry_runs):
    run = dry_runs["coco_detection"]
    stage1, stage2 = _configs(run)
    assert stage1["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert stage1["actor_rollout_ref"]["rollout"]["n"] == 8
    assert stage2["actor_rollout_ref"]["rollout"]["n"] == 16
    # stage 2 trains (policy and KL reference) from stage 1's merged weights, in its own directory
    assert stage2["actor_rollout_ref"]["model"]["path"].endswith("coco_detection/stage1/hf")
    assert stage1["trainer"]["default_local_dir"].endswith("coco_detection/stage1")
    assert stage2["trainer"]["default_local_dir"].endswith("coco_detection/stage2")
    # the stand-in stage-1 model is on disk: verl's HFModelConfig loaded it and its tokenizer counted
    assert "counted with the model's tokenizer" in run.stderr


def test_detection_stage_before_its_predecessor_is_pending_in_dry_run(tmp_path, sample_data):
    run = subprocess.run(
        ["bash", str(RECIPES / "coco_detection.sh")],
        cwd=tmp_path,
        env=_env(tmp_path, DRY_RUN="args", STAGE=2, DATA_DIR=sample_data, MIN_PIXELS=3136, MAX_PIXELS=1003520),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
    assert "written when stage 1 finishes" in run.stderr.decode()
    args = [a.decode() for a in run.stdout.split(b"\0") if a]
    models = [a for a in args if a.startswith("actor_rollout_ref.model.path=")]
    assert len(models) == 1 and models[0].endswith("coco_detection/stage1/hf")
    assert "actor_rollout_ref.rollout.n=16" in args


def test_smoke_builds_tiny_model_and_sample_offline(dry_runs):
    run = dry_runs["smoke"]
    assert "BUNDLED SAMPLE" in run.stderr  # said loudly
    (cfg,) = _configs(run)
    assert cfg["trainer"]["n_gpus_per_node"] == 1 and cfg["trainer"]["total_training_steps"] == 2
    model = Path(cfg["actor_rollout_ref"]["model"]["path"])
    assert (model / "config.json").is_file() and (model / "processor_config.json").is_file()
    assert len(cfg["data"]["train_files"]) == 4  # all four tasks
    assert "counted with the model's tokenizer" in run.stderr


def test_learning_check_trains_the_warm_start_on_the_generated_task(dry_runs, tmp_path_factory):
    run = dry_runs["learning_check"]
    assert "warm start pending (dry run)" in run.stderr and "--target-miou" in run.stderr
    (cfg,) = _configs(run)
    arr, trainer = cfg["actor_rollout_ref"], cfg["trainer"]
    assert arr["model"]["path"].endswith("lc/warm_start")
    assert [Path(f).parent.name for f in cfg["data"]["train_files"] + cfg["data"]["val_files"]] == [
        "synthetic_shapes", "synthetic_shapes"]  # fmt: skip
    # attention from common.sh's ATTN_IMPL=auto: flash_attention_2 if flash-attn is here, else the packed
    # attention on torch's varlen kernel (torch >= 2.10, as in the test venv), both with padding removal
    flash = importlib.util.find_spec("flash_attn") is not None
    varlen = importlib.util.find_spec("torch.nn.attention.varlen") is not None
    expected = "flash_attention_2" if flash else ("flash_varlen_torch" if varlen else "sdpa")
    assert arr["model"]["override_config"]["attn_implementation"] == expected
    assert arr["model"]["use_remove_padding"] is (expected != "sdpa")
    assert trainer["n_gpus_per_node"] == 1 and trainer["val_before_train"] is True
    assert trainer["total_training_steps"] == 10 and trainer["test_freq"] == 5
    assert "file" in trainer["logger"] and cfg["data"]["seed"] == 1
    _verl_objects(cfg)  # verl's own dataclasses accept it


def test_dynamic_sampling_composes_and_passes_preflight(dry_runs):
    run = dry_runs["dynamic_sampling"]
    _ok(run)
    (cfg,) = _configs(run)
    groups = cfg["algorithm"]["filter_groups"]
    assert groups["enable"] is True and groups["metric"] == "score"
    assert cfg["trainer"]["v1"]["sampler"]["custom_sampler"]["name"] == "PerceptionReplayBuffer"
    _verl_objects(cfg)  # verl's own dataclasses accept it


@pytest.mark.parametrize("recipe", ["refcoco_grounding.sh", "pixmo_counting.sh", "pageocr.sh", "coco_detection.sh",
                                    "smoke.sh"])
def test_dynamic_sampling_flag_reaches_every_recipe(tmp_path, sample_data, recipe):
    on = recipe_args(recipe, tmp_path, DATA_DIR=sample_data, DYNAMIC_SAMPLING=1, MIN_PIXELS=3136, MAX_PIXELS=1003520)
    off = recipe_args(recipe, tmp_path, DATA_DIR=sample_data, MIN_PIXELS=3136, MAX_PIXELS=1003520)
    flags = ["algorithm.filter_groups.enable=True", "algorithm.filter_groups.metric=score"]
    assert on.count(flags[0]) == on.count(flags[1]) >= 1 and not set(flags) & set(off)
    assert [a for a in on if a not in flags] == off
    run = _quick(tmp_path, str(RECIPES / recipe), DYNAMIC_SAMPLING="yes", DATA_DIR=sample_data)
    assert run.returncode == 1 and "DYNAMIC_SAMPLING must be 0 or 1" in run.stderr


def test_wrong_hydra_key_fails(dry_runs):
    run = dry_runs["wrong_key"]
    assert run.returncode != 0
    assert "no_such_key" in run.stderr
    assert "preflight: all checks passed" not in run.stderr


def _quick(tmp_path, *args, **env):
    """Recipe runs that stop in the shell before any Python heavy lifting."""
    e = _env(tmp_path, **{"MIN_PIXELS": 3136, "MAX_PIXELS": 1003520, "N_GPUS_PER_NODE": 8, "ATTN_IMPL": "sdpa", **env})
    return subprocess.run(["bash", *args], cwd=tmp_path, env=e, capture_output=True, text=True, timeout=60, check=False)


def test_detection_rejects_unknown_stage(tmp_path, sample_data):
    run = _quick(tmp_path, str(RECIPES / "coco_detection.sh"), STAGE=7, DATA_DIR=sample_data)
    assert run.returncode == 1 and "STAGE must be 'all' or 1..2" in run.stderr


def test_detection_stage2_needs_stage1_checkpoint(tmp_path, sample_data):
    run = _quick(tmp_path, str(RECIPES / "coco_detection.sh"), STAGE=2, DRY_RUN=0, DATA_DIR=sample_data)
    assert run.returncode == 1
    assert "run STAGE=1 first" in run.stderr


def test_dry_run_args_mode_prints_the_overrides(tmp_path, sample_data):
    args = recipe_args("pixmo_counting.sh", tmp_path, "trainer.total_epochs=3", DATA_DIR=sample_data)
    assert "algorithm.adv_estimator=grpo" in args
    assert args[-1] == "trainer.total_epochs=3"  # pass-through overrides come last
    assert any(a.startswith("data.train_files=") and "pixmo_count/train.parquet" in a for a in args)


def test_dry_run_value_is_checked(tmp_path, sample_data):
    run = _quick(tmp_path, str(RECIPES / "pageocr.sh"), DRY_RUN="yes", DATA_DIR=sample_data)
    assert run.returncode == 1 and "DRY_RUN must be 0, 1 or args" in run.stderr


def test_latest_step_reads_verl_tracker(tmp_path):
    ckpt = tmp_path / "ckpt"
    (ckpt / "global_step_40" / "actor").mkdir(parents=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("40\n")
    script = f'source "{RECIPES / "common.sh"}"; latest_step "{ckpt}"; echo; latest_step "{tmp_path / "none"}"; echo end'
    run = _quick(tmp_path, "-c", script)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["40", "end"]


FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for python in a non-dry recipe run: records the call, fakes verl's checkpoint layout.
printf '%s\\n' "$*" >> "$FAKE_LOG"
if [[ "$1" == -m && "$2" == verl.trainer.main_ppo ]]; then
    for a in "$@"; do case "$a" in trainer.default_local_dir=*) dir="${a#*=}" ;; esac; done
    mkdir -p "$dir/global_step_3/actor" && echo 3 > "$dir/latest_checkpointed_iteration.txt"
    exit 0
fi
if [[ "$1" == -m && "$2" == verl.model_merger ]]; then
    while (($#)); do [[ "$1" == --target_dir ]] && target="$2"; shift; done
    mkdir -p "$target" && echo '{}' > "$target/config.json"
    exit 0
fi
exec "$REAL_PYTHON" "$@"
"""


def test_detection_stages_train_merge_and_chain(tmp_path, sample_data):
    """The non-dry path: each stage trains, its newest checkpoint is merged with verl's model merger,
    and the next stage starts from the merged model; finished stages are skipped on a re-run."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    env = dict(
        DRY_RUN=0, SKIP_PREFLIGHT=1, PYTHON=fake, FAKE_LOG=log, REAL_PYTHON=sys.executable,
        DATA_DIR=sample_data,
    )
    run = _quick(tmp_path, str(RECIPES / "coco_detection.sh"), "trainer.save_freq=7", **env)
    assert run.returncode == 0, run.stderr
    calls = log.read_text().splitlines()
    assert [c.split()[1] for c in calls] == [
        "verl.trainer.main_ppo", "verl.model_merger", "verl.trainer.main_ppo", "verl.model_merger",
    ]
    root = tmp_path / "checkpoints" / "verl_perception" / "coco_detection"
    train1, merge1, train2, merge2 = calls
    assert "actor_rollout_ref.model.path=Qwen/Qwen2.5-VL-3B-Instruct" in train1.split()
    assert f"--local_dir {root}/stage1/global_step_3/actor --target_dir {root}/stage1/hf" in merge1
    assert f"actor_rollout_ref.model.path={root}/stage1/hf" in train2.split()
    assert "actor_rollout_ref.rollout.n=16" in train2.split()
    assert train1.split()[-1] == train2.split()[-1] == "trainer.save_freq=7"  # pass-through, last
    assert f"--target_dir {root}/stage2/hf" in merge2

    log.unlink()
    again = _quick(tmp_path, str(RECIPES / "coco_detection.sh"), **env)
    assert again.returncode == 0 and "stage 2 already finished" in again.stderr
    assert not log.exists()  # nothing trained or merged again


def test_single_task_recipe_checks_then_trains_with_the_same_overrides(tmp_path, sample_data):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON.replace('exec "$REAL_PYTHON" "$@"', 'exit 0'))
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    env = dict(DRY_RUN=0, PYTHON=fake, FAKE_LOG=log, DATA_DIR=sample_data)
    run = _quick(tmp_path, str(RECIPES / "pageocr.sh"), "trainer.total_epochs=3", **env)
    assert run.returncode == 0, run.stderr
    check, train = log.read_text().splitlines()
    assert check.startswith("-m verl_perception.preflight -- ")
    assert train.startswith("-m verl.trainer.main_ppo ")
    assert check.split(" -- ", 1)[1] == train.split(" ", 2)[2]  # identical overrides


def test_tiny_mode_runs_every_detection_stage_small(tmp_path):
    """TINY=1: one GPU, the tiny model and the bundled sample, small batches that win over the
    stages' own settings, and the command line still last."""
    env = _env(tmp_path, DRY_RUN="args", TINY=1, TINY_DIR=tmp_path / "tiny", MIN_PIXELS=3136, MAX_PIXELS=1003520,
               ATTN_IMPL="sdpa")  # fmt: skip
    env.pop("N_GPUS_PER_NODE", None)  # TINY's own default: 1
    run = subprocess.run(["bash", str(RECIPES / "coco_detection.sh"), "trainer.save_freq=1"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    flat = [a for a in run.stdout.split("\0") if a]
    starts = [i for i, a in enumerate(flat) if a == "algorithm.adv_estimator=grpo"]  # each stage's first
    assert len(starts) == 2
    for k, (i, j) in enumerate(zip(starts, [*starts[1:], len(flat)]), 1):
        args = flat[i:j]
        assert args[-1] == "trainer.save_freq=1"
        get = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args}
        assert get["trainer.n_gpus_per_node"] == "1" and get["trainer.total_training_steps"] == "1"
        assert get["actor_rollout_ref.rollout.n"] == "2"  # over stage 2's 16: the last value wins in Hydra
        assert [a for a in args if a.startswith("actor_rollout_ref.rollout.n=")][-1] == "actor_rollout_ref.rollout.n=2"
        assert get["data.filter_overlong_prompts"] == "False"
        assert f"{tmp_path}/tiny/data/bundled_sample_qwen2_5_vl_3136_50176/coco/train.parquet" in get["data.train_files"]
        want = f"{tmp_path}/tiny/tiny_qwen2_5_vl_3136_50176" if k == 1 else "/stage1/hf"
        assert get["actor_rollout_ref.model.path"].endswith(want)
        assert get["+data.mm_processor_kwargs.max_pixels"] == "50176"


def test_tiny_smoke_on_two_gpus_passes_the_config_checks(tmp_path):
    """The two-GPU smoke configuration (FSDP over 2 ranks, 8 responses split 4 + 4) composes and
    passes every config check here; the machine checks are notes in a dry run."""
    run = subprocess.run(
        ["bash", str(RECIPES / "smoke.sh")], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
        env=_env(tmp_path, SMOKE_DIR=tmp_path / "smoke", N_GPUS_PER_NODE=2),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    (cfg,) = _configs(run)
    assert cfg["trainer"]["n_gpus_per_node"] == 2
    assert "preflight: all checks passed" in run.stderr
