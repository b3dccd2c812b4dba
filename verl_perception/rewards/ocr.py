"""OCR reward (PageOCR): similarity of the page text to the reference.

    edit_sim = 1 - Levenshtein(pred, ref) / max(len(pred), len(ref))     (1 when both are empty)
    score    = edit_sim if format else 0

The answer is the completion's payload (:func:`verl_perception.parsing.split_answer`: inside
``<answer>`` when present, think block removed), taken as plain text, not JSON. With
``normalize_whitespace`` (default) both texts have runs of whitespace collapsed to one space and
are stripped, so line-wrapping differences cost nothing. ``format`` is the think-tag requirement
(``require_think``; always 1 when not required). Edit distance by rapidfuzz (unit costs,
normalised by the longer string, as the authors' nltk-based evaluation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rapidfuzz.distance import Levenshtein

from verl_perception.parsing import split_answer
from verl_perception.rewards.config import OCRConfig
from verl_perception.rewards.inputs import gt_text


def edit_similarity(pred: str, ref: str, normalize_whitespace: bool = True) -> float:
    """``1 - normalised Levenshtein distance`` in ``[0, 1]``; 1.0 for two empty strings."""
    if normalize_whitespace:
        pred, ref = " ".join(pred.split()), " ".join(ref.split())
    return float(Levenshtein.normalized_similarity(pred, ref))


def ocr_reward(solution_str: Any, gt: Mapping[str, Any], extra_info: Mapping[str, Any], cfg: OCRConfig) -> dict:
    """Score one OCR completion: ``{"score", "format", "edit_sim"}`` (floats)."""
    ref = gt_text(gt)
    text, tags_ok, _ = split_answer(solution_str, require_think=cfg.require_think)
    sim = edit_similarity(text, ref, cfg.normalize_whitespace)
    fmt = float(tags_ok)
    return {"score": sim * fmt, "format": fmt, "edit_sim": sim}
