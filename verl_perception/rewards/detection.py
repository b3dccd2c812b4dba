"""Detection reward (COCO): the authors' composite reward, one vectorised pass per completion.

Coordinates: absolute pixels ``[x1, y1, x2, y2]`` of the input frame (after ``smart_resize``) for
``ground_truth["boxes"]`` and for the answer once read from the row's family convention (Qwen3-VL
writes 0..1000 of the image; :mod:`verl_perception.frame`). Defaults in
:class:`~verl_perception.rewards.config.DetectionConfig`.

Items and format. Every element of the answer's JSON list is an item. An item is *malformed*
when it has no valid ``bbox_2d`` (missing, not 4 finite numbers, undecodable, cut off) or its
label is outside the category vocabulary (see :func:`vocabulary`). Reversed corners are swapped.
``format`` (the 0/1 component) is 1 when no item is malformed and the think-tag requirement holds.

Matching. The valid predicted boxes (at most ``max_pred_boxes``, in answer order; the rest are
unmatched false positives) and the ground-truth boxes are matched one-to-one by
``scipy.optimize.linear_sum_assignment`` on the DETR cost

    C[i, j] = cost_l1 * |b_i - g_j|_1 - cost_class * 1[label_i == label_j] - cost_giou * GIoU(b_i, g_j)

where ``b``, ``g`` are ``(cx, cy, w, h)`` divided by the frame's ``(w, h, w, h)`` (the authors
used raw pixels, which lets the L1 term swamp the others on large images; normalised, the cost
is the same at any resolution). A matched pair counts (true positive) only when its IoU is
``> match_iou``. Boxes and labels are put in a canonical order first, so the answer's order
never changes the result.

Score, with TP the number of counted pairs, P the valid predicted boxes and G the ground truth:

    precision = TP / P, recall = TP / G, F1 = 2 TP / (P + G)
    score = format_weight * (1 - malformed / items)                 (0 if the think check fails)
          + f1_weight * F1
          + class_weight * mean_{counted pairs} 1[label right]
          + iou_weight * mean_{counted pairs} IoU
          - penalty_weight * ((P - TP) / P + (G - TP) / G)
    clamped to [min_score, max_score]; defaults 0.25, 0.75, 1, 1, 0.5, IoU > 0.5, [0, 3].

Edge cases (the authors' code crashed or silently dropped them):
- no JSON in the answer: score 0 (as theirs);
- ``[]`` is a valid empty prediction: format term full, FN penalty, so it scores 0 on an image
  with objects (0.25 - 0.5, clamped);
- image without annotations (COCO val keeps 48 of them): ``[]`` is the right answer and scores
  the maximum (precision = recall = F1 = class = IoU terms = 1, no penalty); any box there is a
  false positive (score 0.25 - 0.5 -> 0);
- precision of an empty prediction and recall on an empty image are 0 (1 when both are empty),
  and the rate of a term with an empty denominator is 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from verl_perception.boxes import _TINY, MAX_ABS_COORD
from verl_perception.coco import COCO_NAMES
from verl_perception.parsing import boxes_from_answer, labelled_boxes, normalize_label, parse_answer
from verl_perception.rewards.config import DetectionConfig
from verl_perception.rewards.inputs import SharedGroundTruth, answer_scale, gt_boxes_labels, input_size

# data_source values whose label vocabulary is the 80 COCO category names.
COCO_DATA_SOURCES = frozenset({"coco"})
_COCO_INDEX: dict[str, int] = {name: i for i, name in enumerate(COCO_NAMES)}
# [x1, y1, x2, y2] @ this = [cx, cy, w, h]
_XYXY_TO_CXCYWH = np.array([[0.5, 0.0, -1.0, 0.0], [0.0, 0.5, 0.0, -1.0], [0.5, 0.0, 1.0, 0.0], [0.0, 0.5, 0.0, 1.0]])
# [x1, y1, x2, y2] @ these = [x1, y1, x2, y2, -x2, -y2, -x1, -y1] and [x2 - x1, y2 - y1].
_CORNER_FEATURES = np.concatenate([np.eye(4), -np.eye(4)[:, [2, 3, 0, 1]]], axis=1)
_SIZE_FEATURES = np.array([[-1.0, 0.0], [0.0, -1.0], [1.0, 0.0], [0.0, 1.0]])
_INDEX_CACHE: dict[tuple[str, ...], dict[str, int]] = {}


def _normalise(label: Any) -> str:
    return normalize_label(label) or ""


def _index_of(names: tuple[str, ...]) -> dict[str, int]:
    index = _INDEX_CACHE.get(names)
    if index is None:
        if len(_INDEX_CACHE) > 256:  # bounded: per-row vocabularies must not leak memory
            _INDEX_CACHE.clear()
        index = {}
        for name in names:
            index.setdefault(_normalise(name), len(index))
        _INDEX_CACHE[names] = index
    return index


# Extra-info fields that carry the dataset's label vocabulary, in order of precedence
# (data_preprocess writes the annotation file's names to "category_names").
VOCABULARY_FIELDS = ("categories", "category_names")
# (names object, its length, index) of the last call: the n completions of a row share its
# extra_info, so the names are converted once per row (rows are read-only data).
_LAST_VOCABULARY: list = [None, -1, None]


def vocabulary(cfg: DetectionConfig, extra_info: Mapping[str, Any], gt_labels: list[str]) -> dict[str, int]:
    """The label vocabulary as ``{normalised name: index}``.

    First of: ``cfg.categories``; ``extra_info["categories"]`` or ``extra_info["category_names"]``
    (names, or dicts with a ``"name"``, as COCO's ``categories``); the 80 COCO names when
    ``extra_info["data_source"]`` is ``coco`` (compute_score fills it in); else the row's
    ground-truth labels (a fallback: then a plausible label absent from this image counts as
    malformed, so give the vocabulary for your own datasets).
    """
    if cfg.categories is not None:
        return _index_of(tuple(cfg.categories))
    if isinstance(extra_info, Mapping):
        for field in VOCABULARY_FIELDS:
            cats = extra_info.get(field)
            if cats is None or isinstance(cats, (str, bytes)) or not hasattr(cats, "__len__") or len(cats) == 0:
                continue
            if cats is _LAST_VOCABULARY[0] and len(cats) == _LAST_VOCABULARY[1]:
                return _LAST_VOCABULARY[2]
            try:
                names = tuple(cats)
                index = _INDEX_CACHE.get(names)  # seen before: skip the per-name conversion
            except TypeError:  # unhashable elements (COCO-style dicts)
                index = None
            if index is None:
                try:
                    names = tuple(str(c["name"] if isinstance(c, Mapping) else c) for c in cats)
                except (TypeError, KeyError):
                    continue
                if not names:
                    continue
                index = _index_of(names)
            _LAST_VOCABULARY[:] = [cats, len(names), index]
            return index
        source = extra_info.get("data_source")
        if source is not None and str(source).strip().lower() in COCO_DATA_SOURCES:
            return _COCO_INDEX
    return _index_of(tuple(gt_labels))


def _result(score, fmt, precision, recall, f1, mean_iou, num_pred, num_gt) -> dict:
    return {
        "score": float(score),
        "format": float(fmt),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "mean_iou": float(mean_iou),
        "num_pred": float(num_pred),
        "num_gt": float(num_gt),
    }


# Up to this many answer items are read item by item in Python (labelled_boxes) and sorted as
# tuples; longer answers (box spam) take the array path, whose numpy calls cost more up front
# but far less per box.
_FEW_ITEMS = 64


def _canonical(records: list[tuple] | np.ndarray) -> np.ndarray:
    """``(K, 5)`` ``(x1, y1, x2, y2, label_id)`` records (tuples or an array) as an array in an
    order that depends only on their multiset (lexicographic), so the answer's order never
    changes the matching."""
    if isinstance(records, list):
        return np.array(sorted(records), dtype=np.float64).reshape(-1, 5)  # tuple order: x1, y1, x2, y2, id
    # Same order as sorting the tuples (lexsort's last key is the primary one), in C.
    return records[np.lexsort(records.T[::-1])]


def _predictions(parsed, index: dict[str, int], cap: int) -> tuple[np.ndarray, int, int]:
    """The answer's valid boxes with a known label: ``(records (K, 5) in canonical order, at most
    ``cap`` of them, taken in answer order; n_pred, the count before the cap; n_malformed)``."""
    if len(parsed.items) <= _FEW_ITEMS:
        records, n_bad = labelled_boxes(parsed, index)
        known = [r for r in records if r[4] >= 0]
        return _canonical(known[:cap]), len(known), n_bad + len(records) - len(known)
    boxes, names, n_bad = boxes_from_answer(parsed)
    ids = np.array([index.get(name, -1) for name in names], dtype=np.float64)
    known = ids >= 0
    n_pred = int(np.count_nonzero(known))
    records = np.concatenate([boxes, ids[:, None]], axis=1)
    if n_pred < len(ids):
        records = records[known]
    return _canonical(records[:cap]), n_pred, n_bad + len(ids) - n_pred


def _plain_gt_records(gt: Mapping[str, Any]) -> list[tuple] | None:
    """``[((x1, y1, x2, y2), label), ...]`` of a ground truth made of plain JSON numbers and
    string labels (what data_preprocess writes), read in Python; None for anything else, which
    :func:`~verl_perception.rewards.inputs.gt_boxes_labels` then checks. Same values as that
    reader: corners ordered, labels normalised."""
    boxes, labels = gt.get("boxes"), gt.get("labels")
    if type(boxes) is not list or type(labels) is not list or len(boxes) != len(labels):
        return None
    out = []
    for box, label in zip(boxes, labels):
        if type(box) is not list or len(box) != 4 or type(label) is not str:
            return None
        x1, y1, x2, y2 = box
        if not (type(x1) in _NUMBER and type(y1) in _NUMBER and type(x2) in _NUMBER and type(y2) in _NUMBER):
            return None
        try:
            x1, y1, x2, y2 = float(x1), float(y1), float(x2), float(y2)
        except OverflowError:
            return None
        if not math.isfinite(x1 + y1 + x2 + y2):  # NaN and infinities propagate
            return None
        if max(abs(x1), abs(y1), abs(x2), abs(y2)) > MAX_ABS_COORD:  # the shared reader says why
            return None
        out.append(((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), normalize_label(label) or ""))
    return out


_NUMBER = frozenset({int, float})
_FEATURES_CACHE: dict[tuple, np.ndarray] = {}


def _to_features(frame_hw: tuple[float, float], cost_l1: float) -> np.ndarray:
    """``(14, 5)`` matrix that maps a ``(x1, y1, x2, y2, label_id)`` record (a column) to its
    features ``[x1, y1, x2, y2, -x2, -y2, -x1, -y1]`` (whose pairwise maxima hold both the
    intersection and the enclosing box), ``cost_l1 * (cx, cy, w, h) / (W, H, W, H)`` of the frame
    (whose city-block distance is the weighted, scale-free L1 term) and ``[x2 - x1, y2 - y1]``:
    one matmul per completion, exact for the corner and size rows (coefficients 0 and +-1).
    Cached: a dataset has a handful of frame sizes."""
    key = (frame_hw, cost_l1)
    out = _FEATURES_CACHE.get(key)
    if out is None:
        h, w = frame_hw
        to_unit = (cost_l1 * np.array((1.0 / w, 1.0 / h, 1.0 / w, 1.0 / h)))[:, None] * _XYXY_TO_CXCYWH
        out = np.concatenate([_CORNER_FEATURES, to_unit, _SIZE_FEATURES], axis=1)
        out = np.ascontiguousarray(np.concatenate([out, np.zeros((1, 14))]).T)  # label id: unused
        out.flags.writeable = False
        if len(_FEATURES_CACHE) >= 1024:
            _FEATURES_CACHE.clear()
        _FEATURES_CACHE[key] = out
    return out


class _PreparedGT:
    """A row's ground truth as arrays, in canonical order, with what every completion reuses."""

    __slots__ = ("boxes", "names", "area", "positive", "_ids", "_unit")

    def __init__(self, gt: Mapping[str, Any]):
        records = _plain_gt_records(gt)
        if records is None:  # anything unusual: the shared reader checks it (or raises)
            boxes, names = gt_boxes_labels(gt)
            records = [(tuple(b), n) for b, n in zip(boxes.tolist(), names)]
        # Canonical order (boxes, then names), so that the ground truth's order never matters.
        records.sort()
        self.names = [n for _, n in records]
        self.boxes = np.array([b for b, _ in records], dtype=np.float64).reshape(-1, 4)
        areas = [(b[2] - b[0]) * (b[3] - b[1]) for b, _ in records]
        self.area = np.array(areas, dtype=np.float64)
        self.positive = all(a > 0 for a in areas)
        self._ids: tuple[dict, np.ndarray, list] | None = None
        self._unit: tuple | None = None

    def ids(self, index: dict[str, int]) -> np.ndarray:
        """``(M,)`` float label ids; labels outside the vocabulary get ids no prediction can have."""
        if self._ids is None or self._ids[0] is not index:
            ids = [float(index.get(name, -2 - i)) for i, name in enumerate(self.names)]
            self._ids = (index, np.array(ids), ids)
        return self._ids[1]

    def id_list(self, index: dict[str, int]) -> list[float]:
        """:meth:`ids` as a list."""
        self.ids(index)
        return self._ids[2]

    def features(self, frame_hw: tuple[float, float], cost_l1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(to_features (14, 5), corner planes (8, M), weighted unit cxcywh (M, 4))``; see
        :func:`_to_features`."""
        key = (frame_hw, cost_l1)
        if self._unit is None or self._unit[0] != key:
            to_features = _to_features(frame_hw, cost_l1)
            f = to_features[:12, :4] @ self.boxes.T  # (12, M)
            self._unit = (key, to_features, f[:8], np.ascontiguousarray(f[8:12].T))
        return self._unit[1], self._unit[2], self._unit[3]


_PREPARED: dict[int, tuple[SharedGroundTruth, _PreparedGT]] = {}


def _prepare(gt: Mapping[str, Any]) -> _PreparedGT:
    # Only ground truths decoded by compute_score's shared cache are memoised: they are ours and
    # never mutated, and holding them here keeps their id() from being reused.
    if type(gt) is not SharedGroundTruth:
        return _PreparedGT(gt)
    hit = _PREPARED.get(id(gt))
    if hit is not None and hit[0] is gt:
        return hit[1]
    prepared = _PreparedGT(gt)
    if len(_PREPARED) >= 4096:
        _PREPARED.clear()
    _PREPARED[id(gt)] = (gt, prepared)
    return prepared


def _match(pred: np.ndarray, gt: _PreparedGT, index: dict, frame_hw, cfg: DetectionConfig) -> tuple[int, float, int]:
    """Hungarian matching of ``pred``, ``(K, 5)`` records ``(x1, y1, x2, y2, label_id)``, to the
    ground truth.

    Returns ``(tp, iou_sum, tp_same_label)`` over the counted pairs (IoU > ``cfg.match_iou``).
    """
    g_ids = gt.ids(index)
    # The assignment does not change when the whole cost is divided by cost_class > 0; then the
    # class term is a plain subtraction of the equality matrix (the default weight is 1).
    scale = cfg.cost_class if cfg.cost_class > 0 else 1.0
    to_features, g_planes, g_unit = gt.features(frame_hw, cfg.cost_l1 / scale)
    f = to_features @ pred.T  # (14, K), see _to_features
    p_area, p_ids = f[12] * f[13], pred[:, 4]
    # Matrices are laid out (rows, columns) with the longer side as columns, the axis numpy's
    # broadcast loops run along (box spam: K >> M). scipy solves a tall matrix as its
    # transpose, so both layouts give the same assignment.
    transposed = len(p_ids) > len(g_ids)
    if transposed:
        r_planes, r_area, r_unit, r_ids = g_planes[:, :, None], gt.area[:, None], g_unit, g_ids[:, None]
        c_planes, c_area, c_unit, c_ids = f[:8, None, :], p_area, f[8:12].T, p_ids
    else:
        r_planes, r_area, r_unit, r_ids = f[:8, :, None], p_area[:, None], f[8:12].T, p_ids[:, None]
        c_planes, c_area, c_unit, c_ids = g_planes[:, None, :], gt.area, g_unit, g_ids
    # Pairwise maxima of [x1, y1, x2, y2, -x2, -y2, -x1, -y1], (8, rows, columns); the two
    # halves summed give [-iw, -ih, ew, eh]: minus the intersection's width and height, and the
    # enclosing box's.
    s = np.maximum(r_planes, c_planes)
    s = s[:4] + s[4:]
    np.minimum(s[:2], 0.0, out=s[:2])
    inter, enclosing = s[0::2] * s[1::2]  # (-iw)(-ih) and ew * eh
    union = r_area + c_area
    union -= inter
    if not gt.positive:  # else union >= the gt area > 0 and enclosing >= union: no division by zero
        np.maximum(union, _TINY, out=union)
        np.maximum(enclosing, _TINY, out=enclosing)
    iou = inter / union
    # GIoU = IoU - (enclosing - union) / enclosing = IoU + union / enclosing - 1; the constant
    # does not change the assignment.
    giou = union / enclosing
    giou += iou
    if cfg.cost_giou != scale:
        giou *= cfg.cost_giou / scale
    cost = cdist(r_unit, c_unit, "cityblock")
    cost -= giou
    if cfg.cost_class > 0:
        cost -= r_ids == c_ids
    elif cfg.cost_class < 0:  # not a sensible weight, but scored as configured
        cost -= cfg.cost_class * (r_ids == c_ids)
    rows, cols = linear_sum_assignment(cost)
    # The counted pairs, read in Python: a handful of values, cheaper than more numpy calls.
    tp, iou_sum, tp_same = 0, [], 0
    threshold = cfg.match_iou
    r_list, c_list = (gt.id_list(index), p_ids.tolist()) if transposed else (p_ids.tolist(), gt.id_list(index))
    for value, r, c in zip(iou[rows, cols].tolist(), rows.tolist(), cols.tolist()):
        if value > threshold:
            tp += 1
            iou_sum.append(value)
            tp_same += r_list[r] == c_list[c]
    return tp, math.fsum(iou_sum), tp_same


def match(pred, pred_labels, gt, gt_labels, frame_hw, cfg: DetectionConfig) -> tuple[int, float, int]:
    """Hungarian matching of predictions to ground truth (the reward's matcher, standalone).

    Args:
        pred: ``(K, 4)`` boxes; pred_labels: ``(K,)`` label names.
        gt: ``(M, 4)`` boxes; gt_labels: ``(M,)`` label names.
        frame_hw: ``(h, w)`` of the input frame, which normalises the L1 term.

    Returns:
        ``(tp, iou_sum, tp_same_label)``: the counted pairs (IoU > ``cfg.match_iou``), the sum of
        their IoUs and how many of them have the right label.
    """
    prepared = _PreparedGT(
        {"boxes": np.asarray(gt, dtype=np.float64).reshape(-1, 4).tolist(), "labels": list(gt_labels)}
    )
    index = _index_of(tuple(prepared.names) + tuple(str(x) for x in pred_labels))
    boxes = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
    records = [(*b, index[_normalise(x)]) for b, x in zip(boxes.tolist(), pred_labels)]
    return _match(_canonical(records), prepared, index, tuple(map(float, frame_hw)), cfg)


def detection_reward(
    solution_str: Any, gt: Mapping[str, Any], extra_info: Mapping[str, Any], cfg: DetectionConfig
) -> dict:
    """Score one detection completion.

    Returns ``{"score", "format", "precision", "recall", "f1", "mean_iou", "num_pred", "num_gt"}``
    (floats; ``num_pred`` counts valid predicted boxes with a known label).
    """
    prepared = _prepare(gt)
    n_gt = len(prepared.names)
    scale = answer_scale(extra_info)
    parsed = parse_answer(solution_str, require_think=cfg.require_think)
    if not parsed.has_json:
        return _result(min(max(0.0, cfg.min_score), cfg.max_score), 0, 0, 0, 0, 0, 0, n_gt)

    index = vocabulary(cfg, extra_info, prepared.names)
    cap = max(int(cfg.max_pred_boxes), 0)
    pred, n_pred, malformed = _predictions(parsed, index, cap)
    if scale is not None and len(pred):
        pred[:, :4] *= scale + scale  # the answer's 0..1000 -> input-frame pixels (a positive scale keeps the order)
    n_items = parsed.n_items
    fmt_fraction = 1.0 - malformed / n_items if n_items else 1.0
    tags = float(parsed.tags_ok)
    fmt = float(parsed.tags_ok and malformed == 0)

    if n_pred == 0 and n_gt == 0:
        precision = recall = f1 = class_acc = mean_iou = 1.0
        tp = 0
    else:
        tp, class_acc, mean_iou = 0, 0.0, 0.0
        if len(pred) and n_gt:
            tp, iou_sum, tp_same = _match(pred, prepared, index, _frame(extra_info, prepared.boxes), cfg)
            if tp:
                mean_iou = iou_sum / tp
                class_acc = tp_same / tp
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gt if n_gt else 0.0
        f1 = 2.0 * tp / (n_pred + n_gt)
    fp_rate = (n_pred - tp) / n_pred if n_pred else 0.0
    fn_rate = (n_gt - tp) / n_gt if n_gt else 0.0
    score = (
        cfg.format_weight * fmt_fraction * tags
        + cfg.f1_weight * f1
        + cfg.class_weight * class_acc
        + cfg.iou_weight * mean_iou
        - cfg.penalty_weight * (fp_rate + fn_rate)
    )
    score = min(max(score, cfg.min_score), cfg.max_score)
    return _result(score, fmt, precision, recall, f1, mean_iou, n_pred, n_gt)


def _frame(extra_info: Mapping[str, Any], gt_boxes: np.ndarray) -> tuple[float, float]:
    """``(h, w)`` of the input frame; without ``input_size``, the extent of the ground truth."""
    size = input_size(extra_info)
    if size is not None:
        return size
    return max(1.0, float(gt_boxes[:, 3].max())), max(1.0, float(gt_boxes[:, 2].max()))
