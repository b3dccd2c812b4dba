"""Mapping predictions back to the original frame is exact within one input pixel."""

from __future__ import annotations

import json

import _eval_fixtures as fx
import numpy as np
import pytest

from verl_perception.evaluate import evaluate_benchmark
from verl_perception.frame import input_size, to_input, to_original
from verl_perception.metrics.rows import make_eval_row


@pytest.mark.parametrize("orig", [(480, 640), (375, 500), (1080, 1920), (37, 1000), (3000, 4000), (200, 201)])
def test_round_trip_within_one_input_pixel(orig):
    rng = np.random.default_rng(sum(orig))
    inp = input_size(*orig)
    boxes = np.sort(rng.uniform(0, 1, (50, 4)), axis=1) * np.array([orig[1], orig[1], orig[0], orig[0]])
    boxes = boxes[:, [0, 2, 1, 3]]
    answered = np.round(to_input(boxes, orig, inp))  # what a perfect model writes: integer input pixels
    back = to_original(answered, inp, orig)
    one_px = np.tile([orig[1] / inp[1], orig[0] / inp[0]], 2)  # an input pixel, in original pixels
    assert np.all(np.abs(back - boxes) <= 0.5 * one_px + 1e-9)
    assert np.allclose(to_original(to_input(boxes, orig, inp), inp, orig), boxes, rtol=0, atol=1e-9)


def test_eval_row_maps_like_the_frame_module():
    rows, gt_orig = fx.grounding_rows(n=6)
    for i, row in enumerate(rows):
        er = make_eval_row(i, row, None)
        gt_in = np.array(json.loads(row["reward_model"]["ground_truth"])["bbox"])
        assert er.input_size == tuple(row["extra_info"]["input_size"])
        # stored ground truth is rounded to 0.01 input px; back in the original frame it is within that
        scale = np.tile([er.orig_size[1] / er.input_size[1], er.orig_size[0] / er.input_size[0]], 2)
        assert np.all(np.abs(er.to_original(gt_in[None])[0] - gt_orig[i]) <= 0.005 * scale + 1e-9)


def test_grounding_overlay_boxes_are_in_the_original_frame(tmp_path):
    rows, gt_orig = fx.grounding_rows(n=3)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    answers = [json.dumps({"bbox_2d": [28, 56, 280, 140]})] * 3
    resp = fx.write_responses(answers, tmp_path / "r.jsonl", rows)
    evaluate_benchmark("refcoco", data, resp, tmp_path / "out", n_overlays=0)
    recs = [json.loads(line) for line in open(tmp_path / "out" / "per_row.jsonl")]
    for row, rec, g in zip(rows, recs, gt_orig):
        (oh, ow), (ih, iw) = row["extra_info"]["orig_size"], row["extra_info"]["input_size"]
        assert rec["pred_box"] == pytest.approx([28 * ow / iw, 56 * oh / ih, 280 * ow / iw, 140 * oh / ih])
        assert rec["gt_box"] == pytest.approx(g.tolist(), abs=0.01 * max(ow / iw, oh / ih))
