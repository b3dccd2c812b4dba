"""Reading a row's ground truth and frame for the rewards (one place for the input checks).

Ground truth comes from our own preprocessing, so a malformed one is a dataset bug: it raises
:class:`GroundTruthError` naming the field, instead of training on a silent zero. Model output is
never checked here (see :mod:`verl_perception.parsing`).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from verl_perception.boxes import MAX_ABS_COORD
from verl_perception.frame import family_of
from verl_perception.parsing import normalize_label


class GroundTruthError(ValueError):
    """The row's ground truth does not follow the contract (a dataset bug)."""


class SharedGroundTruth(dict):
    """A ground truth decoded once and shared by every completion of its row (GRPO scores n
    completions per prompt). Read-only by convention: only the rewards receive it, and the
    detection reward caches its arrays by this object's identity."""


@functools.lru_cache(maxsize=4096)
def decode_shared(text: str) -> SharedGroundTruth | None:
    """Decode a ground-truth JSON string once (LRU); None when it is not a JSON object."""
    value = json.loads(text)
    return SharedGroundTruth(value) if isinstance(value, dict) else None


def input_size(extra_info: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """``extra_info["input_size"]`` as ``(h, w)`` positive floats, or None when absent/invalid.

    Parquet round trips turn lists into numpy arrays; both are accepted.
    """
    if not isinstance(extra_info, Mapping):
        return None
    size = extra_info.get("input_size")
    if size is None:
        return None
    try:
        h, w = size
        h, w = float(h), float(w)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(h) and math.isfinite(w) and h > 0 and w > 0):
        return None
    return h, w


def answer_scale(extra_info: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """``(sx, sy)`` that map the row's answer coordinates to input-frame pixels (multiply x by sx,
    y by sy), or None when the model answers in input-frame pixels (Qwen2.5-VL, and rows without
    ``extra_info["model_family"]``). See :mod:`verl_perception.frame`.

    A family the package does not know, or a relative convention without ``input_size``, is a
    dataset bug: :class:`GroundTruthError`.
    """
    try:
        spec = family_of(extra_info)
    except ValueError as e:
        raise GroundTruthError(f"extra_info['model_family']: {e}") from e
    if spec.coords == "absolute":
        return None
    size = input_size(extra_info)
    if size is None:
        raise GroundTruthError(
            f"extra_info['input_size'] is missing or invalid: {spec.name} answers are relative to the image "
            "and need it to be read in pixels"
        )
    return spec.answer_scale(size)


def _array(gt: Mapping[str, Any], key: str, width: int, allow_empty: bool) -> np.ndarray:
    if key not in gt:
        raise GroundTruthError(f"ground truth has no {key!r} field (keys: {sorted(gt)})")
    try:
        arr = np.asarray(gt[key], dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise GroundTruthError(f"ground truth {key!r} is not numeric: {e}") from e
    if arr.size == 0 and allow_empty:
        return arr.reshape(0, width)
    if arr.ndim == 1 and arr.size == width and not allow_empty:
        arr = arr.reshape(1, width)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise GroundTruthError(f"ground truth {key!r} must have shape (N, {width}), got {arr.shape}")
    # One reduction for both checks (NaN compares False). Beyond MAX_ABS_COORD no image
    # coordinate is meaningful, and products of such values (areas) overflow inside the matching.
    if arr.size and not np.abs(arr).max() <= MAX_ABS_COORD:
        if not np.isfinite(arr).all():
            raise GroundTruthError(f"ground truth {key!r} holds NaN or infinity")
        raise GroundTruthError(
            f"ground truth {key!r} holds a coordinate beyond ±{MAX_ABS_COORD:g} pixels "
            f"(max |value| {np.abs(arr).max():g}): not a pixel position"
        )
    return arr


def gt_box(gt: Mapping[str, Any]) -> np.ndarray:
    """Grounding ground truth ``{"bbox": [x1, y1, x2, y2]}`` -> ``(1, 4)`` ordered box."""
    box = _array(gt, "bbox", 4, allow_empty=False)
    if box.shape[0] != 1:
        raise GroundTruthError(f"ground truth 'bbox' must be one box, got {box.shape[0]}")
    return np.concatenate([np.minimum(box[:, :2], box[:, 2:]), np.maximum(box[:, :2], box[:, 2:])], axis=1)


def gt_points(gt: Mapping[str, Any]) -> np.ndarray:
    """Counting ground truth ``{"points": [[x, y], ...]}`` -> ``(M, 2)`` (M may be 0)."""
    return _array(gt, "points", 2, allow_empty=True)


def gt_count(gt: Mapping[str, Any], n_points: int) -> int | None:
    """The count of a points-free counting row (``{"points": [], "count": N}``, N > 0), else None.

    A ``count`` beside a non-empty ``points`` list must equal its length.
    """
    count = gt.get("count")
    if count is None:
        return None
    try:
        finite = math.isfinite(count)
    except (TypeError, OverflowError):  # not a number, or an integer too large for a float
        finite = False
    if isinstance(count, bool) or not isinstance(count, (int, float, np.integer, np.floating)) \
            or not finite or count < 0 or count > 2**53 or int(count) != count:  # beyond 2**53: not an exact count
        raise GroundTruthError(f"ground truth 'count' must be a non-negative integer, got {count!r}")
    count = int(count)
    if n_points:
        if count != n_points:
            raise GroundTruthError(f"ground truth 'count' is {count} but it has {n_points} points")
        return None
    return count or None


def gt_text(gt: Mapping[str, Any]) -> str:
    """OCR ground truth ``{"text": "..."}`` -> the text."""
    text = gt.get("text")
    if not isinstance(text, str):
        raise GroundTruthError(f"ground truth 'text' must be a string, got {type(text).__name__}")
    return text


def gt_boxes_labels(gt: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
    """Detection ground truth ``{"boxes": [...], "labels": [...]}`` -> ``((M, 4) ordered, M labels)``.

    Labels are normalised like the model's (lower case, single spaces, ``_`` read as a space).
    """
    boxes = _array(gt, "boxes", 4, allow_empty=True)
    labels = gt.get("labels")
    if labels is None or isinstance(labels, (str, bytes)):
        raise GroundTruthError("ground truth 'labels' must be a list of category names")
    if not isinstance(labels, (list, tuple, np.ndarray)) or not all(isinstance(lab, str) for lab in labels):
        raise GroundTruthError("ground truth 'labels' must be a list of category names (strings)")
    labels = [normalize_label(lab) or "" for lab in labels]
    if len(labels) != len(boxes):
        raise GroundTruthError(f"ground truth has {len(boxes)} boxes but {len(labels)} labels")
    boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
    return boxes, labels
