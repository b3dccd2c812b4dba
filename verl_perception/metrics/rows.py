"""Evaluation rows: a verl parquet row joined with its generated response.

A row of the perception parquet (docs/data.md) carries ``data_source``, ``prompt`` (chat
messages), ``images`` (one ``{"bytes": ...}`` dict, optionally ``resized_height`` /
``resized_width``), ``reward_model.ground_truth`` (JSON, input frame) and ``extra_info``
(``task``, ``split``, ``index``, ``image_id``, ``orig_size [h, w]``, ``input_size [h, w]``, ...).
Responses are the JSON lines written by :mod:`verl_perception.generate`: one per parquet row,
keyed by the row's position ``row`` (and its ``extra_info.index``).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from verl_perception.frame import answer_to_input, family_of, to_original
from verl_perception.rewards import GroundTruthError, load_ground_truth


class EvalInputError(ValueError):
    """The parquet rows or the responses file cannot be evaluated (the message says why)."""


def _jsonable(value: Any) -> Any:
    """numpy / pyarrow values -> plain Python (for extra_info read from parquet)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_parquet_rows(path: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """All rows of a parquet file as plain dicts, in file order (``limit``: the first N)."""
    import pyarrow.parquet as pq

    if not os.path.exists(path):
        raise EvalInputError(f"data file {os.fspath(path)!r} does not exist")
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001  (pyarrow raises ArrowInvalid, OSError... for a non-parquet file)
        detail = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise EvalInputError(
            f"data file {os.fspath(path)!r} is not a readable parquet file ({detail}): pass the parquet the "
            "responses were generated from (data_preprocess/ writes <split>.parquet)"
        ) from None
    if limit is not None:
        table = table.slice(0, max(0, int(limit)))
    return [_jsonable(r) for r in table.to_pylist()]


def image_cell(row: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The row's first image entry (``images[0]``), or None when the row has no image."""
    images = row.get("images")
    if images is None:
        return None
    if isinstance(images, Mapping) or isinstance(images, (bytes, bytearray, str)):
        images = [images]
    if not len(images):
        return None
    first = images[0]
    if isinstance(first, (bytes, bytearray)):
        return {"bytes": bytes(first)}
    if isinstance(first, str):
        return {"path": first}
    return first


def open_image(cell: Mapping[str, Any] | None):
    """Decode an image entry (``bytes`` or ``path``/``image`` path) to an RGB ``PIL.Image``.

    Raises :class:`EvalInputError` for a missing or corrupt image (never returns garbage).
    """
    from PIL import Image, UnidentifiedImageError

    if cell is None:
        raise EvalInputError("row has no image")
    data = cell.get("bytes")
    try:
        if data:
            img = Image.open(io.BytesIO(data))
        else:
            path = cell.get("path") or cell.get("image")
            if not isinstance(path, str) or not path:
                raise EvalInputError(f"image entry has neither bytes nor a path: keys {sorted(cell)}")
            img = Image.open(path[7:] if path.startswith("file://") else path)
        img.load()
    except (UnidentifiedImageError, OSError) as e:
        raise EvalInputError(f"cannot decode image: {e}") from e
    if img.mode == "RGBA":  # as qwen-vl-utils: alpha over white
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(img, mask=img.split()[3])
        return bg
    return img.convert("RGB")


def _size(value: Any, what: str, where: str) -> tuple[int, int]:
    try:
        h, w = (float(v) for v in value)
    except (TypeError, ValueError) as e:
        raise EvalInputError(f"{where}: extra_info[{what!r}] must be [h, w], got {value!r}") from e
    if not (math.isfinite(h) and math.isfinite(w) and h > 0 and w > 0):
        raise EvalInputError(f"{where}: extra_info[{what!r}] must be positive, got {value!r}")
    return int(round(h)), int(round(w))


@dataclass
class EvalRow:
    """One parquet row with its response.

    position: the row's position in the parquet file (the key of the responses file).
    gt: the decoded ground truth (input-frame coordinates).
    input_size / orig_size: ``(h, w)`` of the frame the model saw / of the original image.
    response: the model's text (``None`` when the responses file has no line for the row).
    """

    position: int
    data_source: str
    gt: dict
    extra_info: dict
    input_size: tuple[int, int]
    orig_size: tuple[int, int]
    response: str | None
    row: dict = field(repr=False, default_factory=dict)

    @property
    def split(self) -> str:
        return str(self.extra_info.get("split") or "all")

    @property
    def index(self) -> Any:
        return self.extra_info.get("index", self.position)

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """Input-frame ``(..., 2k)`` coordinates -> original-image pixels (exact scale)."""
        return to_original(xy, self.input_size, self.orig_size)

    def answer_to_original(self, xy: np.ndarray) -> np.ndarray:
        """The model's ``(..., 2k)`` answer coordinates (the row's family convention, e.g. Qwen3-VL's
        0..1000) -> original-image pixels."""
        return self.to_original(answer_to_input(xy, self.extra_info, self.input_size))

    def image(self):
        """The row's image as stored (original, or already resized: viz maps boxes to its size)."""
        return open_image(image_cell(self.row))


def make_eval_row(position: int, row: Mapping[str, Any], response: str | None) -> EvalRow:
    """Build an :class:`EvalRow`, validating what evaluation needs (clear errors, never guesses)."""
    where = f"row {position}"
    extra = dict(row.get("extra_info") or {})
    rm = row.get("reward_model") or {}
    if "ground_truth" not in rm:
        raise EvalInputError(f"{where}: reward_model.ground_truth is missing")
    try:
        gt = load_ground_truth(rm["ground_truth"])
    except GroundTruthError as e:
        raise EvalInputError(f"{where}: {e}") from e
    if "input_size" not in extra:
        raise EvalInputError(f"{where}: extra_info['input_size'] is missing (the frame the model saw)")
    input_size = _size(extra["input_size"], "input_size", where)
    orig_size = _size(extra.get("orig_size", extra["input_size"]), "orig_size", where)
    try:
        family_of(extra)
    except ValueError as e:
        raise EvalInputError(f"{where}: extra_info['model_family']: {e}") from e
    return EvalRow(
        position=position,
        data_source=str(row.get("data_source", "")),
        gt=gt,
        extra_info=extra,
        input_size=input_size,
        orig_size=orig_size,
        response=response,
        row=dict(row),
    )


def read_responses(path: str | os.PathLike) -> list[dict]:
    """The JSON lines of a responses file (blank lines skipped; a broken line is an error)."""
    out = []
    if not os.path.exists(path):
        raise EvalInputError(f"responses file {os.fspath(path)!r} does not exist")
    if os.path.isdir(path):
        raise EvalInputError(f"responses file {os.fspath(path)!r} is a directory: pass the responses.jsonl in it")
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as e:
                raise EvalInputError(
                    f"{os.fspath(path)}:{n}: not a JSON line ({e}): pass the responses.jsonl written by "
                    "verl_perception.generate"
                ) from None
            if not isinstance(rec, dict) or "response" not in rec:
                raise EvalInputError(f"{os.fspath(path)}:{n}: a line must be an object with a 'response' key")
            out.append(rec)
    return out


def join_responses(rows: Sequence[Mapping[str, Any]], responses: Sequence[Mapping[str, Any]]) -> list[EvalRow]:
    """Pair parquet rows with responses.

    Lines carrying ``row`` (written by :mod:`verl_perception.generate`) are matched by it, and
    their ``index`` must agree with the row's ``extra_info.index``; lines without ``row`` are
    matched by order. A line's ``data_source``, when given, must be its row's. A row with no line,
    or whose line has a null or non-string ``response``, gets ``response=None`` (scored as an empty
    answer and counted in ``missing_responses``).
    """
    by_pos: dict[int, str | None] = {}
    keyed = [r for r in responses if "row" in r]
    if keyed and len(keyed) != len(responses):
        raise EvalInputError("responses mix lines with and without 'row'; regenerate them")
    if len(responses) > len(rows) and not keyed:
        raise EvalInputError(f"{len(responses)} responses for {len(rows)} parquet rows: wrong --data?")
    for i, rec in enumerate(responses):
        try:
            pos = int(rec["row"]) if keyed else i
        except (TypeError, ValueError):
            raise EvalInputError(
                f"response line {i + 1} has row {rec['row']!r}, not a row number: regenerate it"
            ) from None
        if not 0 <= pos < len(rows):
            raise EvalInputError(f"response for row {pos} but the parquet has {len(rows)} rows: wrong --data?")
        if keyed and "index" in rec and rec["index"] is not None:
            want = (rows[pos].get("extra_info") or {}).get("index")
            if want is not None and str(want) != str(rec["index"]):
                raise EvalInputError(
                    f"response line for row {pos} has index {rec['index']!r} but the row's extra_info.index "
                    f"is {want!r}: the responses were generated from another file"
                )
        source = rec.get("data_source")
        if source is not None and str(source) != str(rows[pos].get("data_source")):
            raise EvalInputError(
                f"response line for row {pos} is for data_source {source!r} but the row's is "
                f"{rows[pos].get('data_source')!r}: the responses were generated from another file"
            )
        resp = rec["response"]
        # A null or non-string response is no answer (counted as missing; see invalid_responses).
        by_pos[pos] = resp if isinstance(resp, str) else None
    return [make_eval_row(i, row, by_pos.get(i)) for i, row in enumerate(rows)]


def invalid_responses(responses: Sequence[Mapping[str, Any]]) -> int:
    """Response lines whose ``response`` is null or not a string (scored as missing)."""
    return sum(not isinstance(r.get("response"), str) for r in responses)
