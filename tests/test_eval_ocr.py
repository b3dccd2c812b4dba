"""OCR metrics equal their reference implementations on known strings."""

from __future__ import annotations

import json

import _eval_fixtures as fx
import nltk
import pytest
from nltk.metrics.scores import f_measure, precision, recall
from nltk.translate.bleu_score import sentence_bleu
from nltk.translate.meteor_score import meteor_score

from verl_perception.evaluate import evaluate_benchmark
from verl_perception.metrics import ocr, wordnet

PAIRS = [
    ("The quick brown fox jumps over the lazy dog", "The quick brown fox jumped over a lazy dog"),
    ("Invoice 1234 total due 56.78 EUR", "Invoice 1234 total 56.78 EUR due"),
    ("kitten sitting on the mat", "sitting kitten"),
    ("", "something"),
    ("same text here", "same text here"),
]


@pytest.mark.parametrize("gt,pred", PAIRS)
def test_edit_distance_equals_nltk(gt, pred):
    longest = max(len(gt), len(pred))
    want = nltk.edit_distance(pred, gt) / longest if longest else 0.0
    assert ocr.edit_distance(pred, gt) == pytest.approx(want, abs=1e-12)


def test_edit_distance_known_values():
    assert ocr.edit_distance("kitten", "sitting") == pytest.approx(3 / 7)
    assert ocr.edit_distance("", "") == 0.0 and ocr.edit_distance("abc", "") == 1.0


@pytest.mark.filterwarnings("ignore:\\s*The hypothesis contains 0 counts")
@pytest.mark.parametrize("gt,pred", PAIRS)
def test_bleu_and_set_scores_equal_nltk(gt, pred):
    s = ocr.page_scores(pred, gt, wordnet=None)
    ref, hyp = gt.split(), pred.split()
    assert s["precision"] == pytest.approx(precision(set(ref), set(hyp)) or 0.0)
    assert s["recall"] == pytest.approx(recall(set(ref), set(hyp)) or 0.0)
    assert s["f1"] == pytest.approx(f_measure(set(ref), set(hyp)) or 0.0)
    want_bleu = sentence_bleu([ref], hyp) if ref and hyp else 0.0
    assert s["bleu"] == pytest.approx(want_bleu, abs=1e-12)
    assert s["meteor"] is None  # no WordNet given: unavailable, not invented


def test_known_set_scores():
    s = ocr.page_scores("a b c d", "a b x", wordnet=None)  # pred, gt
    assert s["precision"] == pytest.approx(2 / 4) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * (0.5 * 2 / 3) / (0.5 + 2 / 3))


# The reason's first words are what conftest.py looks for to report the skip in its own section.
needs_wordnet = pytest.mark.skipif(
    wordnet.load_wordnet()[0] is None, reason=f"no WordNet 3.0 database: {wordnet.load_wordnet()[1]}"
)


@needs_wordnet
@pytest.mark.parametrize("gt,pred", PAIRS[:3])
def test_meteor_equals_nltk_with_the_same_wordnet(gt, pred):
    wn = wordnet.load_wordnet()[0]
    s = ocr.page_scores(pred, gt, wordnet=wn)
    assert s["meteor"] == pytest.approx(meteor_score([gt.split()], pred.split(), wordnet=wn), abs=1e-12)


@needs_wordnet
@pytest.mark.parametrize("n", [1, 3, 9])
def test_meteor_closed_form_for_an_exact_match(n):
    """Hypothesis == reference (n words): P = R = 1, one chunk, so METEOR = 1 - 0.5 * (1/n)^3."""
    words = "alpha bravo charlie delta echo foxtrot golf hotel india".split()[:n]
    text = " ".join(words)
    s = ocr.page_scores(text, text, wordnet=wordnet.load_wordnet()[0])
    assert s["meteor"] == pytest.approx(1 - 0.5 * (1 / n) ** 3, abs=1e-6)


@needs_wordnet
def test_meteor_uses_synonyms():
    wn = wordnet.load_wordnet()[0]
    with_syn = ocr.page_scores("the hound barked", "the dog barked", wordnet=wn)["meteor"]
    without = ocr.page_scores("the table barked", "the dog barked", wordnet=wn)["meteor"]
    assert with_syn > without


def test_chinese_is_tokenised_with_jieba():
    jieba = pytest.importorskip("jieba")
    text = "我们提出了一种基于规则的强化学习方法"
    assert ocr.tokenize(text) == [t for t in jieba.lcut(text) if t.strip()]
    assert len(ocr.tokenize(text)) < len(text)  # words, not characters
    s = ocr.page_scores(text, text, wordnet=None)
    assert s["chinese"] and s["f1"] == 1.0 and s["bleu"] == pytest.approx(1.0)


def test_answer_tags_are_stripped_like_the_rewards():
    assert ocr.answer_text("<think>reading</think><answer> Hello world </answer>") == "Hello world"
    assert ocr.answer_text(None) == ""


def test_meteor_unavailable_is_reported_with_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(wordnet, "load_wordnet", lambda: (None, "WordNet data not found (test)"))
    rows = fx.ocr_rows(2)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    resp = fx.write_responses([fx.OCR_TEXTS[0], "x"], tmp_path / "r.jsonl", rows)
    doc = evaluate_benchmark("pageocr", data, resp, tmp_path / "out", n_overlays=0)
    assert doc["metrics"]["meteor"] is None
    # a protocol difference: a warning (stderr, report, --strict), not a note
    assert any("METEOR not computed (reported as n/a): WordNet data not found (test)" in w for w in doc["warnings"])
    assert "METEOR | n/a" in (tmp_path / "out" / "report.md").read_text()


def test_page_means_over_the_benchmark(tmp_path):
    rows = fx.ocr_rows(4)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    preds = [fx.OCR_TEXTS[0], "Perception R1 applies reinforcement learning", "", "Invoice number 1234"]
    resp = fx.write_responses(preds, tmp_path / "r.jsonl", rows)
    doc = evaluate_benchmark("pageocr", data, resp, tmp_path / "out", n_overlays=1)
    want = [
        ocr.page_scores(p, json.loads(r["reward_model"]["ground_truth"])["text"], None) for p, r in zip(preds, rows)
    ]
    for key in ("edit_distance", "f1", "precision", "recall", "bleu"):
        assert doc["metrics"][key] == pytest.approx(sum(w[key] for w in want) / 4)
    assert doc["metrics"]["edit_distance"] > 0 and doc["metrics"]["f1"] < 1
