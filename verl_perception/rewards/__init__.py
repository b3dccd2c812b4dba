"""Perception rewards: ``compute_score`` is the public entry point (verl's custom-reward signature).

Every result is a dict with a finite ``"score"``, a ``"format"`` in {0, 1} and the task's own
components (README, "The contract"). Model output never raises; an unknown task or a malformed
ground truth raises a clear error, since those are bugs in the data, not in the rollout.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from verl_perception.rewards.config import (
    CountingConfig,
    DetectionConfig,
    GroundingConfig,
    OCRConfig,
    RewardConfig,
)
from verl_perception.rewards.inputs import GroundTruthError, decode_shared
from verl_perception.tasks import COUNTING, DETECTION, GROUNDING, OCR, UnknownTaskError, resolve_task

__all__ = [
    "compute_score",
    "load_ground_truth",
    "GroundTruthError",
    "RewardConfig",
    "GroundingConfig",
    "CountingConfig",
    "OCRConfig",
    "DetectionConfig",
    "UnknownTaskError",
    "TASK_KEYS",
]

# The components each task reports besides "score" and "format" (the contract's table).
TASK_KEYS: dict[str, tuple[str, ...]] = {
    GROUNDING: ("iou", "hit50"),
    COUNTING: ("pred_count", "gt_count", "count_exact", "f1"),
    OCR: ("edit_sim",),
    DETECTION: ("precision", "recall", "f1", "mean_iou", "num_pred", "num_gt"),
}


def load_ground_truth(ground_truth: Any) -> dict:
    """Decode a ground-truth JSON string (or accept a decoded mapping)."""
    if isinstance(ground_truth, Mapping):
        return dict(ground_truth)
    if isinstance(ground_truth, (bytes, bytearray)):
        ground_truth = ground_truth.decode("utf-8")
    if isinstance(ground_truth, str):
        try:
            value = json.loads(ground_truth)
        except (json.JSONDecodeError, RecursionError) as e:
            raise GroundTruthError(f"ground_truth is not valid JSON: {e}: {ground_truth[:200]!r}") from e
        if isinstance(value, dict):
            return value
    raise GroundTruthError(f"ground_truth must be a JSON object string or a dict, got {type(ground_truth).__name__}")


_SCORERS: dict = {}
_DEFAULT_CONFIG = RewardConfig()


def _scorer(task: str):
    # Imported lazily so that a task's dependencies (rapidfuzz, scipy) load only when used.
    fn = _SCORERS.get(task)
    if fn is not None:
        return fn
    if task == GROUNDING:
        from verl_perception.rewards.grounding import grounding_reward as fn
    elif task == COUNTING:
        from verl_perception.rewards.counting import counting_reward as fn
    elif task == OCR:
        from verl_perception.rewards.ocr import ocr_reward as fn
    else:
        from verl_perception.rewards.detection import detection_reward as fn
    _SCORERS[task] = fn
    return fn


def compute_score(
    data_source: Any,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    config: RewardConfig | Mapping[str, Any] | None = None,
    **_: Any,
) -> dict:
    """Score one completion.

    Args:
        data_source: the row's ``data_source`` (see ``verl_perception.tasks``).
        solution_str: the decoded completion.
        ground_truth: JSON string or dict, coordinates in the input frame (README, contract).
        extra_info: the row's ``extra_info``; ``task`` overrides the data_source lookup,
            ``input_size`` ``[h, w]`` is the frame the model saw.
        config: a :class:`RewardConfig` or ``{task: {option: value}}``; defaults are the paper's.

    Returns:
        ``{"score": float, "format": 0.0|1.0, <task components>}``, all finite floats.
    """
    task = resolve_task(data_source, extra_info)
    if config is None:
        config = _DEFAULT_CONFIG
    elif not isinstance(config, RewardConfig):
        config = RewardConfig.from_mapping(config)
    gt = None
    if isinstance(ground_truth, str):
        try:
            gt = decode_shared(ground_truth)
        except (json.JSONDecodeError, RecursionError):
            gt = None
    if gt is None:
        gt = load_ground_truth(ground_truth)  # raises GroundTruthError with the reason
    info = dict(extra_info) if isinstance(extra_info, Mapping) else {}
    # The detection vocabulary depends on the data_source (COCO names for "coco").
    info.setdefault("data_source", data_source)
    result = _scorer(task)(solution_str, gt, info, getattr(config, task))
    try:
        finite = math.isfinite(sum(result.values()))  # one check for the usual all-finite result
    except TypeError:
        finite = False
    if not finite:
        for key, value in result.items():
            if isinstance(value, float) and not math.isfinite(value):
                result[key] = 0.0  # defensive: a NaN must never reach the advantage computation
    return result
