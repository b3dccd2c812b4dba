"""Answer parsing shared by the rewards and the evaluation: it never raises on model output.

Accepted answers (Qwen2.5-VL native JSON, see README's contract):
- bare JSON, or JSON inside a ```json fence, with prose before or after it;
- any of those inside ``<answer>...</answer>``, optionally after ``<think>...</think>``;
- Qwen2-VL tuples ``(x1,y1),(x2,y2)`` (optionally after a label), read as ``bbox_2d`` items;
- a JSON list cut off by the length limit: the complete objects before the cut are kept and
  the cut one counts as malformed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Model output is untrusted; cap the work a single completion can cost. Answers longer than
# this are still scored (on their first MAX_CHARS characters), never rejected with an error.
MAX_CHARS = 100_000
MAX_ITEMS = 5_000

_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_ANSWER_RE = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.DOTALL | re.IGNORECASE)
_FENCE_RE = re.compile(r"```(?:[a-zA-Z]*)[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TUPLE_BOX_RE = re.compile(
    rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)"
)
_LABEL_BEFORE_RE = re.compile(r"([^\n\(\)\[\]{}<>,;:]{1,64})\s*$")


@dataclass
class ParsedAnswer:
    """What was read from one completion.

    text: the answer payload (inside ``<answer>`` when present; think block removed).
    items: the JSON objects of the answer (a single object becomes a one-item list).
    n_malformed: answer elements that are not objects or could not be decoded.
    value: the decoded JSON value (``None`` when none was found).
    has_json: a JSON value (or Qwen2-VL tuples) was found.
    tags_ok: the ``<think>``/``<answer>`` structure met the requirement.
    think: the think block's text, or ``None``.
    """

    text: str
    items: list[dict] = field(default_factory=list)
    n_malformed: int = 0
    value: Any = None
    has_json: bool = False
    tags_ok: bool = True
    think: str | None = None

    @property
    def n_items(self) -> int:
        return len(self.items) + self.n_malformed


def split_answer(completion: Any, require_think: bool = False) -> tuple[str, bool, str | None]:
    """Return ``(payload, tags_ok, think)`` of a completion.

    ``tags_ok`` is False when ``require_think`` is set and no closed ``<think>`` block precedes
    the answer, or when a ``<think>`` is opened and never closed.
    """
    if not isinstance(completion, str):
        completion = "" if completion is None else str(completion)
    text = completion[:MAX_CHARS]
    think = None
    tags_ok = True
    m = _THINK_RE.search(text)
    if m:
        think = m.group(1)
        text = text[: m.start()] + text[m.end() :]
    elif "<think>" in text.lower():
        tags_ok = False
        text = text.split("<think>", 1)[0] if "<think>" in text else text
    if require_think and think is None:
        tags_ok = False
    a = _ANSWER_RE.search(text)
    if a:
        text = a.group(1)
    return text.strip(), tags_ok, think


def _decode_at(decoder: json.JSONDecoder, text: str, start: int):
    try:
        return decoder.raw_decode(text, start)
    except (ValueError, RecursionError):
        return None


def _salvage_list(decoder: json.JSONDecoder, text: str, start: int) -> tuple[list, int] | None:
    """Decode a JSON list element by element, keeping the elements before a cut or an error."""
    pos = start + 1
    out: list = []
    n_bad = 0
    n = len(text)
    while pos < n and len(out) + n_bad < MAX_ITEMS:
        while pos < n and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= n or text[pos] == "]":
            break
        got = _decode_at(decoder, text, pos)
        if got is None:
            n_bad += 1
            nxt = text.find("{", pos + 1)
            if nxt < 0:
                break
            pos = nxt
            continue
        out.append(got[0])
        pos = got[1]
    if not out and not n_bad:
        return None
    return out, n_bad


def find_json(text: str) -> tuple[Any, int, bool]:
    """Find the answer's JSON value in ``text``.

    Returns ``(value, n_undecodable, found)``. Fenced blocks are tried first, then the first
    ``[`` or ``{`` from which a value decodes. A list that does not decode whole (cut off or
    with a broken element) is salvaged element by element; broken elements are counted.
    """
    decoder = json.JSONDecoder()
    candidates = [m.group(1) for m in _FENCE_RE.finditer(text)] or []
    candidates.append(text)
    for cand in candidates:
        cand = cand.strip()
        if not cand:
            continue
        starts = [i for i in (cand.find("["), cand.find("{")) if i >= 0]
        if not starts:
            continue
        first = min(starts)
        got = _decode_at(decoder, cand, first)
        if got is not None:
            return got[0], 0, True
        if cand[first] == "[":
            salvaged = _salvage_list(decoder, cand, first)
            if salvaged is not None:
                return salvaged[0], salvaged[1], True
        # Prose with brackets before the JSON: try the next few openings, then give up.
        pos = first
        for _ in range(32):
            nxt = [i for i in (cand.find("[", pos + 1), cand.find("{", pos + 1)) if i >= 0]
            if not nxt:
                break
            pos = min(nxt)
            got = _decode_at(decoder, cand, pos)
            if got is not None and isinstance(got[0], (list, dict)):
                return got[0], 0, True
    return None, 0, False


def _tuple_items(text: str) -> list[dict]:
    items = []
    for m in _TUPLE_BOX_RE.finditer(text):
        item: dict[str, Any] = {"bbox_2d": [float(g) for g in m.groups()]}
        lab = _LABEL_BEFORE_RE.search(text[max(0, m.start() - 64) : m.start()])
        if lab and lab.group(1).strip():
            item["label"] = lab.group(1).strip()
        items.append(item)
        if len(items) >= MAX_ITEMS:
            break
    return items


def parse_answer(completion: Any, require_think: bool = False) -> ParsedAnswer:
    """Parse one completion into :class:`ParsedAnswer`. Never raises."""
    try:
        text, tags_ok, think = split_answer(completion, require_think)
        value, n_bad, found = find_json(text)
        parsed = ParsedAnswer(text=text, tags_ok=tags_ok, think=think, value=value, has_json=found)
        if found:
            if isinstance(value, dict):
                # {"objects": [...]}-style wrappers are common; unwrap a single list of objects.
                lists = [v for v in value.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
                if len(lists) == 1 and not any(k in value for k in ("bbox_2d", "point_2d", "bbox", "point")):
                    value = lists[0]
                else:
                    value = [value]
            if isinstance(value, list):
                items = [v for v in value[:MAX_ITEMS] if isinstance(v, dict)]
                parsed.items = items
                parsed.n_malformed = n_bad + min(len(value), MAX_ITEMS) - len(items)
            else:
                parsed.n_malformed = 1 + n_bad
            return parsed
        items = _tuple_items(text)
        if items:
            parsed.items = items
            parsed.has_json = True
        return parsed
    except Exception:  # pragma: no cover - defensive: parsing must never stop a training step
        return ParsedAnswer(text="", tags_ok=False)


def _finite_numbers(value: Any, n: int) -> list[float] | None:
    """``value`` as ``n`` finite floats (numeric strings accepted), else None."""
    if isinstance(value, dict):
        return None
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return None
    out = []
    for v in value:
        if isinstance(v, bool):
            return None
        try:
            f = float(v)
        except (TypeError, ValueError, OverflowError):
            return None
        if not math.isfinite(f):
            return None
        out.append(f)
    return out


def item_label(item: dict) -> str | None:
    """The item's label, stripped and lower-cased, or None."""
    lab = item.get("label", item.get("category", item.get("class")))
    if lab is None:
        return None
    if not isinstance(lab, str):
        lab = str(lab)
    lab = " ".join(lab.split()).lower()
    return lab or None


def item_box(item: dict) -> list[float] | None:
    """The item's ``bbox_2d`` (``bbox`` accepted) as 4 finite floats, corners not yet ordered."""
    for key in ("bbox_2d", "bbox"):
        if key in item:
            return _finite_numbers(item[key], 4)
    return None


def item_point(item: dict) -> list[float] | None:
    """The item's ``point_2d`` (``point`` accepted), else the centre of its box, else None."""
    for key in ("point_2d", "point"):
        if key in item:
            return _finite_numbers(item[key], 2)
    box = item_box(item)
    if box is None:
        return None
    return [(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0]


def boxes_from_answer(parsed: ParsedAnswer) -> tuple[np.ndarray, list[str | None], int]:
    """Boxes of an answer.

    Returns ``(boxes, labels, n_bad)``: ``boxes`` is ``(N, 4)`` float64 ``[x1, y1, x2, y2]`` with
    corners ordered (reversed corners are swapped, not dropped), ``labels`` has N entries, and
    ``n_bad`` counts answer elements that carry no valid box (plus undecodable elements).
    """
    boxes, labels = [], []
    n_bad = parsed.n_malformed
    for item in parsed.items:
        b = item_box(item)
        if b is None:
            n_bad += 1
            continue
        boxes.append(b)
        labels.append(item_label(item))
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return order_corners(arr), labels, n_bad


def points_from_answer(parsed: ParsedAnswer) -> tuple[np.ndarray, int]:
    """Points of an answer: ``(points (N, 2) float64, n_bad)``; box items count by their centres."""
    pts = []
    n_bad = parsed.n_malformed
    for item in parsed.items:
        p = item_point(item)
        if p is None:
            n_bad += 1
        else:
            pts.append(p)
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2), n_bad


def order_corners(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` boxes with ``x1 <= x2`` and ``y1 <= y2``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate(
        [np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1
    )
