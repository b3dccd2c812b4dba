"""Acc@0.5 equals a direct IoU count; counting accuracy and MAE equal a direct count."""

from __future__ import annotations

import json

import _eval_fixtures as fx
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from verl_perception.evaluate import evaluate_benchmark


def _scale(rows, i):
    (oh, ow), (ih, iw) = rows[i]["extra_info"]["orig_size"], rows[i]["extra_info"]["input_size"]
    return np.array([ow / iw, oh / ih])


def test_acc50_equals_direct_iou_count(tmp_path):
    rng = np.random.default_rng(0)
    rows, gt_orig = fx.grounding_rows(n=30, seed=0)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    answers, preds = [], []
    for i, row in enumerate(rows):
        gt_in = np.array(json.loads(row["reward_model"]["ground_truth"])["bbox"])
        box = np.round(gt_in + rng.normal(0, [8, 8, 30, 30][i % 4], 4))  # integer answers, mixed quality
        if i % 7 == 6:
            answers.append("I cannot find it.")
            preds.append(None)
            continue
        fmt = [
            json.dumps({"bbox_2d": box.tolist(), "label": "x"}),
            "```json\n" + json.dumps([{"bbox_2d": box.tolist()}]) + "\n```",
            "<think>hmm</think><answer>" + json.dumps({"bbox_2d": box.tolist()}) + "</answer>",
        ][i % 3]
        answers.append(fmt)
        s = _scale(rows, i)
        preds.append(np.concatenate([np.minimum(box[:2], box[2:]), np.maximum(box[:2], box[2:])]) * np.tile(s, 2))
    resp = fx.write_responses(answers, tmp_path / "r.jsonl", rows)
    m = evaluate_benchmark("refcoco", data, resp, tmp_path / "out", n_overlays=2)["metrics"]

    ious = np.array(
        [
            0.0 if p is None else box_iou(torch.tensor(np.array([p])), torch.tensor(np.array([g])))[0, 0].item()
            for p, g in zip(preds, gt_orig)
        ]
    )
    assert 0 < (ious >= 0.5).sum() < len(rows)  # a mix of hits and misses
    assert m["acc@0.5"] == pytest.approx((ious >= 0.5).mean(), abs=1e-12)
    assert m["acc@0.3"] == pytest.approx((ious >= 0.3).mean(), abs=1e-12)
    assert m["miou"] == pytest.approx(ious.mean(), abs=1e-3)  # GT stored at 0.01 input px
    assert m["no_box"] == sum(p is None for p in preds)
    for group, gm in m["groups"].items():
        idx = [i for i, r in enumerate(rows) if f"{r['data_source']}/{r['extra_info']['split']}" == group]
        assert gm["n"] == len(idx)
        assert gm["acc@0.5"] == pytest.approx((ious[idx] >= 0.5).mean(), abs=1e-12)
    assert set(m["groups"]) == {
        "refcoco/val",
        "refcoco/testA",
        "refcoco+/val",
        "refcoco+/testA",
        "refcocog/val",
        "refcocog/testA",
    }


def test_iou_exactly_half_is_a_hit(tmp_path):
    rows, _ = fx.grounding_rows(n=1)
    gt = [0.0, 0.0, 100.0, 100.0]
    rows[0]["reward_model"]["ground_truth"] = json.dumps({"bbox": gt})
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    resp = fx.write_responses([json.dumps({"bbox_2d": [0, 0, 100, 50]})], tmp_path / "r.jsonl", rows)
    m = evaluate_benchmark("refcoco", data, resp, tmp_path / "out", n_overlays=0)["metrics"]
    assert m["miou"] == pytest.approx(0.5) and m["acc@0.5"] == 1.0


def test_counting_accuracy_and_mae_equal_direct_count(tmp_path):
    rng = np.random.default_rng(1)
    rows = fx.counting_rows(n=20, seed=1)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    answers, pred_n = [], []
    for i, row in enumerate(rows):
        n_gt = len(json.loads(row["reward_model"]["ground_truth"])["points"])
        n = max(0, n_gt + int(rng.integers(-2, 3)))
        if i % 5 == 0:  # boxes count by their centres
            items = [{"bbox_2d": [10 * k, 10, 10 * k + 5, 15], "label": "dot"} for k in range(n)]
        else:
            items = [{"point_2d": [10 * k, 20], "label": "dot"} for k in range(n)]
        if i % 6 == 5:  # one broken item does not count
            items.append({"point_2d": ["a", None]})
        answers.append(json.dumps(items))
        pred_n.append(n)
    answers[-1] = "there are many dots"
    pred_n[-1] = 0
    resp = fx.write_responses(answers, tmp_path / "r.jsonl", rows)
    doc = evaluate_benchmark("pixmo_count", data, resp, tmp_path / "out", n_overlays=2)
    gt_n = np.array([r["extra_info"]["count"] for r in rows])
    err = np.array(pred_n) - gt_n
    assert 0 < (err == 0).sum() < len(rows)
    assert doc["metrics"]["accuracy"] == pytest.approx((err == 0).mean())
    assert doc["metrics"]["mae"] == pytest.approx(np.abs(err).mean())
    assert len(doc["overlays"]) == 2 and doc["plots"][0].endswith("count_error_hist.png")


@pytest.mark.parametrize("gt, want", [
    ({"points": [[1, 2], [3, 4]]}, 2),
    ({"points": [], "count": 5}, 5),   # PixMo val/test rows without points
    ({"count": 3}, 3),
    ({"points": [[1, 2]], "count": 1}, 1),
])
def test_gt_count_reads_points_or_count(gt, want):
    from verl_perception.metrics.counting import gt_count
    from verl_perception.metrics.rows import EvalRow

    assert gt_count(EvalRow(0, "pixmo_count", gt, {}, (10, 10), (10, 10), None)) == want


@pytest.mark.parametrize("gt", [{"points": [[1, 2]], "count": 3}, {}, {"points": [[1, float("nan")]]}])
def test_gt_count_refuses_inconsistent_ground_truth(gt):
    from verl_perception.metrics.counting import gt_count
    from verl_perception.metrics.rows import EvalInputError, EvalRow

    with pytest.raises(EvalInputError, match="row 0: counting ground truth"):
        gt_count(EvalRow(0, "pixmo_count", gt, {}, (10, 10), (10, 10), None))
