"""Dynamic sampling (verl's DAPO group filtering) through our samplers, and the zero-variance share, on CPU.

The samplers are built by verl's own ``PPOTrainer._build_replay_buffer`` from composed trainer configs and
driven through verl's own ``sample`` on a real TransferQueue, with rollout groups of known scores; each run
is compared with verl's built-in buffer on the same groups (what a user gets without our sampler)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from test_training_metrics import transfer_queue  # noqa: F401  - the fixture
from test_verl_reward_manager import compose_verl_config
from verl_perception.training_metrics import zero_variance_groups

OURS = ("trainer.v1.sampler.custom_sampler.path=pkg://verl_perception.replay_buffer",
        "trainer.v1.sampler.custom_sampler.name=PerceptionReplayBuffer")
DAPO = ("algorithm.filter_groups.enable=True", "algorithm.filter_groups.metric=score")
# 6 prompts x 4 rollouts: p0 and p1 score alike in every rollout (GRPO gives them zero advantage)
GROUPS = {
    "p0": ("refcoco", [0.0, 0.0, 0.0, 0.0]),
    "p1": ("coco", [3.0, 3.0, 3.0, 3.0]),
    "p2": ("refcoco", [0.0, 1.2, 0.4, 2.0]),
    "p3": ("coco", [0.5, 0.5, 0.9, 0.5]),
    "p4": ("refcoco", [1.0, 1.5, 1.0, 1.0]),
    "p5": ("coco", [2.0, 0.1, 0.2, 0.3]),
}


# -- the metric -----------------------------------------------------------------------------------


def test_zero_variance_share_per_source_and_batch():
    groups, sources, infos = [], [], []
    for uid, (source, scores) in GROUPS.items():
        for s in scores:
            groups.append(uid), sources.append(source), infos.append({"score": s})
    groups.append("p6"), sources.append("pageocr"), infos.append({"score": 1.0})  # one rollout: not a group
    groups.append("p2"), sources.append("refcoco"), infos.append(None)  # unscored: left out
    # by hand: refcoco p0 (flat), p2, p4 -> 1/3; coco p1 (flat), p3, p5 -> 1/3; batch 2 of 6
    assert zero_variance_groups(groups, sources, infos) == {
        "perception/refcoco/zero_variance_groups": pytest.approx(1 / 3),
        "perception/coco/zero_variance_groups": pytest.approx(1 / 3),
        "perception/zero_variance_groups": pytest.approx(2 / 6),
    }
    assert zero_variance_groups([], [], []) == {}
    with pytest.raises(ValueError, match="2 groups, 1 data sources"):
        zero_variance_groups(["a", "b"], ["x"], [{}])


# -- verl's sampling -------------------------------------------------------------------------------


def _put_groups(tq, groups: dict, global_steps: int = 1) -> None:
    """Finished prompt groups in the layout of verl's ``AgentLoopWorkerTQ`` (prompt key + trajectories)."""
    import torch
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    tq.kv_batch_put(keys=list(groups), partition_id="train",
                    tags=[{"is_prompt": True, "status": "finished", "global_steps": global_steps} for _ in groups])
    keys, fields, tags = [], [], []
    for uid, (source, scores) in groups.items():
        for session, score in enumerate(scores):
            keys.append(f"{uid}_{session}_0")
            fields.append({"responses": torch.tensor([1, 2, 3]), "data_source": source,
                           "extra_fields": {"reward_extra_info": {"score": score, "format": 1.0, "task": "grounding"},
                                            "min_global_steps": global_steps, "max_global_steps": global_steps}})
            tags.append({"status": "success", "global_steps": global_steps, "min_global_steps": global_steps,
                         "max_global_steps": global_steps})
    tq.kv_batch_put(keys=keys, fields=list_of_dict_to_tensordict(fields), tags=tags, partition_id="train")


def _sampler(tq, *overrides: str, trainer_mode: str = "sync", batch_size: int = 4):
    """The sampler verl's trainer builds from ``overrides``; its refill requests generate fresh groups with
    distinct scores (what the rollout would add), recorded in ``sampler.refills``."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    config = compose_verl_config(f"data.train_batch_size={batch_size}", *overrides)
    refills: list[int] = []

    def refill(count: int) -> None:
        refills.append(count)
        start = sum(refills) - count
        _put_groups(tq, {f"r{start + i}": ("coco", [0.1 * i, 0.2, 0.3, 0.4]) for i in range(count)}, global_steps=2)

    trainer = SimpleNamespace(config=config, trainer_mode=trainer_mode, _add_prompts_to_generate=refill)
    trainer._resolve_filter_groups_metric = lambda: PPOTrainer._resolve_filter_groups_metric(trainer)
    sampler = PPOTrainer._build_replay_buffer(trainer)
    sampler.refills = refills
    return sampler


KWARGS = ("filter_groups_metric", "sync_refill_failed_groups", "train_batch_size", "gen_batch_size",
          "max_inflight_gen_batches")


@pytest.mark.parametrize("trainer_mode,name,dapo", [("sync", "PerceptionReplayBuffer", True),
                                                     ("sync", "PerceptionReplayBuffer", False),
                                                     ("colocate_async", "PerceptionReplayBufferAsync", True)])
def test_samplers_get_verls_own_sampling_arguments(trainer_mode, name, dapo):
    """Built by verl's trainer code from the same overrides, ours and verl's built-in buffer get the same
    sampling arguments (constructing a buffer touches no TransferQueue)."""
    pytest.importorskip("transfer_queue", reason="verl's V1 trainer dependency (TransferQueue) not installed")
    flags = (*DAPO, "algorithm.filter_groups.max_inflight_gen_batches=3") if dapo else ()
    mode = f"trainer.v1.trainer_mode={trainer_mode}"
    ours = _sampler(None, mode, OURS[0], f"trainer.v1.sampler.custom_sampler.name={name}", *flags,
                    trainer_mode=trainer_mode)
    builtin = _sampler(None, mode, *flags, trainer_mode=trainer_mode)
    assert type(ours).__name__ == name and type(builtin).__name__ in ("ReplayBuffer", "ReplayBufferAsync")
    assert {k: getattr(ours, k) for k in KWARGS} == {k: getattr(builtin, k) for k in KWARGS}
    assert ours.filter_groups_metric == ("score" if dapo else None)
    if dapo and trainer_mode == "sync":
        assert (ours.gen_batch_size, ours.max_inflight_gen_batches, ours.train_batch_size) == (1, 3, 4)


def _run(tq, batch_size: int, *overrides: str):
    _put_groups(tq, GROUPS)
    sampler = _sampler(tq, *overrides, batch_size=batch_size)
    batch, metrics = sampler.sample(global_steps=2, partition_id="train", batch_size=batch_size)
    uids = sorted({key.split("_")[0] for key in batch.keys})
    return sampler.refills, uids, metrics


def test_dynamic_sampling_filters_as_verls_own_buffer(transfer_queue):  # noqa: F811
    """Same groups, same verl sampling: ours evicts p0 and p1, asks for the same refill and samples the same
    prompts as verl's built-in buffer, and reports the batch's (now zero) flat-group share per source."""
    refills, uids, metrics = _run(transfer_queue, 5, *OURS, *DAPO)
    for key in list(transfer_queue.kv_list().get("train", {})):  # an empty store for the built-in run
        transfer_queue.kv_clear(partition_id="train", keys=[key])
    b_refills, b_uids, b_metrics = _run(transfer_queue, 5, *DAPO)
    # verl's sync DAPO, by hand: 2 flat groups evicted leave 4 of the 5 prompts needed -> 2 x 2 refill credits,
    # dispatched at once (1 batch x 5 prompts may be in flight); then 8 are sampleable: the 4 older p's and
    # one refill are taken, the other 3 refills discarded as surplus
    assert refills == b_refills == [4]
    assert [u for u in uids if u.startswith("p")] == [u for u in b_uids if u.startswith("p")] == ["p2", "p3", "p4", "p5"]
    assert len(uids) == len(b_uids) == 5
    assert metrics["training/filter_groups/evicted_samples"] == b_metrics["training/filter_groups/evicted_samples"] == 2
    assert metrics["training/filter_groups/discarded_surplus_samples"] == 3
    verl_keys = {k for k in b_metrics if not k.startswith("_")}
    assert {k: metrics[k] for k in verl_keys} == {k: b_metrics[k] for k in verl_keys}
    assert metrics["perception/zero_variance_groups"] == 0.0
    assert not any(k.startswith("perception/") for k in b_metrics)


def test_without_dynamic_sampling_flat_groups_are_trained_and_shown(transfer_queue):  # noqa: F811
    refills, uids, metrics = _run(transfer_queue, 6, *OURS)
    assert refills == [] and uids == sorted(GROUPS)  # nothing evicted
    # by hand: refcoco p0 flat, p2 and p4 not -> 1/3; coco p1 flat, p3 (0.5, 0.5, 0.9, 0.5) and p5 not -> 1/3
    assert metrics["perception/refcoco/zero_variance_groups"] == pytest.approx(1 / 3)
    assert metrics["perception/coco/zero_variance_groups"] == pytest.approx(1 / 3)
    assert metrics["perception/zero_variance_groups"] == pytest.approx(2 / 6)
    assert "training/filter_groups/evicted_samples" not in metrics
