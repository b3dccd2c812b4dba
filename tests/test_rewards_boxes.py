"""numpy box ops against torchvision's reference implementation, and the COCO category table."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_perception.boxes import (
    MAX_ABS_COORD,
    as_boxes,
    box_area,
    box_iou,
    box_iou_giou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    pairwise_l2,
    sanitize_boxes,
    sanitize_points,
)
from verl_perception.coco import COCO_CATEGORIES, COCO_ID_TO_NAME, COCO_NAME_TO_ID, COCO_NAMES


def _random_boxes(rng, n):
    xy = rng.uniform(0, 500, size=(n, 2))
    wh = rng.uniform(0, 200, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def test_iou_and_giou_match_torchvision():
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 37), _random_boxes(rng, 11)
    iou, giou = box_iou_giou(a, b)
    assert iou.shape == giou.shape == (37, 11)
    np.testing.assert_allclose(iou, ops.box_iou(torch.tensor(a), torch.tensor(b)).numpy(), atol=1e-12)
    np.testing.assert_allclose(giou, ops.generalized_box_iou(torch.tensor(a), torch.tensor(b)).numpy(), atol=1e-12)
    np.testing.assert_array_equal(box_iou(a, b), iou)
    np.testing.assert_array_equal(generalized_box_iou(a, b), giou)


def test_known_values():
    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[5.0, 0.0, 15.0, 10.0], [20.0, 0.0, 30.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    iou, giou = box_iou_giou(a, b)
    np.testing.assert_allclose(iou, [[50 / 150, 0.0, 1.0]])
    # Disjoint: enclosing 30x10=300, union 200 -> GIoU = 0 - 100/300.
    np.testing.assert_allclose(giou, [[50 / 150, -1 / 3, 1.0]])
    assert box_area(b).tolist() == [100.0, 100.0, 100.0]
    assert box_xyxy_to_cxcywh(a).tolist() == [[5.0, 5.0, 10.0, 10.0]]


def test_degenerate_and_empty_inputs_never_give_nan():
    pts = np.array([[5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 0.0, 10.0]])
    iou, giou = box_iou_giou(pts, pts)
    assert np.isfinite(iou).all() and np.isfinite(giou).all() and (iou == 0).all()
    assert box_iou(np.zeros((0, 4)), pts).shape == (0, 2)
    assert box_iou_giou(pts, np.zeros((0, 4)))[1].shape == (2, 0)
    assert as_boxes([]).shape == (0, 4)


def test_sanitize():
    clean, valid = sanitize_boxes([[30, 40, 10, 20], [np.nan, 0, 1, 1], [-1e300, 0, 1e300, np.inf], [0, 0, 1e300, 5]])
    assert valid.tolist() == [True, False, False, True]
    assert clean[0].tolist() == [10, 20, 30, 40]
    assert clean[1].tolist() == [0, 0, 0, 0]
    assert clean[3].tolist() == [0, 0, MAX_ABS_COORD, 5]
    # Clipped coordinates keep areas and IoUs finite.
    assert np.isfinite(box_iou_giou(clean, clean)[1]).all()
    p, v = sanitize_points([[1, 2], [np.inf, 0], [1e300, -1e300]])
    assert v.tolist() == [True, False, True] and np.abs(p).max() == MAX_ABS_COORD


def test_pairwise_l2():
    d = pairwise_l2([[0, 0], [3, 4]], [[0, 0], [6, 8], [1e300, 1e300]])
    assert d[:, :2].tolist() == [[0.0, 10.0], [5.0, 5.0]]
    assert np.isfinite(d).all()  # hypot does not overflow where x*x would


box = st.tuples(*[st.floats(-1e4, 1e4, allow_nan=False)] * 4)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(box, min_size=1, max_size=6), st.lists(box, min_size=1, max_size=6))
def test_iou_giou_bounds_and_symmetry(a, b):
    a, _ = sanitize_boxes(a)
    b, _ = sanitize_boxes(b)
    iou, giou = box_iou_giou(a, b)
    assert ((iou >= 0) & (iou <= 1 + 1e-12)).all()
    assert ((giou >= -1 - 1e-12) & (giou <= iou + 1e-12)).all()
    np.testing.assert_allclose(box_iou_giou(b, a)[1], giou.T, atol=1e-12)


def test_coco_table():
    assert len(COCO_CATEGORIES) == 80 and len(set(COCO_NAMES)) == 80
    assert COCO_NAMES[0] == "person" and COCO_NAMES[-1] == "toothbrush"
    assert COCO_NAME_TO_ID["person"] == 1 and COCO_NAME_TO_ID["stop sign"] == 13
    assert COCO_NAME_TO_ID["dining table"] == 67 and COCO_NAME_TO_ID["toothbrush"] == 90
    ids = [cid for cid, _ in COCO_CATEGORIES]
    assert ids == sorted(ids) and set(range(1, 91)) - set(ids) == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    assert all(COCO_ID_TO_NAME[COCO_NAME_TO_ID[n]] == n for n in COCO_NAMES)
    assert all(n == " ".join(n.split()).lower() for n in COCO_NAMES)
