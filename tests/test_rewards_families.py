"""The same physical answer scores the same in Qwen2.5-VL's pixels and in Qwen3-VL's 0..1000.

Rows differ only in ``extra_info["model_family"]``; each answer is written once in input-frame
pixels and once in 0..1000 of the image (``frame.input_to_answer``, full float precision). Rewards
and evaluation metrics must agree to 1e-9.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from verl_perception import frame
from verl_perception.metrics import counting as count_metrics
from verl_perception.metrics import grounding as ground_metrics
from verl_perception.metrics.rows import make_eval_row
from verl_perception.rewards import GroundTruthError, compute_score

# Input frames (h, w): ordinary, wide, tall, tiny: the conversion must not assume a square image.
FRAMES = [(480, 640), (64, 2048), (1312, 96), (256, 320)]
FAMILIES = ("qwen2_5_vl", "qwen3_vl")


def info(family: str, size, **extra) -> dict:
    return {"model_family": family, "input_size": list(size), "orig_size": [size[0] * 2, size[1] * 3], **extra}


def write(items: list[dict], key: str, family: str, size) -> str:
    """The answer JSON with each item's ``key`` coordinates (input-frame pixels) in ``family``'s convention."""
    out = []
    for item in items:
        xy = frame.input_to_answer([item[key]], {"model_family": family, "input_size": list(size)})[0]
        out.append({**item, key: [float(v) for v in xy]})
    return json.dumps(out)


def assert_same(a: dict, b: dict, tol: float = 1e-9):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=tol), (k, a, b)


def random_boxes(rng, size, n):
    h, w = size
    x = np.sort(rng.uniform(-0.05 * w, 1.05 * w, (n, 2)), axis=1)
    y = np.sort(rng.uniform(-0.05 * h, 1.05 * h, (n, 2)), axis=1)
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)


@pytest.mark.parametrize("size", FRAMES)
def test_grounding(size):
    rng = np.random.default_rng(size[0])
    gt = {"bbox": random_boxes(rng, size, 1)[0].round(2).tolist()}
    for box in random_boxes(rng, size, 30):
        items = [{"bbox_2d": box.tolist(), "label": "cat"}]
        scores = [compute_score("refcoco", write(items, "bbox_2d", f, size), gt, info(f, size)) for f in FAMILIES]
        assert_same(*scores)
    # the ground truth itself, answered in 0..1000, is a perfect answer
    items = [{"bbox_2d": gt["bbox"], "label": "cat"}]
    perfect = compute_score("refcoco", write(items, "bbox_2d", "qwen3_vl", size), gt, info("qwen3_vl", size))
    assert perfect["score"] == pytest.approx(2.0, abs=1e-9) and perfect["format"] == 1.0


@pytest.mark.parametrize("size", FRAMES)
def test_counting(size):
    """Distances are measured in input-frame pixels for both families (a 0..1000 square would distort
    them on any non-square image)."""
    rng = np.random.default_rng(size[1])
    h, w = size
    gt = {"points": (rng.uniform(0, 1, (6, 2)) * [w, h]).round(2).tolist()}
    for n in (0, 3, 6, 9):
        pts = rng.uniform(0, 1, (n, 2)) * [w, h]
        items = [{"point_2d": p.tolist(), "label": "dot"} for p in pts]
        scores = [compute_score("pixmo_count", write(items, "point_2d", f, size), gt, info(f, size)) for f in FAMILIES]
        assert_same(*scores)
        assert scores[0]["pred_count"] == n


@pytest.mark.parametrize("size", FRAMES)
def test_detection(size):
    rng = np.random.default_rng(size[0] * 7 + size[1])
    gt_boxes = random_boxes(rng, size, 5).round(2)
    labels = ["person", "dog", "person", "car", "cat"]
    gt = {"boxes": gt_boxes.tolist(), "labels": labels}
    for n in (1, 4, 8, 80):  # 80 items: the array path for long answers too
        boxes = np.concatenate([gt_boxes + rng.normal(0, 0.05 * min(size), gt_boxes.shape), random_boxes(rng, size, n)])
        names = labels + [labels[i % 5] for i in range(n)]
        items = [{"bbox_2d": b.tolist(), "label": lab} for b, lab in zip(boxes, names)]
        scores = [compute_score("coco", write(items, "bbox_2d", f, size), gt, info(f, size)) for f in FAMILIES]
        assert_same(*scores)
        assert scores[0]["num_pred"] == len(items)


def test_relative_row_without_input_size_is_a_dataset_error():
    answer = json.dumps([{"bbox_2d": [100, 100, 500, 500], "label": "cat"}])
    with pytest.raises(GroundTruthError, match="input_size"):
        compute_score("refcoco", answer, {"bbox": [1, 1, 5, 5]}, {"model_family": "qwen3_vl"})
    with pytest.raises(GroundTruthError, match="model_family"):
        compute_score("refcoco", answer, {"bbox": [1, 1, 5, 5]}, {"model_family": "llava", "input_size": [10, 10]})
    # no family at all: the original contract (absolute pixels), no input_size needed
    assert compute_score("refcoco", answer, {"bbox": [100, 100, 500, 500]})["iou"] == 1.0


def _eval_row(i: int, data_source: str, gt: dict, family: str, size, answer: str):
    row = {"data_source": data_source, "extra_info": info(family, size), "reward_model": {"ground_truth": json.dumps(gt)}}
    return make_eval_row(i, row, answer)


@pytest.mark.parametrize("size", FRAMES)
def test_evaluation_maps_both_conventions_to_the_same_original_boxes(size):
    """Evaluation's map back to the original image (orig_size = input_size x (2, 3) here) gives the
    same boxes, IoUs and points for the same answers in either convention."""
    rng = np.random.default_rng(size[0] + 3)
    gt = {"bbox": random_boxes(rng, size, 1)[0].round(2).tolist()}
    boxes = random_boxes(rng, size, 12)
    points = (rng.uniform(0, 1, (4, 2)) * [size[1], size[0]]).round(2)
    ground, count = {}, {}
    for f in FAMILIES:
        rows = [_eval_row(i, "refcoco", gt, f, size, write([{"bbox_2d": b.tolist(), "label": "x"}], "bbox_2d", f, size))
                for i, b in enumerate(boxes)]  # fmt: skip
        ground[f] = ground_metrics.evaluate(rows)["per_row"]
        answer = write([{"point_2d": p.tolist(), "label": "x"} for p in points[:3]], "point_2d", f, size)
        count[f] = count_metrics.evaluate([_eval_row(0, "pixmo_count", {"points": points.tolist()}, f, size, answer)])
    a, b = (ground[f] for f in FAMILIES)
    assert [r["hit50"] for r in a] == [r["hit50"] for r in b]
    np.testing.assert_allclose([r["iou"] for r in a], [r["iou"] for r in b], rtol=0, atol=1e-9)
    np.testing.assert_allclose([r["pred_box"] for r in a], [r["pred_box"] for r in b], rtol=0, atol=1e-9)
    a, b = (count[f]["per_row"][0] for f in FAMILIES)
    np.testing.assert_allclose(a["pred_points"], b["pred_points"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(a["pred_points"], points[:3] * [3, 2], rtol=0, atol=1e-9)
