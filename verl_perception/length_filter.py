"""verl's overlong-prompt filter, computed from token counts per distinct text and per distinct frame.

verl's ``RLHFDataset.maybe_filter_out_long_prompts`` measures every row the slow way: it decodes the
image, resizes it, runs the processor on the pixels and counts ``input_ids``; about 50 ms per
COCO-sized row on one core, hours for COCO train2017, paid again on every start and resume. For a
Qwen-VL processor the count splits exactly into two parts that repeat across rows:

* the chat-templated text with one ``<|image_pad|>`` per image, tokenized: it depends only on the
  messages (one distinct text for all of COCO detection);
* per image, the pads the processor expands that one token into: they depend only on the frame
  the processor produces, which depends only on the pinned size (or the image's pixel size when
  nothing is pinned) and the pixel bounds, not on the pixels.

So ``length = text_tokens(messages) - n_images + sum(image_tokens(frame_i))``. This module reads
what those keys need from the Arrow table without touching image bytes (a pinned image is never
opened; an unpinned one only has its header read). The dataset adapter
(:mod:`verl_perception.dataset`) supplies the two counts and checks the sum against verl's own
measurement on sample rows before trusting it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

# Keys of an image dict that decide the frame qwen-vl-utils and the processor produce.
FRAME_KEYS = ("resized_height", "resized_width", "min_pixels", "max_pixels")
BATCH_ROWS = 4096


class Unsupported(Exception):
    """The table holds something the split count does not cover (videos, audio, non-dict images, ...)."""


@dataclass(frozen=True)
class ImageKey:
    """What decides one image's frame: its pixel size ``(w, h)`` (PIL order; ``None`` when the
    image is pinned, because qwen-vl-utils then resizes to the pin whatever the size) and the
    :data:`FRAME_KEYS` values of its dict, in that order."""

    size_wh: tuple[int, int] | None
    keys: tuple


def _pinned(keys: tuple) -> bool:
    return bool(keys[0]) and bool(keys[1])


def header_size(data: bytes | None, path: str | None) -> tuple[int, int]:
    """``(w, h)`` of an encoded image from its header (PIL decodes no pixels for ``.size``)."""
    from PIL import Image

    if data is not None:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    if path is not None and not path.startswith(("http://", "https://", "data:")):
        with Image.open(path.removeprefix("file://")) as im:
            return im.size
    raise Unsupported(f"image without bytes or a local path ({path!r}) and no pinned size")


def _messages_key(messages: Any) -> tuple:
    """Hashable identity of a row's messages; :class:`Unsupported` for structured content."""
    if not isinstance(messages, list):
        raise Unsupported(f"prompt is a {type(messages).__name__}, not a list of messages")
    out = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise Unsupported("a message with non-string content")
        out.append(tuple(sorted((k, v) for k, v in m.items() if isinstance(v, (str, int, float, bool, type(None))))))
        if len(out[-1]) != len(m):
            raise Unsupported("a message with nested fields")
    return tuple(out)


def _column_unused(table: pa.Table, name: str) -> bool:
    if name not in table.column_names:
        return True
    col = table.column(name)
    if col.null_count == len(col):
        return True
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        return all(pc.max(chunk.value_lengths()).as_py() in (None, 0) for chunk in col.chunks)
    return False


def iter_length_keys(dataframe, prompt_key: str, image_key: str, other_media: tuple[str, ...] = (),
                     info_fields: tuple[str, ...] = ()) -> Iterator[tuple[tuple, list[ImageKey], dict]]:
    """Per row of a ``datasets.Dataset``: ``(messages key, [ImageKey per image], {field: extra_info[field]})``.

    ``messages key`` is ``tuple(sorted(message.items()))`` per message (rebuild a message with
    ``dict(...)``). ``info_fields`` are the ``extra_info`` fields wanted (re-pinning needs
    ``orig_size`` and ``model_family``); missing ones read ``None``.
    Raises :class:`Unsupported` for tables the split count does not cover: rows with videos or audio
    (``other_media`` columns), image lists that are not dicts, structured message content.
    """
    names = set(dataframe.column_names)
    if prompt_key not in names:
        raise Unsupported(f"no {prompt_key!r} column")
    cols = [prompt_key] + [c for c in (image_key, *other_media) if c in names]
    if info_fields and "extra_info" in names:
        cols.append("extra_info")
    view = dataframe.select_columns(cols).with_format("arrow")
    for start in range(0, len(view), BATCH_ROWS):
        table: pa.Table = view[start:start + BATCH_ROWS]
        for media in other_media:
            if not _column_unused(table, media):
                raise Unsupported(f"rows with {media!r}")
        prompts = table.column(prompt_key).to_pylist()
        infos: list[dict] = [{} for _ in prompts]
        if info_fields and "extra_info" in table.column_names:
            info = table.column("extra_info")
            if not pa.types.is_struct(info.type):
                raise Unsupported(f"extra_info of type {info.type}")
            for f in info_fields:
                if info.type.get_field_index(f) >= 0:
                    for d, v in zip(infos, pc.struct_field(info, f).to_pylist()):
                        d[f] = v
        images: list[list[ImageKey]] = [[] for _ in prompts]
        if image_key in table.column_names:
            _image_keys(table.column(image_key), images)
        for msgs, imgs, info in zip(prompts, images, infos):
            yield _messages_key(msgs), imgs, info


def _image_keys(column: pa.ChunkedArray, out: list[list[ImageKey]]) -> None:
    """Fill ``out[row]`` with the :class:`ImageKey` of each image of ``column`` (list<struct>), reading
    bytes only for unpinned images, and only their header."""
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        raise Unsupported(f"image column of type {column.type}")
    item_type = column.type.value_type
    if not pa.types.is_struct(item_type):
        raise Unsupported(f"images that are {item_type}, not dicts")
    fields = [item_type.field(i).name for i in range(item_type.num_fields)]
    row = 0
    for chunk in column.chunks:
        lengths = chunk.value_lengths().fill_null(0).to_pylist()
        flat = chunk.flatten()
        cols = {k: (flat.field(k).to_pylist() if k in fields else [None] * len(flat)) for k in FRAME_KEYS}
        src = {k: flat.field(k) for k in ("bytes", "image", "path") if k in fields}
        j = 0
        for n in lengths:
            for _ in range(n):
                keys = tuple(cols[k][j] for k in FRAME_KEYS)
                size = None
                if not _pinned(keys):
                    data = src["bytes"][j].as_py() if "bytes" in src else None
                    path = next((src[k][j].as_py() for k in ("image", "path") if k in src and src[k][j].is_valid), None)
                    size = header_size(data, path if isinstance(path, str) else None)
                out[row].append(ImageKey(size, keys))
                j += 1
            row += 1
