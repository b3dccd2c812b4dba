"""Each preflight check: it passes on a recipe's real config and fails, naming the setting to change,
when that setting is wrong. The base config is composed in-process from the exact overrides
recipes/pixmo_counting.sh passes to main_ppo."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _recipes_support import bundled_sample, cfg_with, recipe_args
from omegaconf import OmegaConf

from verl_perception import preflight
from verl_perception.frame import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    return bundled_sample(tmp_path_factory)


@pytest.fixture(scope="session")
def base_cfg(sample_data, tmp_path_factory):
    """The pixmo_counting recipe's config as a plain dict (unresolved, as main_ppo receives it)."""
    args = recipe_args("pixmo_counting.sh", tmp_path_factory.mktemp("preflight_args"), DATA_DIR=sample_data)
    return OmegaConf.to_container(preflight.compose(args))


def _settings(report):
    return {p.setting for p in report.problems}


def _problem(report, setting):
    hits = [p for p in report.problems if p.setting == setting]
    assert hits, f"no problem for {setting!r}; got {[str(p) for p in report.problems]}"
    return hits[0]


def test_recipe_config_passes(base_cfg):
    # dry run: this CPU machine's lack of GPUs and vLLM are notes, the config itself is clean
    report = preflight.run_checks(cfg_with(base_cfg), dry_run=True)
    assert report.ok, [str(p) for p in report.problems]
    assert any(n.startswith("prompt budget:") for n in report.notes)


def test_prompt_too_short_for_image_tokens(base_cfg):
    report = preflight.run_checks(cfg_with(base_cfg, data__max_prompt_length=1024))
    p = _problem(report, "data.max_prompt_length")
    assert f"{DEFAULT_MAX_PIXELS // 784} image tokens" in p.message
    assert "raise it to at least" in p.message and "lower MAX_PIXELS" in p.message


def test_prompt_budget_counts_image_tokens_from_max_pixels(base_cfg):
    # a budget that holds the text alone but not 1280 image tokens fails; halving max_pixels would fit
    report = preflight.Report()
    rows = preflight.read_rows(base_cfg["data"]["train_files"][0], 4)
    big = preflight.PixelBounds(DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS, "test")
    small = preflight.PixelBounds(DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS // 2, "test")
    conf = cfg_with(base_cfg, data__max_prompt_length=1000)
    preflight.check_prompt_length(conf, rows, big, report)
    assert "data.max_prompt_length" in _settings(report)
    report = preflight.Report()
    preflight.check_prompt_length(conf, rows, small, report)
    assert report.ok


def test_processor_max_pixels_below_parquet_frame(base_cfg):
    report = preflight.run_checks(cfg_with(base_cfg, data__mm_processor_kwargs__max_pixels=256 * 784))
    stated = _problem(report, "MAX_PIXELS (data.mm_processor_kwargs.max_pixels)")
    assert f"preprocessed with max_pixels={DEFAULT_MAX_PIXELS}" in stated.message
    frame = _problem(report, "MIN_PIXELS/MAX_PIXELS (data.mm_processor_kwargs)")
    assert "the model would see" in frame.message and "--max-pixels 200704" in frame.message
    assert f"(min_pixels={DEFAULT_MIN_PIXELS}, max_pixels={DEFAULT_MAX_PIXELS})" in frame.message


def test_processor_min_pixels_disagrees_with_parquet(base_cfg):
    report = preflight.run_checks(cfg_with(base_cfg, data__mm_processor_kwargs__min_pixels=8 * 784))
    p = _problem(report, "MIN_PIXELS (data.mm_processor_kwargs.min_pixels)")
    assert f"min_pixels={DEFAULT_MIN_PIXELS}" in p.message


def test_larger_processor_bound_keeps_pinned_frame_but_is_reported(base_cfg):
    # the parquet pins its frames, so a larger processor bound does not resize them; the stated
    # bounds still disagree, which the user must resolve (it changes the prompt budget too)
    report = preflight.run_checks(cfg_with(base_cfg, data__mm_processor_kwargs__max_pixels=2 * DEFAULT_MAX_PIXELS))
    assert "MAX_PIXELS (data.mm_processor_kwargs.max_pixels)" in _settings(report)
    assert "MIN_PIXELS/MAX_PIXELS (data.mm_processor_kwargs)" not in _settings(report)


def test_repinned_frames_are_checked_against_the_processor(base_cfg):
    # the adapter's re-pin to a smaller budget is consistent with an equal processor bound ...
    lo, hi = DEFAULT_MIN_PIXELS, 256 * 784
    ok = preflight.run_checks(
        cfg_with(base_cfg, data__perception_max_pixels=hi, data__mm_processor_kwargs__max_pixels=hi), dry_run=True
    )
    assert ok.ok, [str(p) for p in ok.problems]
    # ... but not with a processor that shrinks the re-pinned frame again
    bad = preflight.run_checks(
        cfg_with(base_cfg, data__perception_max_pixels=hi, data__mm_processor_kwargs__max_pixels=64 * 784)
    )
    assert "MIN_PIXELS/MAX_PIXELS (data.mm_processor_kwargs)" in _settings(bad)
    assert lo == DEFAULT_MIN_PIXELS


def test_missing_input_size_is_reported(base_cfg, tmp_path):
    src = base_cfg["data"]["train_files"][0]
    table = pq.read_table(src)
    rows = table.to_pylist()
    for r in rows:
        r["extra_info"]["input_size"] = None
    out = tmp_path / "train.parquet"
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), out)
    report = preflight.Report()
    bounds = preflight.PixelBounds(DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS, "test")
    preflight.check_frames(preflight.read_rows(str(out), 2), bounds, report)
    p = _problem(report, "data preprocessing")
    assert "extra_info.input_size is missing" in p.message


def test_unregistered_reward_manager(base_cfg):
    report = preflight.run_checks(cfg_with(base_cfg, reward__reward_manager__name="perceptoin"))
    p = _problem(report, "reward.reward_manager.name")
    assert "'perceptoin' is not registered" in p.message and "perception" in p.message


def test_unknown_reward_option(base_cfg):
    report = preflight.run_checks(cfg_with(base_cfg, reward__reward_kwargs__detection__iou_wieght=2.0))
    p = _problem(report, "reward.reward_kwargs")
    assert "iou_wieght" in p.message


def test_known_reward_option_passes(base_cfg):
    report = preflight.run_checks(cfg_with(base_cfg, reward__reward_kwargs__detection__iou_weight=2.0))
    assert "reward.reward_kwargs" not in _settings(report)


def test_dataset_adapter_must_resolve(base_cfg):
    report = preflight.run_checks(cfg_with(base_cfg, data__custom_cls__name="NoSuchDataset"))
    p = _problem(report, "data.custom_cls")
    assert "NoSuchDataset" in p.message


def test_verl_validate_config_failure_is_reported(base_cfg):
    # static batching without a micro batch size: verl's ActorConfig refuses it
    report = preflight.run_checks(cfg_with(base_cfg, actor_rollout_ref__actor__use_dynamic_bsz=False))
    p = _problem(report, "verl validate_config")
    assert "ppo_micro_batch_size" in p.message


def test_batch_must_split_over_gpus(base_cfg):
    report = preflight.run_checks(cfg_with(base_cfg, trainer__n_gpus_per_node=3))
    p = _problem(report, "data.train_batch_size")
    assert "112 responses" in p.message and "3 GPUs" in p.message


def test_token_budget_must_hold_one_sequence(base_cfg):
    report = preflight.run_checks(cfg_with(base_cfg, actor_rollout_ref__actor__ppo_max_token_len_per_gpu=1024))
    p = _problem(report, "actor_rollout_ref.actor.ppo_max_token_len_per_gpu")
    assert "2816" in p.message  # 2048 prompt + 768 response


def test_tensor_parallel_must_divide_gpus(base_cfg):
    report = preflight.run_checks(cfg_with(base_cfg, actor_rollout_ref__rollout__tensor_model_parallel_size=3))
    assert "actor_rollout_ref.rollout.tensor_model_parallel_size" in _settings(report)


def test_missing_parquet(base_cfg, tmp_path):
    report = preflight.run_checks(cfg_with(base_cfg, data__train_files=[str(tmp_path / "nope.parquet")]))
    p = _problem(report, "data.train_files")
    assert "nope.parquet" in p.message and "DATA_DIR" in p.message


def test_local_model_path_must_be_a_model(base_cfg, tmp_path):
    report = preflight.run_checks(cfg_with(base_cfg, actor_rollout_ref__model__path=str(tmp_path)))
    assert "MODEL_PATH (actor_rollout_ref.model.path)" in _settings(report)
    pending = preflight.run_checks(cfg_with(base_cfg, actor_rollout_ref__model__path=str(tmp_path)), pending_model=True)
    assert "MODEL_PATH (actor_rollout_ref.model.path)" not in _settings(pending)


def test_processor_bounds_come_from_local_preprocessor_config(base_cfg, tiny_processor_dir_factory):
    path = tiny_processor_dir_factory(DEFAULT_MIN_PIXELS, 256 * 784)
    conf = cfg_with(base_cfg, actor_rollout_ref__model__path=path)
    del conf.data.mm_processor_kwargs["max_pixels"]
    bounds = preflight.effective_pixel_bounds(conf, preflight.Report())
    assert bounds.max_pixels == 256 * 784 and "processor_config.json" in bounds.source


def test_estimate_over_counts_the_real_tokenizer(base_cfg, tiny_processor_dir_factory, sample_data):
    """The no-tokenizer estimate is conservative on every task's instruction (real Qwen2.5 BPE)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_processor_dir_factory())
    for task in ("coco", "refcoco", "pixmo_count", "pageocr"):
        for row in preflight.read_rows(str(sample_data / task / "train.parquet"), 4):
            counted, how = preflight.instruction_tokens(row.messages, tok)
            estimated, how_est = preflight.instruction_tokens(row.messages, None)
            assert how.startswith("counted") and how_est.startswith("estimated")
            assert estimated >= counted > 10, (task, estimated, counted)


def test_cli_exit_2_names_each_problem(base_cfg, capsys, tmp_path):
    args = recipe_args("pixmo_counting.sh", tmp_path, "data.max_prompt_length=900",
                       DATA_DIR=Path(base_cfg["data"]["train_files"][0]).parents[1])
    assert preflight.main(["--dry-run", "--", *args]) == 2  # dry run: only the config's own problems
    err = capsys.readouterr().err
    assert "preflight: 1 problem(s); change the named setting:" in err
    assert "[data.max_prompt_length]" in err


def test_cli_overrides_that_do_not_compose_exit_1(capsys):
    assert preflight.main(["--", "data.no_such_key=1"]) == 1
    assert "no_such_key" in capsys.readouterr().err


def test_read_rows_sees_stated_bounds(sample_data):
    (row,) = preflight.read_rows(str(sample_data / "coco" / "val.parquet"), 1)
    assert row.stated_bounds == (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
    assert row.input_size is not None and row.orig_size is not None
    assert row.images and "resized_height" in row.images[0]
    assert json.dumps(row.messages)  # plain data


def test_verl_rollout_dataclass_rejection_is_reported(base_cfg):
    # older verl recipes set rollout.mode=sync, which verl 0.9's RolloutConfig refuses
    report = preflight.run_checks(cfg_with(base_cfg, actor_rollout_ref__rollout__mode="sync"))
    p = _problem(report, "actor_rollout_ref.rollout")
    assert "Rollout mode 'sync' has been removed" in p.message


def test_mini_batch_must_divide_the_batch(base_cfg):
    report = preflight.run_checks(cfg_with(base_cfg, actor_rollout_ref__actor__ppo_mini_batch_size=4))
    p = _problem(report, "actor_rollout_ref.actor.ppo_mini_batch_size")
    assert "train_batch_size=14 is not a multiple of ppo_mini_batch_size=4" in p.message


def test_min_pixels_above_max_pixels(base_cfg):
    report = preflight.Report()
    conf = cfg_with(base_cfg, data__mm_processor_kwargs__min_pixels=2 * DEFAULT_MAX_PIXELS)
    preflight.effective_pixel_bounds(conf, report)
    assert "exceeds max_pixels" in _problem(report, "data.mm_processor_kwargs.min_pixels").message


def test_unreadable_parquet(base_cfg, tmp_path):
    bad = tmp_path / "train.parquet"
    bad.write_bytes(b"not a parquet file")
    report = preflight.run_checks(cfg_with(base_cfg, data__train_files=[str(bad)]))
    assert "is not a readable parquet file" in _problem(report, "data.train_files").message


def test_undecodable_image(base_cfg):
    (row,) = preflight.read_rows(base_cfg["data"]["train_files"][0], 1)
    broken = preflight.Row(**{**row.__dict__, "images": ({**row.images[0], "bytes": b"\x89PNG garbage"},)})
    report = preflight.Report()
    bounds = preflight.PixelBounds(DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS, "test")
    preflight.check_frames([broken], bounds, report)
    assert "stored image cannot be decoded" in _problem(report, "data preprocessing").message


def test_plugin_entry_point_loads_in_this_install():
    assert preflight._load_plugin_entry_point() is None


def test_plugin_import_error_is_shown_not_swallowed(base_cfg, monkeypatch):
    monkeypatch.setattr(preflight, "_load_plugin_entry_point", lambda: ImportError("No module named 'scipy'"))
    report = preflight.Report()
    preflight.check_reward_manager(cfg_with(base_cfg, reward__reward_manager__name="not_registered"), report)
    p = _problem(report, "reward.reward_manager.name")
    assert "the plugin failed to import: ImportError: No module named 'scipy'" in p.message


# ----------------------------------------------------------------------------------------------
# the machine: what killed real runs after Ray had started


def _machine(cfg, gpus=8):
    report = preflight.Report()
    preflight.check_runtime(cfg, report, gpus=gpus)
    return report


def _without(monkeypatch, *modules):
    real = preflight.module_installed
    monkeypatch.setattr(preflight, "module_installed", lambda name: name not in modules and real(name))


def test_gpus_asked_for_must_exist(base_cfg, monkeypatch):
    monkeypatch.setattr(preflight, "module_installed", lambda name: True)
    cfg = cfg_with(base_cfg)  # the recipe's 8 GPUs on one node
    assert cfg.trainer.n_gpus_per_node == 8 and cfg.trainer.nnodes == 1
    p = _problem(_machine(cfg, gpus=0), "N_GPUS_PER_NODE (trainer.n_gpus_per_node)")
    assert "no visible CUDA device" in p.message and "DRY_RUN=1" in p.message
    p = _problem(_machine(cfg, gpus=2), "N_GPUS_PER_NODE (trainer.n_gpus_per_node)")
    assert "asks for 8 GPUs" in p.message and "N_GPUS_PER_NODE=2" in p.message
    assert _machine(cfg, gpus=8).ok
    # several nodes: the other nodes' GPUs are Ray's to count
    assert _machine(cfg_with(base_cfg, trainer__nnodes=2), gpus=0).ok


def test_v1_trainer_needs_transfer_queue(base_cfg, monkeypatch):
    monkeypatch.setattr(preflight, "module_installed", lambda name: name != "transfer_queue")
    cfg = cfg_with(base_cfg)
    assert cfg.trainer.use_v1  # verl 0.9.1's default path
    p = _problem(_machine(cfg), "trainer.use_v1")
    assert "TransferQueue" in p.message and "verl[verl-core]" in p.message
    assert _machine(cfg_with(base_cfg, trainer__use_v1=False)).ok


def test_transfer_queue_is_installed_by_the_verl_extra():
    # what `pip install -e ".[verl]"` brings: the real check passes in the test environment
    assert preflight.module_installed("transfer_queue")


def test_vllm_rollout_needs_vllm(base_cfg, monkeypatch):
    monkeypatch.setattr(preflight, "module_installed", lambda name: name != "vllm")
    p = _problem(_machine(cfg_with(base_cfg)), "actor_rollout_ref.rollout.name")
    assert "needs vllm" in p.message and "verl-perception[gpu]" in p.message


def test_flash_attention_needs_flash_attn(base_cfg, monkeypatch):
    monkeypatch.setattr(preflight, "module_installed", lambda name: name != "flash_attn")
    setting = "ATTN_IMPL (actor_rollout_ref.model.override_config.attn_implementation)"
    # verl's defaults: padding removal and flash_attention_2
    cfg = cfg_with(base_cfg, actor_rollout_ref__model__use_remove_padding=True)
    cfg.actor_rollout_ref.model.override_config.pop("attn_implementation", None)
    p = _problem(_machine(cfg), setting)
    assert "use_remove_padding=True and attn_implementation=flash_attention_2 need flash-attn" in p.message
    assert "ATTN_IMPL=sdpa" in p.message and all(o in p.message for o in preflight.SDPA_OVERRIDES)
    # the sdpa overrides the message names are enough
    fixed = cfg_with(base_cfg, actor_rollout_ref__model__use_remove_padding=False,
                 actor_rollout_ref__model__override_config__attn_implementation="sdpa")  # fmt: skip
    assert _machine(fixed).ok
    assert "ATTN_IMPL=flash_varlen_torch" in p.message
    # with flash-attn installed the defaults pass
    monkeypatch.setattr(preflight, "module_installed", lambda name: True)
    assert _machine(cfg).ok


def test_packed_attention_needs_torch_varlen_not_flash_attn(base_cfg, monkeypatch):
    setting = "ATTN_IMPL (actor_rollout_ref.model.override_config.attn_implementation)"
    cfg = cfg_with(base_cfg, actor_rollout_ref__model__use_remove_padding=True,
               actor_rollout_ref__model__override_config__attn_implementation=preflight.PACKED_ATTENTION)  # fmt: skip
    monkeypatch.setattr(preflight, "module_installed", lambda name: name != "flash_attn")
    assert _machine(cfg).ok  # padding removal without flash-attn
    monkeypatch.setattr(preflight, "module_installed", lambda name: name != "torch.nn.attention.varlen")
    p = _problem(_machine(cfg), setting)
    assert "torch >= 2.10" in p.message and "ATTN_IMPL=sdpa" in p.message


def test_preflight_names_the_registered_packed_attention():
    from verl_perception.packed_attention import NAME

    assert preflight.PACKED_ATTENTION == NAME


def test_dry_run_reports_the_machine_as_notes(base_cfg, monkeypatch):
    monkeypatch.setattr(preflight, "visible_gpus", lambda: 0)
    report = preflight.run_checks(cfg_with(base_cfg), dry_run=True)
    assert report.ok
    assert any(n.startswith("on this machine the run would fail: [N_GPUS_PER_NODE") for n in report.notes)
    report = preflight.run_checks(cfg_with(base_cfg))
    assert "N_GPUS_PER_NODE (trainer.n_gpus_per_node)" in _settings(report)


def _dynamic(cfg):
    report = preflight.Report()
    preflight.check_dynamic_sampling(cfg, report)
    return report


def test_dynamic_sampling_is_refused_where_verl_would_ignore_or_fail(base_cfg):
    on = dict(algorithm__filter_groups__enable=True, algorithm__filter_groups__metric="score")
    assert _dynamic(cfg_with(base_cfg, **on)).ok  # the recipes' setting, with our sampler
    assert _dynamic(cfg_with(base_cfg, algorithm__filter_groups__metric="nonsense")).ok  # off: nothing to check
    p = _problem(_dynamic(cfg_with(base_cfg, **on, trainer__v1__sampler__custom_sampler__name="MySampler")),
                 "algorithm.filter_groups")
    assert "would not apply it" in p.message and "PerceptionReplayBuffer" in p.message
    p = _problem(_dynamic(cfg_with(base_cfg, **{**on, "algorithm__filter_groups__metric": "acc"})),
                 "algorithm.filter_groups.metric")
    assert "'acc'" in p.message and "score" in p.message and "iou" in p.message
    for metric in ("reward", "iou", "f1"):  # what the rollouts carry
        assert _dynamic(cfg_with(base_cfg, **{**on, "algorithm__filter_groups__metric": metric})).ok
    p = _problem(_dynamic(cfg_with(base_cfg, **on, algorithm__filter_groups__max_num_gen_batches=4)),
                 "algorithm.filter_groups.max_num_gen_batches")
    assert "max_inflight_gen_batches" in p.message
    p = _problem(_dynamic(cfg_with(base_cfg, **on, reward__reward_model__enable=True)), "algorithm.filter_groups.enable")
    assert "enable_resource_pool" in p.message
    assert preflight.run_checks(cfg_with(base_cfg, **on), dry_run=True).ok

