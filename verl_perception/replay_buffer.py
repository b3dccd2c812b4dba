"""verl's V1 replay buffers, plus per-task reward metrics of every training batch they sample.

Enable with verl's sampler hook (both overrides; the async trainer modes take the ``Async`` class)::

    trainer.v1.sampler.custom_sampler.path=pkg://verl_perception.replay_buffer
    trainer.v1.sampler.custom_sampler.name=PerceptionReplayBuffer   # trainer.v1.trainer_mode=sync
    trainer.v1.sampler.custom_sampler.name=PerceptionReplayBufferAsync   # colocate_async, separate_async

``PPOTrainer._step_once`` merges the metrics that ``sample`` returns into the step's ``metrics``,
which verl logs every step; :mod:`verl_perception.training_metrics` names and computes them.
Sampling itself is verl's, unchanged. This module imports verl's trainer stack (Ray,
TransferQueue), so nothing imports it but the trainer.
"""

from __future__ import annotations

from typing import Any

import transfer_queue as tq
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

from verl_perception.training_metrics import batch_task_metrics

__all__ = ["PerceptionReplayBuffer", "PerceptionReplayBufferAsync", "read_task_metrics"]

FIELDS = ["data_source", "extra_fields"]


def read_task_metrics(batch: Any) -> dict[str, float]:
    """Per-task metrics of a sampled ``KVBatchMeta`` (padding entries left out), read from TransferQueue."""
    keep = [i for i, tag in enumerate(batch.tags) if not (tag or {}).get("is_padding", False)]
    keys = [batch.keys[i] for i in keep]
    if not keys:
        return {}
    data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=FIELDS)
    # plain lists of the rows' values (or NonTensorData wrappers, which batch_task_metrics unwraps)
    return batch_task_metrics(keys, list(data["data_source"]), list(data["extra_fields"]))


class _TaskMetricsMixin:
    sync_mode: bool  # which of verl's trainer modes the class serves

    def __init__(self, trainer_mode: str, *args: Any, **kwargs: Any):
        # verl picks its own buffer class by mode; a custom sampler of the other kind would change
        # the sampling semantics (bufferless sync vs. off-policy async) without a word
        if (trainer_mode == "sync") != self.sync_mode:
            wanted = "PerceptionReplayBuffer" if trainer_mode == "sync" else "PerceptionReplayBufferAsync"
            raise ValueError(
                f"{type(self).__name__} does not serve trainer.v1.trainer_mode={trainer_mode}: "
                f"set trainer.v1.sampler.custom_sampler.name={wanted}"
            )
        super().__init__(trainer_mode, *args, **kwargs)

    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        batch, metrics = super().sample(global_steps, partition_id, batch_size)
        if partition_id != "val":  # validation has verl's own per-data-source metrics (val-aux/...)
            metrics = {**metrics, **read_task_metrics(batch)}
        return batch, metrics


class PerceptionReplayBuffer(_TaskMetricsMixin, ReplayBuffer):
    """verl's sync-mode ``ReplayBuffer``; ``sample`` also returns the batch's per-task metrics."""

    sync_mode = True


class PerceptionReplayBufferAsync(_TaskMetricsMixin, ReplayBufferAsync):
    """verl's async-mode ``ReplayBufferAsync``; ``sample`` also returns the batch's per-task metrics."""

    sync_mode = False
