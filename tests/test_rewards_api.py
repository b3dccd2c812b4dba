"""compute_score: dispatch, keys, configuration and errors (the contract other modules rely on)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from verl_perception.rewards import (
    TASK_KEYS,
    DetectionConfig,
    GroundTruthError,
    RewardConfig,
    UnknownTaskError,
    compute_score,
)

ROWS = {
    "refcoco": ('{"bbox_2d": [1, 2, 30, 40]}', {"bbox": [1, 2, 30, 40]}, "grounding"),
    "refcoco+": ('{"bbox_2d": [1, 2, 30, 40]}', {"bbox": [1, 2, 30, 40]}, "grounding"),
    "refcocog": ('{"bbox_2d": [1, 2, 30, 40]}', {"bbox": [1, 2, 30, 40]}, "grounding"),
    "pixmo_count": ('[{"point_2d": [5, 5]}]', {"points": [[5, 5]]}, "counting"),
    "pageocr": ("text", {"text": "text"}, "ocr"),
    "coco": (
        '[{"bbox_2d": [1, 2, 30, 40], "label": "cat"}]',
        {"boxes": [[1, 2, 30, 40]], "labels": ["cat"]},
        "detection",
    ),
}
MAX = {"grounding": 2.0, "counting": 1.0, "ocr": 1.0, "detection": 3.0}


@pytest.mark.parametrize("data_source", sorted(ROWS))
def test_dispatch_keys_and_perfect_scores(data_source):
    answer, gt, task = ROWS[data_source]
    for ground_truth in (json.dumps(gt), gt, json.dumps(gt).encode()):
        r = compute_score(data_source, answer, ground_truth, {"input_size": [448, 644]})
        assert set(r) == {"score", "format", *TASK_KEYS[task]}
        assert all(type(v) is float and math.isfinite(v) for v in r.values())
        assert r["score"] == MAX[task] and r["format"] == 1.0


def test_extra_info_task_overrides_data_source():
    r = compute_score("anything", "hello", {"text": "hello"}, {"task": "ocr"})
    assert set(r) == {"score", "format", "edit_sim"}
    with pytest.raises(UnknownTaskError, match="anything"):
        compute_score("anything", "hello", {"text": "hello"})
    with pytest.raises(UnknownTaskError, match="segmentation"):
        compute_score("coco", "[]", {"boxes": [], "labels": []}, {"task": "segmentation"})


def test_extra_info_is_not_mutated_and_may_hold_numpy_arrays():
    info = {"input_size": np.array([448, 644]), "index": 3}
    compute_score("coco", "[]", {"boxes": [], "labels": []}, info)
    assert set(info) == {"input_size", "index"}


@pytest.mark.parametrize("gt", ["not json", "[1, 2]", 5, None])
def test_bad_ground_truth_raises(gt):
    with pytest.raises(GroundTruthError):
        compute_score("coco", "[]", gt)


def test_config_forms():
    ans, gt, _ = ROWS["coco"]
    mapping = {"detection": {"iou_weight": 0.0}}
    assert compute_score("coco", ans, gt, config=mapping)["score"] == 2.0
    assert compute_score("coco", ans, gt, config=RewardConfig.from_mapping(mapping))["score"] == 2.0
    omegaconf = pytest.importorskip("omegaconf")
    node = omegaconf.OmegaConf.create({"detection": {"iou_weight": 0.0, "categories": ["cat"]}, "grounding": {}})
    cfg = RewardConfig.from_mapping(node)
    assert cfg.detection == DetectionConfig(iou_weight=0.0, categories=("cat",))
    assert RewardConfig.from_mapping(None) == RewardConfig()
    # Hydra overrides arrive as strings sometimes; they are converted to the option's type.
    assert (
        RewardConfig.from_mapping(
            {"detection": {"max_pred_boxes": "200", "require_think": "true"}}
        ).detection.max_pred_boxes
        == 200
    )


@pytest.mark.parametrize(
    "mapping, match",
    [
        ({"detect": {}}, "section 'detect'"),
        ({"detection": {"iou_weigth": 1}}, "iou_weigth"),
        ({"detection": {"iou_weight": "heavy"}}, "detection.iou_weight"),
        ({"grounding": {"format_gate": "maybe"}}, "grounding.format_gate"),
        ({"counting": {"f1_radius": float("nan")}}, "counting.f1_radius"),
        ({"detection": {"categories": "person"}}, "detection.categories"),
    ],
)
def test_config_errors_name_the_option(mapping, match):
    with pytest.raises(ValueError, match=match):
        RewardConfig.from_mapping(mapping)
