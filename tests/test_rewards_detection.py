"""Detection reward: the authors' composite with a scale-invariant matcher and its guards."""

from __future__ import annotations

import json

import numpy as np
import pytest

from verl_perception.rewards import GroundTruthError, compute_score

H, W = 448, 644
GT = {
    "boxes": [[10, 20, 60, 120], [100, 100, 180, 160], [300, 50, 340, 90], [400, 200, 520, 330]],
    "labels": ["person", "car", "dog", "person"],
}


def answer(boxes, labels):
    return json.dumps([{"bbox_2d": list(b), "label": lab} for b, lab in zip(boxes, labels)])


def score(ans, gt=GT, config=None, data_source="coco", **info):
    return compute_score(data_source, ans, json.dumps(gt), {"input_size": [H, W], **info}, config=config)


PERFECT = answer(GT["boxes"], GT["labels"])


def test_perfect_answer_gets_the_maximum():
    expected = {
        "score": 3.0,
        "format": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "mean_iou": 1.0,
        "num_pred": 4.0,
        "num_gt": 4.0,
    }
    assert score(PERFECT) == expected
    assert score(f"```json\n{PERFECT}\n```") == expected
    assert score(f"<answer>{PERFECT}</answer> That is all.") == expected


def test_composite_value_by_hand():
    gt = {"boxes": [[0, 0, 100, 100], [200, 200, 300, 300]], "labels": ["person", "car"]}
    ans = answer([[0, 0, 100, 80], [200, 200, 300, 300], [400, 0, 420, 20]], ["person", "dog", "person"])
    r = score(ans, gt=gt)
    # TP 2 (IoU 0.8 and 1.0), P=3, G=2: F1 0.8, class 1/2, mean IoU 0.9, FP rate 1/3, FN rate 0.
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == 1.0 and r["f1"] == pytest.approx(0.8)
    assert r["mean_iou"] == pytest.approx(0.9)
    assert r["score"] == pytest.approx(0.25 + 0.75 * 0.8 + 0.5 + 0.9 - 0.5 / 3)


def test_match_needs_iou_above_threshold():
    gt = {"boxes": [[0, 0, 100, 100]], "labels": ["person"]}
    exactly_half = score(answer([[0, 0, 100, 50]], ["person"]), gt=gt)
    assert exactly_half["f1"] == 0.0 and exactly_half["mean_iou"] == 0.0
    assert score(answer([[0, 0, 100, 50]], ["person"]), gt=gt, config={"detection": {"match_iou": 0.4}})["f1"] == 1.0


def test_order_of_boxes_does_not_matter():
    rng = np.random.default_rng(1)
    boxes = [[b[0] + 3, b[1] - 2, b[2] + 1, b[3] + 4] for b in GT["boxes"]] + [[0, 0, 50, 50], [10, 20, 60, 120]]
    labels = ["person", "car", "cat", "person", "dog", "person"]
    base = score(answer(boxes, labels))
    for _ in range(10):
        p = rng.permutation(len(boxes))
        assert score(answer([boxes[i] for i in p], [labels[i] for i in p])) == base
        g = rng.permutation(len(GT["boxes"]))
        gt = {"boxes": [GT["boxes"][i] for i in g], "labels": [GT["labels"][i] for i in g]}
        assert score(answer(boxes, labels), gt=gt) == base


def test_spam_never_beats_one_correct_box():
    gt = {"boxes": [[100, 100, 200, 200]], "labels": ["person"]}
    single = score(answer([[100, 100, 200, 200]], ["person"]), gt=gt)["score"]
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, size=(1000, 2))
    random_boxes = np.concatenate([xy, xy + rng.uniform(5, 150, size=(1000, 2))], axis=1).round(1).tolist()
    spams = [
        answer([[100, 100, 200, 200]] * 1000, ["person"] * 1000),
        answer([[100, 100, 200, 200]] + random_boxes[:999], ["person"] * 1000),
        answer(random_boxes, ["person"] * 1000),
        answer([[100 + i % 7, 100, 200, 200 - i % 5] for i in range(1000)], ["person"] * 1000),
    ]
    assert single == 3.0
    for spam in spams:
        r = score(spam, gt=gt)
        assert r["num_pred"] == 1000.0 and r["score"] < single - 1.0


def test_giant_box_per_class_scores_under_half_of_perfect():
    giant = answer([[0, 0, W, H]] * 3, ["person", "car", "dog"])
    assert score(giant)["score"] < 1.5
    assert score(answer([[0, 0, W, H]], ["person"]))["score"] < 1.5


def test_duplicate_box_lowers_the_reward():
    dup = answer(GT["boxes"] + [GT["boxes"][0]], GT["labels"] + [GT["labels"][0]])
    assert score(dup)["score"] < score(PERFECT)["score"]


def test_wrong_label_lowers_the_reward():
    wrong = answer(GT["boxes"], ["person", "truck", "dog", "person"])
    r = score(wrong)
    assert r["score"] == pytest.approx(3.0 - 0.25) and r["format"] == 1.0


def test_unknown_or_missing_labels_are_malformed_items():
    unknown = answer(GT["boxes"], ["person", "automobile", "dog", "person"])
    r = score(unknown)
    assert r["format"] == 0.0 and r["num_pred"] == 3.0
    # format 0.25 * 3/4, F1 6/7, class 1, IoU 1, FN rate 1/4.
    assert r["score"] == pytest.approx(0.25 * 0.75 + 0.75 * 6 / 7 + 1 + 1 - 0.5 * 0.25)
    missing = json.dumps([{"bbox_2d": b} for b in GT["boxes"]])
    assert score(missing)["num_pred"] == 0.0 and score(missing)["format"] == 0.0
    assert score(answer(GT["boxes"], ["Person", "CAR", "dog", "person "]))["score"] == 3.0


def test_empty_answer_is_a_valid_empty_prediction():
    r = score("[]")
    assert r["format"] == 1.0 and r["score"] == 0.0 and r["num_pred"] == 0.0 and r["recall"] == 0.0
    assert score("```json\n[]\n```")["format"] == 1.0


def test_image_without_annotations():
    empty = {"boxes": [], "labels": []}
    assert score("[]", gt=empty) == {
        "score": 3.0,
        "format": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "mean_iou": 1.0,
        "num_pred": 0.0,
        "num_gt": 0.0,
    }
    r = score(answer([[1, 1, 50, 50]], ["person"]), gt=empty)
    assert r["score"] == 0.0 and r["precision"] == 0.0 and r["num_pred"] == 1.0


def test_no_json_scores_zero():
    for ans in ("There is a person on the left.", "", None, "<think>", "[1, 2, 3]"):
        r = score(ans)
        assert r["score"] == 0.0 and r["format"] == 0.0


def test_cut_off_answer_counts_the_cut_item():
    cut = PERFECT[:-40]
    r = score(cut)
    assert r["format"] == 0.0 and r["num_pred"] == 3.0
    assert r["score"] == pytest.approx(0.25 * 3 / 4 + 0.75 * 6 / 7 + 1 + 1 - 0.5 * 0.25)


def test_scale_invariance():
    # The same image at twice the resolution scores the same (the L1 cost is normalised).
    boxes = [[b[0] + 6, b[1] - 5, b[2] + 4, b[3] + 9] for b in GT["boxes"]] + [[200, 300, 260, 380]]
    labels = GT["labels"] + ["car"]
    r1 = score(answer(boxes, labels))
    gt2 = {"boxes": (np.array(GT["boxes"]) * 2).tolist(), "labels": GT["labels"]}
    ans2 = answer((np.array(boxes) * 2).tolist(), labels)
    r2 = compute_score("coco", ans2, json.dumps(gt2), {"input_size": [2 * H, 2 * W]})
    for key in r1:
        assert r2[key] == pytest.approx(r1[key], abs=1e-12)


def test_max_pred_boxes_cap():
    cfg = {"detection": {"max_pred_boxes": 2}}
    r = score(PERFECT, config=cfg)
    assert r["num_pred"] == 4.0 and r["precision"] == 0.5 and r["score"] < 3.0


def test_weights_come_from_config():
    cfg = {"detection": {"iou_weight": 0.0, "max_score": 10.0}}
    assert score(PERFECT, config=cfg)["score"] == 2.0
    heavier = {"detection": {"penalty_weight": 2.0}}
    assert score("[]", config={"detection": {"min_score": -5.0, "penalty_weight": 2.0}})["score"] == pytest.approx(
        0.25 - 2.0
    )
    assert score("[]", config=heavier)["score"] == 0.0


def test_vocabulary_sources():
    gt = {"boxes": [[0, 0, 100, 100]], "labels": ["gizmo"]}
    ans = answer([[0, 0, 100, 100], [200, 200, 300, 300]], ["gizmo", "widget"])
    # COCO names for coco: both labels unknown -> two malformed items.
    assert score(ans, gt=gt)["num_pred"] == 0.0
    # Another data_source with extra_info["task"]: the ground-truth labels.
    own = compute_score("my_set", ans, json.dumps(gt), {"task": "detection", "input_size": [H, W]})
    assert own["num_pred"] == 1.0 and own["format"] == 0.0
    # extra_info["categories"] (names or COCO-style dicts) and the config option.
    for info in (
        {"category_names": ["gizmo", "widget"]},
        {"categories": ["gizmo", "widget"], "category_names": ["person"]},
        {"category_names": np.array(["gizmo", "widget"], dtype=object)},
        {"categories": ["gizmo", "widget"]},
        {"categories": [{"id": 1, "name": "gizmo"}, {"id": 2, "name": "widget"}]},
    ):
        r = compute_score("my_set", ans, json.dumps(gt), {"task": "detection", "input_size": [H, W], **info})
        assert r["num_pred"] == 2.0 and r["format"] == 1.0
    # An empty list (or a null) is no vocabulary: fall through to the next source.
    empty = compute_score(
        "my_set", ans, json.dumps(gt), {"task": "detection", "category_names": [], "categories": None}
    )
    assert empty["num_pred"] == 1.0
    r = score(ans, gt=gt, config={"detection": {"categories": ["gizmo", "widget"]}})
    assert r["num_pred"] == 2.0 and r["f1"] == pytest.approx(2 / 3)


def test_require_think():
    cfg = {"detection": {"require_think": True}}
    assert score(PERFECT, config=cfg)["score"] == pytest.approx(2.75)
    assert score(f"<think>four objects</think>{PERFECT}", config=cfg)["score"] == 3.0


@pytest.mark.parametrize(
    "gt",
    [
        {"boxes": [[1, 2, 3, 4]]},
        {"boxes": [[1, 2, 3, 4]], "labels": ["a", "b"]},
        {"boxes": [[1, 2, 3]], "labels": ["a"]},
        {"boxes": [[1, 2, 3, 4]], "labels": "a"},
    ],
)
def test_malformed_ground_truth_raises(gt):
    with pytest.raises(GroundTruthError):
        score("[]", gt=gt)


def test_canonical_order_is_the_same_for_few_and_many_boxes():
    # _canonical sorts tuples for a usual answer and lexsorts an array for a long one: the two
    # must give the same order (ties included), or the matching of spam would depend on K.
    from verl_perception.rewards.detection import _canonical

    rng = np.random.default_rng(0)
    for n in (2, 40, 65, 300):
        coords = rng.integers(0, 6, size=(n, 4)).astype(float)  # small range: many ties
        records = [(*c, int(i)) for c, i in zip(coords.tolist(), rng.integers(0, 3, size=n))]
        expected = np.array(sorted(records), dtype=float)
        assert np.array_equal(_canonical(records), expected)
        shuffled = [records[i] for i in rng.permutation(n)]
        assert np.array_equal(_canonical(shuffled), expected)


def test_long_answers_take_the_array_path_with_the_same_result(monkeypatch):
    # Answers of more than _FEW_ITEMS items are read with numpy arrays instead of item by item;
    # both readers must give the same records, counts and order.
    from verl_perception.parsing import parse_answer
    from verl_perception.rewards import detection

    rng = np.random.default_rng(1)
    items = []
    for i in range(150):
        b = rng.integers(0, 400, size=4).tolist()
        items.append({"bbox_2d": b if i % 7 else [b[2], b[3], b[0], b[1]], "label": ["person", "car", "zebra?"][i % 3]})
    items[5] = {"bbox_2d": [1, 2, "x", 4], "label": "person"}
    items[9] = {"bbox_2d": [1e9, 2, 3, 4], "label": "car"}
    parsed = parse_answer(json.dumps(items))
    index = {"person": 0, "car": 1}
    for cap in (1000, 40):
        array_path = detection._predictions(parsed, index, cap)
        monkeypatch.setattr(detection, "_FEW_ITEMS", 10_000)
        item_path = detection._predictions(parsed, index, cap)
        monkeypatch.undo()
        assert array_path[1:] == item_path[1:] == (100, 50)  # 49 zebras + 1 bad box
        assert np.array_equal(array_path[0], item_path[0])
        assert len(array_path[0]) == min(cap, 100)


def _reference_match(pred, pred_ids, gt, gt_ids, h, w, cost_l1=5.0, cost_class=1.0, cost_giou=2.0):
    """DETR's cost written out directly, (K, M) layout, then scipy: the matcher's definition."""
    from scipy.optimize import linear_sum_assignment

    def cxcywh(b):
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        return np.stack([cx / w, cy / h, (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h], 1)

    lt, rb = np.maximum(pred[:, None, :2], gt[None, :, :2]), np.minimum(pred[:, None, 2:], gt[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    union = area(pred)[:, None] + area(gt)[None] - inter
    iou = inter / union
    elt, erb = np.minimum(pred[:, None, :2], gt[None, :, :2]), np.maximum(pred[:, None, 2:], gt[None, :, 2:])
    enclosing = np.prod(erb - elt, -1)
    giou = iou - (enclosing - union) / enclosing
    l1 = np.abs(cxcywh(pred)[:, None] - cxcywh(gt)[None]).sum(-1)
    same = pred_ids[:, None] == gt_ids[None]
    rows, cols = linear_sum_assignment(cost_l1 * l1 - cost_class * same - cost_giou * giou)
    pairs = [(iou[r, c], same[r, c]) for r, c in zip(rows, cols) if iou[r, c] > 0.5]
    return len(pairs), sum(p[0] for p in pairs), sum(p[1] for p in pairs)


@pytest.mark.parametrize(
    "k, m, weights",
    [
        (3, 9, {}),
        (9, 9, {}),
        (40, 6, {}),
        (300, 12, {}),
        (40, 6, {"cost_class": 0.0}),
        (9, 12, {"cost_class": 3.0, "cost_giou": 0.5, "cost_l1": 1.0}),
        (30, 7, {"cost_class": -1.0}),
    ],
)
def test_matcher_equals_the_direct_detr_cost_in_both_layouts(k, m, weights):
    # K > M runs with the predictions along the columns; both layouts must be DETR's matcher.
    from verl_perception.rewards.config import DetectionConfig
    from verl_perception.rewards.detection import _canonical, _PreparedGT, _match

    rng = np.random.default_rng(k * 100 + m)
    gt = rng.uniform(0, 300, size=(m, 2))
    gt = np.concatenate([gt, gt + rng.uniform(10, 150, size=(m, 2))], 1).round()
    names = ["a", "b", "c"]
    gt_labels = [names[i % 3] for i in range(m)]
    src = rng.integers(0, m, size=k)
    pred = (gt[src] + rng.normal(0, 12, size=(k, 4))).round()
    pred[: k // 4] = pred[0]  # duplicates: ties in the cost
    pred = np.concatenate([np.minimum(pred[:, :2], pred[:, 2:]), np.maximum(pred[:, :2], pred[:, 2:])], 1)
    pred_ids = rng.integers(0, 3, size=k)
    prepared = _PreparedGT({"boxes": gt.tolist(), "labels": gt_labels})
    index = {"a": 0, "b": 1, "c": 2}
    records = _canonical([(*b, int(i)) for b, i in zip(pred.tolist(), pred_ids)])
    tp, iou_sum, tp_same = _match(records, prepared, index, (480.0, 640.0), DetectionConfig(**weights))
    gt_ids = np.array([index[n] for n in prepared.names])
    ref = _reference_match(records[:, :4], records[:, 4].astype(int), prepared.boxes, gt_ids, 480.0, 640.0, **weights)
    assert tp == ref[0] and tp_same == ref[2]
    assert iou_sum == pytest.approx(ref[1], abs=1e-9)
    assert tp > 0


@pytest.mark.parametrize(
    "gt",
    [
        GT,
        {"boxes": [[60, 120, 10, 20], [1.5, 2.25, 3, 4]], "labels": ["Hot_Dog", "person"]},  # reversed, names
        {"boxes": [["10", "20", "30", "40"]], "labels": ["person"]},  # numeric strings: shared reader
        {"boxes": [[1e308, 0, 1e308, 5]], "labels": ["person"]},  # sum overflows: shared reader
        {"boxes": [], "labels": []},
    ],
)
def test_prepared_ground_truth_reads_as_the_shared_reader(gt):
    from verl_perception.rewards.detection import _PreparedGT
    from verl_perception.rewards.inputs import GroundTruthError, gt_boxes_labels

    try:
        boxes, names = gt_boxes_labels(gt)
    except GroundTruthError:  # coordinates beyond boxes.MAX_ABS_COORD: both readers refuse them
        with pytest.raises(GroundTruthError):
            _PreparedGT(gt)
        return
    prepared = _PreparedGT(gt)
    expected = sorted(zip(map(tuple, boxes.tolist()), names))
    assert list(zip(map(tuple, prepared.boxes.tolist()), prepared.names)) == expected
    assert prepared.boxes.shape == (len(names), 4)
    assert prepared.area.tolist() == [(b[2] - b[0]) * (b[3] - b[1]) for b, _ in expected]
