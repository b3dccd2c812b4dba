"""Per-task reward metrics for every training step of verl's V1 trainer.

verl 0.9.1 logs only ``critic/score/*`` for training batches: the ``reward_extra_info`` that
:class:`~verl_perception.reward_manager.PerceptionRewardManager` returns for each rollout reaches
the trainer (it is stored with the trajectory in TransferQueue as ``extra_fields.reward_extra_info``)
but is read for validation metrics only. This module turns it into step metrics::

    perception/<data_source>/score        mean reward
    perception/<data_source>/format       rate of answers in the expected format
    perception/<data_source>/<component>  grounding: iou, hit50; counting: count_exact;
                                          ocr: edit_sim; detection: f1, precision, recall, mean_iou
    perception/<data_source>/unscored     rate of rollouts not scored normally (``reason`` set)
    perception/<data_source>/share        the data source's fraction of the batch
    perception/<data_source>/zero_variance_groups
                                          share of its rollout groups (one prompt's rollouts) whose
                                          scores are all equal: GRPO gives them zero advantage, so their
                                          generation and update teach nothing
    perception/zero_variance_groups       the same over the whole batch

The functions here are pure (no verl import); :mod:`verl_perception.replay_buffer` calls them from
verl's sampler hook (``trainer.v1.sampler.custom_sampler``) so that they reach every configured
logger (console, wandb, tensorboard, file). docs/verl_integration.md explains why that hook.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from verl_perception.tasks import COUNTING, DETECTION, GROUNDING, OCR

__all__ = [
    "PREFIX",
    "MAIN_COMPONENTS",
    "task_metrics",
    "zero_variance_groups",
    "final_outputs",
    "batch_task_metrics",
]

PREFIX = "perception"

MAIN_COMPONENTS: dict[str, tuple[str, ...]] = {
    GROUNDING: ("iou", "hit50"),
    COUNTING: ("count_exact",),
    OCR: ("edit_sim",),
    DETECTION: ("f1", "precision", "recall", "mean_iou"),
}
"""The reward components logged per task (besides score and format)."""

_UNSAFE = re.compile(r"[\s/]+")


def _metric_source(data_source: Any) -> str:
    # "/" would add a level to the metric tree; whitespace breaks the console line's "key:value" pairs
    return _UNSAFE.sub("_", str(data_source)) or "unknown"


def _number(value: Any) -> float | None:
    """A finite float, or None for values that are absent, not numeric or not finite."""
    if value is None or isinstance(value, str):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def task_metrics(
    data_sources: Sequence[Any], infos: Sequence[Mapping[str, Any] | None], prefix: str = PREFIX
) -> dict[str, float]:
    """Step metrics per data source from the rollouts' ``reward_extra_info``.

    Args:
        data_sources: ``[N]`` data source of each rollout.
        infos: ``[N]`` each rollout's ``reward_extra_info`` (our manager's keys; ``None`` or ``{}``
            when the rollout has none, which then counts only towards ``share``).
        prefix: the metrics' first level.

    Returns:
        ``{"<prefix>/<data_source>/<name>": value}``; a component is the mean over the rollouts
        that report it (``None``, i.e. not applicable, is left out), so a data source whose rows
        all lack a component logs no value for it instead of a misleading 0.
    """
    if len(data_sources) != len(infos):
        raise ValueError(f"{len(data_sources)} data sources for {len(infos)} reward infos")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for data_source, info in zip(data_sources, infos):
        groups.setdefault(_metric_source(data_source), []).append(info or {})

    total = len(infos)
    metrics: dict[str, float] = {}
    for source, rows in groups.items():
        head = f"{prefix}/{source}"
        metrics[f"{head}/share"] = len(rows) / total
        scored = [row for row in rows if "score" in row]
        if not scored:
            continue
        tasks = {row.get("task") for row in scored}
        names = ["score", "format"]
        for task in tasks:
            names.extend(name for name in MAIN_COMPONENTS.get(task, ()) if name not in names)
        for name in names:
            values = [v for v in (_number(row.get(name)) for row in scored) if v is not None]
            if values:
                metrics[f"{head}/{name}"] = sum(values) / len(values)
        if any("reason" in row for row in scored):  # rows from another source may not say
            metrics[f"{head}/unscored"] = sum(1 for row in scored if row.get("reason")) / len(scored)
    return metrics


def zero_variance_groups(
    groups: Sequence[str], data_sources: Sequence[Any], infos: Sequence[Mapping[str, Any] | None], prefix: str = PREFIX
) -> dict[str, float]:
    """Share of rollout groups whose scores are all equal, per data source and over the batch.

    Args:
        groups: ``[N]`` each rollout's group (its prompt's uid; GRPO normalises rewards within it).
        data_sources: ``[N]`` data source of each rollout.
        infos: ``[N]`` each rollout's ``reward_extra_info`` (its ``score`` is read).

    A group counts when it has at least two scored rollouts; it is zero-variance when their scores are
    exactly equal (verl's own test for DAPO filtering: standard deviation 0). Returns
    ``{"<prefix>/<data_source>/zero_variance_groups": share, "<prefix>/zero_variance_groups": share}``,
    nothing for a data source with no countable group.
    """
    if not len(groups) == len(data_sources) == len(infos):
        raise ValueError(f"{len(groups)} groups, {len(data_sources)} data sources and {len(infos)} reward infos")
    scores: dict[str, list[float]] = {}
    source_of: dict[str, str] = {}
    for group, data_source, info in zip(groups, data_sources, infos):
        value = _number((info or {}).get("score"))
        if value is None:
            continue
        scores.setdefault(group, []).append(value)
        source_of.setdefault(group, _metric_source(data_source))
    flat: dict[str, list[bool]] = {}
    for group, values in scores.items():
        if len(values) > 1:
            flat.setdefault(source_of[group], []).append(max(values) == min(values))
    metrics = {f"{prefix}/{source}/zero_variance_groups": sum(v) / len(v) for source, v in flat.items()}
    every = [f for v in flat.values() for f in v]
    if every:
        metrics[f"{prefix}/zero_variance_groups"] = sum(every) / len(every)
    return metrics


def final_outputs(keys: Sequence[str]) -> list[int]:
    """Indices of the last output of each trajectory among TransferQueue keys.

    verl's V1 agent loop stores each output of a session as ``{uid}_{session_id}_{index}``, and a
    multi-output session copies the final output's reward to the earlier ones; counting every
    output would weight such sessions by their length.
    """
    last: dict[str, tuple[int, int]] = {}
    for position, key in enumerate(keys):
        session, _, index = key.rpartition("_")
        rank = int(index) if index.isdigit() and session else 0
        session = session if index.isdigit() and session else key
        if session not in last or rank >= last[session][0]:
            last[session] = (rank, position)
    return sorted(position for _, position in last.values())


def _plain(value: Any) -> Any:
    # TransferQueue returns non-tensor entries as NonTensorData wrappers or plain objects
    return getattr(value, "data", value)


def batch_task_metrics(keys: Sequence[str], data_sources: Iterable[Any], extra_fields: Iterable[Any]) -> dict[str, float]:
    """:func:`task_metrics` of a TransferQueue batch (``keys`` and the matching fields)."""
    sources = [_plain(s) for s in data_sources]
    fields = [_plain(f) for f in extra_fields]
    chosen = final_outputs(keys)
    infos = [fields[i].get("reward_extra_info") if isinstance(fields[i], Mapping) else None for i in chosen]
    chosen_sources = [sources[i] for i in chosen]
    metrics = task_metrics(chosen_sources, infos)
    # verl's V1 keys are {uid}_{session_id}_{index}: the uid is the prompt, i.e. the GRPO group
    metrics.update(zero_variance_groups([str(keys[i]).split("_")[0] for i in chosen], chosen_sources, infos))
    return metrics
