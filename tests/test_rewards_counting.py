"""Counting reward: Hungarian point matching, count ratio x closeness, format gate, F1."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from verl_perception.rewards import GroundTruthError, compute_score

GT_POINTS = [[100, 100], [200, 150], [300, 300], [50, 400]]
H, W = 448, 644
DIAG = math.hypot(H, W)


def answer(points, key="point_2d"):
    return json.dumps([{key: p, "label": "apple"} for p in points])


def score(ans, points=GT_POINTS, config=None, info=None):
    info = {"input_size": [H, W]} if info is None else info
    return compute_score("pixmo_count", ans, json.dumps({"points": points}), info, config=config)


def test_perfect_answer_gets_the_maximum():
    r = score(answer(GT_POINTS[::-1]))
    assert r == {"score": 1.0, "format": 1.0, "pred_count": 4.0, "gt_count": 4.0, "count_exact": 1.0, "f1": 1.0}


def test_formula_value():
    # Three predictions, each 10 px from a distinct gt point: ratio 3/4, closeness 1 - 10/diag.
    pred = [[110, 100], [200, 160], [300, 290]]
    r = score(answer(pred))
    assert r["score"] == pytest.approx(0.75 * (1 - 10 / DIAG))
    assert r["count_exact"] == 0.0 and r["pred_count"] == 3.0
    assert r["f1"] == pytest.approx(2 * 3 / 7)  # 10 px < 5% of the diagonal


def test_matching_is_optimal_not_greedy():
    # Greedy nearest-first would pair (0,0)->(1,0) and leave (2,0)->(-1,0): total 4. Optimal: 2.
    r = score(answer([[1, 0], [-1, 0]]), points=[[0, 0], [2, 0]])
    assert r["score"] == pytest.approx(1 - 1 / DIAG)


def test_box_centres_count():
    boxes = [[p[0] - 5, p[1] - 5, p[0] + 5, p[1] + 5] for p in GT_POINTS]
    assert score(answer(boxes, key="bbox_2d"))["score"] == 1.0


def test_f1_radius_is_a_fraction_of_the_diagonal():
    pred = [[p[0] + 0.06 * DIAG, p[1]] for p in GT_POINTS]
    assert score(answer(pred))["f1"] == 0.0
    assert score(answer(pred), config={"counting": {"f1_radius": 0.1}})["f1"] == 1.0


def test_empty_cases():
    assert score("[]", points=[]) == {
        "score": 1.0,
        "format": 1.0,
        "pred_count": 0.0,
        "gt_count": 0.0,
        "count_exact": 1.0,
        "f1": 1.0,
    }
    assert score("[]")["score"] == 0.0 and score("[]")["format"] == 1.0
    assert score(answer([[1, 1]]), points=[])["score"] == 0.0


def test_format_failure_scores_zero_but_components_describe_the_answer():
    r = score(answer(GT_POINTS)[:-1] + ', {"point_2d": [1]}]')
    assert r["format"] == 0.0 and r["score"] == 0.0 and r["pred_count"] == 4.0 and r["count_exact"] == 1.0
    assert score("There are four apples.")["score"] == 0.0


def test_far_points_clamp_at_zero_and_huge_numbers_are_finite():
    r = score(answer([[1e308, -1e308]] * 4))
    assert r["score"] == 0.0 and r["format"] == 1.0
    assert math.isfinite(score(answer([[1e6, 1e6]]))["score"])


def test_diagonal_fallback_without_input_size():
    # Without input_size: diagonal of [0, 300] x [0, 400] (farthest gt extent) = 500.
    pred = [[110, 100], [200, 150], [300, 300], [50, 400]]
    r = score(answer(pred), info={})
    assert r["score"] == pytest.approx(1 - (10 / 4) / 500)
    r_np = score(answer(pred), info={"input_size": np.array([H, W])})
    assert r_np["score"] == pytest.approx(1 - (10 / 4) / DIAG)


def test_require_think():
    cfg = {"counting": {"require_think": True}}
    assert score(answer(GT_POINTS), config=cfg)["score"] == 0.0
    assert score("<think>four</think>" + answer(GT_POINTS), config=cfg)["score"] == 1.0


def test_order_does_not_matter_even_with_ties():
    # Symmetric layout: many optimal assignments exist; results must not depend on the order.
    gt = [[0, 0], [10, 0], [0, 10], [10, 10]]
    pred = [[5, 5], [5, 0], [0, 5], [10, 5], [5, 10]]
    base = score(answer(pred), points=gt)
    rng = np.random.default_rng(0)
    for _ in range(10):
        perm = rng.permutation(len(pred))
        assert score(answer([pred[i] for i in perm]), points=gt) == base


@pytest.mark.parametrize("gt", [{"points": [[1, 2, 3]]}, {"points": [[float("nan"), 1]]}, {"count": 3}])
def test_malformed_ground_truth_raises(gt):
    with pytest.raises(GroundTruthError):
        compute_score("pixmo_count", "[]", gt)


def count_only(ans, count):
    return compute_score("pixmo_count", ans, {"points": [], "count": count}, {"input_size": [H, W]})


def test_count_only_ground_truth_scores_the_count_ratio():
    # PixMo-Count val/test rows may have a count but no points: the right count is full marks.
    right = count_only(answer([[1, 1]] * 3), 3)
    assert right["score"] == 1.0 and right["count_exact"] == 1.0 and right["gt_count"] == 3.0
    assert right["f1"] == 1.0
    two = count_only(answer([[1, 1]] * 2), 4)
    assert two["score"] == pytest.approx(0.5) and two["count_exact"] == 0.0
    assert two["f1"] == pytest.approx(2 * 2 / 6)
    assert count_only("[]", 4)["score"] == 0.0
    assert count_only("not json", 3)["score"] == 0.0
    # count 0 with no points is the ordinary "nothing to count" case
    assert count_only("[]", 0)["score"] == 1.0


@pytest.mark.parametrize("gt", [
    {"points": [[1, 2], [3, 4]], "count": 3},
    {"points": [], "count": -1},
    {"points": [], "count": 2.5},
    {"points": [], "count": "3"},
])
def test_inconsistent_count_raises(gt):
    with pytest.raises(GroundTruthError, match="count"):
        compute_score("pixmo_count", "[]", gt)
