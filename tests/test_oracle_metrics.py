"""Independent oracles for the benchmark metrics of grounding, counting and OCR (metrics/):
hand-computed values on tiny row sets (IoU in the original frame, counts, edit distance, BLEU and
set precision/recall by their definitions), never the metric functions themselves."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from verl_perception.metrics import counting, grounding, ocr
from verl_perception.metrics.rows import EvalInputError, EvalRow
from _oracles import levenshtein


def row(position, gt, response, input_size=(100, 200), orig_size=(200, 400), data_source="refcoco", split="val",
        family=None):
    info = {"input_size": list(input_size), "orig_size": list(orig_size), "split": split, "index": position + 10}
    if family:
        info["model_family"] = family
    return EvalRow(position, data_source, gt, info, tuple(input_size), tuple(orig_size), response)


# ---------------------------------------------------------------- grounding
def test_grounding_metrics_by_hand():
    # input frame 100 x 200 of a 200 x 400 original: everything doubles in the original frame
    gt = {"bbox": [10, 10, 60, 60]}  # original: [20, 20, 120, 120]
    rows = [
        row(0, gt, json.dumps({"bbox_2d": [10, 10, 60, 60]})),  # IoU 1
        row(1, gt, json.dumps({"bbox_2d": [10, 10, 60, 35]})),  # IoU 0.5 (half the height)
        row(2, gt, json.dumps({"bbox_2d": [35, 10, 85, 60]})),  # IoU 25 / 75 = 1/3, centre (60, 35) inside? x 60 = border
        row(3, gt, json.dumps([{"bbox_2d": [0, 0, 5, 5]}, {"bbox_2d": [10, 10, 60, 60]}])),  # first box: IoU 0
        row(4, gt, "no box here", data_source="refcoco+"),
        row(5, gt, None, data_source="refcoco+", split="testA"),
    ]
    out = grounding.evaluate(rows)
    m = out["metrics"]
    ious = [1.0, 0.5, 1 / 3, 0.0, 0.0, 0.0]
    assert [r["iou"] for r in out["per_row"]] == pytest.approx(ious)
    assert m["acc@0.5"] == pytest.approx(2 / 6)  # 0.5 itself is a hit
    assert m["acc@0.3"] == pytest.approx(3 / 6)
    assert m["acc@0.1"] == pytest.approx(3 / 6)
    assert m["miou"] == pytest.approx(sum(ious) / 6)
    # centres (original frame): (70, 70) in, (70, 45) in, (120, 70) on the border: in, (5, 5) out
    assert m["centre_acc"] == pytest.approx(3 / 6)
    assert m["n"] == 6 and m["no_box"] == 2
    assert m["groups"]["refcoco/val"] == {"acc@0.5": pytest.approx(0.5), "acc@0.3": pytest.approx(0.75),
                                          "acc@0.1": pytest.approx(0.75), "miou": pytest.approx((1 + 0.5 + 1 / 3) / 4),
                                          "centre_acc": pytest.approx(0.75), "n": 4}
    assert m["groups"]["refcoco+/testA"]["n"] == 1 and m["groups"]["refcoco+/val"]["acc@0.5"] == 0.0
    first = out["per_row"][0]
    assert first["gt_box"] == [20, 20, 120, 120] and first["pred_box"] == [20, 20, 120, 120]
    assert first["hit50"] is True and first["index"] == 10 and first["group"] == "refcoco/val"
    assert out["per_row"][1]["hit50"] is True and out["per_row"][2]["hit50"] is False
    assert out["per_row"][4]["pred_box"] is None and out["per_row"][4]["why"] == "no JSON in the answer"
    assert out["per_row"][5]["why"] == "no response"
    assert out["per_row"][0]["why"] == ""
    assert set(first) == {"position", "index", "group", "iou", "hit50", "pred_box", "gt_box", "why"}
    assert [r["position"] for r in out["per_row"]] == [0, 1, 2, 3, 4, 5]
    assert out["per_row"][5]["group"] == "refcoco+/testA"


def test_grounding_qwen3_and_reversed_and_errors():
    gt = {"bbox": [10, 10, 60, 60]}
    # Qwen3-VL: 0..1000 of the image -> input frame (x * 200 / 1000, y * 100 / 1000) -> original x 2
    r = row(0, gt, json.dumps({"bbox_2d": [300, 600, 50, 100]}), family="qwen3_vl")  # reversed corners
    out = grounding.evaluate([r])
    assert out["per_row"][0]["pred_box"] == pytest.approx([20, 20, 120, 120])
    assert out["metrics"]["acc@0.5"] == 1.0
    r = row(0, gt, json.dumps({"bbox_2d": ["a", 1, 2, 3]}))
    out = grounding.evaluate([r])
    assert out["per_row"][0]["why"] == "no valid bbox_2d in the answer" and out["metrics"]["no_box"] == 1
    with pytest.raises(EvalInputError, match="row 3: grounding ground truth needs 'bbox'"):
        grounding.evaluate([row(3, {"boxes": []}, "")])
    assert grounding.evaluate([])["metrics"]["n"] == 0


def test_grounding_helpers_by_hand():
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 5], [0, 0, 4, 4]], dtype=float)
    gt = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [5, 5, 5, 5], [1, 1, 3, 3]], dtype=float)
    assert grounding.elementwise_iou(pred, gt).tolist() == pytest.approx([1 / 3, 0.0, 0.0, 4 / 16])
    assert grounding.accuracy([0.5, 0.49, 0.7], 0.5) == pytest.approx(2 / 3)
    assert grounding.accuracy([], 0.5) == 0.0
    valid = np.array([True, True, True, False])
    assert grounding.centre_hits(pred, gt, valid).tolist() == [True, False, True, False]
    s = grounding.summarize(np.array([]), np.array([]))
    assert s == {"acc@0.5": 0.0, "acc@0.3": 0.0, "acc@0.1": 0.0, "miou": 0.0, "centre_acc": 0.0, "n": 0}


# ---------------------------------------------------------------- counting
def test_counting_metrics_by_hand():
    pts = lambda *p: json.dumps([{"point_2d": list(q)} for q in p])  # noqa: E731
    rows = [
        row(0, {"points": [[1, 1], [2, 2]]}, pts((1, 1), (2, 2)), data_source="pixmo_count"),  # 2 vs 2
        row(1, {"points": [[1, 1], [2, 2], [3, 3]]}, pts((5, 5)), data_source="pixmo_count"),  # 1 vs 3
        row(2, {"points": [], "count": 4}, pts((1, 1), (2, 2), (3, 3), (4, 4), (5, 5)), data_source="pixmo_count",
            split="test"),  # 5 vs 4
        row(3, {"count": 2}, "nothing", data_source="pixmo_count", split="test"),  # 0 vs 2
        row(4, {"points": [[1, 1]]}, json.dumps([{"point_2d": [1, 1]}, {"point_2d": [float("nan"), 1]},
                                                  {"point_2d": "x"}]), data_source="pixmo_count"),  # 1 vs 1
    ]
    out = counting.evaluate(rows)
    m = out["metrics"]
    errors = [0, -2, 1, -2, 0]
    assert [r["pred_count"] for r in out["per_row"]] == [2, 1, 5, 0, 1]
    assert [r["gt_count"] for r in out["per_row"]] == [2, 3, 4, 2, 1]
    assert [r["correct"] for r in out["per_row"]] == [True, False, False, False, True]
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["mae"] == pytest.approx(sum(abs(e) for e in errors) / 5)
    assert m["mean_error"] == pytest.approx(sum(errors) / 5)
    assert m["n"] == 5
    assert m["groups"]["pixmo_count/test"] == {"accuracy": 0.0, "mae": 1.5, "mean_error": -0.5, "n": 2}
    assert m["groups"]["pixmo_count/val"]["accuracy"] == pytest.approx(2 / 3)
    # points mapped to the original frame (x 2)
    assert out["per_row"][0]["pred_points"] == [[2, 2], [4, 4]] and out["per_row"][1]["gt_points"] == [[2, 2], [4, 4],
                                                                                                        [6, 6]]
    assert out["per_row"][3]["gt_points"] == [] and out["per_row"][0]["index"] == 10
    assert set(out["per_row"][0]) == {"position", "index", "group", "pred_count", "gt_count", "correct", "pred_points",
                                      "gt_points"}
    assert [r["position"] for r in out["per_row"]] == [0, 1, 2, 3, 4]
    assert [r["group"] for r in out["per_row"]][1:3] == ["pixmo_count/val", "pixmo_count/test"]
    assert counting.summarize([], []) == {"accuracy": 0.0, "mae": 0.0, "mean_error": 0.0, "n": 0}


def test_counting_ground_truth_errors():
    with pytest.raises(EvalInputError, match="row 7: counting ground truth: ground truth 'count' is 3 but it has 1 points"):
        counting.gt_count(row(7, {"points": [[1, 1]], "count": 3}, ""))
    assert counting.gt_count(row(0, {"points": [[1, 1]], "count": 1}, "")) == 1
    assert counting.gt_count(row(0, {"points": [], "count": 0}, "")) == 0
    with pytest.raises(EvalInputError, match="row 0: counting ground truth"):
        counting.gt_count(row(0, {"count": -1}, ""))


# ---------------------------------------------------------------- OCR


@pytest.mark.parametrize(("pred", "gt"), [("kitten", "sitting"), ("", "abc"), ("abc", ""), ("", ""), ("ab", "ba")])
def test_ocr_edit_distance_by_dynamic_programming(pred, gt):
    longest = max(len(pred), len(gt))
    want = levenshtein(pred, gt) / longest if longest else 0.0
    assert ocr.edit_distance(pred, gt) == pytest.approx(want)


def test_ocr_page_scores_by_hand():
    s = ocr.page_scores("a b c d f", "a b c d e")
    # BLEU: modified n-gram precisions 4/5, 3/4, 2/3, 1/2; same length, brevity penalty 1
    assert s["bleu"] == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)
    # token sets: {a b c d f} vs {a b c d e}: 4 shared
    assert (s["precision"], s["recall"], s["f1"]) == (pytest.approx(0.8), pytest.approx(0.8), pytest.approx(0.8))
    assert s["edit_distance"] == pytest.approx(1 / 9) and s["meteor"] is None and s["chinese"] is False
    # shorter hypothesis: brevity penalty exp(1 - 6/5)
    s = ocr.page_scores("a b c d e", "a b c d e f")
    assert s["bleu"] == pytest.approx(math.exp(1 - 6 / 5))
    assert (s["precision"], s["recall"]) == (pytest.approx(1.0), pytest.approx(5 / 6))
    assert s["f1"] == pytest.approx(2 * 1 * 5 / 6 / (1 + 5 / 6))
    # repeated tokens: sets, not bags
    s = ocr.page_scores("a a a b", "a b c")
    assert (s["precision"], s["recall"]) == (pytest.approx(1.0), pytest.approx(2 / 3))
    # empty sides: everything 0 (NLTK's "undefined" is 0), BLEU 0
    s = ocr.page_scores("", "a b")
    assert (s["precision"], s["recall"], s["f1"], s["bleu"], s["edit_distance"]) == (0.0, 0.0, 0.0, 0.0, 1.0)
    s = ocr.page_scores("a b", "")
    assert (s["precision"], s["recall"], s["f1"], s["bleu"]) == (0.0, 0.0, 0.0, 0.0)
    s = ocr.page_scores("", "")
    assert s["edit_distance"] == 0.0 and s["bleu"] == 0.0


def test_ocr_tokenize_and_chinese():
    assert ocr.tokenize("a  b\nc") == ["a", "b", "c"]
    assert ocr.is_chinese("东京 tower") and not ocr.is_chinese("Tokyo")
    assert ocr.tokenize("ab cd", chinese=False) == ["ab", "cd"]
    toks = ocr.tokenize("我爱北京")
    assert "".join(toks) == "我爱北京" and all(t.strip() for t in toks)
    assert ocr.page_scores("x", "我")["chinese"] is True
    assert ocr.page_scores("我", "")["chinese"] is True
    assert ocr.page_scores("x", "")["chinese"] is False


def test_ocr_evaluate_by_hand(monkeypatch):
    from verl_perception.metrics import wordnet

    monkeypatch.setattr(wordnet, "load_wordnet", lambda: (None, "no WordNet (test)"))
    rows = [
        row(0, {"text": " a b c d e "}, "<think>reading</think><answer>a b c d e</answer>", data_source="pageocr"),
        row(1, {"text": "kitten"}, "sitting", data_source="pageocr", split="test"),
        row(2, {"text": "abc"}, None, data_source="pageocr", split="test"),
    ]
    out = ocr.evaluate(rows)
    m = out["metrics"]
    eds = [0.0, 3 / 7, 1.0]
    assert [p["edit_distance"] for p in out["per_row"]] == pytest.approx(eds)
    assert m["edit_distance"] == pytest.approx(sum(eds) / 3)
    assert m["bleu"] == pytest.approx(1 / 3)  # 1, 0, 0
    assert m["f1"] == pytest.approx(1 / 3) and m["precision"] == pytest.approx(1 / 3)
    assert m["meteor"] is None and m["n"] == 3
    assert m["groups"]["pageocr/test"]["edit_distance"] == pytest.approx((3 / 7 + 1) / 2)
    assert m["groups"]["pageocr/val"]["n"] == 1
    assert out["per_row"][0]["pred_text"] == "a b c d e" and out["per_row"][0]["gt_text"] == " a b c d e "
    assert set(out["per_row"][0]) == {"position", "index", "group", "pred_text", "gt_text", "chinese", *ocr.METRICS}
    assert [(r["position"], r["index"], r["group"]) for r in out["per_row"]] == [
        (0, 10, "pageocr/val"), (1, 11, "pageocr/test"), (2, 12, "pageocr/test")]
    assert out["warnings"] == ["METEOR not computed (reported as n/a): no WordNet (test)"]
    with pytest.raises(EvalInputError, match=r"row 4: OCR ground truth needs 'text', got keys \['txt'\]"):
        ocr.evaluate([row(4, {"txt": "a"}, "a")])


def test_ocr_summarize_by_hand():
    pages = [{m: 0.5 for m in ocr.METRICS}, {**{m: 1.0 for m in ocr.METRICS}, "meteor": None}]
    s = ocr.summarize(pages)
    assert s["n"] == 2 and s["edit_distance"] == 0.75 and s["meteor"] is None
    assert ocr.summarize([])["edit_distance"] is None and ocr.summarize([])["n"] == 0
    assert ocr.answer_text("  <answer> x y </answer> ") == "x y" and ocr.answer_text(None) == ""


def test_ocr_notes_jieba_and_chinese_pages(monkeypatch):
    from verl_perception.metrics import wordnet

    monkeypatch.setattr(wordnet, "load_wordnet", lambda: (None, "no WordNet (test)"))
    rows = [row(0, {"text": "我爱北京"}, "我爱北京", data_source="pageocr")]
    out = ocr.evaluate(rows)
    assert out["notes"] == [] and out["per_row"][0]["chinese"] is True
    assert not any("jieba" in w for w in out["warnings"])  # jieba is installed (a dependency)
    assert out["metrics"]["f1"] == 1.0
    # without jieba: per character, and a warning says so
    monkeypatch.setattr(ocr, "_jieba", lambda: None)
    assert ocr.tokenize("我爱 北京") == ["我", "爱", "北", "京"]
    out = ocr.evaluate(rows)
    assert out["warnings"][-1] == "jieba is not installed: Chinese pages were tokenised per character, not per word"
    out = ocr.evaluate([row(0, {"text": "plain"}, "plain", data_source="pageocr")])
    assert not any("jieba" in w for w in out["warnings"])


def test_ocr_evaluate_with_wordnet_computes_meteor():
    from verl_perception.metrics import wordnet

    wn, source = wordnet.load_wordnet()
    if wn is None:
        pytest.skip(f"no WordNet 3.0 database: {source}")  # conftest reports it with the METEOR tests
    out = ocr.evaluate([row(0, {"text": "alpha bravo charlie"}, "alpha bravo charlie", data_source="pageocr")])
    assert out["notes"] == [f"METEOR synonyms from {source}"]
    assert out["metrics"]["meteor"] == pytest.approx(1 - 0.5 * (1 / 3) ** 3, abs=1e-6)  # one chunk of 3 words
    assert out["per_row"][0]["meteor"] == pytest.approx(out["metrics"]["meteor"])


def test_detection_tables_and_rows_built_ground_truth_by_hand():
    from verl_perception.metrics import detection as det

    # names without ids: no table from that row, COCO's ids (and 1000+ for other labels)
    names_only = EvalRow(0, "coco", {"boxes": [[0, 0, 1, 1]], "labels": ["person"]},
                         {"image_id": 1, "category_names": ["person"]}, (10, 10), (10, 10), "[]")
    assert det.category_table([names_only])["person"] == 1
    # a row with its own gt_category_ids adds no 1000+ entries for its labels
    with_ids = EvalRow(1, "coco", {"boxes": [[0, 0, 4, 4]], "labels": ["thing"]},
                       {"image_id": 2, "gt_category_ids": [999], "input_size": [10, 10], "orig_size": [10, 10]},
                       (10, 10), (10, 10), "[]")
    assert "thing" not in det.category_table([with_ids])
    built = det.gt_from_rows([with_ids])
    assert {"id": 999, "name": "999"} in built["categories"]  # an id the table does not name
    assert built["annotations"] == [{"id": 1, "image_id": 2, "category_id": 999, "bbox": [0.0, 0.0, 4.0, 4.0],
                                     "area": 16.0, "iscrowd": 0}]
    # every table category is listed, also those without annotations
    own = EvalRow(2, "x", {"boxes": [[0, 0, 2, 2], [1, 1, 3, 3]], "labels": ["a", "a"]},
                  {"image_id": 3, "category_names": ["a", "b"], "category_ids": [5, 6]}, (10, 10), (10, 10), "[]")
    built = det.gt_from_rows([own])
    assert built["categories"] == [{"id": 5, "name": "a"}, {"id": 6, "name": "b"}]
    assert [a["id"] for a in built["annotations"]] == [1, 2]
    bad = EvalRow(4, "x", {"boxes": [[0, 0, 2, 2], [1, 1, 3, 3]], "labels": ["a"]},
                  {"image_id": 3, "category_names": ["a"], "category_ids": [5]}, (10, 10), (10, 10), "[]")
    with pytest.raises(EvalInputError, match="row 4: 2 ground-truth boxes for 1 labels"):
        det.gt_from_rows([bad])


def test_image_cell_forms():
    from verl_perception.metrics.rows import image_cell

    assert image_cell({"images": [{"bytes": b"x"}]}) == {"bytes": b"x"}
    assert image_cell({"images": {"bytes": b"y"}}) == {"bytes": b"y"}  # one dict, not a list
    assert image_cell({"images": b"z"}) == {"bytes": b"z"}
    assert image_cell({"images": [bytearray(b"w")]}) == {"bytes": b"w"}
    assert image_cell({"images": "a.png"}) == {"path": "a.png"}
    assert image_cell({"images": ["b.png"]}) == {"path": "b.png"}
    assert image_cell({"images": []}) is None and image_cell({}) is None


def test_wordnet_cache_location_and_layout(monkeypatch, tmp_path):
    from verl_perception.metrics import wordnet

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert wordnet._cache_root() == tmp_path / "xdg" / "verl-perception"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert wordnet._cache_root() == tmp_path / "home" / ".cache" / "verl-perception"
    # a Debian-style database directory (no lexnames): copied once, lexnames(5WN) written beside it
    src = tmp_path / "dict"
    src.mkdir()
    for name in wordnet.DB_FILES:
        (src / name).write_text(f"content of {name}\n")
    (src / "index.sense").write_text("senses\n")
    assert wordnet._is_db(src) and not wordnet._is_db(tmp_path)
    dst = wordnet._nltk_layout(src)
    assert dst == tmp_path / "home" / ".cache" / "verl-perception" / "wordnet-3.0"
    for name in wordnet.DB_FILES:
        assert (dst / name).read_text() == f"content of {name}\n"
    assert (dst / "index.sense").read_text() == "senses\n" and (dst / "cntlist.rev").read_text() == ""
    lexnames = (dst / "lexnames").read_text().splitlines()
    assert len(lexnames) == 45
    assert lexnames[0] == "00\tadj.all\t3" and lexnames[3] == "03\tnoun.Tops\t1"
    assert lexnames[29] == "29\tverb.body\t2" and lexnames[44] == "44\tadj.ppl\t3"
    assert (dst / ".complete").read_text() == str(src)
    assert not list(dst.parent.glob("wordnet-3.0.tmp*"))  # the temporary copy was renamed into place
    # the copy is reused while it names the same source; another source replaces it
    (dst / "data.noun").write_text("kept\n")
    assert wordnet._nltk_layout(src) == dst and (dst / "data.noun").read_text() == "kept\n"
    other = tmp_path / "dict2"
    other.mkdir()
    for name in wordnet.DB_FILES:
        (other / name).write_text("other\n")
    assert wordnet._nltk_layout(other) == dst and (dst / "data.noun").read_text() == "other\n"
    assert (dst / ".complete").read_text() == str(other) and (dst / "index.sense").read_text() == ""
    # a directory that has NLTK's lexnames already is used as it is
    (other / "lexnames").write_text("x")
    assert wordnet._nltk_layout(other) == other


def test_task_modules():
    from verl_perception import metrics

    assert metrics.task_module("grounding") is grounding and metrics.task_module("counting") is counting
    assert metrics.task_module("ocr") is ocr
    with pytest.raises(ValueError, match="^unknown task 'captioning'$"):
        metrics.task_module("captioning")
