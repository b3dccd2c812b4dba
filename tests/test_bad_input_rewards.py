"""Bad input to the rewards and the answer parser (issue 23).

Model output: adversarial completions (unclosed openers, deep nesting, long repeated fragments,
huge numbers, many boxes, tags and fences) always score, with finite values, and the JSON decoder's
work stays within its stated linear budget (``parsing.DECODE_BUDGET_FACTOR * n +
parsing.DECODE_BUDGET_BASE`` characters; counted, not timed: ``benchmarks/reward_worst_case.py``
times it). On inputs the budget does not bind, the parser reads exactly what a decoder without a
budget (the former algorithm, re-stated below as the oracle) reads.

Ground truth: every malformed or non-finite value is a ``GroundTruthError`` (the reward manager's
score-0-with-a-reason path), never another exception.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_perception import parsing
from verl_perception.rewards import GroundTruthError, compute_score

FRAME = {"input_size": [812, 532]}
ROWS = {
    "coco": json.dumps({"boxes": [[10, 20, 110, 220], [300, 40, 400, 90]], "labels": ["person", "dog"]}),
    "refcoco": json.dumps({"bbox": [40, 60, 200, 300]}),
    "pixmo_count": json.dumps({"points": [[10, 20], [30, 40], [300, 500]]}),
    "pageocr": json.dumps({"text": "a scanned page of text"}),
}
FRAGMENTS = [
    '[{"bbox_2d": [', '{"bbox_2d": [1, 2, 30, 40], "label": "person"}, ', '{"bbox_2d":[1,2,3,4] "label":"a"},',
    '{"point_2d": [3, 4]}, ', "[", "{", "]", "}", '{"a":', "[[", '"', '"x', ",", ":", " ", "\n", "```json\n", "```",
    "<think>", "</think>", "<answer>", "</answer>", "(1,2),(3,4)", "person(10,20),(30,40) ",
    "<|box_start|>(1,2),(3,4)<|box_end|>", "1" * 50, "1e999", "-1e308", "NaN", "Infinity", "true", "null", "[1]",
    "the ", "\\", "9" * 4400, '{"objects": [', '"label": ', "0.5",
]


def adversarial(cap: int = parsing.MAX_CHARS):
    """Completions of up to ``cap`` characters: one to three fragments repeated, after a prefix."""
    unit = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=3).map("".join)
    prefix = st.sampled_from(["", "<answer>", "```json\n", "[", "<think>x</think>", '[{"bbox_2d": [1, 2, 3, 4]},'])
    length = st.integers(1, cap)
    return st.builds(lambda p, u, n: (p + u * (n // len(u) + 1))[:n], prefix, unit, length)


FAMILIES = {
    "unclosed openers": '[{"bbox_2d": [' * 8000,
    "deep nesting": "[" * 50_000 + "]" * 50_000,
    "repeated broken items": "[" + '{"bbox_2d":[1,2,3,4] "label":"a"},' * 2800,
    "unterminated string": "[" + '{"a":1,"b":' * 500 + '"' + "x" * 90_000,
    "digit run": "(" + "1" * 99_999,
    "huge integers": "[" + ('{"bbox_2d":[' + "9" * 4400 + ",1,2,3]}," ) * 22,
    "many boxes": json.dumps([{"bbox_2d": [i, i, i + 9, i + 9], "label": "person"} for i in range(3000)]),
    "tuples": "person(10,20),(30,40) " * 4500,
}


class _Recorder(parsing._Budget):
    """The parser's budget, recording what each completion spent."""

    spent: list = []

    def __init__(self, n: int):
        super().__init__(n)
        self.start = self.left
        _Recorder.spent.append(self)


@pytest.fixture()
def recorded(monkeypatch):
    _Recorder.spent = []
    monkeypatch.setattr(parsing, "_Budget", _Recorder)
    return _Recorder.spent


def _limit(n: int) -> int:
    # The budget, plus what the last attempt may overshoot it by (allows() admits an attempt only
    # while the rest of the text, grown by the window factor, still fits).
    return parsing.DECODE_BUDGET_FACTOR * n + parsing.DECODE_BUDGET_BASE


def _check_result(result: dict) -> None:
    assert "score" in result and "format" in result
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values()), result


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_adversarial_families_score_within_the_decode_budget(name, recorded):
    text = FAMILIES[name][: parsing.MAX_CHARS]
    for ds, gt in ROWS.items():
        _check_result(compute_score(ds, text, gt, FRAME))
    for budget in recorded:
        assert budget.left >= 0, (name, budget.start - budget.left, budget.start)


@settings(max_examples=60, deadline=None)
@given(adversarial())
def test_random_adversarial_completions_score_within_the_decode_budget(text):
    spent = []

    class Rec(parsing._Budget):
        def __init__(self, n):
            super().__init__(n)
            spent.append(self)

    saved, parsing._Budget = parsing._Budget, Rec
    try:
        for ds, gt in ROWS.items():
            _check_result(compute_score(ds, text, gt, FRAME))
    finally:
        parsing._Budget = saved
    assert all(b.left >= 0 for b in spent)


def test_answers_beyond_the_cap_are_read_on_their_first_max_chars():
    head = json.dumps([{"bbox_2d": [10, 20, 110, 220], "label": "person"}])
    text = head + " " + '[{"bbox_2d": [' * (3 * parsing.MAX_CHARS // 14)
    assert len(text) > 2 * parsing.MAX_CHARS
    for ds, gt in ROWS.items():
        assert compute_score(ds, text, gt, FRAME) == compute_score(ds, text[: parsing.MAX_CHARS], gt, FRAME)
    assert compute_score("coco", text, ROWS["coco"], FRAME)["num_pred"] == 1.0


def test_cut_long_answer_keeps_every_complete_item():
    # The realistic worst case the budget is sized for: a box list cut by the length limit.
    items = [{"bbox_2d": [i, i, i + 9, i + 9], "label": "person"} for i in range(parsing.MAX_ITEMS)]
    text = json.dumps(items)
    cut = text[: len(text) - 20]
    parsed = parsing.parse_answer(cut)
    assert len(parsed.items) == parsing.MAX_ITEMS - 1 and parsed.n_malformed == 1
    assert parsed.items == items[:-1]


# --------------------------------------------------------------------------- the oracle: no budget
def _oracle_find_json(text: str):
    """The former decoder: a full ``raw_decode`` at each candidate and at every ``{`` of a salvage."""
    decoder = json.JSONDecoder()

    def decode_at(s, i):
        try:
            return decoder.raw_decode(s, i)
        except (ValueError, RecursionError):
            return None

    def salvage(s, start):
        pos, out, bad = start + 1, [], 0
        while pos < len(s) and len(out) + bad < parsing.MAX_ITEMS:
            while pos < len(s) and s[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(s) or s[pos] == "]":
                break
            got = decode_at(s, pos)
            if got is None:
                bad += 1
                pos = s.find("{", pos + 1)
                if pos < 0:
                    break
                continue
            out.append(got[0])
            pos = got[1]
        return (out, bad) if out or bad else None

    fallback = None
    for cand in [*parsing._fenced_blocks(text), text]:
        pos = parsing._next_open(cand, 0)
        for _ in range(32):
            if pos < 0:
                break
            got = decode_at(cand, pos)
            if got is not None:
                if parsing._answer_like(got[0]):
                    return got[0], 0, True
                fallback = fallback or (got[0], 0, True)
                pos = parsing._next_open(cand, got[1])
                continue
            if parsing._LIST_OF_OBJECTS_RE.match(cand, pos):
                s = salvage(cand, pos)
                if s is not None and any(isinstance(v, dict) for v in s[0]):
                    return s[0], s[1], True
            pos = parsing._next_open(cand, pos + 1)
    return fallback if fallback is not None else (None, 0, False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS[:35] + ['{"bbox_2d":[1,2,3,4],"label":"a"}', "cat", " x "]), max_size=40))
def test_parser_reads_what_an_unbudgeted_decoder_reads(parts):
    text = "".join(parts)
    got = parsing.find_json(text)
    want = _oracle_find_json(text)
    assert repr(got) == repr(want)  # repr: NaN != NaN


# --------------------------------------------------------------------------- ground truth
# (JSON booleans in a ground truth are read as 0/1, as numpy reads them: not checked, since that
# would cost a Python pass over every row's values per completion.)
BAD_NUMBERS = [1e300, -1e300, 1e8, float("nan"), float("inf"), -float("inf"), 10**400, "x", None, [1], {}]


def _bad_gts():
    for v in BAD_NUMBERS:
        yield "coco", {"boxes": [[0, 0, v, 10]], "labels": ["person"]}
        yield "coco", {"boxes": [[v, v, v, v]], "labels": ["person"]}
        yield "refcoco", {"bbox": [0, 0, v, 10]}
        yield "pixmo_count", {"points": [[v, 1]]}
        if v != 1e8 and v is not None:  # a large count, but an exact one; null: no count
            yield "pixmo_count", {"points": [], "count": v}
    for v in (None, 3, ["a"], {"a": 1}):
        yield "pageocr", {"text": v}
    yield "coco", {"boxes": [[0, 0, 1e300, 1e300]], "labels": ["person"]}  # the example
    yield "coco", {"boxes": [[1, 2, 3, 4]], "labels": [None]}
    yield "coco", {"boxes": [[1, 2, 3, 4]], "labels": "person"}
    yield "coco", {"boxes": [[1, 2, 3]], "labels": ["person"]}
    yield "coco", {"boxes": [[1, 2, 3, 4]], "labels": []}
    yield "refcoco", {"bbox": [[1, 2, 3, 4], [1, 2, 3, 4]]}
    yield "pixmo_count", {"points": [[1, 2, 3]]}
    yield "pixmo_count", {"points": [[1, 2]], "count": 2}


@pytest.mark.parametrize("ds, gt", list(_bad_gts()), ids=lambda v: repr(v)[:40])
def test_malformed_or_non_finite_ground_truth_is_a_ground_truth_error(ds, gt):
    answer = {"coco": '[{"bbox_2d": [1, 2, 30, 40], "label": "person"}]', "refcoco": '[{"bbox_2d": [1, 2, 30, 40]}]',
              "pixmo_count": '[{"point_2d": [3, 4]}]', "pageocr": "text"}[ds]
    with pytest.raises(GroundTruthError):
        compute_score(ds, answer, json.dumps(gt), FRAME)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["boxes", "labels", "bbox", "points",
                                                                                 "count", "text"]), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(ROWS)), json_values)
def test_any_ground_truth_scores_or_is_a_ground_truth_error(ds, gt):
    try:
        text = json.dumps(gt)
    except (ValueError, OverflowError):
        return
    try:
        result = compute_score(ds, '[{"bbox_2d": [1, 2, 30, 40], "label": "person", "point_2d": [3, 4]}]', text, FRAME)
    except GroundTruthError:
        return
    _check_result(result)
