"""The one answer parser (rewards and evaluation): accepted layouts, malformed counting, robustness."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_perception.parsing import (
    MAX_ITEMS,
    boxes_from_answer,
    find_json,
    item_box,
    item_label,
    item_point,
    labelled_boxes,
    order_corners,
    parse_answer,
    points_from_answer,
    split_answer,
)

ITEMS = [{"bbox_2d": [10, 20, 30, 40], "label": "cat"}, {"bbox_2d": [50, 60, 70, 80], "label": "dog"}]
BODY = json.dumps(ITEMS)
EXPECTED = [[10.0, 20.0, 30.0, 40.0], [50.0, 60.0, 70.0, 80.0]]


@pytest.mark.parametrize(
    "completion",
    [
        BODY,
        f"```json\n{BODY}\n```",
        f"```\n{BODY}```",
        f"Here are the objects:\n```json\n{BODY}\n```\nLet me know if you need more.",
        f"<answer>{BODY}</answer>",
        f"<think>The cat [left] and the dog {{right}}.</think>\n<answer>\n```json\n{BODY}\n```\n</answer>",
        f"<think>x</think>{BODY}",
        f"{BODY} These are all the animals (2 of them).",
        f"I found [some] animals: {BODY}",
        f"Here [1] is the list {BODY}",
        f"<ANSWER>{BODY}</ANSWER>",
        f"prefilled reasoning</think>{BODY}",
        json.dumps({"objects": ITEMS}),
    ],
)
def test_accepted_layouts_give_the_same_boxes(completion):
    parsed = parse_answer(completion)
    boxes, labels, n_bad = boxes_from_answer(parsed)
    assert parsed.has_json and parsed.tags_ok
    assert boxes.tolist() == EXPECTED
    assert labels == ["cat", "dog"]
    assert n_bad == 0


def test_qwen2_vl_tuples_with_and_without_special_tokens():
    native = (
        "<|object_ref_start|>cat<|object_ref_end|><|box_start|>(10,20),(30,40)<|box_end|>"
        "<|object_ref_start|>dog<|object_ref_end|><|box_start|>(50,60),(70,80)<|box_end|>"
    )
    for text in (native, "cat (10,20),(30,40)\ndog (50, 60), (70, 80)"):
        boxes, labels, n_bad = boxes_from_answer(parse_answer(text))
        assert boxes.tolist() == EXPECTED and labels == ["cat", "dog"] and n_bad == 0


def test_single_object_becomes_one_item():
    parsed = parse_answer('{"bbox_2d": [1, 2, 3, 4], "label": "x"}')
    assert len(parsed.items) == 1 and parsed.n_items == 1


def test_empty_list_is_a_valid_empty_answer():
    parsed = parse_answer("```json\n[]\n```")
    assert parsed.has_json and parsed.items == [] and parsed.n_items == 0


def test_cut_off_list_keeps_complete_items_and_counts_the_cut_one():
    text = BODY[:-1] + ', {"bbox_2d": [1, 2, 3'
    parsed = parse_answer(text)
    boxes, _, n_bad = boxes_from_answer(parsed)
    assert boxes.tolist() == EXPECTED
    assert n_bad == 1 and parsed.n_items == 3


def test_non_object_elements_are_malformed():
    parsed = parse_answer('[{"bbox_2d": [1, 2, 3, 4]}, 5, "x", [1, 2, 3, 4]]')
    assert len(parsed.items) == 1 and parsed.n_malformed == 3


@pytest.mark.parametrize("text", ["", "   ", "no json here", "(1, 2)", "{not json", None, 123, b"[]"])
def test_no_answer_found(text):
    parsed = parse_answer(text)
    if text == b"[]":  # bytes are str()-ed, "b'[]'" still holds a list
        assert parsed.has_json
        return
    assert not parsed.has_json and parsed.items == []


def test_bad_coordinates_make_items_invalid_not_errors():
    text = json.dumps(
        [
            {"bbox_2d": [1, 2, 3, 4]},
            {"bbox_2d": [float("nan"), 2, 3, 4]},
            {"bbox_2d": [1, 2, 3]},
            {"bbox_2d": [True, 2, 3, 4]},
            {"bbox_2d": "1,2,3,4"},
            {"bbox_2d": [1, 2, 3, {"x": 1}]},
            {"bbox_2d": ["5", "6", "7", "8"]},
            {"label": "no box"},
        ]
    ).replace("NaN", "NaN")
    text = text[:-1] + ', {"bbox_2d": [1e999, 0, 1, 1]}, {"bbox_2d": [' + "9" * 400 + ", 0, 1, 1]}]"
    boxes, labels, n_bad = boxes_from_answer(parse_answer(text))
    assert boxes.tolist() == [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]
    assert n_bad == 8
    assert np.isfinite(boxes).all()


def test_reversed_corners_are_swapped():
    boxes, _, _ = boxes_from_answer(parse_answer('[{"bbox_2d": [30, 40, 10, 20]}, {"bbox_2d": [10, 40, 30, 20]}]'))
    assert boxes.tolist() == [[10, 20, 30, 40], [10, 20, 30, 40]]
    assert order_corners(np.array([[3.0, 1.0, 1.0, 3.0]])).tolist() == [[1.0, 1.0, 3.0, 3.0]]
    assert order_corners(np.zeros((0, 4))).shape == (0, 4)


def test_points_and_box_centres():
    text = '[{"point_2d": [5, 6]}, {"bbox_2d": [0, 0, 10, 20]}, {"point": [1, 2]}, {"point_2d": [1]}, {"x": 1}]'
    pts, n_bad = points_from_answer(parse_answer(text))
    assert pts.tolist() == [[5, 6], [5, 10], [1, 2]]
    assert n_bad == 2
    assert item_point({"bbox_2d": [10, 0, 0, 20]}) == [5.0, 10.0]


def test_item_helpers():
    assert item_label({"label": "  Traffic_Light "}) == "traffic light"
    assert item_label({"category": "Dining  Table"}) == "dining table"
    assert item_label({"class": 3}) == "3"
    assert item_label({"label": "   "}) is None and item_label({}) is None
    assert item_box({"bbox": [1, 2, 3, 4]}) == [1.0, 2.0, 3.0, 4.0]
    assert item_box({"bbox_2d": [1, 2, 3, float("inf")]}) is None


class TestThink:
    def test_think_is_removed_from_the_payload(self):
        payload, ok, think = split_answer("<think>I see [1, 2]</think><answer>[]</answer>")
        assert (payload, ok, think) == ("[]", True, "I see [1, 2]")

    def test_required_think_missing(self):
        assert split_answer("[]", require_think=True)[1] is False
        assert split_answer("[]", require_think=False)[1] is True
        assert parse_answer("[]", require_think=True).tags_ok is False

    def test_unclosed_think_fails_even_when_not_required(self):
        payload, ok, think = split_answer('<think>long reasoning cut off [{"bbox_2d": [1,2,3,4]}]')
        assert not ok and payload == "" and think is None

    def test_prefilled_think(self):
        payload, ok, think = split_answer("reasoning</think>\n[]", require_think=True)
        assert (payload, ok, think) == ("[]", True, "reasoning")

    def test_case_insensitive_and_unicode_safe(self):
        # "İ".lower() is two characters: positions must come from the original string.
        payload, ok, think = split_answer("İİİ<THINK>ok</Think>[1]")
        assert ok and think == "ok" and payload == "İİİ[1]"


def test_find_json_prefers_answer_like_values_and_falls_back():
    assert find_json('[1, 2] then {"a": 1}') == ({"a": 1}, 0, True)
    assert find_json("[1, 2]") == ([1, 2], 0, True)
    assert find_json("nothing") == (None, 0, False)


def test_item_count_is_capped():
    text = "[" + ",".join(['{"bbox_2d": [1, 2, 3, 4]}'] * (MAX_ITEMS + 50)) + "]"
    parsed = parse_answer(text)
    assert len(parsed.items) <= MAX_ITEMS


@pytest.mark.parametrize(
    "text",
    [
        "<think>" * 30_000,
        "</think>" * 30_000,
        "<answer>" * 30_000,
        "```json\n" * 30_000,
        "[" * 200_000,
        "{" * 200_000,
        "(" * 200_000,
        "(1,2),(3,4)" * 20_000,
        ("1" * 60 + "(") * 3_000,
        '[{"a": "' + "x{" * 100_000,
        "[" + '{"bbox_2d": [1, 2, 3, 4], "label": "person"},' * 10_000,
        "😀 наклейка 標籤 " * 20_000,
        "\x00\ud800\uffff" * 1000,
    ],
)
def test_adversarial_long_answers_parse_without_error(text):
    assert len(text) > 2_000
    parsed = parse_answer(text)
    boxes, labels, _ = boxes_from_answer(parsed)
    assert np.isfinite(boxes).all() and len(labels) == len(boxes)


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=300))
def test_parse_never_raises(text):
    parsed = parse_answer(text)
    boxes, labels, n_bad = boxes_from_answer(parsed)
    pts, n_bad_p = points_from_answer(parsed)
    assert boxes.shape == (len(labels), 4) and pts.shape[1] == 2
    assert n_bad >= 0 and n_bad_p >= 0 and np.isfinite(boxes).all()


coord = st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 3))


@settings(max_examples=100, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(st.lists(coord, min_size=4, max_size=4), st.sampled_from(["person", "car", "hot dog"])), max_size=20
    ),
    st.sampled_from(["{}", "```json\n{}\n```", "<answer>{}</answer>", "<think>hm</think>{} done."]),
)
def test_json_round_trip(items, layout):
    answer = layout.format(json.dumps([{"bbox_2d": b, "label": lab} for b, lab in items]))
    boxes, labels, n_bad = boxes_from_answer(parse_answer(answer))
    expected = order_corners(np.array([b for b, _ in items], dtype=float).reshape(-1, 4))
    assert n_bad == 0 and labels == [lab for _, lab in items]
    assert np.array_equal(boxes, expected)
    assert all(math.isfinite(v) for v in boxes.ravel())


def test_fast_json_path_matches_the_standard_decoder(monkeypatch):
    # parse_answer decodes with orjson when it is installed (verl brings it); the result must be
    # the same as with the standard library alone, on every golden completion.
    import verl_perception.parsing as parsing

    golden = pytest.importorskip("pathlib").Path(__file__).parent / "golden"
    texts = [json.loads(line)["solution_str"] for path in sorted(golden.glob("*.jsonl")) for line in path.open()]
    texts += [BODY, f"```json\n{BODY}\n```", "[1e400]", '[{"bbox_2d": [1, 2, 3, 4], "label": "\\ud800"}]']

    def summary(text):
        p = parse_answer(text)
        boxes, labels, n_bad = boxes_from_answer(p)
        return p.has_json, p.n_items, n_bad, labels, boxes.tolist()

    fast = [summary(t) for t in texts]
    monkeypatch.setattr(parsing, "_fast_loads", None)
    assert [summary(t) for t in texts] == fast


ODD_ITEMS = [
    {"bbox_2d": [30, 40, 10, 20], "label": "Cat"},  # reversed corners, label case
    {"bbox_2d": [1, 2, 3], "label": "cat"},  # wrong length
    {"bbox_2d": [True, 2, 3, 4], "label": "cat"},  # a boolean is not a coordinate
    {"bbox_2d": ["1", "2.5", "3", "4"], "label": "cat"},  # numeric strings are read
    {"bbox_2d": ["1", "x", "3", "4"], "label": "cat"},
    {"bbox_2d": [1e300, -1e300, 5, 6], "label": "cat"},  # clipped
    {"bbox_2d": [10**400, 2, 3, 4], "label": "cat"},  # int too large for a float
    {"bbox_2d": [float("nan"), 2, 3, 4], "label": "cat"},
    {"bbox_2d": [float("inf"), 2, 3, 4], "label": "cat"},
    {"bbox_2d": None, "bbox": [1, 2, 3, 4], "label": "cat"},  # bbox_2d present: bbox ignored
    {"bbox": [5, 6, 7, 8], "category": "hot_dog"},  # fallbacks for both keys
    {"bbox_2d": (1, 2, 3, 4), "class": "dog"},  # tuples (built in code, not JSON)
    {"bbox_2d": [1.5, -2, 3, 4], "label": 7},  # a non-string label
    {"bbox_2d": [1, 2, 3, 4], "label": ""},
    {"bbox_2d": [1, 2, 3, 4]},
    {"label": "cat"},
    {"bbox_2d": [1, 2, 3, 4], "label": "unknown thing"},
]


@pytest.mark.parametrize("items", [ODD_ITEMS, ITEMS, []])
def test_labelled_boxes_matches_boxes_from_answer_item_by_item(items):
    parsed = parse_answer("[]")
    # As parse_answer fills them: the items and the text they were read from.
    parsed.items, parsed.n_malformed, parsed.text = list(items), 2, json.dumps(items)
    index = {"cat": 0, "dog": 1, "hot dog": 2, "7": 3}
    records, n_bad = labelled_boxes(parsed, index)
    boxes, labels, n_bad_array = boxes_from_answer(parsed)
    assert n_bad == n_bad_array
    assert [list(r[:4]) for r in records] == boxes.tolist()
    assert [r[4] for r in records] == [index.get(lab, -1) for lab in labels]


def test_labelled_boxes_matches_boxes_from_answer_on_the_golden_completions():
    golden = pytest.importorskip("pathlib").Path(__file__).parent / "golden"
    texts = [json.loads(line)["solution_str"] for path in sorted(golden.glob("*.jsonl")) for line in path.open()]
    index = {"person": 0, "car": 1, "dog": 2, "cat": 3}
    for text in texts:
        parsed = parse_answer(text)
        records, n_bad = labelled_boxes(parsed, index)
        boxes, labels, n_bad_array = boxes_from_answer(parsed)
        assert (n_bad, [list(r[:4]) for r in records]) == (n_bad_array, boxes.tolist()), text[:200]
        assert [r[4] for r in records] == [index.get(lab, -1) for lab in labels]
