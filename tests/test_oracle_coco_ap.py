"""COCO AP oracles: our detection metrics against pycocotools driven directly here, and against AP
worked out by hand on tiny sets (101-point interpolated precision, COCOeval's definition).

Sets cover what the official file has and the fixture rows lacked: a subset of an annotation
file's images, category ids that are not COCO's, crowd regions, images without objects and
duplicate detections.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from verl_perception.metrics import detection as det
from verl_perception.metrics.rows import EvalInputError, EvalRow

# A dataset of its own: three categories with ids that COCO does not use for these names.
CATS = [{"id": 7, "name": "widget"}, {"id": 42, "name": "gadget"}, {"id": 3, "name": "gizmo"}]
SIZES = {1: (200, 300), 2: (240, 320), 3: (100, 100), 4: (300, 400), 5: (120, 160), 6: (200, 200)}


def _ann(image_id, cat, xywh, crowd=0, ann_id=None):
    x, y, w, h = xywh
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": [x, y, w, h], "area": w * h,
            "iscrowd": crowd}  # fmt: skip


def dataset():
    """Six images: 1-3 and 5 with objects (3 has a crowd region), 4 empty, 6 not evaluated but annotated."""
    anns = [
        _ann(1, 7, (10, 10, 100, 80)),
        _ann(1, 42, (150, 40, 120, 120)),
        _ann(2, 7, (20, 30, 60, 60)),
        _ann(2, 3, (200, 100, 100, 120)),
        _ann(3, 42, (10, 10, 40, 40)),
        _ann(3, 42, (50, 50, 50, 50), crowd=1),
        _ann(5, 3, (5, 5, 20, 20)),
        _ann(6, 7, (0, 0, 150, 150)),
        _ann(6, 42, (20, 20, 100, 100)),
    ]
    for i, a in enumerate(anns, 1):
        a["id"] = i
    images = [{"id": i, "height": h, "width": w, "file_name": f"{i}.jpg"} for i, (h, w) in SIZES.items()]
    return {"images": images, "annotations": anns, "categories": CATS}


NAME = {c["id"]: c["name"] for c in CATS}


def _row(position, image_id, items, family=None, extra=None):
    """An evaluation row whose input frame is its original frame (answers in original pixels)."""
    h, w = SIZES[image_id]
    gt = [a for a in dataset()["annotations"] if a["image_id"] == image_id and not a["iscrowd"]]
    info = {"image_id": image_id, "input_size": [h, w], "orig_size": [h, w],
            "category_names": [c["name"] for c in CATS], "category_ids": [c["id"] for c in CATS], **(extra or {})}
    if family:
        info["model_family"] = family
    truth = {"boxes": [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                       for a in gt], "labels": [NAME[a["category_id"]] for a in gt]}
    return EvalRow(position=position, data_source="coco", gt=truth, extra_info=info, input_size=(h, w),
                   orig_size=(h, w), response=json.dumps(items))


def _item(xywh, label, score=None):
    x, y, w, h = xywh
    out = {"bbox_2d": [x, y, x + w, y + h], "label": label}
    if score is not None:
        out["score"] = score
    return out


def _direct_stats(ann, dets, img_ids):
    """pycocotools alone: COCO, loadRes, COCOeval restricted to img_ids; the 12 stats (-1 = undefined)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(ann))
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = sorted(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [None if v < 0 else float(v) for v in ev.stats]


def _ours(tmp_path, rows, ann=None):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(ann or dataset()))
    return det.evaluate(rows, ann_file=str(path))


# Answers for images 1, 2, 3, 4 (image 5 and 6 are not evaluated: the subset).
ANSWERS = {
    1: [_item((12, 10, 98, 80), "widget", 0.9), _item((150, 40, 120, 120), "gadget", 0.8),
        _item((150, 40, 120, 120), "gadget", 0.7),  # duplicate: a false positive
        _item((0, 150, 50, 40), "gizmo", 0.95)],  # nothing there
    2: [_item((20, 30, 60, 60), "gizmo", 0.6),  # right place, wrong category
        _item((205, 100, 95, 125), "gizmo", 0.85), _item((20, 30, 60, 60), "widget", 0.5)],
    3: [_item((10, 10, 40, 40), "gadget", 0.4), _item((55, 55, 40, 40), "gadget", 0.99)],  # the second: in the crowd
    4: [_item((10, 10, 50, 50), "widget", 0.3)],  # an image without objects: a false positive
}


def _direct_dets(answers):
    by_name = {c["name"]: c["id"] for c in CATS}
    out = []
    for iid, items in answers.items():
        for it in items:
            x1, y1, x2, y2 = it["bbox_2d"]
            out.append({"image_id": iid, "category_id": by_name[it["label"]], "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": it.get("score", 1.0)})
    return out


def test_subset_of_an_annotation_file_with_its_own_category_ids(tmp_path, capsys):
    rows = [_row(i, iid, ANSWERS[iid]) for i, iid in enumerate(ANSWERS)]
    ours = _ours(tmp_path, rows)
    assert capsys.readouterr().out == ""  # pycocotools' prints are captured, not shown
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in ours["summary"]
    assert set(ours) == {"metrics", "per_row", "notes", "warnings", "summary"}
    assert set(ours["per_row"][0]) == {"position", "index", "image_id", "boxes", "unknown_label", "bad_item", "pred",
                                       "gt"}
    assert [(r["position"], r["index"]) for r in ours["per_row"]] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    want = _direct_stats(dataset(), _direct_dets(ANSWERS), list(ANSWERS))
    got = [ours["metrics"][k] for k in det.STAT_NAMES]
    assert got == pytest.approx(want, abs=1e-12)
    # The subset matters: over all six images (5 and 6 unanswered) AP is lower.
    everything = _direct_stats(dataset(), _direct_dets(ANSWERS), list(SIZES))
    assert everything[0] < want[0] - 0.05
    assert ours["warnings"] == [
        "4 of the 6 images of instances.json were evaluated: AP on a subset is not the paper's COCO val2017 AP"]
    # every image evaluated: no subset warning
    every = [_row(i, iid, ANSWERS.get(iid, [])) for i, iid in enumerate(SIZES)]
    assert _ours(tmp_path, every)["warnings"] == []
    # per-class AP keyed by the dataset's names, from COCOeval's precision array
    assert set(ours["metrics"]["per_class"]) == {"widget", "gadget", "gizmo"}
    assert ours["metrics"]["n"] == 4 and ours["metrics"]["num_boxes"] == 10
    assert ours["metrics"]["num_unknown_label"] == 0 and ours["metrics"]["num_bad_item"] == 0
    # per-row records carry the ids resolved to the dataset's names
    assert [p["label"] for p in ours["per_row"][0]["pred"]] == ["widget", "gadget", "gadget", "gizmo"]
    assert [g["label"] for g in ours["per_row"][1]["gt"]] == ["widget", "gizmo"]
    assert ours["per_row"][2]["image_id"] == 3


def test_rows_built_ground_truth_with_its_own_category_ids(tmp_path):
    # Without the annotation file, ground truth comes from the rows (no crowd region: image 3's
    # crowd box is absent from the rows, so the det on it is a false positive there).
    answers = {k: v for k, v in ANSWERS.items()}
    rows = [_row(i, iid, answers[iid]) for i, iid in enumerate(answers)]
    ours = det.evaluate(rows)
    ann = dataset()
    ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] in answers and not a["iscrowd"]]
    ann["images"] = [im for im in ann["images"] if im["id"] in answers]
    want = _direct_stats(ann, _direct_dets(answers), list(answers))
    assert [ours["metrics"][k] for k in det.STAT_NAMES] == pytest.approx(want, abs=1e-12)
    assert ours["warnings"] == [
        "ground truth built from the parquet rows (box areas, no crowd regions), not COCO's annotation file: pass "
        "--ann-file instances_val2017.json for numbers comparable to the paper"]
    built = det.gt_from_rows(rows)
    assert sorted(c["id"] for c in built["categories"]) == [3, 7, 42]
    assert {c["id"]: c["name"] for c in built["categories"]} == NAME
    assert [(a["image_id"], a["category_id"], a["bbox"], a["area"], a["iscrowd"]) for a in built["annotations"]] == [
        (1, 7, [10, 10, 100, 80], 8000.0, 0), (1, 42, [150, 40, 120, 120], 14400.0, 0),
        (2, 7, [20, 30, 60, 60], 3600.0, 0), (2, 3, [200, 100, 100, 120], 12000.0, 0),
        (3, 42, [10, 10, 40, 40], 1600.0, 0)]  # fmt: skip
    assert [(im["id"], im["height"], im["width"]) for im in built["images"]] == [
        (1, 200, 300), (2, 240, 320), (3, 100, 100), (4, 300, 400)]  # fmt: skip


# ---------------------------------------------------------------- hand-computed AP
def _one_image(tmp_path, gt_anns, items, image_id=1, extra_images=()):
    ann = {"images": [{"id": i, "height": SIZES[i][0], "width": SIZES[i][1]} for i in (image_id, *extra_images)],
           "annotations": [dict(a, id=k) for k, a in enumerate(gt_anns, 1)], "categories": CATS}
    rows = [_row(0, image_id, items)] + [_row(k, i, []) for k, i in enumerate(extra_images, 1)]
    return _ours(tmp_path, rows, ann)["metrics"]


def test_hand_ap_perfect_half_and_duplicates(tmp_path):
    big = (10, 10, 120, 100)  # area 12000: a "large" object
    other = (150, 20, 120, 110)
    # one object, found exactly: AP 1 at every IoU threshold
    m = _one_image(tmp_path, [_ann(1, 7, big)], [_item(big, "widget")])
    assert [m["AP"], m["AP50"], m["AP75"], m["APl"]] == pytest.approx([1.0] * 4)
    assert m["APs"] is None and m["APm"] is None  # no small or medium ground truth: undefined
    # two objects, one found: precision 1 up to recall 0.5 -> 51 of the 101 recall points
    m = _one_image(tmp_path, [_ann(1, 7, big), _ann(1, 7, other)], [_item(big, "widget")])
    assert m["AP"] == pytest.approx(51 / 101) and m["AR100"] == pytest.approx(0.5)
    # a duplicate after the hit changes nothing (interpolated precision keeps 1 up to recall 0.5) ...
    m = _one_image(tmp_path, [_ann(1, 7, big), _ann(1, 7, other)],
                   [_item(big, "widget", 0.9), _item(big, "widget", 0.8)])
    assert m["AP"] == pytest.approx(51 / 101)
    # ... a false positive ranked first halves the precision: 1/2 on recall 0..1 of the one object
    m = _one_image(tmp_path, [_ann(1, 7, big)], [_item(other, "widget", 0.9), _item(big, "widget", 0.8)])
    assert m["AP"] == pytest.approx(0.5)
    # equal scores: COCOeval keeps the answer's order (stable sort), so the order decides
    m = _one_image(tmp_path, [_ann(1, 7, big)], [_item(big, "widget"), _item(other, "widget")])
    assert m["AP"] == pytest.approx(1.0)
    m = _one_image(tmp_path, [_ann(1, 7, big)], [_item(other, "widget"), _item(big, "widget")])
    assert m["AP"] == pytest.approx(0.5)


def test_hand_ap_crowd_region_is_ignored(tmp_path):
    big, crowd = (10, 10, 120, 100), (150, 20, 120, 110)
    gt = [_ann(1, 7, big), _ann(1, 7, crowd, crowd=1)]
    # a detection on the crowd region, ranked first, is neither a hit nor a false positive
    m = _one_image(tmp_path, gt, [_item(crowd, "widget", 0.9), _item(big, "widget", 0.8)])
    assert m["AP"] == pytest.approx(1.0)
    # the same region as a normal object would have been a hit
    gt_plain = [_ann(1, 7, big), _ann(1, 7, crowd)]
    assert _one_image(tmp_path, gt_plain, [_item(crowd, "widget", 0.9)])["AP"] == pytest.approx(51 / 101)


def test_hand_ap_empty_image_false_positive(tmp_path):
    big = (10, 10, 120, 100)
    gt = [_ann(1, 7, big)]
    ann = {"images": [{"id": 1, "height": 200, "width": 300}, {"id": 4, "height": 300, "width": 400}],
           "annotations": [dict(gt[0], id=1)], "categories": CATS}
    rows = [_row(0, 1, [_item(big, "widget", 0.5)]), _row(1, 4, [_item((10, 10, 50, 50), "widget", 0.9)])]
    m = _ours(tmp_path, rows, ann)["metrics"]
    assert m["AP"] == pytest.approx(0.5)  # the empty image's box, ranked first, is a false positive
    rows = [_row(0, 1, [_item(big, "widget", 0.5)]), _row(1, 4, [])]
    assert _ours(tmp_path, rows, ann)["metrics"]["AP"] == pytest.approx(1.0)  # [] on an empty image costs nothing


def test_hand_ap_category_matters(tmp_path):
    big = (10, 10, 120, 100)
    # right box, wrong category: AP 0 for the object's category (gadget has no ground truth: not averaged)
    m = _one_image(tmp_path, [_ann(1, 7, big)], [_item(big, "gadget")])
    assert m["AP"] == pytest.approx(0.0)
    assert m["per_class"] == {"widget": 0.0}


def test_hand_ap_iou_thresholds(tmp_path):
    # A box with IoU 0.6 with its object is a hit at thresholds 0.50, 0.55, 0.60 (3 of 10): AP 0.3
    obj = (0, 0, 100, 100)
    pred = (0, 0, 100, 60)  # IoU 6000 / 10000 = 0.6
    m = _one_image(tmp_path, [_ann(1, 7, obj)], [_item(pred, "widget")])
    assert m["AP50"] == pytest.approx(1.0) and m["AP75"] == pytest.approx(0.0)
    assert m["AP"] == pytest.approx(0.3)


def test_unknown_labels_bad_items_scores_and_clipping(tmp_path):
    big = (10, 10, 120, 100)
    items = [
        {"bbox_2d": [10, 10, 130, 110], "label": "widget", "score": "high"},  # bad score -> 1.0
        {"bbox_2d": [10, 10, 130, 110], "label": "unicorn"},  # unknown label: dropped, counted
        {"bbox_2d": [10, 10, 130, 110]},  # no label: the same
        {"bbox_2d": [1, 2], "label": "widget"},  # bad box
        {"label": "widget"},  # no box
        {"bbox_2d": [-50, -50, 5, 5], "label": "gadget", "score": float("nan")},  # clipped; nan score -> 1.0
    ]
    ann = {"images": [{"id": 1, "height": 200, "width": 300}], "annotations": [_ann(1, 7, big, ann_id=1)],
           "categories": CATS}
    rows = [_row(0, 1, [])]
    rows[0].response = json.dumps(items, allow_nan=True)
    name_to_id = {c["name"]: c["id"] for c in CATS}
    dets, stats = det.detections_for_row(rows[0], name_to_id)
    assert stats == {"boxes": 2, "unknown_label": 2, "bad_item": 2}
    assert dets == [
        {"image_id": 1, "category_id": 7, "bbox": [10.0, 10.0, 120.0, 100.0], "score": 1.0},
        {"image_id": 1, "category_id": 42, "bbox": [0.0, 0.0, 5.0, 5.0], "score": 1.0},
    ]
    out = _ours(tmp_path, rows, ann)
    assert out["metrics"]["num_unknown_label"] == 2 and out["metrics"]["num_bad_item"] == 2
    assert "2 predicted boxes had a label outside the categories and were dropped" in out["notes"]


def test_qwen3_relative_answers_map_to_the_original_frame(tmp_path):
    # A Qwen3-VL row: input frame 96 x 128 of an original 200 x 300 image; answer in 0..1000.
    ann = {"images": [{"id": 1, "height": 200, "width": 300}], "annotations": [_ann(1, 7, (30, 20, 150, 100), ann_id=1)],
           "categories": CATS}
    row = _row(0, 1, [{"bbox_2d": [100, 100, 600, 600], "label": "widget"}], family="qwen3_vl")
    row.input_size = (96, 128)
    row.extra_info["input_size"] = [96, 128]
    dets, _ = det.detections_for_row(row, {"widget": 7})
    assert dets[0]["bbox"] == pytest.approx([30.0, 20.0, 150.0, 100.0])
    assert _ours(tmp_path, [row], ann)["metrics"]["AP"] == pytest.approx(1.0)


def test_conversions_and_errors_by_hand(tmp_path):
    assert det.xyxy_to_xywh([[10, 20, 30, 60]]).tolist() == [[10, 20, 20, 40]]
    assert det.clip_to_image([[-5, -5, 400, 50]], (100, 300)).tolist() == [[0, 0, 300, 50]]
    assert det.clip_to_image([[10, -1, 20, 500]], (100, 300)).tolist() == [[10, 0, 20, 100]]
    # integer boxes, fractional image size: the clipped values are not truncated
    assert det.clip_to_image([[0, 0, 400, 500]], (100.5, 300.5)).tolist() == [[0, 0, 300.5, 100.5]]
    assert det.xyxy_to_xywh([[1, 2, 4, 8]]).dtype == np.float64
    rows = [_row(0, 1, [])]
    bad = dict(rows[0].extra_info, image_id="x")
    with pytest.raises(EvalInputError, match=r"row 0: COCO evaluation needs an integer extra_info\['image_id'\]"):
        det.evaluate([EvalRow(0, "coco", rows[0].gt, bad, (200, 300), (200, 300), "[]")])
    with pytest.raises(EvalInputError, match="image_id 9 is not in"):
        _ours(tmp_path, [EvalRow(0, "coco", rows[0].gt, dict(rows[0].extra_info, image_id=9), (200, 300),
                                 (200, 300), "[]")])
    wrong = EvalRow(0, "coco", rows[0].gt, rows[0].extra_info, (200, 300), (201, 300), "[]")
    with pytest.raises(EvalInputError, match=r"orig_size \[201, 300\] differs from the annotation file's \[200, 300\]"):
        _ours(tmp_path, [wrong])
    with pytest.raises(EvalInputError, match="does not exist"):
        det.evaluate(rows, ann_file=str(tmp_path / "missing.json"))
    with pytest.raises(EvalInputError, match="image_id 1 appears twice"):
        det.evaluate([_row(0, 1, []), _row(1, 1, [])])


def test_category_table_rules():
    rows = [_row(0, 1, [])]
    assert det.category_table(rows) == {"widget": 7, "gadget": 42, "gizmo": 3}
    # rows without a table: COCO's ids, and labels outside them get ids from 1000 on
    plain = EvalRow(0, "coco", {"boxes": [[0, 0, 1, 1], [0, 0, 2, 2]], "labels": ["person", "Widget"]},
                    {"image_id": 1}, (10, 10), (10, 10), "[]")
    table = det.category_table([plain])
    assert table["person"] == 1 and table["dog"] == 18 and table["widget"] == 1000 + 80
    assert det._row_category_ids(plain, table) == [1, 1080]
    with_ids = EvalRow(0, "coco", {"boxes": [[0, 0, 1, 1]], "labels": ["x"]}, {"image_id": 1, "gt_category_ids": [5]},
                       (10, 10), (10, 10), "[]")
    assert det._row_category_ids(with_ids, {}) == [5]
    broken = EvalRow(0, "coco", {"boxes": [[0, 0, 1, 1]], "labels": ["x"]},
                     {"image_id": 1, "gt_category_ids": [5, 6]}, (10, 10), (10, 10), "[]")
    with pytest.raises(EvalInputError, match="2 gt_category_ids for 1 labels"):
        det._row_category_ids(broken, {})
    with pytest.raises(EvalInputError, match="ground-truth label 'x' has no category id"):
        det._row_category_ids(EvalRow(3, "coco", {"labels": ["x"]}, {}, (1, 1), (1, 1), ""), {})
    two = EvalRow(1, "coco", {}, {"category_names": ["a", "a"], "category_ids": [1, 2]}, (1, 1), (1, 1), "")
    with pytest.raises(EvalInputError, match="category 'a' has two ids"):
        det.category_table([two])
    short = EvalRow(1, "coco", {}, {"category_names": ["a"], "category_ids": [1, 2]}, (1, 1), (1, 1), "")
    with pytest.raises(EvalInputError, match="1 category_names for 2 category_ids"):
        det.category_table([short])


def test_empty_detections_and_in_memory_dataset():
    gt = det.load_coco(dataset())
    out = det.coco_eval(gt, [], [1, 2])
    assert out["AP"] == pytest.approx(0.0) and out["per_class"] == {"widget": 0.0, "gadget": 0.0, "gizmo": 0.0}
    res = det.load_results(gt, [])
    assert res.dataset["annotations"] == [] and len(res.dataset["images"]) == 6
    assert res.dataset["categories"] == CATS
    # a category without a name is reported under its id
    nameless = det.load_coco({"images": [{"id": 1, "height": 10, "width": 10}],
                              "annotations": [_ann(1, 9, (0, 0, 5, 5), ann_id=1)], "categories": [{"id": 9}]})
    out = det.coco_eval(nameless, [{"image_id": 1, "category_id": 9, "bbox": [0, 0, 5, 5], "score": 1.0}])
    assert out["per_class"] == {"9": pytest.approx(1.0)}
    assert np.isfinite(out["AR100"])


def test_hand_ap_beyond_ten_detections_per_image(tmp_path):
    # Eleven false positives ranked above the one hit: only COCO's 100-detection limit keeps the
    # hit, at precision 1/12 over the whole recall range (AP 1/12); at 10 detections it would be lost.
    big = (10, 10, 120, 100)
    fps = [_item((150 + 5 * k, 120, 20, 20), "widget", 0.9 - 0.01 * k) for k in range(11)]
    m = _one_image(tmp_path, [_ann(1, 7, big)], fps + [_item(big, "widget", 0.1)])
    assert m["AP"] == pytest.approx(1 / 12)
    assert m["per_class"] == {"widget": pytest.approx(1 / 12)}
    assert m["AR10"] == 0.0 and m["AR100"] == pytest.approx(1.0)
