"""Vectorised numpy box operations for the rewards (no torch on the reward path).

Convention: boxes are ``(N, 4)`` float64 arrays ``[x1, y1, x2, y2]`` in absolute pixels of the
input frame (see :mod:`verl_perception.frame`), continuous coordinates, so a box's area is
``(x2 - x1) * (y2 - y1)`` with no ``+1``. Points are ``(N, 2)`` ``[x, y]``. Functions taking
two sets return ``(N, M)`` matrices. Degenerate boxes (zero width or height) are allowed: their
IoU with anything is 0 and nothing divides by zero.
"""

from __future__ import annotations

import numpy as np

# Model output is untrusted: a coordinate of 1e300 would overflow an area to inf and turn an IoU
# into NaN. No input frame comes near this bound (Qwen2.5-VL frames are a few thousand pixels),
# so clipping to it never changes a meaningful box.
MAX_ABS_COORD = 1e7


def as_boxes(boxes) -> np.ndarray:
    """Any array-like of boxes as a ``(N, 4)`` float64 array (an empty input gives ``(0, 4)``)."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def sanitize_boxes(boxes) -> tuple[np.ndarray, np.ndarray]:
    """Make boxes safe to compute with.

    Args:
        boxes: ``(N, 4)`` array-like.

    Returns:
        ``(clean, valid)``: ``clean`` is ``(N, 4)`` float64 with corners ordered (``x1 <= x2``,
        ``y1 <= y2``: reversed corners are swapped, not dropped) and coordinates clipped to
        ``[-MAX_ABS_COORD, MAX_ABS_COORD]``; ``valid`` is ``(N,)`` bool, False for rows that had a
        NaN or an infinity (those rows are zeroed in ``clean``).
    """
    b = as_boxes(boxes)
    valid = np.isfinite(b).all(axis=1)
    if not valid.all():
        b = np.where(valid[:, None], b, 0.0)
    b = np.minimum(np.maximum(b, -MAX_ABS_COORD), MAX_ABS_COORD)
    lo = np.minimum(b[:, :2], b[:, 2:])
    hi = np.maximum(b[:, :2], b[:, 2:])
    return np.concatenate([lo, hi], axis=1), valid


def sanitize_points(points) -> tuple[np.ndarray, np.ndarray]:
    """Points counterpart of :func:`sanitize_boxes`: ``(N, 2)`` -> ``(clean (N, 2), valid (N,))``."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    valid = np.isfinite(p).all(axis=1)
    if not valid.all():
        p = np.where(valid[:, None], p, 0.0)
    return np.minimum(np.maximum(p, -MAX_ABS_COORD), MAX_ABS_COORD), valid


def box_area(boxes) -> np.ndarray:
    """``(N, 4)`` ordered boxes -> ``(N,)`` areas (0 for degenerate boxes)."""
    b = as_boxes(boxes)
    # np.maximum rather than np.clip: same result, a fraction of the call overhead.
    return np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)


def box_xyxy_to_cxcywh(boxes) -> np.ndarray:
    """``(N, 4)`` ``[x1, y1, x2, y2]`` -> ``(N, 4)`` ``[cx, cy, w, h]``."""
    b = as_boxes(boxes)
    return np.concatenate([(b[:, :2] + b[:, 2:]) * 0.5, b[:, 2:] - b[:, :2]], axis=1)


# Dividing by max(denominator, TINY) instead of masking: when a union (or an enclosing box) is
# empty its numerator is 0 too, so the quotient is exactly 0, with a third of the numpy calls.
_TINY = float(np.finfo(np.float64).tiny)


def _overlaps(a: np.ndarray, b: np.ndarray, with_giou: bool):
    # Elementwise max/min of every pair of boxes gives both the intersection (max of the top-left
    # corners, min of the bottom-right ones) and the enclosing box (the opposite). Laid out
    # (4, N, M), one contiguous plane per coordinate, which is twice as fast as (N, M, 4) for
    # large N and never slower for the small matrices of one answer.
    pa = a.T[:, :, None]
    pb = b.T[:, None, :]
    hi = np.maximum(pa, pb)
    lo = np.minimum(pa, pb)
    wh = lo[2:] - hi[:2]
    np.maximum(wh, 0.0, out=wh)
    inter = wh[0] * wh[1]
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = (area_a[:, None] + area_b[None, :]) - inter
    iou = inter / np.maximum(union, _TINY)
    if not with_giou:
        return iou, None
    wh = hi[2:]
    wh -= lo[:2]
    enclosing = wh[0] * wh[1]
    giou = iou - (enclosing - union) / np.maximum(enclosing, _TINY)
    return iou, giou


def box_iou(boxes1, boxes2) -> np.ndarray:
    """Intersection over union.

    Args:
        boxes1: ``(N, 4)`` ordered boxes. boxes2: ``(M, 4)`` ordered boxes.

    Returns:
        ``(N, M)`` IoU in ``[0, 1]``: ``|A ∩ B| / |A ∪ B|`` (0 when the union is empty).
    """
    return _overlaps(as_boxes(boxes1), as_boxes(boxes2), with_giou=False)[0]


def box_iou_giou(boxes1, boxes2) -> tuple[np.ndarray, np.ndarray]:
    """IoU and generalized IoU in one pass (the detection matcher needs both).

    GIoU (Rezatofighi et al., 2019) = ``IoU - (|C| - |A ∪ B|) / |C|`` with ``C`` the smallest
    box enclosing ``A`` and ``B``; it lies in ``[-1, 1]`` and, unlike IoU, still ranks
    non-overlapping boxes by how far apart they are. Both are 0 for two empty boxes.

    Args:
        boxes1: ``(N, 4)`` ordered boxes. boxes2: ``(M, 4)`` ordered boxes.

    Returns:
        ``(iou, giou)``, both ``(N, M)`` float64.
    """
    return _overlaps(as_boxes(boxes1), as_boxes(boxes2), with_giou=True)


def generalized_box_iou(boxes1, boxes2) -> np.ndarray:
    """``(N, 4)``, ``(M, 4)`` ordered boxes -> ``(N, M)`` generalized IoU in ``[-1, 1]``."""
    return box_iou_giou(boxes1, boxes2)[1]


def pairwise_l2(points1, points2) -> np.ndarray:
    """``(N, 2)``, ``(M, 2)`` points -> ``(N, M)`` Euclidean distances (overflow-safe ``hypot``)."""
    p = np.asarray(points1, dtype=np.float64).reshape(-1, 2)
    q = np.asarray(points2, dtype=np.float64).reshape(-1, 2)
    return np.hypot(p[:, None, 0] - q[None, :, 0], p[:, None, 1] - q[None, :, 1])
