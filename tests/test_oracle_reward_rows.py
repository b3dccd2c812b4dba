"""Hand values for the mixed-task batch (``ROWS``) that the reward-manager, training-metrics and
curve tests compare against (their ``_expected`` is ``compute_score``): each row's reward is worked
out here from the paper's formulas with the independent oracles of ``test_oracle_rewards``, so
those tests rest on numbers that do not come from the code they check."""

from __future__ import annotations

import math

import pytest
from test_oracle_rewards import counting_oracle, detection_oracle, iou_giou, levenshtein
from test_verl_reward_manager import INPUT_SIZE, ROWS, _expected

from verl_perception.training_metrics import task_metrics

H, W = INPUT_SIZE
DIAG = math.hypot(H, W)


def _ocr(pred, ref):
    p, q = " ".join(pred.split()), " ".join(ref.split())
    return 1 - levenshtein(p, q) / max(len(p), len(q))


# Row by row (ROWS in test_verl_reward_manager.py).
IOU0 = 36480 / 40224  # [44, 58, 196, 310] vs [40, 60, 200, 300]: 152 x 240 over 38304 + 38400 - 36480
IOU1 = 30600 / 41600  # reversed corners -> [120, 90, 300, 280] vs [100, 100, 290, 300]
IOU8 = 1600 / 3400  # [0, 0, 50, 50] vs [10, 10, 60, 60]
COUNT2 = counting_oracle([(10, 12), (50, 52)], [(11, 12), (52, 50), (90, 90)], DIAG)
OCR4 = _ocr(ROWS[4][1], ROWS[4][2]["text"])
OCR5 = _ocr(ROWS[5][1], ROWS[5][2]["text"])
DET6 = detection_oracle(
    [((10, 10, 100, 100), "person"), ((200, 200, 300, 310), "dog"), ((400, 10, 420, 30), "cat")],
    [((12, 8, 98, 104), "person"), ((205, 198, 300, 300), "dog")],
    (H, W),
)
HAND = [
    {"score": IOU0**2 + 1, "format": 1.0, "iou": IOU0, "hit50": 1.0},
    {"score": IOU1**2 + 1, "format": 1.0, "iou": IOU1, "hit50": 1.0},
    {"score": COUNT2, "format": 1.0, "pred_count": 2.0, "gt_count": 3.0, "count_exact": 0.0, "f1": 4 / 5},
    {"score": 0.0, "format": 0.0, "pred_count": 0.0, "gt_count": 1.0, "count_exact": 0.0, "f1": 0.0},
    {"score": OCR4, "format": 1.0, "edit_sim": OCR4},
    {"score": OCR5, "format": 1.0, "edit_sim": OCR5},
    {**{k: v for k, v in DET6.items() if not k.startswith("_")}, "format": 1.0, "num_pred": 3.0, "num_gt": 2.0},
    {"score": 0.0, "format": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "mean_iou": 0.0, "num_pred": 0.0,
     "num_gt": 1.0},
    {"score": IOU8**2 + 1, "format": 1.0, "iou": IOU8, "hit50": 0.0},
]


def test_hand_values_are_what_they_say():
    # spot checks of the oracles' numbers against arithmetic done by hand
    assert IOU0 == pytest.approx(iou_giou((44, 58, 196, 310), (40, 60, 200, 300))[0])
    assert OCR4 == pytest.approx(1 - 2 / 83)  # "brigth" -> "bright": two substitutions in 83 characters
    assert COUNT2 == pytest.approx(2 / 3 * (1 - (1 + math.sqrt(8)) / 2 / DIAG))
    # detection: 2 of 3 boxes counted, 2 of 2 objects found, right labels
    iou_p = iou_giou((10, 10, 100, 100), (12, 8, 98, 104))[0]
    iou_d = iou_giou((200, 200, 300, 310), (205, 198, 300, 300))[0]
    want = 0.25 + 0.75 * 4 / 5 + 1 + (iou_p + iou_d) / 2 - 0.5 * (1 / 3 + 0)
    assert DET6["score"] == pytest.approx(want)


@pytest.mark.parametrize("i", range(len(ROWS)))
def test_batch_rows_score_their_hand_values(i):
    got = _expected(i)
    assert set(got) == set(HAND[i])
    for key, value in HAND[i].items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_training_metrics_of_the_batch_by_hand():
    infos = [{**HAND[i], "task": t, "reason": ""} for i, t in enumerate(
        ["grounding", "grounding", "counting", "counting", "ocr", "ocr", "detection", "detection", "grounding"])]
    m = task_metrics([r[0] for r in ROWS], infos)
    assert m["perception/refcoco/share"] == pytest.approx(1 / 9)
    assert m["perception/refcoco/iou"] == pytest.approx(IOU0)
    assert m["perception/pixmo_count/score"] == pytest.approx(COUNT2 / 2)
    assert m["perception/pixmo_count/format"] == pytest.approx(0.5)
    assert m["perception/pixmo_count/count_exact"] == 0.0
    assert m["perception/pageocr/edit_sim"] == pytest.approx((OCR4 + OCR5) / 2)
    assert m["perception/coco/share"] == pytest.approx(2 / 9)
    assert m["perception/coco/recall"] == pytest.approx(0.5)  # 1.0 and 0.0
    assert m["perception/coco/precision"] == pytest.approx(1 / 3)  # 2/3 and 0
    assert m["perception/my_referring_set/hit50"] == 0.0
    assert m["perception/my_referring_set/unscored"] == 0.0
