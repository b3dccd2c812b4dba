"""Referring-expression grounding (RefCOCO, RefCOCO+, RefCOCOg): Acc@0.5 and friends.

Protocol (the authors' evaluation): greedy answers; the first box of the answer is the
prediction; IoU with the ground-truth box is computed **in the original image frame** (the
prediction is mapped back from the input frame the model saw, exactly); a row is a hit at
threshold t when IoU >= t. Reported per ``data_source/split``: Acc@0.5 (the benchmark's number),
Acc@0.3, Acc@0.1, mean IoU and centre accuracy (the predicted box's centre lies inside the
ground-truth box). An answer without a valid box has IoU 0 (a miss), never an error.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from verl_perception.boxes import as_boxes, box_area, sanitize_boxes
from verl_perception.metrics.rows import EvalInputError, EvalRow
from verl_perception.parsing import boxes_from_answer, parse_answer
from verl_perception.rewards.inputs import GroundTruthError
from verl_perception.rewards.inputs import gt_box as reward_gt_box

THRESHOLDS = (0.5, 0.3, 0.1)


def gt_box(row: EvalRow) -> np.ndarray:
    """The row's ground-truth box ``(4,)`` in the original frame."""
    try:
        box = reward_gt_box(row.gt)  # (1, 4), read and checked as the grounding reward reads it
    except GroundTruthError as e:
        raise EvalInputError(f"row {row.position}: grounding ground truth needs 'bbox' [x1,y1,x2,y2]: {e}") from e
    return sanitize_boxes(row.to_original(box))[0][0]


def predicted_box(response: str | None) -> tuple[np.ndarray | None, str]:
    """The answer's first valid box ``(4,)`` (as written: the row's answer convention), or ``(None, reason)``."""
    parsed = parse_answer(response or "")
    boxes, _, _ = boxes_from_answer(parsed)
    if len(boxes) == 0:
        return None, ("no JSON in the answer" if not parsed.has_json else "no valid bbox_2d in the answer")
    return boxes[0], ""


def elementwise_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of row i of ``pred`` with row i of ``gt``: ``(N, 4)``, ``(N, 4)`` ordered boxes -> ``(N,)``.

    Same convention as :func:`verl_perception.boxes.box_iou` (continuous pixels, 0 for an empty
    union), without its ``(N, N)`` matrix.
    """
    pred, gt = as_boxes(pred), as_boxes(gt)
    wh = np.clip(np.minimum(pred[:, 2:], gt[:, 2:]) - np.maximum(pred[:, :2], gt[:, :2]), 0.0, None)
    inter = wh[:, 0] * wh[:, 1]
    union = box_area(pred) + box_area(gt) - inter
    out = np.zeros(len(pred))
    np.divide(inter, union, out=out, where=union > 0)
    return out


def accuracy(ious: np.ndarray, threshold: float) -> float:
    """Fraction of rows with ``IoU >= threshold`` (``(N,)`` -> float; 0 for no rows)."""
    ious = np.asarray(ious, dtype=np.float64)
    return float((ious >= threshold).mean()) if ious.size else 0.0


def centre_hits(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the predicted box centre lies inside the ground-truth box (borders included)."""
    c = (pred[:, :2] + pred[:, 2:]) / 2.0
    inside = (c >= gt[:, :2]).all(axis=1) & (c <= gt[:, 2:]).all(axis=1)
    return inside & valid


def summarize(ious: np.ndarray, centres: np.ndarray) -> dict:
    out = {f"acc@{t}": accuracy(ious, t) for t in THRESHOLDS}
    out["miou"] = float(np.mean(ious)) if len(ious) else 0.0
    out["centre_acc"] = float(np.mean(centres)) if len(centres) else 0.0
    out["n"] = int(len(ious))
    return out


def evaluate(rows: Sequence[EvalRow]) -> dict:
    """Score grounding rows.

    Returns ``{"metrics": {...overall..., "groups": {"refcoco/val": {...}}}, "per_row": [...]}``;
    metrics are fractions in [0, 1]; per_row items hold ``iou``, ``hit50``, ``pred_box`` and
    ``gt_box`` (original frame) for the overlays.
    """
    n = len(rows)
    pred = np.zeros((n, 4))
    gt = np.zeros((n, 4))
    valid = np.zeros(n, dtype=bool)
    reasons = []
    for i, row in enumerate(rows):
        gt[i] = gt_box(row)
        box, why = predicted_box(row.response)
        reasons.append(why if row.response is not None else "no response")
        if box is not None:
            clean, ok = sanitize_boxes(row.answer_to_original(box[None]))
            pred[i], valid[i] = clean[0], bool(ok[0])
    ious = np.where(valid, elementwise_iou(pred, gt), 0.0)
    centres = centre_hits(pred, gt, valid)

    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[f"{row.data_source}/{row.split}"].append(i)
    metrics = summarize(ious, centres)
    metrics["groups"] = {k: summarize(ious[idx], centres[idx]) for k, idx in sorted(groups.items())}
    metrics["no_box"] = int((~valid).sum())
    per_row = [
        {
            "position": row.position,
            "index": row.index,
            "group": f"{row.data_source}/{row.split}",
            "iou": float(ious[i]),
            "hit50": bool(ious[i] >= 0.5),
            "pred_box": pred[i].tolist() if valid[i] else None,
            "gt_box": gt[i].tolist(),
            "why": reasons[i],
        }
        for i, row in enumerate(rows)
    ]
    return {"metrics": metrics, "per_row": per_row}
