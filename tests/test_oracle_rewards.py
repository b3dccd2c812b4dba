"""Independent oracles for the four rewards: hand values from the paper's formulas and slow,
obvious re-implementations written here (brute-force matching over permutations, a dynamic-
programming Levenshtein), never the functions under test.

Formulas (docs/rewards.md, the rewards' docstrings):
  grounding  IoU(pred, gt) ** 2 + format, scored on the first valid box;
  counting   min(n, m) / max(n, m) * max(0, 1 - mean matched L2 / frame diagonal), 0 if format fails;
  OCR        1 - Levenshtein(pred, ref) / max(len), on whitespace-collapsed text;
  detection  0.25 * (1 - malformed / items) + 0.75 * F1 + mean class + mean IoU
             - 0.5 * (FP / P + FN / G), clamped to [0, 3], pairs from a min-cost matching on
             5 * L1(cxcywh / frame) - 1[label] - 2 * GIoU, counted when IoU > 0.5.
"""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_perception.rewards import compute_score
from _oracles import levenshtein

SETTINGS = settings(max_examples=40, deadline=None, database=None)
H, W = 400, 600  # input frame (h, w)
INFO = {"input_size": [H, W]}


# ---------------------------------------------------------------- oracles
def iou_giou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    area = lambda r: max(r[2] - r[0], 0.0) * max(r[3] - r[1], 0.0)  # noqa: E731
    union = area(a) + area(b) - inter
    iou = inter / union if union > 0 else 0.0
    enc = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return iou, (iou - (enc - union) / enc if enc > 0 else iou)




def min_cost_pairs(n_rows, n_cols, cost):
    """Brute force: the injective matching of the smaller side of minimum total cost."""
    best, best_pairs = math.inf, []
    if n_rows <= n_cols:
        for cols in itertools.permutations(range(n_cols), n_rows):
            total = sum(cost(i, c) for i, c in enumerate(cols))
            if total < best - 1e-12:
                best, best_pairs = total, list(enumerate(cols))
    else:
        for rows in itertools.permutations(range(n_rows), n_cols):
            total = sum(cost(r, j) for j, r in enumerate(rows))
            if total < best - 1e-12:
                best, best_pairs = total, [(r, j) for j, r in enumerate(rows)]
    return best_pairs


def counting_oracle(pred, gt, diag):
    n, m = len(pred), len(gt)
    if n == 0 and m == 0:
        return 1.0
    if n == 0 or m == 0:
        return 0.0
    dist = lambda i, j: math.dist(pred[i], gt[j])  # noqa: E731
    pairs = min_cost_pairs(n, m, dist)
    mean = sum(dist(i, j) for i, j in pairs) / len(pairs)
    return min(n, m) / max(n, m) * max(0.0, 1.0 - mean / diag)


def detection_oracle(pred, gt, frame_hw, n_items=None, malformed=0, cost_l1=5.0, cost_class=1.0, cost_giou=2.0):
    """pred, gt: lists of (box, label); returns the reward's score, precision, recall, f1, mean_iou."""
    h, w = frame_hw
    P, G = len(pred), len(gt)
    n_items = P if n_items is None else n_items

    def unit(b):
        return ((b[0] + b[2]) / 2 / w, (b[1] + b[3]) / 2 / h, (b[2] - b[0]) / w, (b[3] - b[1]) / h)

    def cost(i, j):
        (pb, pl), (gb, gl) = pred[i], gt[j]
        l1 = sum(abs(x - y) for x, y in zip(unit(pb), unit(gb)))
        return cost_l1 * l1 - cost_class * (pl == gl) - cost_giou * iou_giou(pb, gb)[1]

    pairs = min_cost_pairs(P, G, cost) if P and G else []
    counted = [(i, j) for i, j in pairs if iou_giou(pred[i][0], gt[j][0])[0] > 0.5]
    tp = len(counted)
    if P == 0 and G == 0:
        precision = recall = f1 = cls = miou = 1.0
    else:
        precision = tp / P if P else 0.0
        recall = tp / G if G else 0.0
        f1 = 2 * tp / (P + G)
        cls = sum(pred[i][1] == gt[j][1] for i, j in counted) / tp if tp else 0.0
        miou = sum(iou_giou(pred[i][0], gt[j][0])[0] for i, j in counted) / tp if tp else 0.0
    fp = (P - tp) / P if P else 0.0
    fn = (G - tp) / G if G else 0.0
    fmt = 1.0 - malformed / n_items if n_items else 1.0
    score = 0.25 * fmt + 0.75 * f1 + cls + miou - 0.5 * (fp + fn)
    return {"score": min(max(score, 0.0), 3.0), "precision": precision, "recall": recall, "f1": f1, "mean_iou": miou,
            "_tp": tp, "_tp_same": sum(pred[i][1] == gt[j][1] for i, j in counted)}


# ---------------------------------------------------------------- grounding
def ground(answer, bbox=(100, 100, 200, 200), info=INFO, config=None):
    return compute_score("refcoco", answer, json.dumps({"bbox": list(bbox)}), info, config=config)


@pytest.mark.parametrize(
    ("pred", "iou"),
    [
        ((100, 100, 200, 200), 1.0),
        ((100, 100, 200, 150), 0.5),  # half the box: 5000 / 10000
        ((150, 150, 250, 250), 2500 / 17500),  # corner overlap
        ((120, 110, 180, 190), 60 * 80 / 10000),  # inside
        ((0, 0, 100, 100), 0.0),  # touching at one corner
        ((300, 300, 400, 400), 0.0),
    ],
)
def test_grounding_is_iou_squared_plus_format(pred, iou):
    r = ground(json.dumps({"bbox_2d": list(pred)}))
    assert r["iou"] == pytest.approx(iou, abs=1e-12)
    assert r["score"] == pytest.approx(iou**2 + 1.0, abs=1e-12)
    assert r["format"] == 1.0
    assert r["hit50"] == (1.0 if iou >= 0.5 else 0.0)  # IoU exactly 0.5 is a hit


@SETTINGS
@given(st.tuples(*[st.integers(0, 600)] * 4))
def test_grounding_matches_the_oracle_on_any_box(b):
    r = ground(json.dumps({"bbox_2d": list(b)}), bbox=(150, 80, 330, 260))
    ordered = (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))
    iou = iou_giou(ordered, (150, 80, 330, 260))[0]
    assert r["iou"] == pytest.approx(iou, abs=1e-12)
    assert r["score"] == pytest.approx(iou**2 + 1.0, abs=1e-12)


def test_first_valid_box_rule():
    # The first item is invalid (no bbox_2d, then a NaN); the first *valid* box is scored, and the
    # answer gets format 0 because it is not exactly one valid item.
    answer = json.dumps([{"label": "x"}, {"bbox_2d": [1, 2, "a", 4]}, {"bbox_2d": [100, 100, 200, 150]},
                         {"bbox_2d": [100, 100, 200, 200]}])
    r = ground(answer)
    assert r == {"score": 0.25, "format": 0.0, "iou": 0.5, "hit50": 1.0}
    # Two valid boxes: the first one counts, not the best one.
    r = ground(json.dumps([{"bbox_2d": [300, 300, 400, 400]}, {"bbox_2d": [100, 100, 200, 200]}]))
    assert r == {"score": 0.0, "format": 0.0, "iou": 0.0, "hit50": 0.0}
    # One valid and one broken item: the valid box is scored, format 0.
    r = ground(json.dumps([{"bbox_2d": [100, 100, 200, 150]}, {"bbox_2d": [1, 2, 3]}]))
    assert r == {"score": 0.25, "format": 0.0, "iou": 0.5, "hit50": 1.0}
    # A one-item list is exactly one box: format 1.
    assert ground(json.dumps([{"bbox_2d": [100, 100, 200, 150]}]))["score"] == pytest.approx(1.25)


def test_grounding_options_by_hand():
    half = json.dumps({"bbox_2d": [100, 100, 200, 150]})  # IoU 0.5
    assert ground(half, config={"grounding": {"iou_power": 1}})["score"] == pytest.approx(1.5)
    assert ground(half, config={"grounding": {"iou_power": 3, "format_weight": 0.5}})["score"] == pytest.approx(0.625)
    assert ground(half, config={"grounding": {"hit_threshold": 0.6}})["hit50"] == 0.0
    two = json.dumps([{"bbox_2d": [100, 100, 200, 150]}, {"bbox_2d": [0, 0, 1, 1]}])
    assert ground(two, config={"grounding": {"format_gate": True}})["score"] == 0.0  # 0.25 * format 0
    assert ground(half, config={"grounding": {"format_gate": True}})["score"] == pytest.approx(1.25)
    think = "<think>ok</think><answer>" + half + "</answer>"
    assert ground(half, config={"grounding": {"require_think": True}})["format"] == 0.0
    assert ground(think, config={"grounding": {"require_think": True}})["score"] == pytest.approx(1.25)


def test_grounding_qwen3_relative_answer_by_hand():
    # Qwen3-VL writes 0..1000 of the image: x * W / 1000, y * H / 1000 in input-frame pixels.
    info = {"input_size": [H, W], "model_family": "qwen3_vl"}
    gt = (60, 40, 120, 80)  # = (100, 100, 200, 200) / 1000 * (600, 400)
    r = ground(json.dumps({"bbox_2d": [100, 100, 200, 200]}), bbox=gt, info=info)
    assert r["iou"] == pytest.approx(1.0)
    # half the height: 0..1000 y 100..150 -> 40..60 px
    r = ground(json.dumps({"bbox_2d": [100, 100, 200, 150]}), bbox=gt, info=info)
    assert r["iou"] == pytest.approx(0.5)
    # x and y scales are not swapped: (100, 100, 200, 200) in pixels would miss the box
    r = ground(json.dumps({"bbox_2d": [60, 40, 120, 80]}), bbox=gt, info=info)
    assert r["iou"] == pytest.approx(iou_giou((36, 16, 72, 32), gt)[0])


# ---------------------------------------------------------------- counting
def count(points, gt_points, info=INFO, config=None, gt_extra=None):
    gt = {"points": [list(p) for p in gt_points], **(gt_extra or {})}
    answer = json.dumps([{"point_2d": list(p)} for p in points])
    return compute_score("pixmo_count", answer, json.dumps(gt), info, config=config)


def test_counting_hand_values():
    diag = math.hypot(H, W)
    gt = [(100, 100), (200, 100)]
    # perfect
    assert count(gt, gt)["score"] == 1.0
    # each point off by (3, 4): distance 5
    r = count([(103, 104), (197, 96)], gt)
    assert r["score"] == pytest.approx(1 - 5 / diag)
    # three predictions for two: ratio 2/3, the two near ones matched (distances 0 and 0)
    r = count([(100, 100), (200, 100), (500, 300)], gt)
    assert r["score"] == pytest.approx(2 / 3)
    assert (r["pred_count"], r["gt_count"], r["count_exact"]) == (3.0, 2.0, 0.0)
    assert r["f1"] == pytest.approx(2 * 2 / 5)
    # one prediction between both: matched to the nearer, distance 10; ratio 1/2
    r = count([(110, 100)], gt)
    assert r["score"] == pytest.approx(0.5 * (1 - 10 / diag))
    assert r["f1"] == pytest.approx(2 * 1 / 3)  # 10 px < 5% of the diagonal (36 px)
    # matching is one-to-one: the greedy pairing (nearest first) is worse than the optimum
    gt3 = [(0, 0), (10, 0)]
    r = count([(9, 0), (19, 0)], gt3)  # optimum: (9->0)=9, (19->10)=9, mean 9; greedy: 1 + 19
    assert r["score"] == pytest.approx(1 - 9 / diag)


def test_counting_empty_and_count_only_and_fallback_diagonal():
    assert count([], [])["score"] == 1.0 and count([], [])["f1"] == 1.0
    assert count([(1, 1)], [])["score"] == 0.0
    assert count([], [(1, 1)])["score"] == 0.0
    # count-only rows: the count ratio alone, f1's point-free bound 2 min / (n + m)
    r = count([(1, 1), (5, 5)], [], gt_extra={"count": 5})
    assert r["score"] == pytest.approx(2 / 5) and r["f1"] == pytest.approx(4 / 7) and r["gt_count"] == 5.0
    r = count([(1, 1)] * 7, [], gt_extra={"count": 5})
    assert r["score"] == pytest.approx(5 / 7)
    assert count([], [], gt_extra={"count": 5})["score"] == 0.0
    # no input_size: the diagonal of [0, max x] x [0, max y] of the reference points
    r = count([(33, 44)], [(30, 40)], info={})
    assert r["score"] == pytest.approx(1 - 5 / 50)
    # far beyond the diagonal: the closeness term is clamped at 0
    assert count([(5000, 5000)], [(0, 0)])["score"] == 0.0


def test_counting_f1_radius_by_hand():
    diag = math.hypot(H, W)  # 721.1
    gt = [(100, 100), (400, 300)]
    near, far = (100 + 0.049 * diag, 100), (400 + 0.051 * diag, 300)
    r = count([near, far], gt)
    assert r["f1"] == pytest.approx(2 * 1 / 4)
    assert count([near, far], gt, config={"counting": {"f1_radius": 0.06}})["f1"] == 1.0


def test_counting_format_gate():
    answer = json.dumps([{"point_2d": [100, 100]}, {"point_2d": [1]}])
    r = compute_score("pixmo_count", answer, json.dumps({"points": [[100, 100]]}), INFO)
    assert r["score"] == 0.0 and r["format"] == 0.0 and r["pred_count"] == 1.0


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(0, 600), st.integers(0, 400)), max_size=5),
    st.lists(st.tuples(st.integers(0, 600), st.integers(0, 400)), max_size=5),
)
def test_counting_matches_brute_force_matching(pred, gt):
    r = count(pred, gt)
    assert r["score"] == pytest.approx(counting_oracle(pred, gt, math.hypot(H, W)), abs=1e-9)


def test_counting_qwen3_relative_points_by_hand():
    info = {"input_size": [H, W], "model_family": "qwen3_vl"}
    r = count([(500, 500)], [(300, 200)], info=info)  # 0..1000 -> (300, 200) px
    assert r["score"] == pytest.approx(1.0)
    r = count([(500, 250)], [(300, 200)], info=info)  # (300, 100) px: 100 px off
    assert r["score"] == pytest.approx(1 - 100 / math.hypot(H, W))


# ---------------------------------------------------------------- OCR
@pytest.mark.parametrize(
    ("pred", "ref", "sim"),
    [
        ("kitten", "sitting", 1 - 3 / 7),
        ("flaw", "lawn", 1 - 2 / 4),
        ("", "", 1.0),
        ("abc", "", 0.0),
        ("The  quick\nbrown fox", "The quick brown fox", 1.0),  # whitespace runs collapse
        ("  padded  ", "padded", 1.0),
        ("ab", "ba", 0.0),  # two substitutions, not one transposition
    ],
)
def test_ocr_edit_similarity_hand_values(pred, ref, sim):
    r = compute_score("pageocr", pred, json.dumps({"text": ref}))
    assert r["edit_sim"] == pytest.approx(sim) and r["score"] == pytest.approx(sim) and r["format"] == 1.0


@SETTINGS
@given(st.text(alphabet="ab c\n", max_size=30), st.text(alphabet="ab c\n", max_size=30))
def test_ocr_matches_dynamic_programming(pred, ref):
    p, q = " ".join(pred.split()), " ".join(ref.split())
    want = 1.0 if not p and not q else 1 - levenshtein(p, q) / max(len(p), len(q))
    assert compute_score("pageocr", pred, {"text": ref})["score"] == pytest.approx(want)
    # without normalisation only the payload's surrounding whitespace goes (split_answer strips it)
    p, q = pred.strip(), ref
    raw = 1.0 if not p and not q else 1 - levenshtein(p, q) / max(len(p), len(q))
    got = compute_score("pageocr", pred, {"text": ref}, config={"ocr": {"normalize_whitespace": False}})
    assert got["score"] == pytest.approx(raw)


def test_ocr_think_requirement_and_answer_tag():
    cfg = {"ocr": {"require_think": True}}
    assert compute_score("pageocr", "abc", {"text": "abc"}, config=cfg) == {"score": 0.0, "format": 0.0,
                                                                            "edit_sim": 1.0}
    r = compute_score("pageocr", "<think>x</think><answer>abd</answer>", {"text": "abc"}, config=cfg)
    assert r["score"] == pytest.approx(2 / 3) and r["format"] == 1.0


# ---------------------------------------------------------------- detection
def detect(pred, gt, info=INFO, config=None, extra_items=()):
    answer = json.dumps([{"bbox_2d": list(b), "label": lab} for b, lab in pred] + list(extra_items))
    truth = {"boxes": [list(b) for b, _ in gt], "labels": [lab for _, lab in gt]}
    return compute_score("coco", answer, json.dumps(truth), info, config=config)


GT3 = [((10, 20, 110, 220), "person"), ((300, 100, 400, 160), "car"), ((450, 250, 550, 390), "dog")]


def test_detection_perfect_and_empty_by_hand():
    r = detect(GT3, GT3)
    assert r == {"score": 3.0, "format": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "mean_iou": 1.0,
                 "num_pred": 3.0, "num_gt": 3.0}
    # [] on an image with objects: 0.25 - 0.5 (FN rate 1) -> clamped 0
    assert detect([], GT3)["score"] == 0.0
    # [] on an empty image is right: every term full
    assert detect([], [])["score"] == 3.0
    # one false positive on an empty image: 0.25 + 0 - 0.5 -> 0
    r = detect([((0, 0, 10, 10), "person")], [])
    assert r["score"] == 0.0 and r["precision"] == 0.0 and r["recall"] == 0.0


def test_detection_partial_answer_by_hand():
    # Two of three found: one exact, one shifted by 20 px, (300, 100, 400, 160) vs
    # (320, 100, 420, 160): intersection 80 x 60 = 4800, union 2 * 6000 - 4800 = 7200.
    pred = [((10, 20, 110, 220), "person"), ((320, 100, 420, 160), "car")]
    iou2 = 4800 / 7200
    r = detect(pred, GT3)
    tp, P, G = 2, 2, 3
    want = 0.25 + 0.75 * (2 * tp / (P + G)) + 1.0 + (1.0 + iou2) / 2 - 0.5 * (0 / P + 1 / G)
    assert r["score"] == pytest.approx(want)
    assert (r["precision"], r["recall"]) == (1.0, pytest.approx(2 / 3))
    assert r["mean_iou"] == pytest.approx((1 + iou2) / 2)


def test_detection_wrong_label_and_low_iou_by_hand():
    # Exact box, wrong (but known) label: counted pair, class term 0.
    r = detect([((10, 20, 110, 220), "car")], GT3[:1])
    assert r["score"] == pytest.approx(0.25 + 0.75 + 0.0 + 1.0)
    # IoU exactly 0.5 is not counted (> 0.5): box half as tall
    r = detect([((10, 20, 110, 120), "person")], GT3[:1])
    assert r["precision"] == 0.0 and r["score"] == pytest.approx(max(0.0, 0.25 - 0.5 * 2))
    # a malformed item (unknown label) costs format: 1 of 2 items malformed
    r = detect(GT3[:1], GT3[:1], extra_items=[{"bbox_2d": [0, 0, 5, 5], "label": "unicorn"}])
    assert r["format"] == 0.0
    assert r["score"] == pytest.approx(0.25 * 0.5 + 0.75 + 1.0 + 1.0)


def test_detection_label_decides_between_equal_boxes():
    # Two identical gt boxes with different labels; the predicted labels pick their partner.
    gt = [((100, 100, 200, 200), "cat"), ((100, 100, 200, 200), "dog")]
    r = detect([((100, 100, 200, 200), "dog"), ((100, 100, 200, 200), "cat")], gt)
    assert r["score"] == 3.0


def test_detection_options_by_hand():
    pred = [((10, 20, 110, 220), "person")]
    r = detect(pred, GT3, config={"detection": {"penalty_weight": 0.0}})
    assert r["score"] == pytest.approx(0.25 + 0.75 * 2 / 4 + 1 + 1)
    r = detect(pred, GT3, config={"detection": {"match_iou": 0.99, "max_score": 2.0}})
    assert r["score"] == pytest.approx(min(2.0, 0.25 + 0.75 * 2 / 4 + 1 + 1 - 0.5 * 2 / 3))
    # max_pred_boxes: boxes beyond the cap are unmatched false positives (answer order)
    r = detect([((0, 0, 5, 5), "car")] + pred, GT3[:1], config={"detection": {"max_pred_boxes": 1}})
    assert r["precision"] == 0.0 and r["num_pred"] == 2.0
    r = detect(pred + [((0, 0, 5, 5), "car")], GT3[:1], config={"detection": {"max_pred_boxes": 1}})
    assert r["precision"] == 0.5


def test_detection_qwen3_relative_boxes_by_hand():
    info = {"input_size": [H, W], "model_family": "qwen3_vl"}
    gt = [((60, 40, 120, 80), "person")]
    assert detect([((100, 100, 200, 200), "person")], gt, info=info)["score"] == 3.0
    assert detect([((60, 40, 120, 80), "person")], gt, info=info)["score"] < 3.0


def _rand_box(rng, near=None):
    if near is not None and rng.random() < 0.8:
        x1, y1, x2, y2 = near
        j = lambda: rng.uniform(-12, 12)  # noqa: E731
        return (x1 + j(), y1 + j(), x2 + j(), y2 + j())
    x, y = rng.uniform(0, W - 60), rng.uniform(0, H - 60)
    return (x, y, x + rng.uniform(10, 150), y + rng.uniform(10, 150))


@pytest.mark.parametrize("seed", range(60))
def test_detection_matches_brute_force_assignment(seed):
    rng = random.Random(seed)
    labels = ["person", "car", "dog"]
    gt = [(_rand_box(rng), rng.choice(labels)) for _ in range(rng.randint(0, 4))]
    pred = []
    for _ in range(rng.randint(0, 5)):
        near = rng.choice(gt)[0] if gt else None
        pred.append((tuple(round(v, 2) for v in _rand_box(rng, near)), rng.choice(labels)))
    gt = [(tuple(round(v, 2) for v in b), lab) for b, lab in gt]
    got = detect(pred, gt)
    want = detection_oracle(pred, gt, (H, W))
    for key, value in want.items():
        if not key.startswith("_"):
            assert got[key] == pytest.approx(value, abs=1e-9), key


# ---------------------------------------------------------------- detection: vocabularies and match()
def test_detection_vocabulary_sources_by_hand():
    gt = [((10, 20, 110, 220), "widget"), ((300, 100, 400, 160), "gadget")]
    perfect = json.dumps([{"bbox_2d": list(b), "label": lab} for b, lab in gt])
    truth = json.dumps({"boxes": [list(b) for b, _ in gt], "labels": [lab for _, lab in gt]})
    plus_gizmo = json.dumps([{"bbox_2d": list(b), "label": lab} for b, lab in gt]
                            + [{"bbox_2d": [0, 0, 5, 5], "label": "gizmo"}])
    # fallback: the row's own labels; a label outside them is malformed (format 0, one item in three)
    r = compute_score("my_det", plus_gizmo, truth, {**INFO, "task": "detection"})
    assert r["format"] == 0.0 and r["num_pred"] == 2.0
    assert r["score"] == pytest.approx(0.25 * (1 - 1 / 3) + 0.75 + 1 + 1)
    assert compute_score("my_det", perfect, truth, {**INFO, "task": "detection"})["score"] == 3.0
    # the vocabulary from extra_info (names, or COCO-style dicts): gizmo is a known label, a false positive
    for cats in (["widget", "gadget", "gizmo"], [{"id": 1, "name": "widget"}, {"id": 2, "name": "Gadget"},
                                                 {"id": 9, "name": "gizmo"}]):
        for field in ("categories", "category_names"):
            r = compute_score("my_det", plus_gizmo, truth, {**INFO, "task": "detection", field: cats})
            assert r["format"] == 1.0 and r["num_pred"] == 3.0, (field, cats)
            assert r["score"] == pytest.approx(0.25 + 0.75 * 4 / 5 + 1 + 1 - 0.5 * (1 / 3))
    # the config's categories win over extra_info's
    r = compute_score("my_det", plus_gizmo, truth, {**INFO, "task": "detection", "categories": ["widget"]},
                      config={"detection": {"categories": ["widget", "gadget", "gizmo"]}})
    assert r["format"] == 1.0
    # an empty or unusable vocabulary field is skipped (the next source decides)
    for bad in ([], "widget gadget", [{"no_name": 1}]):
        r = compute_score("my_det", plus_gizmo, truth, {**INFO, "task": "detection", "categories": bad})
        assert r["format"] == 0.0, bad
    # COCO names for data_source coco: "widget" is not one
    r = compute_score("coco", perfect, truth, INFO)
    assert r["format"] == 0.0 and r["num_pred"] == 0.0
    # labels are normalised the parser's way on both sides ("Traffic_Light" is "traffic light")
    truth2 = json.dumps({"boxes": [[10, 20, 110, 220]], "labels": ["Traffic_Light"]})
    ans2 = json.dumps([{"bbox_2d": [10, 20, 110, 220], "label": "traffic light"}])
    assert compute_score("my_det", ans2, truth2, {**INFO, "task": "detection", "categories": ["traffic_light"]})[
        "score"] == 3.0


def test_detection_same_vocabulary_object_reused_and_changed():
    # the same extra_info list is reused by a row's completions; a different list must not hit that cache
    truth = json.dumps({"boxes": [[10, 20, 110, 220]], "labels": ["widget"]})
    ans = json.dumps([{"bbox_2d": [10, 20, 110, 220], "label": "widget"}, {"bbox_2d": [0, 0, 5, 5], "label": "gizmo"}])
    cats = ["widget", "gizmo"]
    info = {**INFO, "task": "detection", "categories": cats}
    first = compute_score("my_det", ans, truth, info)
    assert first == compute_score("my_det", ans, truth, info) and first["format"] == 1.0
    cats.pop()  # mutated in place: its length changes, so it is read again
    assert compute_score("my_det", ans, truth, info)["format"] == 0.0
    other = {**INFO, "task": "detection", "categories": ["widget"]}
    assert compute_score("my_det", ans, truth, other)["format"] == 0.0


@pytest.mark.parametrize("seed", range(30))
def test_standalone_match_equals_brute_force(seed):
    from verl_perception.rewards.config import DetectionConfig
    from verl_perception.rewards.detection import match

    rng = random.Random(1000 + seed)
    labels = ["a", "b", "c"]
    gt = [(_rand_box(rng), rng.choice(labels)) for _ in range(rng.randint(1, 4))]
    pred = [(_rand_box(rng, rng.choice(gt)[0]), rng.choice(labels)) for _ in range(rng.randint(1, 4))]
    # match() orders reversed corners itself
    shown = [((b[2], b[3], b[0], b[1]) if k % 2 else b, lab) for k, (b, lab) in enumerate(pred)]
    tp, iou_sum, tp_same = match([b for b, _ in shown], [lab for _, lab in shown], [b for b, _ in gt],
                                 [lab for _, lab in gt], (H, W), DetectionConfig())
    want = detection_oracle(pred, gt, (H, W))
    assert tp / len(pred) == pytest.approx(want["precision"])
    assert (iou_sum / tp if tp else 0.0) == pytest.approx(want["mean_iou"])
    assert (tp, tp_same) == (want["_tp"], want["_tp_same"])


def test_standalone_match_by_hand():
    from verl_perception.rewards.config import DetectionConfig
    from verl_perception.rewards.detection import match

    gt, gl = [[0, 0, 100, 100], [200, 200, 300, 260]], ["cat", "dog"]
    tp, iou_sum, same = match([[0, 0, 100, 50], [200, 200, 300, 260]], ["cat", "cat"], gt, gl, (400, 600),
                              DetectionConfig())
    assert (tp, same) == (1, 0) and iou_sum == pytest.approx(1.0)  # IoU 0.5 is not counted
    tp, iou_sum, same = match([[0, 0, 100, 60], [300, 260, 200, 200]], ["cat", "dog"], gt, gl, (400, 600),
                              DetectionConfig(match_iou=0.55))
    assert (tp, same) == (2, 2) and iou_sum == pytest.approx(1.6)


def test_ground_truth_labels_outside_the_vocabulary_never_match_a_class():
    # COCO vocabulary, ground-truth labels it does not have: every prediction's class is wrong,
    # whatever COCO id a prediction has (person 0, bicycle 1, car 2).
    gt = [((10, 10, 110, 110), "widget"), ((200, 10, 300, 110), "gadget"), ((400, 10, 500, 110), "gizmo")]
    pred = [((10, 10, 110, 110), "car"), ((200, 10, 300, 110), "bicycle"), ((400, 10, 500, 110), "person")]
    r = detect(pred, gt)
    assert r["precision"] == 1.0  # the boxes are all counted ...
    assert r["score"] == pytest.approx(0.25 + 0.75 + 0.0 + 1.0)  # ... but no class is right


def test_one_ground_truth_scored_under_two_vocabularies():
    # The same ground-truth string (decoded once, prepared once) with vocabularies that number the
    # labels differently: the label ids must follow the vocabulary of each call.
    truth = json.dumps({"boxes": [[10, 10, 110, 110], [200, 10, 300, 110]], "labels": ["widget", "gadget"]})
    answer = json.dumps([{"bbox_2d": [10, 10, 110, 110], "label": "widget"},
                         {"bbox_2d": [200, 10, 300, 110], "label": "gadget"}])
    for cats in (["widget", "gadget"], ["gadget", "widget"], ["x", "gadget", "widget"], ["widget", "gadget"]):
        r = compute_score("my_det", answer, truth, {**INFO, "task": "detection", "categories": list(cats)})
        assert r["score"] == 3.0, cats
    swapped = json.dumps([{"bbox_2d": [10, 10, 110, 110], "label": "gadget"},
                          {"bbox_2d": [200, 10, 300, 110], "label": "widget"}])
    r = compute_score("my_det", swapped, truth, {**INFO, "task": "detection", "categories": ["gadget", "widget"]})
    assert r["score"] == pytest.approx(0.25 + 0.75 + 0.0 + 1.0)


@pytest.mark.parametrize("seed", range(40))
def test_detection_without_input_size_uses_the_ground_truth_extent(seed):
    # No input_size: the L1 term is normalised by the ground truth's extent (h = max y2, w = max x2);
    # an elongated extent makes the normalisation matter for the assignment.
    rng = random.Random(5000 + seed)
    labels = ["person", "car"]
    def box():
        x, y = rng.uniform(0, 900), rng.uniform(0, 60)
        return (round(x, 1), round(y, 1), round(x + rng.uniform(20, 80), 1), round(y + rng.uniform(5, 40), 1))
    gt = [(box(), rng.choice(labels)) for _ in range(rng.randint(1, 4))]
    pred = []
    for _ in range(rng.randint(1, 4)):
        b = rng.choice(gt)[0]
        j = [rng.uniform(-15, 15) for _ in range(4)]
        pred.append((tuple(round(v + d, 1) for v, d in zip(b, j)), rng.choice(labels)))
    frame = (max(1.0, max(b[3] for b, _ in gt)), max(1.0, max(b[2] for b, _ in gt)))
    got = detect(pred, gt, info={})
    want = detection_oracle(pred, gt, frame)
    for key, value in want.items():
        if not key.startswith("_"):
            assert got[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.parametrize("seed", [22, 32, 62])
def test_detection_on_sub_pixel_ground_truth_without_input_size(seed):
    # A ground truth smaller than 2 px and no input_size: the fallback frame is at least 1 x 1 px
    # (seeds where the assignment depends on that floor).
    rng = random.Random(seed)
    labels = ["person", "car"]

    def box():
        x, y = rng.uniform(0, 1.0), rng.uniform(0, 1.0)
        return (round(x, 3), round(y, 3), round(x + rng.uniform(0.2, 0.9), 3), round(y + rng.uniform(0.2, 0.9), 3))

    gt = [(box(), rng.choice(labels)) for _ in range(rng.randint(2, 3))]
    pred = []
    for _ in range(rng.randint(2, 3)):
        b = rng.choice(gt)[0]
        pred.append((tuple(round(v + rng.uniform(-0.15, 0.15), 3) for v in b), rng.choice(labels)))
    frame = (max(1.0, max(b[3] for b, _ in gt)), max(1.0, max(b[2] for b, _ in gt)))
    got = detect(pred, gt, info={})
    want = detection_oracle(pred, gt, frame)
    assert got["score"] == pytest.approx(want["score"], abs=1e-9)


def _random_case(seed, labels=("person", "car", "dog")):
    rng = random.Random(seed)
    gt = [(_rand_box(rng), rng.choice(labels)) for _ in range(rng.randint(2, 4))]
    pred = []
    for _ in range(rng.randint(2, 5)):
        near = rng.choice(gt)[0]
        pred.append((tuple(round(v, 2) for v in _rand_box(rng, near)), rng.choice(labels)))
    return pred, [(tuple(round(v, 2) for v in b), lab) for b, lab in gt]


@pytest.mark.parametrize("weights", [(5, 2, 2), (5, 0.5, 2), (1, 3, 0.5), (5, 0, 2), (2, -1, 1), (0, 1, 2)])
@pytest.mark.parametrize("seed", range(12))
def test_detection_cost_weights_match_brute_force(weights, seed):
    l1, cls, giou = weights
    pred, gt = _random_case(700 + seed)
    cfg = {"detection": {"cost_l1": l1, "cost_class": cls, "cost_giou": giou}}
    got = detect(pred, gt, config=cfg)
    want = detection_oracle(pred, gt, (H, W), cost_l1=l1, cost_class=cls, cost_giou=giou)
    assert got["score"] == pytest.approx(want["score"], abs=1e-9)
    assert got["mean_iou"] == pytest.approx(want["mean_iou"], abs=1e-9)


@pytest.mark.parametrize("seed", [68, 125, 137])
def test_one_ground_truth_under_two_frames(seed):
    # The same ground-truth string (prepared once) scored in two frames: the L1 features must follow
    # the frame of each call (seeds where the frame changes the assignment).
    pred, gt = _random_case(seed)
    for frame in ((400, 600), (400, 2400), (400, 600)):
        got = detect(pred, gt, info={"input_size": list(frame)})
        assert got["score"] == pytest.approx(detection_oracle(pred, gt, frame)["score"], abs=1e-9), frame


@pytest.mark.parametrize("seed", range(30))
def test_detection_sub_pixel_boxes_match_brute_force(seed):
    # Boxes and gaps below one pixel: intersections and gaps are fractions of a pixel.
    rng = random.Random(9000 + seed)
    labels = ["person", "car"]

    def box():
        x, y = rng.uniform(0, 1.5), rng.uniform(0, 1.5)
        return (round(x, 3), round(y, 3), round(x + rng.uniform(0.1, 0.6), 3), round(y + rng.uniform(0.1, 0.6), 3))

    gt = [(box(), rng.choice(labels)) for _ in range(rng.randint(1, 3))]
    pred = [(box(), rng.choice(labels)) for _ in range(rng.randint(1, 3))]
    got = detect(pred, gt, info={"input_size": [4, 4]})
    want = detection_oracle(pred, gt, (4, 4))
    for key, value in want.items():
        if not key.startswith("_"):
            assert got[key] == pytest.approx(value, abs=1e-9), key


def test_degenerate_ground_truth_boxes():
    # Zero-area ground truth (a line) and the same line predicted: IoU 0 (empty union), no NaN.
    gt = [((10, 10, 10, 50), "person"), ((100, 100, 200, 200), "car")]
    pred = [((10, 10, 10, 50), "person"), ((100, 100, 200, 200), "car")]
    got = detect(pred, gt)
    want = detection_oracle(pred, gt, (H, W))
    assert got["score"] == pytest.approx(want["score"]) and got["precision"] == 0.5
    assert got["mean_iou"] == 1.0


def test_counting_count_only_small_answers_and_radius_boundary():
    r = count([], [], gt_extra={"count": 5})
    assert (r["score"], r["f1"]) == (0.0, 0.0)
    r = count([(1, 1)], [], gt_extra={"count": 5})
    assert r["score"] == pytest.approx(1 / 5) and r["f1"] == pytest.approx(2 / 6)
    # a point exactly f1_radius * D away counts (<=): D = 50 for a 30 x 40 frame, 5% = 2.5 px
    r = count([(1.5, 2.0)], [(0, 0)], info={"input_size": [30, 40]})
    assert r["f1"] == 1.0
    r = count([(1.5, 2.01)], [(0, 0)], info={"input_size": [30, 40]})
    assert r["f1"] == 0.0


def test_vocabulary_edge_cases():
    truth = json.dumps({"boxes": [[10, 20, 110, 220], [300, 100, 400, 160]], "labels": ["widget", "gadget"]})
    ans = json.dumps([{"bbox_2d": [10, 20, 110, 220], "label": "widget"},
                      {"bbox_2d": [300, 100, 400, 160], "label": "gadget"}])
    det_info = {**INFO, "task": "detection"}
    # a one-name vocabulary is a vocabulary: gadget is outside it
    assert compute_score("my_det", ans, truth, {**det_info, "categories": ["widget"]})["format"] == 0.0
    # an unusable first field: the next one is tried
    r = compute_score("my_det", ans, truth, {**det_info, "categories": [{"no": 1}], "category_names": ["widget"]})
    assert r["format"] == 0.0
    # not a list at all (an int, a string): skipped, the next source decides (COCO names for coco)
    person = json.dumps([{"bbox_2d": [10, 20, 110, 220], "label": "person"}])
    coco_truth = json.dumps({"boxes": [[10, 20, 110, 220]], "labels": ["person"]})
    for bad in (5, "person", b"person"):
        assert compute_score("coco", person, coco_truth, {**INFO, "categories": bad})["score"] == 3.0, bad
    # two vocabularies of the same length, one after the other: each call reads its own
    gizmo = json.dumps([{"bbox_2d": [10, 20, 110, 220], "label": "widget"},
                        {"bbox_2d": [300, 100, 400, 160], "label": "gizmo"}])
    assert compute_score("my_det", gizmo, truth, {**det_info, "categories": ["widget", "gadget"]})["format"] == 0.0
    assert compute_score("my_det", gizmo, truth, {**det_info, "categories": ["widget", "gizmo"]})["format"] == 1.0


def test_plain_dict_ground_truths_are_never_confused():
    # Ground truths passed as dicts are prepared per call (a dict's id can be reused once it is freed).
    for k in range(20):
        x = 10 + 7 * k
        gt = {"boxes": [[x, 20, x + 100, 220]], "labels": ["person"]}
        ans = json.dumps([{"bbox_2d": [x, 20, x + 100, 220], "label": "person"}])
        assert compute_score("coco", ans, dict(gt), INFO)["score"] == 3.0, k


def test_invalid_input_size_is_ignored():
    # A frame size that is not two positive finite numbers is ignored (counting falls back to the
    # diagonal of the reference points: 5 here), never used.
    for bad in ([-30, 40], [30, -40], [float("inf"), 40], [30, float("nan")], [0, 40], [30, 0], "30x40", [30]):
        r = count([(3, 4)], [(3, 4.5)], info={"input_size": bad})
        assert r["score"] == pytest.approx(1 - 0.5 / math.hypot(3, 4.5)), bad
    # the smallest valid frames: one pixel wide or high
    for size in ([4, 1], [1, 4]):
        r = count([(0, 0)], [(1, 0)], info={"input_size": size})
        assert r["score"] == pytest.approx(1 - 1 / math.hypot(4, 1)), size
