"""verl's multimodal row: the parquet schema every preprocessing script writes, and its builder.

A row is what verl's own examples (``examples/data_preprocess/geo3k.py``) write::

    data_source   str                      e.g. "coco" (selects the reward)
    prompt        [{"role", "content"}]    one user turn, "<image>" + instruction
    images        [{"bytes", "resized_height", "resized_width"}]   the original image file, pinned
                                           to its input frame (see verl_perception.frame.pin)
    ability       str                      the task name
    reward_model  {"style": "rule", "ground_truth": JSON str per the rewards contract}
    extra_info    {task, split, index, image_id, file_name, orig_size [h, w], input_size [h, w],
                   min_pixels, max_pixels, model_family, + per-task fields, null where they do not apply}

``model_family`` (``qwen2_5_vl``, ``qwen3_vl``; see :mod:`verl_perception.frame`) fixes the resize
factor of ``input_size`` and how the model writes coordinates; the ground truth is in input-frame
pixels for every family.

One schema for all four tasks, so that parquet files of different tasks concatenate in one verl
run (``datasets.concatenate_datasets`` needs identical features).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from verl_perception.frame import DEFAULT_FRAME, get_family, pin
from verl_perception.preprocess.prompts import user_messages


# Rows are written for this family unless --model-family says otherwise.
DEFAULT_FAMILY = DEFAULT_FRAME.name


class Skip(Exception):
    """A raw record that cannot become a row; ``reason`` is a short snake_case name for the summary."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# Per-task extra_info fields (null for the other tasks).
EXTRA_FIELDS: list[pa.Field] = [
    pa.field("task", pa.string()),
    pa.field("split", pa.string()),
    pa.field("index", pa.int64()),
    pa.field("image_id", pa.int64()),
    pa.field("file_name", pa.string()),
    pa.field("orig_size", pa.list_(pa.int64())),
    pa.field("input_size", pa.list_(pa.int64())),
    pa.field("min_pixels", pa.int64()),
    pa.field("max_pixels", pa.int64()),
    pa.field("model_family", pa.string()),
    # detection: COCO category id of each ground-truth label, and the annotation file's whole
    # category table (names and ids, aligned) to map predicted names back for COCOeval.
    pa.field("gt_category_ids", pa.list_(pa.int64())),
    pa.field("category_names", pa.list_(pa.string())),
    pa.field("category_ids", pa.list_(pa.int64())),
    # grounding
    pa.field("expression", pa.string()),
    pa.field("ref_id", pa.int64()),
    pa.field("ann_id", pa.int64()),
    pa.field("sent_id", pa.int64()),
    pa.field("category_id", pa.int64()),
    # counting
    pa.field("label", pa.string()),
    pa.field("count", pa.int64()),
    pa.field("image_url", pa.string()),
    pa.field("image_sha256", pa.string()),
]
EXTRA_KEYS = tuple(f.name for f in EXTRA_FIELDS)

SCHEMA = pa.schema(
    [
        pa.field("data_source", pa.string()),
        pa.field("prompt", pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))),
        pa.field(
            "images",
            pa.list_(
                pa.struct(
                    [
                        pa.field("bytes", pa.binary()),
                        pa.field("resized_height", pa.int64()),
                        pa.field("resized_width", pa.int64()),
                    ]
                )
            ),
        ),
        pa.field("ability", pa.string()),
        pa.field(
            "reward_model", pa.struct([pa.field("style", pa.string()), pa.field("ground_truth", pa.string())])
        ),
        pa.field("extra_info", pa.struct(EXTRA_FIELDS)),
    ]
)

# Ground-truth coordinates are stored with this many decimals: 0.005 input pixel at most, far
# below the one-pixel resolution of the model's integer answers.
COORD_DECIMALS = 2


def round_coords(xy: np.ndarray) -> list:
    """Round an array of coordinates for JSON (nested lists of floats)."""
    arr = np.round(np.asarray(xy, dtype=np.float64), COORD_DECIMALS)
    return arr.tolist()


def gt_json(gt: Mapping[str, Any]) -> str:
    """Compact JSON for ``reward_model.ground_truth``; refuses NaN/inf (a data bug, not a number)."""

    def check(v):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"non-finite value in ground truth {dict(gt)!r}")
        if isinstance(v, (list, tuple)):
            for x in v:
                check(x)
        elif isinstance(v, Mapping):
            for x in v.values():
                check(x)

    check(dict(gt))
    return json.dumps(dict(gt), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def make_row(
    *,
    data_source: str,
    task: str,
    instruction: str,
    image_bytes: bytes,
    orig_size: tuple[int, int],
    input_size: tuple[int, int],
    ground_truth: Mapping[str, Any],
    split: str,
    image_id: int | None,
    file_name: str | None,
    min_pixels: int,
    max_pixels: int,
    model_family: str = DEFAULT_FAMILY,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one row of :data:`SCHEMA` (``extra_info.index`` is set by the writer, in output order)."""
    family = get_family(model_family)
    info: dict[str, Any] = {k: None for k in EXTRA_KEYS}
    info.update(
        task=task,
        split=split,
        index=None,
        image_id=None if image_id is None else int(image_id),
        file_name=file_name,
        orig_size=[int(orig_size[0]), int(orig_size[1])],
        input_size=[int(input_size[0]), int(input_size[1])],
        min_pixels=int(min_pixels),
        max_pixels=int(max_pixels),
        model_family=family.name,
    )
    for k, v in (extra or {}).items():
        if k not in info:
            raise KeyError(f"extra_info field {k!r} is not in the row schema")
        info[k] = v
    return {
        "data_source": data_source,
        "prompt": user_messages(instruction),
        "images": [{"bytes": image_bytes, **pin(input_size, family)}],
        "ability": task,
        "reward_model": {"style": "rule", "ground_truth": gt_json(ground_truth)},
        "extra_info": info,
    }


def frame_for(
    orig_size: tuple[int, int], min_pixels: int, max_pixels: int, model_family: str = DEFAULT_FAMILY
) -> tuple[int, int]:
    """Input frame ``(h, w)`` of an original ``(h, w)`` image for ``model_family``, or :class:`Skip`
    ``"extreme_aspect_ratio"``."""
    from verl_perception.frame import input_size

    try:
        return input_size(orig_size[0], orig_size[1], min_pixels, max_pixels, model_family)
    except ValueError as e:  # smart_resize refuses aspect ratios above 200
        raise Skip("extreme_aspect_ratio", f"size {tuple(orig_size)}: {e}") from None
