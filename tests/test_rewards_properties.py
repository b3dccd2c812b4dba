"""Property tests (hypothesis) of the reward invariants over all four tasks."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from verl_perception.coco import COCO_NAMES
from verl_perception.rewards import TASK_KEYS, compute_score

H, W = 448, 644
# database=None: tests must not write into the repository (.hypothesis/).
SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

coord = st.integers(0, 640)
box = st.tuples(coord, coord, coord, coord).filter(lambda b: b[0] != b[2] and b[1] != b[3])
label = st.sampled_from(COCO_NAMES[:6])
det_items = st.lists(st.tuples(box, label), max_size=12)
points = st.lists(st.tuples(coord, coord), max_size=12)

GTS = {
    "refcoco": {"bbox": [100, 100, 200, 220]},
    "pixmo_count": {"points": [[10, 10], [100, 50], [300, 200]]},
    "pageocr": {"text": "The quick brown fox."},
    "coco": {
        "boxes": [[10, 20, 60, 120], [100, 100, 180, 160], [300, 50, 340, 90]],
        "labels": ["person", "car", "dog"],
    },
}
BOUNDS = {"refcoco": (0.0, 2.0), "pixmo_count": (0.0, 1.0), "pageocr": (0.0, 1.0), "coco": (0.0, 3.0)}
TASK = {"refcoco": "grounding", "pixmo_count": "counting", "pageocr": "ocr", "coco": "detection"}


def _check(data_source, answer):
    r = compute_score(data_source, answer, json.dumps(GTS[data_source]), {"input_size": [H, W]})
    assert set(r) == {"score", "format", *TASK_KEYS[TASK[data_source]]}
    assert all(type(v) is float and math.isfinite(v) for v in r.values())
    lo, hi = BOUNDS[data_source]
    assert lo <= r["score"] <= hi and r["format"] in (0.0, 1.0)
    return r


json_noise = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(-(10**30), 10**30) | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=5)
        | st.dictionaries(st.sampled_from(["bbox_2d", "point_2d", "label", "x"]), kids, max_size=3)
    ),
    max_leaves=20,
)


@SETTINGS
@given(
    st.sampled_from(sorted(GTS)),
    st.one_of(st.text(max_size=200), json_noise.map(lambda v: json.dumps(v, allow_nan=True))),
)
def test_any_answer_gives_a_finite_bounded_score(data_source, answer):
    _check(data_source, answer)


@SETTINGS
@given(det_items, st.randoms(use_true_random=False))
def test_detection_order_invariance(items, rnd):
    shuffled = items[:]
    rnd.shuffle(shuffled)
    a = _check("coco", json.dumps([{"bbox_2d": b, "label": lab} for b, lab in items]))
    b = _check("coco", json.dumps([{"bbox_2d": b, "label": lab} for b, lab in shuffled]))
    assert a == b


@SETTINGS
@given(points, st.randoms(use_true_random=False))
def test_counting_order_invariance(pts, rnd):
    shuffled = pts[:]
    rnd.shuffle(shuffled)
    a = _check("pixmo_count", json.dumps([{"point_2d": p} for p in pts]))
    b = _check("pixmo_count", json.dumps([{"point_2d": p} for p in shuffled]))
    assert a == b


@SETTINGS
@given(det_items)
def test_detection_never_beats_perfect_and_extra_boxes_cost(items):
    gt = GTS["coco"]
    perfect = [{"bbox_2d": b, "label": lab} for b, lab in zip(gt["boxes"], gt["labels"])]
    assert _check("coco", json.dumps(perfect))["score"] == 3.0
    extra = [{"bbox_2d": b, "label": lab} for b, lab in items]
    assume(extra)
    assert _check("coco", json.dumps(perfect + extra))["score"] < 3.0


@SETTINGS
@given(st.lists(st.tuples(box, label), min_size=1, max_size=60))
def test_spam_of_any_boxes_never_beats_one_correct_box(items):
    gt = {"boxes": [[100, 100, 200, 200]], "labels": ["person"]}
    spam = [{"bbox_2d": b, "label": lab} for b, lab in items] * (1000 // len(items) + 1)
    spam = spam[:1000]
    single = compute_score("coco", '[{"bbox_2d": [100, 100, 200, 200], "label": "person"}]', gt, {"input_size": [H, W]})
    r = compute_score("coco", json.dumps(spam), gt, {"input_size": [H, W]})
    assert r["score"] < single["score"]


@SETTINGS
@given(st.lists(st.tuples(coord, coord), min_size=1, max_size=8), st.integers(1, 4))
def test_counting_perfect_is_maximal_and_scale_free(pts, k):
    gt = {"points": [list(p) for p in pts]}
    ans = json.dumps([{"point_2d": [x * k, y * k]} for x, y in pts])
    r = compute_score("pixmo_count", ans, {"points": (np.array(pts) * k).tolist()}, {"input_size": [H * k, W * k]})
    assert r["score"] == 1.0
    base = compute_score(
        "pixmo_count", json.dumps([{"point_2d": [x + 3, y]} for x, y in pts]), gt, {"input_size": [H, W]}
    )
    scaled = compute_score(
        "pixmo_count",
        json.dumps([{"point_2d": [(x + 3) * k, y * k]} for x, y in pts]),
        {"points": (np.array(pts) * k).tolist()},
        {"input_size": [H * k, W * k]},
    )
    assert abs(base["score"] - scaled["score"]) < 1e-9


def _iou(a, b):
    """IoU of two boxes by its definition (corners ordered first), independent of the code under test."""
    a = (min(a[0], a[2]), min(a[1], a[3]), max(a[0], a[2]), max(a[1], a[3]))
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@SETTINGS
@given(box, box)
def test_grounding_monotone_in_iou(a, b):
    gt = {"bbox": [100, 100, 200, 220]}
    ra = compute_score("refcoco", json.dumps({"bbox_2d": a}), gt)
    rb = compute_score("refcoco", json.dumps({"bbox_2d": b}), gt)
    iou_a, iou_b = _iou(a, gt["bbox"]), _iou(b, gt["bbox"])
    assert math.isclose(ra["iou"], iou_a, abs_tol=1e-12) and math.isclose(rb["iou"], iou_b, abs_tol=1e-12)
    if iou_a > iou_b + 1e-12:
        assert ra["score"] > rb["score"]
    assert math.isclose(ra["score"], iou_a**2 + 1.0, abs_tol=1e-12)


@SETTINGS
@given(st.text(max_size=80), st.text(max_size=80))
def test_ocr_similarity_properties(a, b):
    assume("<" not in a + b)  # tags change the payload; covered in test_rewards_ocr.py
    ra = compute_score("pageocr", a, {"text": b})
    rb = compute_score("pageocr", b, {"text": a})
    assert ra["score"] == rb["score"]
    assert compute_score("pageocr", a, {"text": a})["score"] == 1.0
    assert compute_score("pageocr", a + "x", {"text": a})["score"] < 1.0
