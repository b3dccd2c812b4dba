"""Object counting (PixMo-Count): exact-count accuracy and mean absolute error.

Protocol (the authors' evaluation): the predicted count is the number of objects the answer
lists — items with a valid ``point_2d`` (or ``bbox_2d``, counted by its centre), parsed by the
same parser as the counting reward; a row is correct when that number equals the ground-truth
count. Reported overall and per ``data_source/split``: accuracy (fraction; the paper prints %),
MAE = mean |pred - gt|, and the mean signed error. An answer without JSON counts 0 objects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from verl_perception.metrics.rows import EvalInputError, EvalRow
from verl_perception.parsing import parse_answer, points_from_answer
from verl_perception.rewards.inputs import GroundTruthError, gt_points
from verl_perception.rewards.inputs import gt_count as gt_count_only


def gt_count(row: EvalRow) -> int:
    """Ground-truth count: the row's ``count`` (the benchmark's label) when given, else ``len(points)``.

    Read and checked as the counting reward reads it (a ``count`` beside points must equal their
    number); a row with a ``count`` and no ``points`` field is accepted here (nothing to match).
    """
    gt = row.gt
    try:
        bare_count = "points" not in gt and gt.get("count") is not None  # nothing to check it against
        n_points = 0 if bare_count else len(gt_points(gt))
        count = gt_count_only(gt, n_points)
    except GroundTruthError as e:
        raise EvalInputError(f"row {row.position}: counting ground truth: {e}") from e
    return n_points if count is None else count


def predicted_points(response: str | None) -> np.ndarray:
    """``(N, 2)`` points of the answer as written (the row's answer convention; invalid items dropped)."""
    pts, _ = points_from_answer(parse_answer(response or ""))
    return pts[np.isfinite(pts).all(axis=1)]


def summarize(pred: np.ndarray, gt: np.ndarray) -> dict:
    """``(N,)`` predicted and ground-truth counts -> accuracy, MAE, mean signed error, n."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.size == 0:
        return {"accuracy": 0.0, "mae": 0.0, "mean_error": 0.0, "n": 0}
    err = pred - gt
    return {
        "accuracy": float((err == 0).mean()),
        "mae": float(np.abs(err).mean()),
        "mean_error": float(err.mean()),
        "n": int(pred.size),
    }


def evaluate(rows: Sequence[EvalRow]) -> dict:
    """Score counting rows: ``{"metrics": {...overall..., "groups": {...}}, "per_row": [...]}``.

    per_row items hold ``pred_count``, ``gt_count``, and the predicted / ground-truth points in
    the original frame for the overlays.
    """
    pred_counts, gt_counts, per_row = [], [], []
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        pts = predicted_points(row.response)
        gtp = np.asarray(row.gt.get("points") or [], dtype=np.float64).reshape(-1, 2)
        n_gt = gt_count(row)
        pred_counts.append(len(pts))
        gt_counts.append(n_gt)
        groups[f"{row.data_source}/{row.split}"].append(i)
        per_row.append(
            {
                "position": row.position,
                "index": row.index,
                "group": f"{row.data_source}/{row.split}",
                "pred_count": int(len(pts)),
                "gt_count": n_gt,
                "correct": bool(len(pts) == n_gt),
                "pred_points": row.answer_to_original(pts).tolist(),
                "gt_points": row.to_original(gtp).tolist(),
            }
        )
    pred = np.asarray(pred_counts, dtype=np.float64)
    gt = np.asarray(gt_counts, dtype=np.float64)
    metrics = summarize(pred, gt)
    metrics["groups"] = {k: summarize(pred[idx], gt[idx]) for k, idx in sorted(groups.items())}
    return {"metrics": metrics, "per_row": per_row}
