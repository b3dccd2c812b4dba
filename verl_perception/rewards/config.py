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
    """IoU reward for one referring expression.

    score = IoU ** iou_power (paper: IoU², which sharpens the gradient between a loose and a
    tight box), times ``format`` when ``format_gate`` is set.
    """

    iou_power: float = 2.0
    hit_threshold: float = 0.5
    require_think: bool = False
    format_gate: bool = True


@dataclass(frozen=True)
class CountingConfig:
    """Point-matching reward (paper): count ratio x (1 - mean matched distance / diagonal)."""

    require_think: bool = False


@dataclass(frozen=True)
class OCRConfig:
    """1 - normalised edit distance of the page text."""

    require_think: bool = False
    normalize_whitespace: bool = True


@dataclass(frozen=True)
class DetectionConfig:
    """The authors' composite detection reward, in the Qwen2.5-VL absolute-pixel frame.

    score = format_weight * (1 - malformed/items) + f1_weight * F1 + class_weight * class accuracy
            + iou_weight * mean matched IoU - penalty_weight * (FP rate + FN rate), clamped to
            [min_score, max_score]. Matching: Hungarian on cost_l1 * L1(cx,cy,w,h normalised by the
            input size) + cost_class * (-1[label ok]) + cost_giou * (-GIoU); a pair counts only
            when IoU > match_iou. ``categories`` (None: the 80 COCO names for data_source coco,
            else ``extra_info["categories"]`` or the ground-truth labels) is the label vocabulary:
            labels outside it count as malformed items.
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
    require_think: bool = False


@dataclass(frozen=True)
class RewardConfig:
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    counting: CountingConfig = field(default_factory=CountingConfig)
    ocr: OCRConfig = field(default_factory=OCRConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> RewardConfig:
        """Build from ``{task: {field: value}}`` (an OmegaConf node or a dict); unknown keys raise."""
        if mapping is None:
            return cls()
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
            sub_cls = type(getattr(cls(), task))
            known = {f.name for f in dataclasses.fields(sub_cls)}
            values = dict(values or {})
            bad = sorted(set(values) - known)
            if bad:
                raise ValueError(f"unknown {task} reward option(s) {bad}; known: {sorted(known)}")
            if values.get("categories") is not None:
                values["categories"] = tuple(str(c) for c in values["categories"])
            kwargs[task] = sub_cls(**values)
        return cls(**kwargs)
