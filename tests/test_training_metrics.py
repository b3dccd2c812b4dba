"""Per-task training metrics through verl's own V1 trainer code, on CPU.

The rewards come from a real ``RewardLoopWorker`` running our manager on the mixed-task batch of
``test_verl_reward_manager``; the trajectories are stored in a real TransferQueue (local Ray) in the
layout of verl's ``AgentLoopWorkerTQ``; the sampler is built by verl's ``PPOTrainer._build_replay_buffer``
from a composed trainer config; its metrics go through verl's ``MetricsAggregator`` and ``Tracking``
(console and file backends), as ``PPOTrainer.step``/``fit`` do with them.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from test_verl_reward_manager import ROWS, _expected, compose_verl_config, make_batch
from verl_perception.training_metrics import MAIN_COMPONENTS, final_outputs, task_metrics

TASKS = ["grounding", "grounding", "counting", "counting", "ocr", "ocr", "detection", "detection", "grounding"]


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values)


def _expected_metrics(rows: list[int]) -> dict[str, float]:
    """The metrics computed by hand from ``compute_score`` (the same for any number of rollouts per row)."""
    by_source: dict[str, list[int]] = {}
    for i in rows:
        by_source.setdefault(ROWS[i][0], []).append(i)
    out = {}
    for source, idx in by_source.items():
        scores = [_expected(i) for i in idx]
        out[f"perception/{source}/share"] = len(idx) / len(rows)
        out[f"perception/{source}/score"] = _mean([s["score"] for s in scores])
        out[f"perception/{source}/format"] = _mean([s.get("format") for s in scores])
        out[f"perception/{source}/unscored"] = 0.0
        for name in MAIN_COMPONENTS[TASKS[idx[0]]]:
            out[f"perception/{source}/{name}"] = _mean([s.get(name) for s in scores])
    return out


# -- pure functions ------------------------------------------------------------------------------


def test_task_metrics_leave_out_not_applicable_and_mark_unscored():
    infos = [
        {"score": 1.5, "format": 1.0, "iou": 0.8, "hit50": 1.0, "edit_sim": None, "task": "grounding", "reason": ""},
        {"score": 0.0, "format": None, "iou": None, "hit50": None, "task": "grounding", "reason": "ground_truth_error: x"},
        {"score": 0.5, "format": 0.0, "edit_sim": 0.5, "iou": None, "task": "ocr", "reason": ""},
        None,  # a trajectory without reward_extra_info (another reward manager): counted in share only
    ]
    metrics = task_metrics(["refcoco", "refcoco", "page ocr/v2", "other"], infos)
    assert metrics == {
        "perception/refcoco/share": 0.5,
        "perception/refcoco/score": 0.75,
        "perception/refcoco/format": 1.0,  # the unscored row has no format: left out, not a 0
        "perception/refcoco/iou": 0.8,
        "perception/refcoco/hit50": 1.0,
        "perception/refcoco/unscored": 0.5,
        "perception/page_ocr_v2/share": 0.25,  # no "/" or space in the name: one level, one console token
        "perception/page_ocr_v2/score": 0.5,
        "perception/page_ocr_v2/format": 0.0,
        "perception/page_ocr_v2/edit_sim": 0.5,
        "perception/page_ocr_v2/unscored": 0.0,
        "perception/other/share": 0.25,
    }
    with pytest.raises(ValueError, match="2 data sources for 1"):
        task_metrics(["a", "b"], [{}])


def test_final_outputs_keeps_the_last_output_of_each_session():
    keys = ["u1_0_0", "u1_0_1", "u1_1_0", "u2_0_0", "u2_0_2", "u2_0_1", "plain"]
    assert final_outputs(keys) == [1, 2, 4, 6]


# -- verl's trainer code ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reward_infos(tiny_processor_dir_factory):
    """Each row's ``reward_extra_info`` from verl's ``RewardLoopWorker.compute_score`` (the call the
    agent loop makes per trajectory)."""
    import asyncio

    from verl.experimental.reward_loop import reward_loop as verl_reward_loop
    from verl.utils import hf_tokenizer

    tokenizer_dir = tiny_processor_dir_factory()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        config = compose_verl_config(
            "reward.reward_manager.name=perception", f"actor_rollout_ref.model.path={tokenizer_dir}"
        )
        worker = verl_reward_loop.RewardLoopWorker(config)
        data, _ = make_batch(hf_tokenizer(tokenizer_dir))
        outs = [loop.run_until_complete(worker.compute_score(data[i : i + 1])) for i in range(len(ROWS))]
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    return [out["reward_extra_info"] for out in outs]


@pytest.fixture
def transfer_queue():
    """A real TransferQueue on a local Ray cluster (verl's V1 trainer stores trajectories there)."""
    tq = pytest.importorskip("transfer_queue", reason="verl's V1 trainer dependency (TransferQueue) not installed")
    import ray

    started = not ray.is_initialized()
    if started:
        # the controller and one storage unit are actors of their own; num_cpus only books slots
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    tq.init({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}})
    try:
        yield tq
    finally:
        tq.close()
        if started:
            ray.shutdown()


def _put_rollouts(tq, infos, n: int, partition_id: str = "train") -> None:
    """Store each row's ``n`` rollouts as ``AgentLoopWorkerTQ._agent_loop_postprocess`` does."""
    import torch
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    prompt_keys = [f"p{i}" for i in range(len(ROWS))]
    tq.kv_batch_put(
        keys=prompt_keys,
        partition_id=partition_id,
        tags=[{"is_prompt": True, "status": "finished", "global_steps": 1} for _ in prompt_keys],
    )
    keys, fields, tags = [], [], []
    for i, (data_source, _, gt, _) in enumerate(ROWS):
        for session in range(n):
            keys.append(f"p{i}_{session}_0")
            fields.append(
                {
                    "responses": torch.tensor([1, 2, 3]),
                    "data_source": data_source,
                    "reward_model": {"ground_truth": json.dumps(gt), "style": "rule"},
                    "extra_fields": {"reward_extra_info": infos[i], "min_global_steps": 1, "max_global_steps": 1},
                }
            )
            tags.append({"status": "success", "global_steps": 1, "min_global_steps": 1, "max_global_steps": 1})
    tq.kv_batch_put(keys=keys, fields=list_of_dict_to_tensordict(fields), tags=tags, partition_id=partition_id)


def test_sampler_metrics_reach_verls_step_metrics_and_loggers(
    reward_infos, transfer_queue, tmp_path, monkeypatch, capsys
):
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
    from verl.trainer.ppo.v1.utils import MetricsAggregator
    from verl.utils.tracking import Tracking

    from verl_perception.replay_buffer import PerceptionReplayBuffer

    n = 2  # GRPO rollouts per prompt
    _put_rollouts(transfer_queue, reward_infos, n)

    # the sampler as verl's trainer builds it from the user's overrides
    config = compose_verl_config(
        "trainer.v1.sampler.custom_sampler.path=pkg://verl_perception.replay_buffer",
        "trainer.v1.sampler.custom_sampler.name=PerceptionReplayBuffer",
    )
    assert config.trainer.use_v1 and config.trainer.v1.trainer_mode == "sync"  # main_ppo's default path
    trainer = SimpleNamespace(config=config, trainer_mode="sync", _add_prompts_to_generate=lambda count: None)
    sampler = PPOTrainer._build_replay_buffer(trainer)
    assert type(sampler) is PerceptionReplayBuffer

    batch, metrics = sampler.sample(global_steps=1, partition_id="train", batch_size=len(ROWS))
    assert len(batch.keys) == n * len(ROWS)

    expected = _expected_metrics(list(range(len(ROWS))))
    # each prompt's n rollouts carry the same reward here: every group is zero-variance, in every source
    expected.update({f"perception/{source}/zero_variance_groups": 1.0 for source, *_ in ROWS})
    expected["perception/zero_variance_groups"] = 1.0
    perception = {k: v for k, v in metrics.items() if k.startswith("perception/")}
    assert perception == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert {"perception/coco/f1", "perception/coco/recall", "perception/pixmo_count/count_exact"} <= set(perception)
    assert "perception/coco/iou" not in perception and "perception/pageocr/f1" not in perception
    assert all(math.isfinite(v) for v in perception.values())

    # PPOTrainer.step: the sampler's metrics are one iteration's metrics, reduced by MetricsAggregator
    aggregator = MetricsAggregator()
    aggregator.add_step_metrics(metrics, sample_count=len(batch.keys))
    step_metrics = aggregator.get_aggregated_metrics()
    assert {k: step_metrics[k] for k in perception} == pytest.approx(perception)

    # PPOTrainer.fit: self.logger.log(data=metrics, step=...) with the console and file backends
    log_file = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(log_file))
    tracking = Tracking(project_name="p", experiment_name="e", default_backend=["console", "file"])
    tracking.log(data=step_metrics, step=1)
    tracking.finish()
    console = capsys.readouterr().out
    assert f"perception/coco/f1:{expected['perception/coco/f1']!r}" in console
    assert "perception/refcoco/iou:" in console and "perception/pageocr/edit_sim:" in console
    logged = json.loads(log_file.read_text().splitlines()[-1])
    assert logged["step"] == 1 and logged["data"]["perception/pixmo_count/count_exact"] == pytest.approx(
        expected["perception/pixmo_count/count_exact"]
    )


def test_validation_batches_get_no_training_metrics(reward_infos, transfer_queue):
    """verl's own val-aux/<data_source>/... metrics cover validation; a val sample adds nothing."""
    from verl_perception.replay_buffer import PerceptionReplayBuffer

    _put_rollouts(transfer_queue, reward_infos, 1, partition_id="val")
    sampler = PerceptionReplayBuffer(  # the constructor arguments verl gives a custom sampler
        trainer_mode="sync",
        trainer_config={},
        max_off_policy_threshold=None,
        max_off_policy_strategy="drop",
        sampler_kwargs={},
        refill_fn=lambda count: None,
    )
    batch, metrics = sampler.sample(global_steps=1, partition_id="val", batch_size=len(ROWS))
    assert len(batch.keys) == len(ROWS)
    assert not any(key.startswith("perception/") for key in metrics)


def test_sampler_of_the_other_trainer_mode_is_refused():
    pytest.importorskip("transfer_queue", reason="verl's V1 trainer dependency (TransferQueue) not installed")
    from verl_perception.replay_buffer import PerceptionReplayBuffer, PerceptionReplayBufferAsync

    args = dict(max_off_policy_threshold=None, max_off_policy_strategy="drop", sampler_kwargs={})
    with pytest.raises(ValueError, match="custom_sampler.name=PerceptionReplayBufferAsync"):
        PerceptionReplayBuffer(trainer_mode="colocate_async", trainer_config={}, **args)
    with pytest.raises(ValueError, match="custom_sampler.name=PerceptionReplayBuffer$"):
        PerceptionReplayBufferAsync(trainer_mode="sync", trainer_config={}, **args)
    assert PerceptionReplayBufferAsync(trainer_mode="separate_async", trainer_config={}, **args).sync_mode is False
