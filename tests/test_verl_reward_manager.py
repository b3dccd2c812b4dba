"""The perception reward manager through verl's own reward path, on CPU, without Ray.

Configs are composed from verl's real Hydra config (``verl/trainer/config/ppo_trainer.yaml``) with
the overrides a user would type; the manager is built by verl's ``load_reward_manager`` (inside a
real ``RewardLoopWorker`` for the batch test) and the batch is assembled by the real
``RewardLoopManager.compute_rm_score``, with only ``ray.get``/``.remote`` replaced by local calls.
Rollouts are real completions tokenised by the offline Qwen2.5 tokenizer (``tiny_model``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import verl
from verl import DataProto
from verl.experimental.reward_loop import reward_loop as verl_reward_loop
from verl.trainer.ppo.metric_utils import process_validation_metrics
from verl.trainer.ppo.reward import load_reward_manager, resolve_reward_manager_cls

from verl_perception.reward_manager import EXTRA_INFO_KEYS, NOT_APPLICABLE, PerceptionRewardManager
from verl_perception.rewards import TASK_KEYS, RewardConfig, compute_score
from verl_perception.tasks import UnknownTaskError

VERL_CONFIG_DIR = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
INPUT_SIZE = [448, 644]  # [h, w] of the frame the model saw


def compose_verl_config(*overrides: str):
    """verl's ``ppo_trainer`` config with command-line style overrides (as ``main_ppo`` composes it)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=VERL_CONFIG_DIR, version_base=None):
        return compose(config_name="ppo_trainer", overrides=list(overrides))


# (data_source, completion, ground truth, extra_info) -- one mixed-task GRPO batch.
ROWS = [
    (
        "refcoco",
        '```json\n[{"bbox_2d": [44, 58, 196, 310], "label": "man on the left"}]\n```',
        {"bbox": [40, 60, 200, 300]},
        {},
    ),
    ("refcoco+", 'The box is {"bbox_2d": [300, 280, 120, 90], "label": "dog"}. Done.', {"bbox": [100, 100, 290, 300]}, {}),
    (
        "pixmo_count",
        '[{"point_2d": [10, 12], "label": "apple"}, {"point_2d": [50, 52], "label": "apple"}]',
        {"points": [[11, 12], [52, 50], [90, 90]]},
        {},
    ),
    ("pixmo_count", "I can see several apples on the table.", {"points": [[11, 12]]}, {}),
    (
        "pageocr",
        "Chapter 1\nIt was a brigth cold day in April, and the clocks were striking thirteen.",
        {"text": "Chapter 1\nIt was a bright cold day in April, and the clocks were striking thirteen."},
        {},
    ),
    ("pageocr", "Straße — naïve café 東京 ✓", {"text": "Straße - naive café 東京"}, {}),
    (
        "coco",
        '```json\n[{"bbox_2d": [10, 10, 100, 100], "label": "person"}, {"bbox_2d": [200, 200, 300, 310], "label": "dog"},'
        ' {"bbox_2d": [400, 10, 420, 30], "label": "cat"}]\n```',
        {"boxes": [[12, 8, 98, 104], [205, 198, 300, 300]], "labels": ["person", "dog"]},
        {},
    ),
    ("coco", "", {"boxes": [[12, 8, 98, 104]], "labels": ["person"]}, {}),  # the model emitted EOS only
    ("my_referring_set", '{"bbox_2d": [0, 0, 50, 50], "label": "cup"}', {"bbox": [10, 10, 60, 60]}, {"task": "grounding"}),
]


def _extra_info(i: int, data_source: str, extra: dict) -> dict:
    return {"split": "train", "index": i, "input_size": list(INPUT_SIZE), "orig_size": [480, 690], **extra}


def _expected(i: int, config=None) -> dict:
    data_source, completion, gt, extra = ROWS[i]
    return compute_score(data_source, completion, json.dumps(gt), _extra_info(i, data_source, extra), config=config)


def make_batch(tokenizer, rows=ROWS, prompt_len: int = 12) -> tuple[DataProto, list[int]]:
    """A DataProto shaped like a rollout batch: left-padded prompts, right-padded responses that end
    with EOS; returns it and each row's number of valid response tokens.

    Padding uses id 0, as verl's agent loop does when it batches a trajectory for the reward worker:
    it is a real token ("!"), so only the attention mask tells it from the answer."""
    pad, eos = 0, tokenizer.eos_token_id
    assert tokenizer.decode([pad], skip_special_tokens=True) != ""
    prompts, responses = [], []
    for data_source, completion, _, _ in rows:
        p = tokenizer(f"Answer for {data_source}:", add_special_tokens=False)["input_ids"][-prompt_len:]
        prompts.append(p)
        responses.append(tokenizer(completion, add_special_tokens=False)["input_ids"] + [eos])
    response_len = max(map(len, responses)) + 3
    batch = len(rows)
    prompt_ids = torch.full((batch, prompt_len), pad, dtype=torch.long)
    response_ids = torch.full((batch, response_len), pad, dtype=torch.long)
    attention = torch.zeros((batch, prompt_len + response_len), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        prompt_ids[i, prompt_len - len(p) :] = torch.tensor(p)
        attention[i, prompt_len - len(p) : prompt_len] = 1
        response_ids[i, : len(r)] = torch.tensor(r)
        attention[i, prompt_len : prompt_len + len(r)] = 1
    data = DataProto.from_dict(
        tensors={
            "prompts": prompt_ids,
            "responses": response_ids,
            "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
            "attention_mask": attention,
        },
        non_tensors={
            "data_source": np.array([r[0] for r in rows], dtype=object),
            "reward_model": np.array([{"ground_truth": json.dumps(r[2]), "style": "rule"} for r in rows], dtype=object),
            "extra_info": np.array([_extra_info(i, r[0], r[3]) for i, r in enumerate(rows)], dtype=object),
        },
    )
    return data, [len(r) for r in responses]


@pytest.fixture(scope="module")
def tokenizer_dir(tiny_processor_dir_factory) -> str:
    """The offline Qwen2.5 tokenizer (+ processor) directory, shared with the other test files."""
    return tiny_processor_dir_factory()


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from verl.utils import hf_tokenizer

    return hf_tokenizer(tokenizer_dir)


@pytest.fixture
def event_loop_for_verl():
    """The loop verl's reward code captures with ``get_event_loop()`` at construction."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


def _run_single(manager, data: DataProto, i: int) -> dict:
    return manager.loop.run_until_complete(manager.run_single(data[i : i + 1]))


def _check_info(info: dict, expected: dict, task: str) -> None:
    assert tuple(info) == EXTRA_INFO_KEYS
    for key, value in expected.items():
        assert info[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    for key in set(EXTRA_INFO_KEYS) - set(expected) - {"task", "reason"}:
        assert info[key] is NOT_APPLICABLE, key
    assert info["task"] == task
    assert info["reason"] == ""


def test_resolve_reward_manager_cls_on_composed_config():
    config = compose_verl_config("reward.reward_manager.name=perception")
    assert config.reward.reward_manager.source == "register"
    assert resolve_reward_manager_cls(config) is PerceptionRewardManager


def test_importlib_source_resolves_without_the_registry():
    """The fallback for VERL_USE_EXTERNAL_PLUGINS=none (docs/verl_integration.md)."""
    config = compose_verl_config(
        "reward.reward_manager.source=importlib",
        "reward.reward_manager.module.path=pkg://verl_perception.reward_manager",
        "reward.reward_manager.name=PerceptionRewardManager",
    )
    assert resolve_reward_manager_cls(config) is PerceptionRewardManager


def test_reward_loop_worker_and_compute_rm_score_on_a_mixed_batch(
    tokenizer_dir, tokenizer, event_loop_for_verl, monkeypatch
):
    config = compose_verl_config(
        "reward.reward_manager.name=perception", f"actor_rollout_ref.model.path={tokenizer_dir}"
    )
    # verl's worker: loads the tokenizer from the model path, builds the manager with load_reward_manager
    worker = verl_reward_loop.RewardLoopWorker(config)
    assert isinstance(worker.reward_manager, PerceptionRewardManager)
    assert worker.reward_manager.custom_compute_score is None  # verl's math scorer was replaced by ours

    data, valid_lengths = make_batch(tokenizer)
    expected = [_expected(i) for i in range(len(ROWS))]
    tasks = ["grounding", "grounding", "counting", "counting", "ocr", "ocr", "detection", "detection", "grounding"]
    assert sorted(set(tasks)) == sorted(TASK_KEYS)

    # 1) one sample at a time, as the agent loop calls worker.compute_score.remote(data)
    for i in (0, 6):
        out = event_loop_for_verl.run_until_complete(worker.compute_score(data[i : i + 1]))
        assert out["reward_score"] == pytest.approx(expected[i]["score"])
        _check_info(out["reward_extra_info"], expected[i], tasks[i])

    # 2) the whole batch through RewardLoopManager.compute_rm_score, split over two "workers"
    class LocalActor:  # stands in for a Ray actor handle around the real worker
        compute_score_batch = SimpleNamespace(
            remote=lambda chunk: event_loop_for_verl.run_until_complete(worker.compute_score_batch(chunk))
        )

    manager = object.__new__(verl_reward_loop.RewardLoopManager)
    manager.config = config
    manager.reward_model_manager = None
    manager.reward_loop_workers = [LocalActor(), LocalActor()]  # 9 rows -> padded to 10, two chunks
    manager.reward_manager_cls = resolve_reward_manager_cls(config)
    monkeypatch.setattr(verl_reward_loop, "ray", SimpleNamespace(get=list))
    result = manager.compute_rm_score(data)

    rm_scores = result.batch["rm_scores"]
    assert rm_scores.shape == data.batch["responses"].shape and rm_scores.dtype == torch.float32
    for i, n_valid in enumerate(valid_lengths):
        assert rm_scores[i, n_valid - 1].item() == pytest.approx(expected[i]["score"], rel=1e-6)
        others = rm_scores[i].clone()
        others[n_valid - 1] = 0.0
        assert torch.count_nonzero(others) == 0
    assert any(e["score"] > 0 for e in expected) and any(e["score"] == 0 for e in expected)

    # every key of every task survives verl's stacking by the first sample's (grounding) keys
    assert result.meta_info["reward_extra_keys"] == list(EXTRA_INFO_KEYS)
    for i in range(len(ROWS)):
        info = {key: result.non_tensor_batch[key][i] for key in EXTRA_INFO_KEYS}
        _check_info(info, expected[i], tasks[i])

    # verl's validation metrics: per data_source means over the keys that apply, nothing else
    infos = {"reward": rm_scores.sum(-1).tolist()}
    infos.update({key: result.non_tensor_batch[key].tolist() for key in EXTRA_INFO_KEYS})
    metrics = process_validation_metrics(
        list(data.non_tensor_batch["data_source"]), [str(i) for i in range(len(ROWS))], infos
    )
    assert set(metrics["refcoco"]) == {"reward", "score", "format", "iou", "hit50"}
    assert set(metrics["pageocr"]) == {"reward", "score", "format", "edit_sim"}
    assert set(metrics["coco"]) >= {"precision", "recall", "f1", "mean_iou", "num_pred", "num_gt"}
    assert "iou" not in metrics["coco"] and "edit_sim" not in metrics["pixmo_count"]
    assert metrics["pageocr"]["edit_sim"]["mean@1"] == pytest.approx(
        (expected[4]["edit_sim"] + expected[5]["edit_sim"]) / 2
    )
    assert all(math.isfinite(v) for per_var in metrics.values() for m in per_var.values() for v in m.values())


def test_reward_kwargs_change_the_score(tokenizer, event_loop_for_verl):
    data, _ = make_batch(tokenizer)
    default = load_reward_manager(compose_verl_config("reward.reward_manager.name=perception"), tokenizer)
    plain_iou = load_reward_manager(
        compose_verl_config(
            "reward.reward_manager.name=perception",
            "+reward.reward_kwargs.grounding.iou_power=1",
            "+reward.reward_kwargs.detection.iou_weight=2.0",
        ),
        tokenizer,
    )
    assert plain_iou.reward_config.grounding.iou_power == 1.0
    for i in (0, 6):  # a grounding and a detection row
        got_default = _run_single(default, data, i)["reward_score"]
        got = _run_single(plain_iou, data, i)["reward_score"]
        cfg = {"grounding": {"iou_power": 1}, "detection": {"iou_weight": 2.0}}
        assert got == pytest.approx(_expected(i, config=cfg)["score"])
        assert got_default == pytest.approx(_expected(i)["score"])
        assert got > got_default  # 0 < IoU < 1: IoU > IoU², and a larger IoU weight
    iou = _expected(0)["iou"]
    assert _run_single(plain_iou, data, 0)["reward_extra_info"]["score"] == pytest.approx(iou + 1.0)


@pytest.mark.parametrize(
    "override, message",
    [
        ("+reward.reward_kwargs.grounding.iou_pwr=1", "iou_pwr"),
        ("+reward.reward_kwargs.grouding.iou_power=1", "grouding"),
        ("+reward.reward_kwargs.detection.iou_weight=heavy", "iou_weight"),
    ],
)
def test_bad_reward_kwargs_fail_at_construction(tokenizer, event_loop_for_verl, override, message):
    config = compose_verl_config("reward.reward_manager.name=perception", override)
    with pytest.raises(ValueError, match=message):
        load_reward_manager(config, tokenizer)


def test_unknown_task_raises_naming_the_data_source(tokenizer, event_loop_for_verl):
    manager = load_reward_manager(compose_verl_config("reward.reward_manager.name=perception"), tokenizer)
    data, _ = make_batch(tokenizer, rows=[("mystery_source", '{"bbox_2d": [1, 2, 3, 4]}', {"bbox": [1, 2, 3, 4]}, {})])
    with pytest.raises(UnknownTaskError, match="mystery_source"):
        _run_single(manager, data, 0)


def test_malformed_ground_truth_scores_zero_with_a_reason_and_one_warning(tokenizer, event_loop_for_verl, caplog):
    manager = load_reward_manager(compose_verl_config("reward.reward_manager.name=perception"), tokenizer)
    rows = [
        ("refcoco", '{"bbox_2d": [1, 2, 30, 40]}', {"bbox": [1, 2, 3]}, {}),  # 3 numbers, not 4
        ("coco", "[]", {"boxes": [[1, 2, 3, 4]], "labels": []}, {}),  # labels do not match boxes
        # a coordinate no frame has: its areas overflow (was scipy's ValueError, issue 23)
        ("coco", '[{"bbox_2d": [1, 2, 3, 4], "label": "person"}]', {"boxes": [[0, 0, 1e300, 1e300]],
                                                                     "labels": ["person"]}, {}),
    ]
    data, _ = make_batch(tokenizer, rows=rows)
    with caplog.at_level(logging.WARNING, logger="verl_perception.reward_manager"):
        outs = [_run_single(manager, data, i) for i in (0, 1, 2, 0)]
    for out, task in zip(outs, ["grounding", "detection", "detection", "grounding"]):
        info = out["reward_extra_info"]
        assert out["reward_score"] == 0.0 and info["score"] == 0.0
        assert info["reason"].startswith("ground_truth_error:")
        assert info["task"] == task and tuple(info) == EXTRA_INFO_KEYS
        assert all(info[k] is NOT_APPLICABLE for k in EXTRA_INFO_KEYS if k not in ("score", "task", "reason"))
    warnings = [r for r in caplog.records if "malformed ground truth" in r.getMessage()]
    assert len(warnings) == 3  # once per bad row, not once per rollout


def test_custom_reward_function_is_used_and_keeps_the_key_set(tmp_path, tokenizer, event_loop_for_verl):
    module = tmp_path / "my_reward.py"
    module.write_text(
        "def compute_score(data_source, solution_str, ground_truth, extra_info=None, bonus=0.0):\n"
        "    return {'score': len(solution_str) + bonus, 'length': len(solution_str)}\n"
    )
    config = compose_verl_config(
        "reward.reward_manager.name=perception",
        f"reward.custom_reward_function.path={module}",
        "+reward.custom_reward_function.reward_kwargs.bonus=0.5",
    )
    manager = load_reward_manager(config, tokenizer)
    assert manager.custom_compute_score is not None
    data, _ = make_batch(tokenizer)
    out = _run_single(manager, data, 4)
    assert out["reward_score"] == pytest.approx(len(ROWS[4][1]) + 0.5)
    info = out["reward_extra_info"]
    assert set(EXTRA_INFO_KEYS) <= set(info) and info["length"] == float(len(ROWS[4][1]))
    assert info["task"] == "ocr" and info["edit_sim"] is NOT_APPLICABLE


def test_reward_config_is_validated_once_and_shared(tokenizer, event_loop_for_verl):
    config = compose_verl_config("reward.reward_manager.name=perception", "+reward.reward_kwargs.ocr.require_think=true")
    manager = load_reward_manager(config, tokenizer)
    assert manager.reward_config == RewardConfig.from_mapping({"ocr": {"require_think": True}})
    assert manager.reward_config.ocr.require_think is True


def test_ray_reward_loop_manager_end_to_end(tokenizer_dir, tokenizer):
    """verl's RewardLoopManager with a real Ray worker: the worker process registers "perception"
    through the entry point on its own ``import verl`` and scores the mixed batch."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        config = compose_verl_config(
            "reward.reward_manager.name=perception",
            "reward.num_workers=1",
            f"actor_rollout_ref.model.path={tokenizer_dir}",
        )
        manager = verl_reward_loop.RewardLoopManager(config)
        data, valid_lengths = make_batch(tokenizer)
        result = manager.compute_rm_score(data)
    finally:
        if started:
            ray.shutdown()
    for i, n_valid in enumerate(valid_lengths):
        expected = _expected(i)
        assert result.batch["rm_scores"][i, n_valid - 1].item() == pytest.approx(expected["score"], rel=1e-6)
        assert result.batch["rm_scores"][i].abs().sum().item() == pytest.approx(abs(expected["score"]), rel=1e-6)
        for key, value in expected.items():
            assert result.non_tensor_batch[key][i] == pytest.approx(value)
