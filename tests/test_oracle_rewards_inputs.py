"""The rewards' inputs by hand: ground-truth readers (values and the error each bad field gets),
the config reader's coercions, and the edge values of the formulas that the oracles above do not
reach (IoU power 0, the counting fallback diagonal's floor)."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pytest

from verl_perception.rewards import GroundTruthError, RewardConfig, compute_score, load_ground_truth
from verl_perception.rewards.counting import frame_diagonal
from verl_perception.rewards.inputs import gt_box, gt_boxes_labels, gt_points, gt_text


def test_load_ground_truth():
    assert load_ground_truth('{"a": 1}') == {"a": 1}
    assert load_ground_truth(b'{"t": "\xc3\xa9"}') == {"t": "é"}  # bytes are UTF-8
    assert load_ground_truth(bytearray(b'{"a": 2}')) == {"a": 2}
    src = types.MappingProxyType({"b": 1})
    out = load_ground_truth(src)
    assert out == {"b": 1} and type(out) is dict
    long = "x" * 300
    with pytest.raises(GroundTruthError, match=r"ground_truth is not valid JSON: .*: 'x{200}'$"):
        load_ground_truth(long)
    with pytest.raises(GroundTruthError, match="must be a JSON object string or a dict, got str"):
        load_ground_truth("[1, 2]")  # JSON, but not an object
    with pytest.raises(GroundTruthError, match="got int"):
        load_ground_truth(5)
    with pytest.raises(GroundTruthError, match="not valid JSON"):
        compute_score("refcoco", "{}", "{broken")


def test_ground_truth_readers_by_hand():
    assert gt_box({"bbox": [30, 40, 10, 20]}).tolist() == [[10, 20, 30, 40]]
    assert gt_box({"bbox": [[1, 2, 3, 4]]}).shape == (1, 4)
    with pytest.raises(GroundTruthError, match=r"'bbox' must be one box, got 2"):
        gt_box({"bbox": [[1, 2, 3, 4], [1, 2, 3, 4]]})
    with pytest.raises(GroundTruthError, match=r"'bbox' must have shape \(N, 4\), got \(0,\)"):
        gt_box({"bbox": []})
    with pytest.raises(GroundTruthError, match=r"ground truth has no 'bbox' field \(keys: \['box'\]\)"):
        gt_box({"box": [1, 2, 3, 4]})
    with pytest.raises(GroundTruthError, match="'bbox' is not numeric"):
        gt_box({"bbox": ["a", 2, 3, 4]})
    with pytest.raises(GroundTruthError, match="'bbox' holds NaN or infinity"):
        gt_box({"bbox": [1, 2, float("inf"), 4]})
    assert gt_points({"points": []}).shape == (0, 2)
    with pytest.raises(GroundTruthError, match=r"'points' must have shape \(N, 2\), got \(2,\)"):
        gt_points({"points": [1, 2]})
    assert gt_text({"text": "abc"}) == "abc"
    with pytest.raises(GroundTruthError, match="'text' must be a string, got NoneType"):
        gt_text({})
    with pytest.raises(GroundTruthError, match="'text' must be a string, got int"):
        gt_text({"text": 3})
    boxes, labels = gt_boxes_labels({"boxes": [[5, 6, 1, 2]], "labels": ["Traffic_Light"]})
    assert boxes.tolist() == [[1, 2, 5, 6]] and labels == ["traffic light"]
    boxes, labels = gt_boxes_labels({"boxes": [], "labels": []})
    assert boxes.shape == (0, 4) and labels == []
    _, labels = gt_boxes_labels({"boxes": [[0, 0, 1, 1]], "labels": ["  "]})
    assert labels == [""]
    for bad in (None, "person"):
        with pytest.raises(GroundTruthError, match="^ground truth 'labels' must be a list of category names$"):
            gt_boxes_labels({"boxes": [[0, 0, 1, 1]], "labels": bad})
    with pytest.raises(GroundTruthError, match="ground truth has 1 boxes but 2 labels"):
        gt_boxes_labels({"boxes": [[0, 0, 1, 1]], "labels": ["a", "b"]})


def test_reward_config_reader():
    cfg = RewardConfig.from_mapping({"grounding": {"iou_power": "1", "format_gate": "True"},
                                     "detection": {"max_pred_boxes": 7.0, "categories": ["a", "b"]}})
    assert cfg.grounding.iou_power == 1.0 and type(cfg.grounding.iou_power) is float
    assert cfg.grounding.format_gate is True
    assert cfg.detection.max_pred_boxes == 7 and type(cfg.detection.max_pred_boxes) is int
    assert cfg.detection.categories == ("a", "b")
    for text, want in (("true", True), (" TRUE ", True), ("1", True), ("false", False), ("False", False), ("0", False)):
        assert RewardConfig.from_mapping({"ocr": {"require_think": text}}).ocr.require_think is want, text
    for value, want in ((1, True), (0, False), (True, True), (False, False)):
        assert RewardConfig.from_mapping({"ocr": {"require_think": value}}).ocr.require_think is want
    for bad in ("yes", 2, 0.5, 1.0, None):
        with pytest.raises(ValueError, match=rf"reward option ocr.require_think must be bool, got {bad!r}"):
            RewardConfig.from_mapping({"ocr": {"require_think": bad}})
    for bad in (True, "nan", "x", None):
        with pytest.raises(ValueError, match="reward option grounding.iou_power must be float"):
            RewardConfig.from_mapping({"grounding": {"iou_power": bad}})
    for bad in (1.5, True, "x"):
        with pytest.raises(ValueError, match="reward option detection.max_pred_boxes must be int"):
            RewardConfig.from_mapping({"detection": {"max_pred_boxes": bad}})
    with pytest.raises(ValueError, match="detection.categories must be tuple"):
        RewardConfig.from_mapping({"detection": {"categories": "person"}})
    assert RewardConfig.from_mapping({"detection": {"categories": None}}).detection.categories is None
    with pytest.raises(ValueError, match=r"unknown reward config section 'grounding2'; expected one of \['counting'"):
        RewardConfig.from_mapping({"grounding2": {}})
    with pytest.raises(ValueError, match=r"unknown grounding reward option\(s\) \['iou_pow'\]"):
        RewardConfig.from_mapping({"grounding": {"iou_pow": 2}})
    assert RewardConfig.from_mapping(None) == RewardConfig()
    assert RewardConfig.from_mapping({"ocr": None}) == RewardConfig()


def test_reward_config_from_omegaconf_and_other_mappings():
    from omegaconf import OmegaConf

    node = OmegaConf.create(
        {"grounding": {"iou_power": 3, "format_weight": 0.5}, "counting": {"f1_radius": "${grounding.format_weight}"}})
    cfg = RewardConfig.from_mapping(node)  # interpolations resolved
    assert cfg.grounding.iou_power == 3.0 and cfg.counting.f1_radius == 0.5
    proxy = types.MappingProxyType({"ocr": {"normalize_whitespace": False}})
    assert RewardConfig.from_mapping(proxy).ocr.normalize_whitespace is False
    # compute_score takes the mapping form too
    r = compute_score("refcoco", '{"bbox_2d": [100, 100, 200, 150]}', {"bbox": [100, 100, 200, 200]},
                      config=OmegaConf.create({"grounding": {"iou_power": 1}}))
    assert r["score"] == pytest.approx(1.5)


def test_iou_power_zero_still_scores_a_miss_zero():
    # 0 ** 0 is 1: a miss must still get no accuracy term, whatever the power
    cfg = {"grounding": {"iou_power": 0}}
    miss = compute_score("refcoco", '{"bbox_2d": [300, 300, 400, 400]}', {"bbox": [0, 0, 10, 10]}, config=cfg)
    assert miss["score"] == 1.0  # format only
    hit = compute_score("refcoco", '{"bbox_2d": [0, 0, 10, 5]}', {"bbox": [0, 0, 10, 10]}, config=cfg)
    assert hit["score"] == 2.0
    neg = compute_score("refcoco", '{"bbox_2d": [300, 300, 400, 400]}', {"bbox": [0, 0, 10, 10]},
                        config={"grounding": {"iou_power": -1}})
    assert neg["score"] == 1.0


def test_counting_fallback_diagonal_by_hand():
    assert frame_diagonal({}, np.array([[3.0, 4.0]])) == 5.0
    assert frame_diagonal({}, np.array([[-3.0, 4.0]])) == 4.0  # negative coordinates count as 0
    assert frame_diagonal({}, np.array([[3.0, -4.0]])) == 3.0
    assert frame_diagonal({}, np.array([[0.3, 0.4]])) == 1.0  # never below 1 pixel
    assert frame_diagonal({}, np.array([[1.2, 0.5]])) == pytest.approx(1.3)
    assert frame_diagonal({}, np.zeros((0, 2))) == 1.0
    assert frame_diagonal({"input_size": [30, 40]}, np.array([[1000.0, 1000.0]])) == 50.0
    # through the reward: a point 0.5 px off on a reference at the origin, no frame: D = 1
    r = compute_score("pixmo_count", json.dumps([{"point_2d": [0.5, 0]}]), {"points": [[0, 0]]})
    assert r["score"] == pytest.approx(0.5)
    r = compute_score("pixmo_count", json.dumps([]), {"points": []})
    assert r["score"] == 1.0


def test_ocr_edit_similarity_direct():
    from verl_perception.rewards.ocr import edit_similarity

    assert edit_similarity("a  b", "a b") == 1.0
    assert edit_similarity("a  b", "a b", normalize_whitespace=False) == pytest.approx(1 - 1 / 4)
    assert edit_similarity("", "") == 1.0
    assert math.isclose(edit_similarity("abc", "abd"), 2 / 3)


def test_detection_ground_truth_fast_reader_refuses_what_the_checked_reader_refuses():
    ans = '[{"bbox_2d": [0, 0, 1, 1], "label": "person"}]'
    for k in range(4):
        for bad in ("a", float("inf"), float("nan")):
            box = [0, 0, 10, 10]
            box[k] = bad
            with pytest.raises(GroundTruthError):
                compute_score("coco", ans, {"boxes": [box], "labels": ["person"]})
    # numeric strings and a box given as a tuple are read as numbers by the checked reader
    r = compute_score("coco", ans, {"boxes": [["0", "0", "1", "1"]], "labels": ["person"]})
    assert r["score"] == 3.0
    r = compute_score("coco", ans, {"boxes": [(0, 0, 1, 1)], "labels": ["person"]})
    assert r["score"] == 3.0


def test_scorer_dispatch_and_detection_caps():
    # each task reaches its own reward (the result keys say which)
    assert set(compute_score("refcoco", "{}", {"bbox": [0, 0, 1, 1]})) == {"score", "format", "iou", "hit50"}
    assert "count_exact" in compute_score("pixmo_count", "[]", {"points": []})
    assert set(compute_score("pageocr", "a", {"text": "a"})) == {"score", "format", "edit_sim"}
    assert "mean_iou" in compute_score("coco", "[]", {"boxes": [], "labels": []})
    ans = '[{"bbox_2d": [0, 0, 10, 10], "label": "person"}]'
    r = compute_score("coco", ans, {"boxes": [[0, 0, 10, 10]], "labels": ["person"]},
                      config={"detection": {"max_pred_boxes": 0}})
    assert r["precision"] == 0.0 and r["num_pred"] == 1.0  # nothing is matched beyond the cap


def test_relative_answer_without_frame_is_a_ground_truth_error():
    with pytest.raises(GroundTruthError, match=r"qwen3_vl answers are relative to the image and need it to be read in "
                                               r"pixels$"):
        compute_score("refcoco", "{}", {"bbox": [0, 0, 1, 1]}, {"model_family": "qwen3_vl"})
    with pytest.raises(GroundTruthError, match=r"^extra_info\['model_family'\]: unknown model family 'llava'"):
        compute_score("refcoco", "{}", {"bbox": [0, 0, 1, 1]}, {"model_family": "llava"})
