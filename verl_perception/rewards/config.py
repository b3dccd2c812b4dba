"""Reward configuration, one dataclass per task, with the paper's defaults.

In a verl run these come from ``reward.reward_kwargs.<task>.<field>`` (for example
``+reward.reward_kwargs.detection.iou_weight=2.0``); :func:`RewardConfig.from_mapping` validates
them so that a misspelled key fails at start-up instead of being ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GroundingConfig:
    """IoU reward for one referring expression (authors' grounding reward).

    score = IoU(pred, gt) ** iou_power * (format if format_gate else 1) + format_weight * format.
    Paper: IoU² (``iou_power=2``) plus a separate 0/1 format reward summed with it
    (``format_weight=1``); IoU² sharpens the reward between a loose and a tight box.
    ``iou_power=1`` gives the plain IoU. ``hit50`` is ``IoU >= hit_threshold``.
    """

    iou_power: float = 2.0
    hit_threshold: float = 0.5
    format_weight: float = 1.0
    format_gate: bool = False
    require_think: bool = False


@dataclass(frozen=True)
class CountingConfig:
    """Point-matching reward (authors' counting reward).

    score = min(n_pred, n_gt) / max(n_pred, n_gt) * max(0, 1 - mean matched distance / diagonal),
    0 when the format check fails. ``f1_radius`` (a fraction of the diagonal) is the distance
    within which a matched pair counts as a true positive for the ``f1`` component only.
    """

    f1_radius: float = 0.05
    require_think: bool = False


@dataclass(frozen=True)
class OCRConfig:
    """1 - normalised edit distance of the page text (0 when the format check fails)."""

    normalize_whitespace: bool = True
    require_think: bool = False


@dataclass(frozen=True)
class DetectionConfig:
    """The authors' composite detection reward, in the Qwen2.5-VL absolute-pixel frame.

    score = format_weight * (1 - malformed/items) + f1_weight * F1 + class_weight * class accuracy
            + iou_weight * mean matched IoU - penalty_weight * (FP rate + FN rate), clamped to
            [min_score, max_score]. Matching: Hungarian on cost_l1 * L1(cx,cy,w,h normalised by the
            input size) + cost_class * (-1[label ok]) + cost_giou * (-GIoU); a pair counts only
            when IoU > match_iou. ``categories`` (None: ``extra_info["categories"]`` or
            ``["category_names"]``, else the 80 COCO names for data_source coco, else the
            ground-truth labels) is the label vocabulary: labels outside it count as malformed
            items. Only the first ``max_pred_boxes`` valid predicted boxes enter the matching;
            the rest are unmatched (false positives), which bounds the cost of a spammed answer
            without ever rewarding it. Details and edge cases: ``rewards/detection.py``.
    """

    format_weight: float = 0.25
    f1_weight: float = 0.75
    class_weight: float = 1.0
    iou_weight: float = 1.0
    penalty_weight: float = 0.5
    match_iou: float = 0.5
    min_score: float = 0.0
    max_score: float = 3.0
    cost_l1: float = 5.0
    cost_class: float = 1.0
    cost_giou: float = 2.0
    categories: tuple[str, ...] | None = None
    max_pred_boxes: int = 1000
    require_think: bool = False


@dataclass(frozen=True)
class RewardConfig:
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    counting: CountingConfig = field(default_factory=CountingConfig)
    ocr: OCRConfig = field(default_factory=OCRConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> RewardConfig:
        """Build from ``{task: {field: value}}`` (an OmegaConf node or a dict).

        Unknown sections or options and values of the wrong type raise ``ValueError`` naming
        them, so that a misspelled override fails at start-up instead of being ignored.
        """
        if mapping is None:
            return _DEFAULT
        if hasattr(mapping, "items") and not isinstance(mapping, dict):
            try:
                from omegaconf import OmegaConf

                mapping = OmegaConf.to_container(mapping, resolve=True)  # type: ignore[assignment]
            except Exception:
                mapping = dict(mapping)
        kwargs = {}
        tasks = {f.name: f for f in dataclasses.fields(cls)}
        for task, values in dict(mapping).items():
            if task not in tasks:
                raise ValueError(f"unknown reward config section {task!r}; expected one of {sorted(tasks)}")
            sub_cls = type(getattr(_DEFAULT, task))
            fields = {f.name: f for f in dataclasses.fields(sub_cls)}
            values = dict(values or {})
            bad = sorted(set(values) - set(fields))
            if bad:
                raise ValueError(f"unknown {task} reward option(s) {bad}; known: {sorted(fields)}")
            kwargs[task] = sub_cls(**{k: _coerce(f"{task}.{k}", fields[k].type, v) for k, v in values.items()})
        return cls(**kwargs)


def _coerce(name: str, type_name: Any, value: Any) -> Any:
    """``value`` as the option's declared type (annotations are strings here), else ValueError."""
    t = str(type_name)
    try:
        if t == "bool":
            if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
                return value.strip().lower() in ("true", "1")
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise TypeError
        if t == "float":
            if isinstance(value, bool):
                raise TypeError
            out = float(value)
            if out != out:
                raise TypeError
            return out
        if t == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(float(value))
        if t.startswith("tuple[str"):
            if value is None:
                return None
            if isinstance(value, str) or not hasattr(value, "__iter__"):
                raise TypeError
            return tuple(str(c) for c in value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"reward option {name} must be {t}, got {value!r}") from None
    return value


_DEFAULT = RewardConfig()
