"""Grounding reward (RefCOCO/+/g): how well the one predicted box covers the referred object.

Coordinates: absolute pixels ``[x1, y1, x2, y2]`` of the input frame (after ``smart_resize``) for
``ground_truth["bbox"]``; the answer is in the row's family convention (Qwen2.5-VL: the same pixels;
Qwen3-VL: 0..1000 of the image), read into input-frame pixels first (:mod:`verl_perception.frame`).

    score = IoU(pred, gt) ** iou_power * (format if format_gate else 1) + format_weight * format

Defaults (the authors' reward): ``iou_power=2`` (IoU², which sharpens the gap between a loose
and a tight box), plus their separate 0/1 format reward (``format_weight=1``), so a perfect
answer scores 2.0. ``format`` is 1 when the answer is exactly one item with a valid ``bbox_2d``
(an object, or a one-item list) and the think-tag requirement holds. An answer with several items
is scored on its *first valid box* but gets format 0 (the task asks for one box); reversed
corners are swapped, NaN/inf or non-numeric coordinates make an item invalid (IoU 0), huge ones
are clipped so that nothing overflows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from verl_perception.boxes import box_iou, sanitize_boxes
from verl_perception.parsing import boxes_from_answer, parse_answer
from verl_perception.rewards.config import GroundingConfig
from verl_perception.rewards.inputs import answer_scale, gt_box


def grounding_reward(
    solution_str: Any, gt: Mapping[str, Any], extra_info: Mapping[str, Any], cfg: GroundingConfig
) -> dict:
    """Score one grounding completion: ``{"score", "format", "iou", "hit50"}`` (floats)."""
    target = gt_box(gt)
    scale = answer_scale(extra_info)
    parsed = parse_answer(solution_str, require_think=cfg.require_think)
    boxes, _, n_bad = boxes_from_answer(parsed)
    iou = 0.0
    if len(boxes):
        pred, _ = sanitize_boxes(boxes[:1])
        if scale is not None:
            pred = pred * (scale + scale)
        iou = float(box_iou(pred, target)[0, 0])
    fmt = float(parsed.tags_ok and parsed.has_json and len(boxes) == 1 and n_bad == 0)
    accuracy = iou**cfg.iou_power if iou > 0 else 0.0
    if cfg.format_gate:
        accuracy *= fmt
    return {
        "score": float(accuracy + cfg.format_weight * fmt),
        "format": fmt,
        "iou": iou,
        "hit50": float(iou >= cfg.hit_threshold),
    }
