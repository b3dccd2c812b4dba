"""Counting reward (PixMo-Count): predicted points matched one-to-one to the reference points.

Coordinates: absolute pixels ``[x, y]`` of the input frame (the answer is read into them from the
row's family convention first, :mod:`verl_perception.frame`). The answer is a list of
``{"point_2d": [x, y]}`` items; ``bbox_2d`` items count by their centres (the authors reduced
predicted boxes to centres).

    ratio  = min(n_pred, n_gt) / max(n_pred, n_gt)
    close  = max(0, 1 - mean_{matched} ||p - g||_2 / D)
    score  = ratio * close            if format else 0

Matching is Hungarian (``scipy.optimize.linear_sum_assignment``) on the L2 distance matrix, so
min(n_pred, n_gt) pairs are matched. ``D`` is the diagonal of the input frame
(``extra_info["input_size"]``); without it, the diagonal of the box from the origin to the
farthest reference point (a lower bound on the image, so the fallback is never more lenient).
Both empty (nothing to count, nothing pointed at) scores 1.0; exactly one of them empty scores 0.

``format`` is 1 when the answer is JSON whose every item has a valid point or box (``[]`` is a
valid empty answer) and the think-tag requirement holds; otherwise the score is 0, as in the
authors' code. Components describe the parsed answer whatever the format: ``pred_count`` (valid
points), ``gt_count``, ``count_exact`` (``pred_count == gt_count``, the benchmark's criterion)
and ``f1``: F1 of matched pairs closer than ``f1_radius * D`` (default 5% of the diagonal, about
one object radius in PixMo-Count's crowded scenes), 1.0 when both are empty.

PixMo-Count's validation and test rows may carry only a count (``{"points": [], "count": N}``,
N > 0): there is nothing to match, so the score is the count ratio alone (``close`` = 1 when both
are non-empty) and ``f1`` is its point-free upper bound ``2 min(n, m) / (n + m)``. A ``count``
that disagrees with a non-empty ``points`` list is a dataset bug (``GroundTruthError``).

Points are put in a canonical order before matching, so the result does not depend on the order
of the answer's items (ties between equally good assignments included).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from verl_perception.boxes import pairwise_l2, sanitize_points
from verl_perception.parsing import parse_answer, points_from_answer
from verl_perception.rewards.config import CountingConfig
from verl_perception.rewards.inputs import answer_scale, gt_count, gt_points, input_size


def _canonical(points: np.ndarray) -> np.ndarray:
    return points[np.lexsort((points[:, 1], points[:, 0]))]


def frame_diagonal(extra_info: Mapping[str, Any], gt: np.ndarray) -> float:
    """Diagonal of the input frame, else of ``[0, max x] x [0, max y]`` of ``gt`` ``(M, 2)``; >= 1."""
    size = input_size(extra_info)
    if size is not None:
        return math.hypot(size[0], size[1])
    if len(gt):
        return max(1.0, float(np.hypot(max(gt[:, 0].max(), 0.0), max(gt[:, 1].max(), 0.0))))
    return 1.0


def counting_reward(
    solution_str: Any, gt: Mapping[str, Any], extra_info: Mapping[str, Any], cfg: CountingConfig
) -> dict:
    """Score one counting completion: ``{"score", "format", "pred_count", "gt_count", "count_exact", "f1"}``."""
    target = _canonical(gt_points(gt))
    count_only = gt_count(gt, len(target))
    scale = answer_scale(extra_info)
    parsed = parse_answer(solution_str, require_think=cfg.require_think)
    pred, n_bad = points_from_answer(parsed)
    pred = sanitize_points(pred)[0]
    if scale is not None:
        pred = pred * scale
    pred = _canonical(pred)
    fmt = float(parsed.tags_ok and parsed.has_json and n_bad == 0)
    n = len(pred)
    m = len(target) if count_only is None else count_only
    if count_only is not None:
        value = 0.0 if n == 0 else min(n, m) / max(n, m)
        f1 = 0.0 if n == 0 else 2.0 * min(n, m) / (n + m)
    elif n == 0 and m == 0:
        value, f1 = 1.0, 1.0
    elif n == 0 or m == 0:
        value, f1 = 0.0, 0.0
    else:
        diag = frame_diagonal(extra_info, target)
        dist = pairwise_l2(pred, target)
        rows, cols = linear_sum_assignment(dist)
        matched = dist[rows, cols]
        value = (min(n, m) / max(n, m)) * max(0.0, 1.0 - float(matched.mean()) / diag)
        tp = int(np.count_nonzero(matched <= cfg.f1_radius * diag))
        f1 = 2.0 * tp / (n + m)
    return {
        "score": float(value * fmt),
        "format": fmt,
        "pred_count": float(n),
        "gt_count": float(m),
        "count_exact": float(n == m),
        "f1": float(f1),
    }
