"""Answer parsing shared by the rewards and the evaluation: it never raises on model output.

Accepted answers (Qwen2.5-VL native JSON, see README's contract):
- bare JSON, or JSON inside a ```json fence, with prose before or after it (a stray ``[1]`` in
  the prose is skipped in favour of the list of objects);
- any of those inside ``<answer>...</answer>``, optionally after ``<think>...</think>`` (or after
  a bare ``</think>`` when the chat template opened the think block in the prompt);
- ``{"objects": [...]}``-style wrappers around the list;
- Qwen2-VL tuples ``label(x1,y1),(x2,y2)``, with or without its ``<|box_start|>`` tokens, read
  as ``bbox_2d`` items *in the input frame's pixels* (our models answer in absolute pixels);
- a JSON list cut off by the length limit: the complete objects before the cut are kept and
  the cut one counts as malformed.

Coordinates are returned as written (absolute pixels of the input frame), corners ordered and
clipped to ``±boxes.MAX_ABS_COORD``.

Worst-case cost. Model output is untrusted (a policy that degenerates into repetition is common in
RL), so the work per completion is bounded, not just the typical case:

- only the first ``MAX_CHARS`` characters are read (longer answers are *truncated*, never
  rejected: verl already cuts completions at the response length, and an answer cut by this cap is
  read like one cut by the length limit, its complete objects kept and the cut one malformed);
- at most ``MAX_ITEMS`` answer elements are read;
- tag and fence searches are single ``str.find``/regex passes without nested quantifiers;
- JSON decoding works against a budget of ``DECODE_BUDGET_FACTOR * n + DECODE_BUDGET_BASE``
  characters for an ``n``-character payload: every ``raw_decode`` attempt is charged the
  characters it scanned (all of its window when that cannot be known: unterminated strings,
  over-long integers; nesting beyond the recursion limit costs ``_RECURSION_COST``) plus a fixed
  cost per failure, and an
  attempt is made only while the budget left covers the rest of the text. So the decoder scans at
  most ``DECODE_BUDGET_FACTOR * MAX_CHARS + DECODE_BUDGET_BASE`` characters per completion,
  whatever the input: linear, where retrying a full decode at every ``{`` was quadratic. The
  factor is three because an answer cut by the length limit costs one failed whole decode (read
  from growing windows, at most 8/5 of the text) plus one salvage pass; inputs that need more
  (many broken elements in a long answer) are adversarial, and their unread rest counts as one
  malformed element.

``benchmarks/reward_worst_case.py`` searches for slow inputs per task and prints the slowest one
against the bound (5 ms per completion on one core) and against a typical completion.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from verl_perception.boxes import MAX_ABS_COORD

# Model output is untrusted; cap the work a single completion can cost. Answers longer than
# this are still scored (on their first MAX_CHARS characters), never rejected with an error.
MAX_CHARS = 100_000
MAX_ITEMS = 1_000  # more objects than any perception answer has (COCO images: <= ~100)
# Characters the JSON decoder may scan per completion: FACTOR * len(payload) + BASE (see above).
DECODE_BUDGET_FACTOR = 3
DECODE_BUDGET_BASE = 32_768
_FAIL_COST = 1024  # a failed decode's fixed cost (building the exception), in characters
_WINDOW = 4096  # first window a value is decoded from (most answer elements are far shorter)
_LOOKAHEAD = 16  # an error this close to a window's end may be the cut ("Infin|ity")
_RECURSION_COST = 50_000  # a RecursionError's cost, in characters (measured: ~0.4 ms)

_THINK_OPEN_RE = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE_RE = re.compile(r"</think>", re.IGNORECASE)
_ANSWER_RE = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.DOTALL | re.IGNORECASE)
_FENCE_LANG_RE = re.compile(r"[a-zA-Z]*[ \t]*\n?")
try:  # orjson comes with verl (through tensordict); it decodes about twice as fast
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - optional
    _fast_loads = None
_DECODER = json.JSONDecoder()  # stateless; building one per call cost as much as a small decode
_LIST_OF_OBJECTS_RE = re.compile(r"\[\s*\{")
# ``\d{1,32}(?:\.\d*)?`` matches what ``\d+\.?\d*`` did without its two adjacent digit runs,
# which backtrack quadratically on a long run of digits that is not a tuple, and with the integer
# part capped (a 33-digit coordinate is beyond any frame; the cap bounds the backtracking).
_NUM = r"[-+]?(?:\d{1,32}(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_SEPARATORS_RE = re.compile(r"[ \t\r\n,]*")
_TUPLE_BOX_RE = re.compile(rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)")
# A tuple's label: the run of label characters that ends the 64 characters before it (trailing
# whitespace aside), matched on the reversed text in one pass (a "...\s*$" search retries at
# every start, which cost more than the rest of the tuple's parse).
_LABEL_RUN_REVERSED_RE = re.compile(r"[^\n\(\)\[\]{}<>,;:]*")


@dataclass(slots=True)
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

    The payload is the text inside ``<answer>...</answer>`` when present (an unclosed
    ``<answer>`` runs to the end), else the whole completion, with the think block removed and
    surrounding whitespace stripped. A ``</think>`` with no opening tag closes a think block
    that started in the prompt (chat templates that prefill ``<think>``).

    ``tags_ok`` is False when ``require_think`` is set and no closed think block was found, or
    when a ``<think>`` is opened and never closed (the payload is then what precedes it).
    Tags are matched case-insensitively.
    """
    if not isinstance(completion, str):
        completion = "" if completion is None else str(completion)
    text = completion[:MAX_CHARS]
    if "<" not in text:  # no tags at all (the usual perception answer): skip the three searches
        return text.strip(), not require_think, None
    think = None
    tags_ok = True
    # Two linear searches (a lazy "<think>(.*?)</think>" regex is quadratic on repeated tags).
    opened = _THINK_OPEN_RE.search(text)
    closed = _THINK_CLOSE_RE.search(text)
    if closed is not None and (opened is None or closed.start() < opened.start()):
        think = text[: closed.start()]
        text = text[closed.end() :]
    elif opened is not None:
        closed = _THINK_CLOSE_RE.search(text, opened.end())
        if closed is not None:
            think = text[opened.end() : closed.start()]
            text = text[: opened.start()] + text[closed.end() :]
        else:
            tags_ok = False
            text = text[: opened.start()]
    if require_think and think is None:
        tags_ok = False
    a = _ANSWER_RE.search(text)
    if a:
        text = a.group(1)
    return text.strip(), tags_ok, think


class _Budget:
    """Characters the decoder may still scan for one completion (see the module docstring)."""

    __slots__ = ("left",)

    def __init__(self, n: int):
        self.left = DECODE_BUDGET_FACTOR * n + DECODE_BUDGET_BASE

    def allows(self, text: str, start: int) -> bool:
        # What one attempt may cost (see _decode_at): its windows, at most 8/5 of the rest, and a
        # fixed cost for each of its (at most 4) failed windows.
        return self.left >= (len(text) - start) * 8 // 5 + 4 * _FAIL_COST


def _decode_window(decoder: json.JSONDecoder, doc: str, budget: _Budget, cut: bool):
    """``(outcome, value, end)`` of ``decoder.raw_decode(doc)``, charged to ``budget``.

    ``outcome`` is ``"ok"``, ``"bad"`` or ``"more"``: ``doc`` is a window of a longer text
    (``cut``) and the outcome may depend on what follows it (a value or an error at its end, an
    unterminated string).
    """
    n = len(doc)
    try:
        value, end = decoder.raw_decode(doc)
    except json.JSONDecodeError as e:
        unterminated = e.msg.startswith("Unterminated string")  # reported at its start, scanned to the end
        budget.left -= (n if unterminated else e.pos + 1) + _FAIL_COST
        if cut and (unterminated or e.pos >= n - _LOOKAHEAD):
            return "more", None, 0
        return "bad", None, 0
    except RecursionError:
        # Nesting past the recursion limit: unwinding a thousand frames costs as much as decoding
        # _RECURSION_COST characters (charged up to what is left, which then stops the search).
        budget.left -= min(max(budget.left, 0), max(n, _RECURSION_COST))
        return "bad", None, 0
    except ValueError:  # the integer digit limit: where it stopped is unknown
        budget.left -= n + _FAIL_COST
        return "bad", None, 0
    budget.left -= end
    if cut and end >= n:  # a number may go on past the window
        return "more", None, 0
    return "ok", value, end


def _decode_at(decoder: json.JSONDecoder, text: str, start: int, budget: _Budget):
    """``decoder.raw_decode(text, start)`` or None, charged to ``budget`` (the caller checked
    :meth:`_Budget.allows`).

    Decoded from growing windows of the text, so that a failure costs what was scanned: json's
    error builds its line and column from the start of the document it was given, which made
    each failure at position p cost O(p), and the failures of one answer quadratic.
    """
    rest = len(text) - start
    width = _WINDOW
    while True:
        # A window is at most half of the rest, so that the windows tried before the whole rest
        # add at most 4/7 of it (they grow 8-fold): an attempt scans at most 8/5 of the rest.
        cut = 2 * width <= rest
        doc = text[start : start + width] if cut else (text if start == 0 else text[start:])
        outcome, value, end = _decode_window(decoder, doc, budget, cut)
        if outcome == "ok":
            return value, start + end
        if outcome == "bad":
            return None
        width *= 8


def _salvage_list(decoder: json.JSONDecoder, text: str, start: int, budget: _Budget) -> tuple[list, int] | None:
    """Decode a JSON list element by element, keeping the elements before a cut or an error.

    After an element that does not decode, reading resumes at the next ``{``. When the decoding
    budget no longer covers the rest of the text, the rest counts as one malformed element.
    """
    pos = start + 1
    out: list = []
    n_bad = 0
    n = len(text)
    skip = _SEPARATORS_RE.match
    while pos < n and len(out) + n_bad < MAX_ITEMS:
        pos = skip(text, pos).end()
        if pos >= n or text[pos] == "]":
            break
        if not budget.allows(text, pos):
            n_bad += 1
            break
        got = _decode_at(decoder, text, pos, budget)
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


def _answer_like(value: Any) -> bool:
    """A dict, or a list that is empty or holds at least one dict (not a stray ``[1]`` in prose)."""
    if type(value) is list and value and type(value[0]) is dict:  # the usual answer
        return True
    return isinstance(value, dict) or (
        isinstance(value, list) and (not value or any(isinstance(v, dict) for v in value))
    )


def _next_open(text: str, start: int) -> int:
    i, j = text.find("[", start), text.find("{", start)
    return j if i < 0 else i if j < 0 else min(i, j)


def _fenced_blocks(text: str, limit: int = 16) -> list[str]:
    """Bodies of ```` ```lang ... ``` ```` blocks (an unclosed one runs to the end).

    ``str.find`` instead of a lazy ``(.*?)`` regex, which tests the closing fence at every
    character and dominated the parse time of ordinary answers.
    """
    out = []
    pos = text.find("```")
    while pos >= 0 and len(out) < limit:
        if text.startswith("json\n", pos + 3):  # the usual fence: no regex needed
            start = pos + 8
        else:
            start = _FENCE_LANG_RE.match(text, pos + 3).end()
        end = text.find("```", start)
        out.append(text[start:] if end < 0 else text[start:end])
        if end < 0:
            break
        pos = text.find("```", end + 3)
    return out


def find_json(text: str) -> tuple[Any, int, bool]:
    """Find the answer's JSON value in ``text``.

    Returns ``(value, n_undecodable, found)``. Fenced blocks are tried first, then the whole
    text. In each, the ``[``/``{`` openings are tried in order (at most 32): the first value that
    looks like an answer (an object, or a list that is empty or holds an object) wins; a list of
    objects that does not decode whole (cut off, or with a broken element) is salvaged element
    by element and its broken elements are counted. A value that decodes but does not look like an
    answer (``[1, 2]``) is returned only when nothing better is found.
    """
    decoder = _DECODER
    budget = _Budget(len(text))
    candidates = _fenced_blocks(text)
    candidates.append(text)
    fallback: tuple[Any, int, bool] | None = None
    for cand in candidates:
        pos = _next_open(cand, 0)
        if _fast_loads is not None and pos >= 0:
            # The usual answer is exactly one JSON document: decode it in one fast call. Any
            # failure (prose after it, NaN, lone surrogates) falls through to the general path;
            # the values are json's, except integers beyond 64 bits, which orjson reads as
            # floats (equal after the float() every coordinate goes through).
            try:
                value = _fast_loads(cand[pos:] if pos else cand)
            except ValueError:
                value = None
            if value is not None and _answer_like(value):
                return value, 0, True
        for _ in range(32):
            if pos < 0 or not budget.allows(cand, pos):
                break
            got = _decode_at(decoder, cand, pos, budget)
            if got is not None:
                if _answer_like(got[0]):
                    return got[0], 0, True
                if fallback is None:
                    fallback = (got[0], 0, True)
                pos = _next_open(cand, got[1])
                continue
            if _LIST_OF_OBJECTS_RE.match(cand, pos):  # not "[some]" in prose
                salvaged = _salvage_list(decoder, cand, pos, budget)
                if salvaged is not None and any(isinstance(v, dict) for v in salvaged[0]):
                    return salvaged[0], salvaged[1], True
            pos = _next_open(cand, pos + 1)
    return fallback if fallback is not None else (None, 0, False)


# Qwen2-VL's grounding tokens around a label and its box; read as plain separators.
_QWEN2_TOKENS_RE = re.compile(r"<\|(?:object_ref_start|object_ref_end|box_start|box_end|quad_start|quad_end)\|>")


def _tuple_items(text: str) -> list[dict]:
    """Qwen2-VL ``label(x1,y1),(x2,y2)`` boxes, read as ``bbox_2d`` items in the input frame."""
    if "<|" in text:
        text = _QWEN2_TOKENS_RE.sub(" ", text)
    items = []
    for m in _TUPLE_BOX_RE.finditer(text):
        item: dict[str, Any] = {"bbox_2d": [float(g) for g in m.groups()]}
        before = text[max(0, m.start() - 64) : m.start()].rstrip()
        if before:
            label = before[len(before) - _LABEL_RUN_REVERSED_RE.match(before[::-1]).end() :].strip()
            if label:
                item["label"] = label
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
                if len(value) > MAX_ITEMS:
                    value = value[:MAX_ITEMS]
                items = [v for v in value if type(v) is dict]
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
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return None
    # Fast path for the usual case (JSON numbers); bools are ints in Python but not coordinates.
    if all(type(v) is int or type(v) is float for v in value):
        try:
            out = [float(v) for v in value]
        except OverflowError:  # an int too large for a float
            return None
        return out if all(map(math.isfinite, out)) else None
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


_LABEL_CACHE: dict[str, str | None] = {}


def normalize_label(label: Any) -> str | None:
    """A category name in canonical form, or None when empty.

    Lower case, underscores read as spaces, runs of whitespace collapsed: "traffic_light",
    "Traffic  Light" and "traffic light" name the same category. One rule for model answers,
    ground truth and vocabularies; memoised, since a run sees a handful of distinct strings.
    """
    if type(label) is not str:
        label = str(label)
    out = _LABEL_CACHE.get(label)
    if out is None and label not in _LABEL_CACHE:
        if len(_LABEL_CACHE) > 50_000:  # bounded: free-text labels must not grow it forever
            _LABEL_CACHE.clear()
        out = _LABEL_CACHE[label] = " ".join(label.replace("_", " ").split()).lower() or None
    return out


def item_label(item: dict) -> str | None:
    """The item's label (``label``, else ``category`` or ``class``), normalised, or None.

    Normalised by :func:`normalize_label`.
    """
    lab = item.get("label")
    if lab is None:
        lab = item.get("category")
        if lab is None:
            lab = item.get("class")
            if lab is None:
                return None
    return normalize_label(lab)


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


def _label_of(item: dict) -> str | None:
    lab = item.get("label")
    return normalize_label(lab) if type(lab) is str else item_label(item)


def _labels_of(items: list[dict]) -> list[str | None]:
    """``[_label_of(item) for item in items]``, without a call per item when all are cached."""
    try:
        return [_LABEL_CACHE[item["label"]] for item in items]
    except (KeyError, TypeError):
        return [_label_of(item) for item in items]


def _fast_coords(parsed: ParsedAnswer, key: str, n: int) -> np.ndarray | None:
    """All items' ``key`` as one ``(N, n)`` float64 array when every one is plain numbers, else None.

    The common case in one numpy call instead of a Python loop per item. JSON booleans would be
    read as 0/1 by numpy, so the fast path is skipped when the payload holds ``true``/``false``;
    anything else unusual (missing key, non-numeric strings, wrong length, NaN, huge values) also
    falls back to the per-item path, which gives the same result for every input the fast path
    accepts.
    """
    # Items read from Qwen2-VL tuples (no JSON value) hold floats only, whatever the text says.
    if parsed.value is not None and ("true" in parsed.text or "false" in parsed.text):
        return None
    raw = [item.get(key) for item in parsed.items]
    try:
        # Numeric strings convert as float() would (the per-item path accepts them too).
        arr = np.array(raw, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        return None
    if arr.shape != (len(raw), n):
        return None
    # One reduction checks finiteness and the clipping bound (NaN compares False).
    if not np.abs(arr).max() <= MAX_ABS_COORD:  # arr is never empty here
        return None
    return arr


def boxes_from_answer(parsed: ParsedAnswer) -> tuple[np.ndarray, list[str | None], int]:
    """Boxes of an answer.

    Returns ``(boxes, labels, n_bad)``: ``boxes`` is ``(N, 4)`` float64 ``[x1, y1, x2, y2]`` with
    corners ordered (reversed corners are swapped, not dropped) and coordinates within
    ``±boxes.MAX_ABS_COORD`` (clipped, so that areas never overflow), ``labels`` has N entries
    (normalised by :func:`item_label`), and ``n_bad`` counts answer elements that carry no valid
    box (plus undecodable elements).
    """
    n_bad = parsed.n_malformed
    if not parsed.items:
        return np.zeros((0, 4)), [], n_bad
    arr = _fast_coords(parsed, "bbox_2d", 4)
    if arr is not None:
        return order_corners(arr), _labels_of(parsed.items), n_bad
    boxes, labels = [], []
    for item in parsed.items:
        b = item_box(item)
        if b is None:
            n_bad += 1
            continue
        boxes.append(b)
        labels.append(_label_of(item))
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return order_corners(np.minimum(np.maximum(arr, -MAX_ABS_COORD), MAX_ABS_COORD)), labels, n_bad


_ABSENT = object()


def labelled_boxes(parsed: ParsedAnswer, label_ids: dict[str, int]) -> tuple[list[tuple], int]:
    """Boxes of an answer with their label ids, read item by item in one pass.

    Returns ``(records, n_bad)``: one ``(x1, y1, x2, y2, label_id)`` tuple per item with a valid
    box, in answer order, with the same coordinate values as :func:`boxes_from_answer` (corners
    ordered, clipped to ``±boxes.MAX_ABS_COORD``; JSON integers stay ints); ``label_id`` is
    ``label_ids[item_label(item)]``, or -1 for a label outside ``label_ids`` (or none). ``n_bad``
    counts as in :func:`boxes_from_answer`. ``parsed`` is what :func:`parse_answer` returned: like
    the array path, the item loop skips its per-value boolean checks when ``parsed.text`` holds no
    JSON ``true``/``false``.

    For the few boxes of a usual answer, plain Python per item costs less than the dozen numpy
    calls of the array path (each a microsecond or more of fixed overhead).
    """
    n_bad = parsed.n_malformed
    records = []
    append = records.append
    bound = MAX_ABS_COORD
    cache = _LABEL_CACHE
    # JSON booleans are ints to float(); without "true"/"false" in the text there are none.
    check_bool = "true" in parsed.text or "false" in parsed.text or not parsed.text
    for item in parsed.items:
        box = item.get("bbox_2d", _ABSENT)
        if box is _ABSENT:
            box = item.get("bbox")
        try:
            if type(box) is not list or (check_bool and any(type(v) is bool for v in box)):
                raise TypeError
            x1, y1, x2, y2 = box
            # JSON numbers within the bound pass as they are (numpy makes them floats later);
            # strings (TypeError on comparison), NaN, infinities and out-of-range values (the
            # chained comparisons are False) take the general path, which reads numeric strings.
            if not (
                -bound <= x1 <= bound and -bound <= y1 <= bound and -bound <= x2 <= bound and -bound <= y2 <= bound
            ):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            values = item_box(item)
            if values is None:
                n_bad += 1
                continue
            x1, y1, x2, y2 = (min(max(v, -bound), bound) for v in values)
        if x1 > x2:
            x1, x2 = x2, x1
        if y1 > y2:
            y1, y2 = y2, y1
        label = item.get("label")
        name = cache.get(label, _ABSENT) if type(label) is str else _ABSENT
        if name is _ABSENT:
            name = _label_of(item)
        append((x1, y1, x2, y2, label_ids.get(name, -1)))
    return records, n_bad


def points_from_answer(parsed: ParsedAnswer) -> tuple[np.ndarray, int]:
    """Points of an answer: ``(points (N, 2) float64, n_bad)``; box items count by their centres.

    Coordinates are clipped to ``±boxes.MAX_ABS_COORD``.
    """
    n_bad = parsed.n_malformed
    if not parsed.items:
        return np.zeros((0, 2)), n_bad
    arr = _fast_coords(parsed, "point_2d", 2)
    if arr is not None:
        return arr, n_bad
    if not any("point_2d" in item or "point" in item for item in parsed.items):
        # Box items only (a grounding-style or Qwen2-VL tuple answer): their centres, as
        # item_point computes them, from one array.
        boxes = _fast_coords(parsed, "bbox_2d", 4)
        if boxes is not None:
            return (boxes[:, :2] + boxes[:, 2:]) / 2.0, n_bad
    pts = []
    for item in parsed.items:
        p = item_point(item)
        if p is None:
            n_bad += 1
        else:
            pts.append(p)
    arr = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return np.minimum(np.maximum(arr, -MAX_ABS_COORD), MAX_ABS_COORD), n_bad


def order_corners(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` boxes with ``x1 <= x2`` and ``y1 <= y2``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) <= 16:
        # As (N, 2, 2) [[x1, y1], [x2, y2]], sorting along axis 1 orders the xs and the ys at
        # once: one call, but a sort per box, which loses to min/max on long answers.
        return np.sort(boxes.reshape(-1, 2, 2), axis=1).reshape(-1, 4)
    return np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
