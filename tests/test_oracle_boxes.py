"""Independent oracles for the box operations (boxes.py): slow, obvious Python, never the code under test.

Convention (boxes.py): ``[x1, y1, x2, y2]`` continuous pixels, area ``(x2 - x1) * (y2 - y1)`` with no
``+1``; IoU 0 when the union is empty; GIoU (Rezatofighi et al.) = IoU - (|C| - |A u B|) / |C|.
"""

from __future__ import annotations

import math

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

SETTINGS = settings(max_examples=80, deadline=None, database=None)


def oracle_area(b):
    return max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)


def oracle_iou_giou(a, b):
    """IoU and GIoU of two ordered boxes by the definitions, one pair at a time."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    union = oracle_area(a) + oracle_area(b) - inter
    iou = inter / union if union > 0 else 0.0
    enclosing = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    giou = iou - (enclosing - union) / enclosing if enclosing > 0 else iou
    return iou, giou


# Quarter-pixel grid: every area, intersection and union is exact in float64.
grid = st.integers(-400, 2400).map(lambda v: v / 4)


@st.composite
def ordered_box(draw):
    x1, x2 = sorted((draw(grid), draw(grid)))
    y1, y2 = sorted((draw(grid), draw(grid)))
    return (x1, y1, x2, y2)


boxes_list = st.lists(ordered_box(), min_size=0, max_size=6)


@SETTINGS
@given(boxes_list, boxes_list)
def test_iou_and_giou_equal_the_definitions(a, b):
    iou, giou = box_iou_giou(a, b)
    assert iou.shape == giou.shape == (len(a), len(b))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            want_iou, want_giou = oracle_iou_giou(p, q)
            assert iou[i, j] == pytest.approx(want_iou, abs=1e-12)
            assert giou[i, j] == pytest.approx(want_giou, abs=1e-12)
    np.testing.assert_array_equal(box_iou(a, b), iou)
    np.testing.assert_array_equal(generalized_box_iou(a, b), giou)


@pytest.mark.parametrize(
    ("a", "b", "iou", "giou"),
    [
        # identical
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0, 1.0),
        # half overlap along x: inter 50, union 150, enclosing 150
        ((0, 0, 10, 10), (5, 0, 15, 10), 1 / 3, 1 / 3),
        # disjoint, gap 10: union 200, enclosing 300 -> GIoU -1/3
        ((0, 0, 10, 10), (20, 0, 30, 10), 0.0, -1 / 3),
        # corner overlap: inter 25, union 175; enclosing 15x15=225 -> 25/175 - 50/225
        ((0, 0, 10, 10), (5, 5, 15, 15), 1 / 7, 1 / 7 - 50 / 225),
        # nested: inner 4x4 in 8x8 -> 16/64; enclosing = outer
        ((0, 0, 8, 8), (2, 2, 6, 6), 0.25, 0.25),
        # touching edges: zero intersection, union 200, enclosing 200
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0, 0.0),
        # non-square, non-integer: inter 1.5*2=3, union 2*4 + 3*2 - 3 = 11; enclosing 3.5 x 4 = 14
        ((0, 0, 2, 4), (0.5, 1, 3.5, 3), 3 / 11, 3 / 11 - 3 / 14),
        # two empty boxes at one point: both 0
        ((5, 5, 5, 5), (5, 5, 5, 5), 0.0, 0.0),
    ],
)
def test_hand_computed_pairs(a, b, iou, giou):
    got_iou, got_giou = box_iou_giou([a], [b])
    assert got_iou[0, 0] == pytest.approx(iou, abs=1e-12)
    assert got_giou[0, 0] == pytest.approx(giou, abs=1e-12)
    # symmetric
    back_iou, back_giou = box_iou_giou([b], [a])
    assert back_iou[0, 0] == pytest.approx(iou, abs=1e-12) and back_giou[0, 0] == pytest.approx(giou, abs=1e-12)


def test_matrix_layout_rows_are_the_first_argument():
    a = [[0, 0, 10, 10], [100, 100, 110, 110]]
    b = [[0, 0, 10, 20], [0, 0, 10, 10], [105, 100, 115, 110]]
    got = box_iou(a, b)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, [[0.5, 1.0, 0.0], [0.0, 0.0, 50 / 150]])


@SETTINGS
@given(boxes_list)
def test_area_and_cxcywh_by_hand(a):
    np.testing.assert_array_equal(box_area(a), [oracle_area(b) for b in a])
    want = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]) for b in a]
    np.testing.assert_array_equal(box_xyxy_to_cxcywh(a), np.array(want, dtype=np.float64).reshape(-1, 4))


def test_area_of_reversed_box_is_zero_and_cxcywh_keeps_signs():
    assert box_area([[10, 10, 0, 20]]).tolist() == [0.0]
    assert box_area([[0, 10, 10, 0]]).tolist() == [0.0]
    assert box_area([[1, 2, 4, 8]]).tolist() == [18.0]
    assert box_xyxy_to_cxcywh([[1, 2, 4, 8]]).tolist() == [[2.5, 5.0, 3.0, 6.0]]
    assert box_xyxy_to_cxcywh([[4, 8, 1, 2]]).tolist() == [[2.5, 5.0, -3.0, -6.0]]


def test_as_boxes_shape_and_dtype():
    out = as_boxes([[1, 2, 3, 4]])
    assert out.dtype == np.float64 and out.shape == (1, 4)
    assert as_boxes([]).shape == (0, 4)
    assert as_boxes([1, 2, 3, 4, 5, 6, 7, 8]).tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    # integer input does not stay integer: halves survive
    assert (as_boxes(np.array([[1, 2, 3, 4]])) / 2).tolist() == [[0.5, 1.0, 1.5, 2.0]]


def test_sanitize_boxes_orders_clips_and_flags_by_hand():
    raw = [
        [10, 20, 0, 5],  # reversed both ways
        [float("nan"), 0, 1, 1],  # not finite
        [0, float("inf"), 1, 1],
        [-1e300, 0, 1e300, 10],  # clipped
        [1.5, 2.5, 3.5, 4.5],  # untouched
    ]
    clean, valid = sanitize_boxes(raw)
    assert clean.dtype == np.float64 and valid.dtype == bool
    assert valid.tolist() == [True, False, False, True, True]
    assert clean.tolist() == [
        [0, 5, 10, 20],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [-MAX_ABS_COORD, 0, MAX_ABS_COORD, 10],
        [1.5, 2.5, 3.5, 4.5],
    ]
    # all valid: nothing zeroed, nothing flagged
    clean, valid = sanitize_boxes([[3, 4, 1, 2]])
    assert clean.tolist() == [[1, 2, 3, 4]] and valid.tolist() == [True]
    # exactly at the bound, and just inside it, stay as they are
    clean, _ = sanitize_boxes([[-MAX_ABS_COORD, -5, MAX_ABS_COORD, 5]])
    assert clean.tolist() == [[-MAX_ABS_COORD, -5, MAX_ABS_COORD, 5]]


def test_sanitize_points_by_hand():
    clean, valid = sanitize_points([[1, 2], [float("nan"), 3], [4, float("-inf")], [2e7, -3e7], [-5.5, 6.5]])
    assert clean.dtype == np.float64
    assert valid.tolist() == [True, False, False, True, True]
    assert clean.tolist() == [[1, 2], [0, 0], [0, 0], [MAX_ABS_COORD, -MAX_ABS_COORD], [-5.5, 6.5]]
    clean, valid = sanitize_points([[7, 8]])
    assert clean.tolist() == [[7, 8]] and valid.tolist() == [True]
    assert sanitize_points([])[0].shape == (0, 2)


@SETTINGS
@given(
    st.lists(st.tuples(grid, grid), max_size=5),
    st.lists(st.tuples(grid, grid), max_size=5),
)
def test_pairwise_l2_is_euclid(p, q):
    got = pairwise_l2(p, q)
    assert got.shape == (len(p), len(q))
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            assert got[i, j] == pytest.approx(math.sqrt((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2), rel=1e-12)


def test_pairwise_l2_hand_values_and_no_overflow():
    got = pairwise_l2([[0, 0], [3, 0]], [[3, 4], [0, -2.5]])
    np.testing.assert_allclose(got, [[5.0, 2.5], [4.0, math.sqrt(9 + 6.25)]])
    big = pairwise_l2([[1e200, 0]], [[-1e200, 0]])
    assert big[0, 0] == pytest.approx(2e200)
    assert pairwise_l2([1.5, 2.5], [[1.5, 2.5]]).tolist() == [[0.0]]  # flat input reshaped


def test_python_integers_beyond_int64_are_read_as_floats():
    # JSON numbers decode to Python ints of any size; they must be read as float64, never as an
    # object array (whose numpy ufuncs fail).
    clean, valid = sanitize_points([[10**30, 3]])
    assert valid.tolist() == [True] and clean.tolist() == [[MAX_ABS_COORD, 3.0]]
    assert pairwise_l2([[10**30, 0]], [[0, 0]])[0, 0] == pytest.approx(1e30)
    assert pairwise_l2([[0, 0]], [[0, 10**30]])[0, 0] == pytest.approx(1e30)
    clean, valid = sanitize_boxes([[0, 0, 10**30, 5]])
    assert valid.tolist() == [True] and clean.tolist() == [[0, 0, MAX_ABS_COORD, 5]]
