"""verl's V1 replay buffers, plus per-task reward metrics of every training batch they sample, with verl's own
dynamic sampling (DAPO group filtering) applied.

Enable with verl's sampler hook (both overrides; the async trainer modes take the ``Async`` class)::

    trainer.v1.sampler.custom_sampler.path=pkg://verl_perception.replay_buffer
    trainer.v1.sampler.custom_sampler.name=PerceptionReplayBuffer   # trainer.v1.trainer_mode=sync
    trainer.v1.sampler.custom_sampler.name=PerceptionReplayBufferAsync   # colocate_async, separate_async

``PPOTrainer._step_once`` merges the metrics that ``sample`` returns into the step's ``metrics``,
which verl logs every step; :mod:`verl_perception.training_metrics` names and computes them.

Sampling is verl's. verl 0.9.1 gives a custom sampler none of the arguments of its dynamic sampling
(``algorithm.filter_groups``: evict groups whose metric is the same for every rollout, refill with fresh
prompts) or of failed-group refill (``trainer.v1.sampler.sync_refill_failed_groups``), and would leave them
silently unapplied; these classes compute those arguments from the run's own config, as verl does for its
built-in buffers (:func:`builtin_sampling_kwargs`, with verl's own resolver of the filter metric), so
``algorithm.filter_groups.enable=True`` behaves exactly as without a custom sampler. This module imports
verl's trainer stack (Ray, TransferQueue), so nothing imports it but the trainer.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import transfer_queue as tq
from omegaconf import DictConfig
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

from verl_perception.training_metrics import batch_task_metrics

__all__ = ["PerceptionReplayBuffer", "PerceptionReplayBufferAsync", "builtin_sampling_kwargs", "read_task_metrics"]

logger = logging.getLogger(__name__)

FIELDS = ["data_source", "extra_fields"]
# What verl's _build_replay_buffer adds for its own buffers (and a caller may pass explicitly instead).
SAMPLING_KWARGS = ("filter_groups_metric", "sync_refill_failed_groups", "train_batch_size", "gen_batch_size",
                   "max_inflight_gen_batches")


def read_task_metrics(batch: Any) -> dict[str, float]:
    """Per-task metrics of a sampled ``KVBatchMeta`` (padding entries left out), read from TransferQueue."""
    keep = [i for i, tag in enumerate(batch.tags) if not (tag or {}).get("is_padding", False)]
    keys = [batch.keys[i] for i in keep]
    if not keys:
        return {}
    data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=FIELDS)
    # plain lists of the rows' values (or NonTensorData wrappers, which batch_task_metrics unwraps)
    return batch_task_metrics(keys, list(data["data_source"]), list(data["extra_fields"]))


def builtin_sampling_kwargs(trainer_mode: str, config) -> dict[str, Any]:
    """The sampling arguments verl 0.9.1's ``PPOTrainer._build_replay_buffer`` gives its built-in buffers,
    from the run's ``config`` (the whole trainer config): the DAPO filter metric (``None`` when
    ``algorithm.filter_groups.enable`` is off; resolved and checked by verl's own
    ``PPOTrainer._resolve_filter_groups_metric``), failed-group refill and, in sync mode, the batch sizes
    and in-flight bound of sync DAPO."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    metric = PPOTrainer._resolve_filter_groups_metric(SimpleNamespace(config=config))
    sync_refill = bool(config.trainer.v1.sampler.get("sync_refill_failed_groups", False))
    kwargs: dict[str, Any] = {"filter_groups_metric": metric, "sync_refill_failed_groups": sync_refill}
    if trainer_mode == "sync":
        train_batch_size = config.data.train_batch_size
        filter_groups = config.algorithm.get("filter_groups", None)
        kwargs.update(
            train_batch_size=train_batch_size,
            gen_batch_size=1 if metric is not None or sync_refill
            else (config.data.get("gen_batch_size", None) or train_batch_size),
            max_inflight_gen_batches=filter_groups.get("max_inflight_gen_batches", 1) if metric is not None else 1,
        )
    return kwargs


def _run_config(*nodes: Any):
    """The whole trainer config that verl's sampler arguments (``sampler_kwargs``, ``trainer_config``: nodes of
    it) belong to; ``None`` when none of them is a config node (a direct construction, with no run config
    whose settings could be ignored). Raises when they are nodes of something that is not a trainer config."""
    nodes = [node for node in nodes if isinstance(node, DictConfig)]
    for node in nodes:
        root = node._get_root()
        if isinstance(root, DictConfig) and "algorithm" in root and "trainer" in root and "data" in root:
            return root
    if nodes:
        raise ValueError(
            "verl-perception's sampler could not reach the run's config from verl's sampler arguments, so it cannot "
            "apply algorithm.filter_groups as verl's own buffers do: this verl is not the 0.9 line it was written "
            "for (pip install 'verl>=0.9.1,<0.10')"
        )
    return None


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
        if not any(name in kwargs for name in SAMPLING_KWARGS):  # verl's call for a custom sampler
            config = _run_config(kwargs.get("sampler_kwargs"), kwargs.get("trainer_config"))
            if config is not None:
                kwargs.update(builtin_sampling_kwargs(trainer_mode, config))
        if kwargs.get("filter_groups_metric") is not None:
            logger.info("dynamic sampling: groups whose %r is equal for every rollout are evicted and refilled",
                        kwargs["filter_groups_metric"])
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
