"""COCO AP fidelity: our evaluation equals pycocotools run directly on the same boxes."""

from __future__ import annotations

import contextlib
import io
import json

import _eval_fixtures as fx
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from verl_perception.coco import COCO_CATEGORIES, COCO_NAME_TO_ID
from verl_perception.evaluate import evaluate_benchmark


def _ann_file(tmp_path, rows, truth):
    """An official-style annotation file (original frame, unrounded boxes) for the fixture rows."""
    images, anns = [], []
    for row, (boxes, names) in zip(rows, truth):
        h, w = row["extra_info"]["orig_size"]
        iid = row["extra_info"]["image_id"]
        images.append({"id": iid, "height": h, "width": w, "file_name": f"{iid}.png"})
        for b, n in zip(boxes, names):
            x, y, bw, bh = b[0], b[1], b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": COCO_NAME_TO_ID[n],
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
    path = tmp_path / "instances.json"
    path.write_text(
        json.dumps(
            {"images": images, "annotations": anns, "categories": [{"id": i, "name": n} for i, n in COCO_CATEGORIES]}
        )
    )
    return str(path)


def _answers(rows, truth, rng, jitter):
    """Per row: input-frame answer items (jittered truth, a false positive, maybe a dropped box)."""
    out = []
    for row, (boxes, names) in zip(rows, truth):
        (oh, ow), (ih, iw) = row["extra_info"]["orig_size"], row["extra_info"]["input_size"]
        items = []
        for b, n in zip(boxes, names):
            if rng.random() < 0.2:
                continue  # a miss
            inp = b * np.array([iw / ow, ih / oh, iw / ow, ih / oh]) + rng.normal(0, jitter, 4)
            items.append({"bbox_2d": [round(float(v)) for v in inp], "label": n, "score": float(rng.uniform(0.1, 1))})
        items.append({"bbox_2d": [5, 5, 60, 80], "label": "person", "score": float(rng.uniform(0.1, 1))})
        out.append(items)
    return out


def _direct_dets(rows, answers):
    """The same answers converted independently: scale to the original frame, clip, xywh."""
    dets = []
    for row, items in zip(rows, answers):
        (oh, ow), (ih, iw) = row["extra_info"]["orig_size"], row["extra_info"]["input_size"]
        for it in items:
            x1, y1, x2, y2 = it["bbox_2d"]
            x1, x2 = sorted((x1 * ow / iw, x2 * ow / iw))
            y1, y2 = sorted((y1 * oh / ih, y2 * oh / ih))
            x1, x2 = min(max(x1, 0), ow), min(max(x2, 0), ow)
            y1, y2 = min(max(y1, 0), oh), min(max(y2, 0), oh)
            dets.append(
                {
                    "image_id": row["extra_info"]["image_id"],
                    "category_id": COCO_NAME_TO_ID[it["label"]],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": it.get("score", 1.0),
                }
            )
    return dets


def _pycocotools(ann_file, dets):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perturbed_answers_match_pycocotools(tmp_path, seed):
    rows, truth = fx.detection_rows(n=6, seed=seed)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    ann = _ann_file(tmp_path, rows, truth)
    answers = _answers(rows, truth, np.random.default_rng(seed), jitter=6.0)
    resp = fx.write_responses([json.dumps(a) for a in answers], tmp_path / "r.jsonl", rows)
    doc = evaluate_benchmark("coco", data, resp, tmp_path / "out", ann_file=ann, n_overlays=1)
    ref = _pycocotools(ann, _direct_dets(rows, answers))
    assert 0.0 < ref[0] < 1.0  # the perturbation makes a non-trivial AP
    for key, want in zip(KEYS, ref[:6]):
        got = doc["metrics"][key]
        if want < 0:
            assert got is None
        else:
            assert got == pytest.approx(want, abs=1e-6), key


def test_perfect_answers_give_ap_one_with_both_ground_truths(tmp_path):
    rows, truth = fx.detection_rows(n=6, seed=3)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    answers = [
        "```json\n" + json.dumps([{"bbox_2d": b, "label": lab} for b, lab in zip(gt["boxes"], gt["labels"])]) + "\n```"
        for gt in (json.loads(r["reward_model"]["ground_truth"]) for r in rows)
    ]
    resp = fx.write_responses(answers, tmp_path / "r.jsonl", rows)
    from_rows = evaluate_benchmark("coco", data, resp, tmp_path / "a", n_overlays=0)["metrics"]
    from_ann = evaluate_benchmark(
        "coco", data, resp, tmp_path / "b", ann_file=_ann_file(tmp_path, rows, truth), n_overlays=0
    )["metrics"]
    for m in (from_rows, from_ann):
        assert m["AP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0) and m["AP75"] == pytest.approx(1.0)
        assert m["num_boxes"] == sum(len(t[0]) for t in truth)


def test_empty_and_malformed_answers_give_zero_and_are_counted(tmp_path):
    rows, truth = fx.detection_rows(n=4, seed=4)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    answers = [
        "",
        "no boxes here",
        '[{"bbox_2d": [1, 2, 3], "label": "cat"}, {"bbox_2d": [0,0,9,9], "label": "unicorn"}]',
        '[{"bbox_2d": [NaN, 0, 5, 5], "label": "cat"}',
    ]
    resp = fx.write_responses(answers, tmp_path / "r.jsonl", rows)
    m = evaluate_benchmark("coco", data, resp, tmp_path / "out", n_overlays=0)["metrics"]
    assert m["AP"] == 0.0 and m["AP50"] == 0.0
    assert m["num_boxes"] == 0 and m["num_unknown_label"] == 1 and m["num_bad_item"] >= 2


def test_scores_in_the_answer_order_detections(tmp_path):
    """With scores, a confident true positive ranks above a false positive; without, answer order does."""
    rows, truth = fx.detection_rows(n=1, seed=5)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    gt = json.loads(rows[0]["reward_model"]["ground_truth"])
    good = [{"bbox_2d": b, "label": lab} for b, lab in zip(gt["boxes"], gt["labels"])]
    bad = [{"bbox_2d": [0, 0, 10, 10], "label": lab} for lab in gt["labels"]]

    def ap(items, name):
        resp = fx.write_responses([json.dumps(items)], tmp_path / f"{name}.jsonl", rows)
        return evaluate_benchmark("coco", data, resp, tmp_path / name, n_overlays=0)["metrics"]["AP"]

    bad_first = ap(bad + good, "bad_first")
    scored = ap([dict(x, score=0.1) for x in bad] + [dict(x, score=0.9) for x in good], "scored")
    assert scored == pytest.approx(1.0)
    assert bad_first < scored


def test_coco_ids_with_gaps_are_used(tmp_path):
    rows, truth = fx.detection_rows(n=2, seed=6)
    for r in rows:  # relabel every object as toothbrush (id 90, position 79)
        gt = json.loads(r["reward_model"]["ground_truth"])
        gt["labels"] = ["toothbrush"] * len(gt["labels"])
        r["reward_model"]["ground_truth"] = json.dumps(gt)
        r["extra_info"]["gt_category_ids"] = [90] * len(gt["labels"])
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    answers = [
        json.dumps(
            [{"bbox_2d": b, "label": "toothbrush"} for b in json.loads(r["reward_model"]["ground_truth"])["boxes"]]
        )
        for r in rows
    ]
    resp = fx.write_responses(answers, tmp_path / "r.jsonl", rows)
    doc = evaluate_benchmark("coco", data, resp, tmp_path / "out", n_overlays=0)
    assert doc["metrics"]["AP"] == pytest.approx(1.0)
    assert set(doc["metrics"]["per_class"]) == {"toothbrush"}
