"""Answer parsing by hand (parsing.py): each accepted answer form of README's contract, written out
with the values it must give, and the fast paths against the slow ones on the same answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from verl_perception.boxes import MAX_ABS_COORD
from verl_perception.parsing import (
    MAX_ITEMS,
    boxes_from_answer,
    find_json,
    item_box,
    item_label,
    item_point,
    labelled_boxes,
    normalize_label,
    order_corners,
    parse_answer,
    points_from_answer,
    split_answer,
)


def test_split_answer_by_hand():
    assert split_answer("  plain  ") == ("plain", True, None)
    assert split_answer("plain", require_think=True) == ("plain", False, None)
    assert split_answer(None) == ("", True, None)
    assert split_answer(12) == ("12", True, None)
    assert split_answer("<think>why</think> <answer> A </answer> tail") == ("A", True, "why")
    assert split_answer("<THINK>why</Think><ANSWER>b</answer>", True) == ("b", True, "why")
    # a bare </think>: the think block began in the prompt
    assert split_answer("reasoning</think>ans") == ("ans", True, "reasoning")
    # an unclosed <think>: the payload is what precedes it, tags fail
    assert split_answer("before<think>never closed") == ("before", False, None)
    # an unclosed <answer> runs to the end
    assert split_answer("<answer>cut off") == ("cut off", True, None)
    # think block in the middle is removed, what surrounds it is kept
    assert split_answer("a <think>x</think> b") == ("a  b", True, "x")
    assert split_answer("x <b> y", require_think=True) == ("x <b> y", False, None)
    # a </think> after a <think>: the first closing tag after the opening one
    assert split_answer("<think>t1</think>mid</think>end") == ("mid</think>end", True, "t1")
    assert split_answer("a" * 100_005)[0] == "a" * 100_000  # bounded work


def test_find_json_by_hand():
    assert find_json('[{"a": 1}]') == ([{"a": 1}], 0, True)
    assert find_json('see [1] then [{"a": 1}] done') == ([{"a": 1}], 0, True)
    assert find_json("only [1, 2] here") == ([1, 2], 0, True)  # the fallback
    assert find_json("no json") == (None, 0, False)
    assert find_json("[]") == ([], 0, True)
    assert find_json('```json\n[{"a": 2}]\n```\n[{"a": 3}]') == ([{"a": 2}], 0, True)
    assert find_json('```python\n{"a": 4}\n```') == ({"a": 4}, 0, True)
    assert find_json('``` \n{"a": 5}') == ({"a": 5}, 0, True)  # an unclosed fence runs to the end
    # a list cut off by the length limit: the complete objects are kept, the cut one counts
    value, bad, found = find_json('[{"a": 1}, {"a": 2}, {"a": 3')
    assert (value, bad, found) == ([{"a": 1}, {"a": 2}], 1, True)
    value, bad, found = find_json('[{"a": 1}, {"a": oops}, {"a": 3}]')
    assert (value, bad, found) == ([{"a": 1}, {"a": 3}], 1, True)
    assert find_json('[{"a": NaN}]')[0][0]["a"] != find_json('[{"a": NaN}]')[0][0]["a"]  # NaN decoded
    assert find_json('x {"a": 1} y') == ({"a": 1}, 0, True)


def test_parse_answer_items_and_malformed():
    p = parse_answer('[{"bbox_2d": [1, 2, 3, 4]}, 5, "x", {"label": "a"}]')
    assert p.items == [{"bbox_2d": [1, 2, 3, 4]}, {"label": "a"}] and p.n_malformed == 2 and p.n_items == 4
    assert p.has_json and p.tags_ok and p.value[1] == 5
    p = parse_answer('{"objects": [{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [5, 6, 7, 8]}]}')
    assert len(p.items) == 2 and p.n_malformed == 0  # wrapper unwrapped
    p = parse_answer('{"bbox_2d": [1, 2, 3, 4], "extra": [{"a": 1}]}')
    assert p.items == [{"bbox_2d": [1, 2, 3, 4], "extra": [{"a": 1}]}]  # an item, not a wrapper
    p = parse_answer('{"a": [{"x": 1}], "b": [{"y": 2}]}')
    assert len(p.items) == 1  # two lists: the dict itself is the item
    p = parse_answer("[1, 2]")
    assert p.items == [] and p.n_malformed == 2 and p.has_json
    p = parse_answer('"just a string"')
    assert not p.has_json and p.items == []  # a JSON string, but no list or object
    p = parse_answer("42 and [3]")
    assert p.items == [] and p.n_malformed == 1
    p = parse_answer("nothing")
    assert not p.has_json and p.items == [] and p.n_malformed == 0
    big = json.dumps([{"point_2d": [1, 1]}] * (MAX_ITEMS + 10), separators=(",", ":"))  # < MAX_CHARS
    p = parse_answer(big)
    assert len(p.items) == MAX_ITEMS and p.n_malformed == 0
    p = parse_answer("<think>t</think>", require_think=True)
    assert p.tags_ok and p.think == "t" and not p.has_json


def test_qwen2_vl_tuples_by_hand():
    p = parse_answer("<|object_ref_start|>the dog<|object_ref_end|><|box_start|>(10,20),(30,40)<|box_end|>")
    assert p.has_json and p.items == [{"bbox_2d": [10.0, 20.0, 30.0, 40.0], "label": "the dog"}]
    p = parse_answer("cat(1.5, 2), (3, 4e1) and (5,6),(7,8)")
    assert [it["bbox_2d"] for it in p.items] == [[1.5, 2.0, 3.0, 40.0], [5.0, 6.0, 7.0, 8.0]]
    assert p.items[0]["label"] == "cat" and "label" in p.items[1] and p.items[1]["label"] == "and"
    p = parse_answer("(1,2),(3,4)")
    assert p.items == [{"bbox_2d": [1.0, 2.0, 3.0, 4.0]}]


def test_item_readers_by_hand():
    assert item_box({"bbox_2d": [1, 2, 3, 4]}) == [1.0, 2.0, 3.0, 4.0]
    assert item_box({"bbox": ["1", "2.5", 3, 4]}) == [1.0, 2.5, 3.0, 4.0]
    for bad in ([1, 2, 3], [1, 2, 3, float("nan")], [1, 2, 3, True], [1, 2, 3, "x"], "1,2,3,4", None,
                [1, 2, 3, 10**400], [1, 2, 3, "inf"]):
        assert item_box({"bbox_2d": bad}) is None, bad
    assert item_box({"box": [1, 2, 3, 4]}) is None
    assert item_box({"bbox_2d": (1, 2, 3, 4)}) == [1.0, 2.0, 3.0, 4.0]
    assert item_point({"point_2d": [1, 2]}) == [1.0, 2.0]
    assert item_point({"point": [1, "2"]}) == [1.0, 2.0]
    assert item_point({"bbox_2d": [0, 0, 4, 6]}) == [2.0, 3.0]
    assert item_point({"point_2d": [1]}) is None and item_point({"label": "x"}) is None
    assert item_label({"label": " Traffic_Light "}) == "traffic light"
    assert item_label({"category": "Dog"}) == "dog" and item_label({"class": "CAT"}) == "cat"
    assert item_label({"label": None, "category": "x"}) == "x"
    assert item_label({}) is None and item_label({"label": ""}) is None
    assert item_label({"label": 5}) == "5"
    assert normalize_label("A  b_c") == "a b c" and normalize_label("   ") is None and normalize_label(None) == "none"


def _both_paths(answer):
    """boxes_from_answer's result, and labelled_boxes' records for the same answer."""
    p = parse_answer(answer)
    return boxes_from_answer(p), labelled_boxes(p, {"a": 0, "b": 1})


def test_boxes_from_answer_and_labelled_boxes_by_hand():
    (boxes, labels, bad), (records, bad2) = _both_paths(
        '[{"bbox_2d": [30, 40, 10, 20], "label": "A"}, {"bbox_2d": [1, 2, 3, 4], "label": "b"},'
        ' {"bbox_2d": [0, 0, 1]}, {"bbox_2d": [1, 1, 2, 2]}]')
    assert boxes.tolist() == [[10, 20, 30, 40], [1, 2, 3, 4], [1, 1, 2, 2]]
    assert labels == ["a", "b", None] and bad == 1
    assert records == [(10, 20, 30, 40, 0), (1, 2, 3, 4, 1), (1, 1, 2, 2, -1)] and bad2 == 1
    # strings, booleans, NaN, huge values: the slow path on both sides
    (boxes, labels, bad), (records, bad2) = _both_paths(
        '[{"bbox_2d": ["5", 6, 1, 2], "label": "a"}, {"bbox_2d": [true, 0, 1, 1]},'
        ' {"bbox_2d": [0, 0, 1e300, -1e300], "label": "b"}, {"bbox": [0, 0, 2, 2], "label": "x"}]')
    assert boxes.tolist() == [[1, 2, 5, 6], [0, -MAX_ABS_COORD, MAX_ABS_COORD, 0], [0, 0, 2, 2]]
    assert labels == ["a", "b", "x"] and bad == 1
    assert records == [(1.0, 2.0, 5.0, 6.0, 0), (0, -MAX_ABS_COORD, MAX_ABS_COORD, 0, 1), (0, 0, 2, 2, -1)]
    assert bad2 == 1
    # reversed y only, and a label that is not a string
    (boxes, labels, _), (records, _) = _both_paths('[{"bbox_2d": [1, 9, 3, 4], "label": 7}]')
    assert boxes.tolist() == [[1, 4, 3, 9]] and labels == ["7"] and records == [(1, 4, 3, 9, -1)]
    # nothing
    (boxes, labels, bad), (records, bad2) = _both_paths("no answer")
    assert boxes.shape == (0, 4) and labels == [] and bad == 0 and records == [] and bad2 == 0
    # an empty text (parse_answer of a dict built by hand): the boolean check stays on
    from verl_perception.parsing import ParsedAnswer

    p = ParsedAnswer(text="", items=[{"bbox_2d": [True, 0, 1, 1]}, {"bbox_2d": [0, 0, 1, 1], "label": "a"}])
    assert labelled_boxes(p, {"a": 0}) == ([(0, 0, 1, 1, 0)], 1)


def test_points_from_answer_by_hand():
    pts, bad = points_from_answer(parse_answer('[{"point_2d": [1, 2]}, {"point_2d": [3, 4]}]'))
    assert pts.tolist() == [[1, 2], [3, 4]] and bad == 0
    pts, bad = points_from_answer(parse_answer(
        '[{"point_2d": [1, 2]}, {"bbox_2d": [0, 0, 4, 4]}, {"point_2d": [1]}, {"point_2d": [2e300, -2e300]}]'))
    assert pts.tolist() == [[1, 2], [2, 2], [MAX_ABS_COORD, -MAX_ABS_COORD]] and bad == 1
    pts, bad = points_from_answer(parse_answer('[{"point_2d": [false, 1]}, {"point_2d": ["3", 4]}]'))
    assert pts.tolist() == [[3, 4]] and bad == 1
    pts, bad = points_from_answer(parse_answer("[]"))
    assert pts.shape == (0, 2) and bad == 0


def test_order_corners_both_layouts():
    few = np.array([[3, 4, 1, 2], [1, 8, 5, 2]], dtype=float)
    assert order_corners(few).tolist() == [[1, 2, 3, 4], [1, 2, 5, 8]]
    many = np.tile(few, (20, 1))  # more than 16 boxes: the min/max layout
    assert order_corners(many).tolist() == [[1, 2, 3, 4], [1, 2, 5, 8]] * 20
    assert order_corners([]).shape == (0, 4)
    assert order_corners([1, 2, 0, 0]).tolist() == [[0, 0, 1, 2]]


@pytest.mark.parametrize("n", [3, 70])  # the reward's item-by-item path and its array path
def test_fast_and_slow_paths_agree(n):
    rng = np.random.default_rng(n)
    items = [{"bbox_2d": [int(v) for v in rng.integers(-50, 500, 4)], "label": ["a", "b", "c"][k % 3]}
             for k in range(n)]
    p = parse_answer(json.dumps(items))
    boxes, labels, bad = boxes_from_answer(p)
    records, bad2 = labelled_boxes(p, {"a": 0, "b": 1})
    assert bad == bad2 == 0
    for it, b, lab, rec in zip(items, boxes.tolist(), labels, records):
        x1, y1, x2, y2 = it["bbox_2d"]
        want = [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]
        assert b == want and list(rec[:4]) == want and lab == it["label"]
        assert rec[4] == {"a": 0, "b": 1}.get(it["label"], -1)
