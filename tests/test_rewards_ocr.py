"""OCR reward: 1 - normalised edit distance (rapidfuzz), whitespace option, think tags."""

from __future__ import annotations

import json

import pytest

from verl_perception.rewards import GroundTruthError, compute_score
from verl_perception.rewards.ocr import edit_similarity


def score(answer, text, config=None):
    return compute_score("pageocr", answer, json.dumps({"text": text}), {"input_size": [1092, 812]}, config=config)


def test_identical_text_gets_the_maximum():
    assert score("Hello world.\nSecond line.", "Hello world.\nSecond line.") == {
        "score": 1.0,
        "format": 1.0,
        "edit_sim": 1.0,
    }


def test_known_edit_distance_normalised_by_the_longer_string():
    assert score("kitten", "sitting")["edit_sim"] == pytest.approx(1 - 3 / 7)
    assert score("ab", "abcd")["score"] == pytest.approx(0.5)
    assert score("", "abcd")["score"] == 0.0
    assert edit_similarity("", "") == 1.0


def test_whitespace_normalisation_option():
    assert score("Hello   world\n\n next", "Hello world next")["score"] == 1.0
    raw = score("Hello   world", "Hello world", config={"ocr": {"normalize_whitespace": False}})
    assert raw["score"] == pytest.approx(1 - 2 / 13)


def test_answer_tags_and_think():
    assert score("<think>read it</think><answer>Hello</answer>", "Hello")["score"] == 1.0
    cfg = {"ocr": {"require_think": True}}
    assert score("Hello", "Hello", config=cfg) == {"score": 0.0, "format": 0.0, "edit_sim": 1.0}
    assert score("<think>ok</think>Hello", "Hello", config=cfg)["score"] == 1.0
    assert score("<think>cut off", "Hello")["format"] == 0.0


def test_unicode_and_long_answers():
    assert score("漢字とかな 😀", "漢字とかな 😀")["score"] == 1.0
    r = score("x" * 200_000, "short reference text")
    assert 0.0 <= r["score"] < 0.01
    assert score(None, "a")["score"] == 0.0


def test_ground_truth_must_hold_text():
    with pytest.raises(GroundTruthError):
        score("a", None)
