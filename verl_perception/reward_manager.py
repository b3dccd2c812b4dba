"""The ``perception`` reward manager for verl's reward loop.

``reward.reward_manager.name=perception`` (with the default ``source: register``) makes verl's
``RewardLoopWorker`` build :class:`PerceptionRewardManager`, which decodes each rollout's valid
response tokens and scores them with :func:`verl_perception.rewards.compute_score`.

Per-task options come from ``reward.reward_kwargs.<task>.<option>`` (e.g.
``+reward.reward_kwargs.grounding.iou_power=1``) and are validated by
:meth:`RewardConfig.from_mapping` when the manager is built, so a misspelled option stops the run
at start-up instead of being ignored.

Every sample returns the same ``reward_extra_info`` keys (:data:`EXTRA_INFO_KEYS`): verl stacks
them into arrays using the key set of the *first* sample of a batch, so a mixed-task batch whose
samples reported different keys would fail (or silently drop columns). Keys that do not apply to
a sample's task hold :data:`NOT_APPLICABLE` (``None``): verl's validation metrics
(``process_validation_metrics``) drop ``None`` before averaging, its v1 trainer itself pads missing
keys with ``None``, and generation dumps write it as JSON ``null``. ``0`` would drag the
per-data-source means down and ``NaN`` would turn them into ``NaN``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from verl import DataProto
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase
from verl.experimental.reward_loop.reward_manager.registry import register
from verl.utils.reward_score import default_compute_score

from verl_perception.rewards import TASK_KEYS, GroundTruthError, RewardConfig, compute_score
from verl_perception.tasks import TASKS, UnknownTaskError, resolve_task

__all__ = [
    "NAME",
    "EXTRA_INFO_KEYS",
    "NOT_APPLICABLE",
    "PerceptionRewardManager",
    "reward_config_from",
]

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "WARN"))

NAME = "perception"

NOT_APPLICABLE = None
"""Value of an extra-info key that the sample's task does not report (see module docstring)."""

_COMPONENT_KEYS: tuple[str, ...] = tuple(dict.fromkeys(k for task in TASKS for k in TASK_KEYS[task]))

EXTRA_INFO_KEYS: tuple[str, ...] = ("score", "format", *_COMPONENT_KEYS, "task", "reason")
"""Keys of every sample's ``reward_extra_info``: score, format, the union of the tasks'
components, the resolved task name and ``reason`` ("" unless the sample was not scored normally)."""


def reward_config_from(config: Any) -> RewardConfig:
    """The validated :class:`RewardConfig` of a verl config's ``reward.reward_kwargs`` (may be absent)."""
    reward = config.get("reward") if hasattr(config, "get") else getattr(config, "reward", None)
    kwargs = reward.get("reward_kwargs") if reward is not None and hasattr(reward, "get") else None
    return RewardConfig.from_mapping(kwargs or None)


def _is_verl_default(fn: Any) -> bool:
    """True for verl's built-in ``default_compute_score`` (or a ``partial`` of it).

    ``load_reward_manager`` hands every manager verl's math/code scorer when no
    ``custom_reward_function`` is configured; that scorer knows nothing of perception data.
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn is default_compute_score


def _as_value(value: Any) -> Any:
    # numbers (numpy scalars and bools included) become plain floats, so that verl's np.array over a
    # batch gets one dtype per key
    if isinstance(value, (numbers.Real, np.bool_)):
        return float(value)
    return value


@register(NAME)
class PerceptionRewardManager(RewardManagerBase):
    """Rule-based perception rewards (grounding, counting, OCR, detection) for verl's reward loop.

    Args:
        config: the trainer config (``DictConfig``); ``config.reward.reward_kwargs`` holds the
            per-task reward options.
        tokenizer: the policy's tokenizer, used to decode responses.
        compute_score: what ``load_reward_manager`` passes. verl's own default scorer (or ``None``)
            means "use :func:`verl_perception.rewards.compute_score`"; any other callable (a
            ``custom_reward_function``) is used instead, called as verl calls custom functions.
        reward_router_address, reward_model_tokenizer: passed by ``RewardLoopWorker``; forwarded
            to a custom function when a reward model router is set, as verl's naive manager does.
    """

    def __init__(
        self,
        config: Any,
        tokenizer: Any,
        compute_score: Any = None,
        reward_router_address: str | None = None,
        reward_model_tokenizer: Any = None,
        **_: Any,
    ):
        super().__init__(config, tokenizer, compute_score)
        self.reward_config = reward_config_from(config)
        self.custom_compute_score = None if compute_score is None or _is_verl_default(compute_score) else compute_score
        self.compute_score = self.custom_compute_score or compute_score_with_config(self.reward_config)
        self.is_async_reward_score = inspect.iscoroutinefunction(self.custom_compute_score)
        self.reward_router_address = reward_router_address
        self.reward_model_tokenizer = reward_model_tokenizer
        self._warned_rows: set = set()

    async def run_single(self, data: DataProto) -> dict:
        """Score one rollout; returns ``{"reward_score": float, "reward_extra_info": dict}``."""
        data = data[-1:]  # multi-sequence outputs: the reward is for the last sequence, as in verl
        item = data[0]
        response_ids = item.batch["responses"]
        response_length = response_ids.shape[-1]
        # responses are right-padded: the valid tokens are the first attention_mask.sum() ones
        valid_length = int(item.batch["attention_mask"][-response_length:].sum())
        valid_ids = response_ids[:valid_length]

        non_tensor = item.non_tensor_batch
        data_source = non_tensor.get("data_source")
        reward_model = non_tensor.get("reward_model")
        ground_truth = reward_model.get("ground_truth") if isinstance(reward_model, Mapping) else None
        # a copy: the row's dict is shared by the n rollouts of a prompt
        extra_info = dict(non_tensor.get("extra_info") or {})

        if self.is_async_reward_score:
            solution_str = await self.loop.run_in_executor(None, self._decode, valid_ids)
            result = await self.custom_compute_score(
                data_source=data_source,
                solution_str=solution_str,
                ground_truth=ground_truth,
                extra_info=extra_info,
                **self._router_kwargs(),
            )
            info = self._normalise(result, _task_or_none(data_source, extra_info))
        else:
            # decoding and the numpy reward are CPU-bound: off the event loop, like verl's naive manager
            info = await self.loop.run_in_executor(
                None, self._decode_and_score, valid_ids, data_source, ground_truth, extra_info
            )
        return {"reward_score": info["score"], "reward_extra_info": info}

    # -- helpers (run in the executor) ------------------------------------------------------------

    def _decode(self, ids: Any) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _router_kwargs(self) -> dict:
        if self.reward_router_address is None:
            return {}
        return {
            "reward_router_address": self.reward_router_address,
            "reward_model_tokenizer": self.reward_model_tokenizer,
        }

    def _decode_and_score(self, ids: Any, data_source: Any, ground_truth: Any, extra_info: dict) -> dict:
        solution_str = self._decode(ids)
        if self.custom_compute_score is not None:
            result = self.custom_compute_score(
                data_source=data_source,
                solution_str=solution_str,
                ground_truth=ground_truth,
                extra_info=extra_info,
                **self._router_kwargs(),
            )
            return self._normalise(result, _task_or_none(data_source, extra_info))

        task = resolve_task(data_source, extra_info)  # UnknownTaskError: a data bug, stop the run
        try:
            result = self.compute_score(
                data_source=data_source, solution_str=solution_str, ground_truth=ground_truth, extra_info=extra_info
            )
        except GroundTruthError as e:
            # One bad row must not kill a long run. Every rollout of the row gets 0, so its GRPO
            # group has zero advantage and teaches nothing; the reason shows in the dumps and logs.
            self._warn_bad_row(data_source, extra_info, e)
            result = {"score": 0.0, "reason": f"ground_truth_error: {e}"[:300]}
        return self._normalise(result, task, strict_keys=True)

    def _normalise(self, result: Any, task: str | None, strict_keys: bool = False) -> dict:
        """Map a scorer's result onto the fixed key set (custom scorers' own keys are kept)."""
        info: dict[str, Any] = dict.fromkeys(EXTRA_INFO_KEYS, NOT_APPLICABLE)
        info["task"] = task or ""
        info["reason"] = ""
        if not isinstance(result, Mapping):
            result = {"score": result}
        for key, value in result.items():
            if strict_keys and key not in info:
                continue  # an unexpected component would break verl's batch stacking
            info[key] = _as_value(value)
        try:
            score = float(info["score"])
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            info["reason"] = info["reason"] or f"non-finite score {info['score']!r} replaced by 0"
            score = 0.0
        info["score"] = score
        return info

    def _warn_bad_row(self, data_source: Any, extra_info: Mapping, error: Exception) -> None:
        row = (str(data_source), str(extra_info.get("split")), str(extra_info.get("index")))
        if row in self._warned_rows:
            return
        self._warned_rows.add(row)
        logger.warning(
            "perception reward: malformed ground truth (data_source=%s split=%s index=%s) scored 0: %s",
            *row,
            error,
        )


def compute_score_with_config(reward_config: RewardConfig):
    """``compute_score`` bound to one validated :class:`RewardConfig` (verl's custom-reward signature)."""
    return functools.partial(compute_score, config=reward_config)


def _task_or_none(data_source: Any, extra_info: Mapping) -> str | None:
    try:
        return resolve_task(data_source, extra_info)
    except UnknownTaskError:
        return None
