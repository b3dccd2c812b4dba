"""Grounding reward: IoU^2 + format, first valid box, reversed corners, bad numbers."""

from __future__ import annotations

import json

import pytest

from verl_perception.rewards import GroundTruthError, compute_score

GT = {"bbox": [100, 100, 200, 200]}
INFO = {"input_size": [448, 644]}


def score(answer, gt=GT, config=None, **info):
    return compute_score("refcoco", answer, json.dumps(gt), {**INFO, **info}, config=config)


def test_perfect_answer_gets_the_maximum():
    for answer in (
        '{"bbox_2d": [100, 100, 200, 200], "label": "the dog"}',
        '[{"bbox_2d": [100, 100, 200, 200]}]',
        '```json\n[{"bbox_2d": [100, 100, 200, 200], "label": "dog"}]\n```',
    ):
        assert score(answer) == {"score": 2.0, "format": 1.0, "iou": 1.0, "hit50": 1.0}


def test_iou_squared_value():
    # Half overlap: intersection 50x100, union 150x100 -> IoU 1/3, reward 1/9 + format 1.
    r = score('{"bbox_2d": [150, 100, 250, 200]}')
    assert r["iou"] == pytest.approx(1 / 3)
    assert r["score"] == pytest.approx(1 / 9 + 1.0)
    assert r["hit50"] == 0.0


def test_plain_iou_option_and_format_weight():
    r = score('{"bbox_2d": [150, 100, 250, 200]}', config={"grounding": {"iou_power": 1, "format_weight": 0}})
    assert r["score"] == pytest.approx(1 / 3)


def test_reversed_corners_are_normalised():
    assert score('{"bbox_2d": [200, 200, 100, 100]}')["iou"] == 1.0
    assert score('{"bbox_2d": [200, 100, 100, 200]}')["iou"] == 1.0


@pytest.mark.parametrize("coords", ["[NaN, 100, 200, 200]", "[Infinity, 100, 200, 200]", '["a", 1, 2, 3]', "[1, 2, 3]"])
def test_bad_numbers_give_zero_iou_and_format_zero(coords):
    r = score('{"bbox_2d": %s}' % coords)
    assert r == {"score": 0.0, "format": 0.0, "iou": 0.0, "hit50": 0.0}


def test_huge_numbers_are_finite():
    r = score('{"bbox_2d": [-1e308, -1e308, 1e308, 1e308]}')
    assert r["iou"] == pytest.approx(0.0, abs=1e-9) and r["format"] == 1.0


def test_several_boxes_use_the_first_valid_one_with_format_zero():
    r = score('[{"bbox_2d": [1, 2]}, {"bbox_2d": [100, 100, 200, 200]}, {"bbox_2d": [0, 0, 10, 10]}]')
    assert r["iou"] == 1.0 and r["format"] == 0.0 and r["score"] == 1.0
    gated = score(
        '[{"bbox_2d": [100, 100, 200, 200]}, {"bbox_2d": [0, 0, 1, 1]}]', config={"grounding": {"format_gate": True}}
    )
    assert gated["score"] == 0.0 and gated["iou"] == 1.0


def test_qwen2_vl_tuple_is_read_in_the_input_frame():
    assert score("<|box_start|>(100,100),(200,200)<|box_end|>")["score"] == 2.0


def test_require_think():
    answer = '{"bbox_2d": [100, 100, 200, 200]}'
    cfg = {"grounding": {"require_think": True}}
    assert score(answer, config=cfg)["format"] == 0.0
    assert score(answer, config=cfg)["score"] == 1.0
    assert score(f"<think>the dog on the left</think><answer>{answer}</answer>", config=cfg)["score"] == 2.0


@pytest.mark.parametrize("answer", ["", "I cannot see it.", "[]", "{}", None, "😀" * 1000, "[" * 100_000])
def test_garbage_is_zero(answer):
    r = score(answer)
    assert r["score"] == 0.0 and r["format"] == 0.0


@pytest.mark.parametrize(
    "gt", [{}, {"bbox": [1, 2, 3]}, {"bbox": [[1, 2, 3, 4], [1, 2, 3, 4]]}, {"bbox": [1, 2, "x", 4]}]
)
def test_malformed_ground_truth_raises(gt):
    with pytest.raises(GroundTruthError):
        score('{"bbox_2d": [1, 2, 3, 4]}', gt=gt)
