"""Page-level OCR (a JSONL or JSON list of ``{"image": path, "text": page text}``) -> verl parquet.

Layout::

    ANN_FILE      one JSON object per line (or a JSON list), e.g.
                  {"image": "pages/0001.png", "text": "Full page text\\nline two"}
    IMAGE_DIR     the directory the "image" paths are relative to

The keys can be renamed with ``--image-key``/``--text-key``. The Fox benchmark's page-OCR files
(``en_page_ocr.json``/``cn_page_ocr.json``: a JSON list of ``{"image", "conversations": [{"from":
"human", ...}, {"from": "gpt", "value": page text}]}``) are read as they are: a record without the
text key takes its text from the first ``gpt``/``assistant`` turn. One row per page, data_source
``pageocr``, ground truth ``{"text": ...}`` exactly as given (line breaks kept). OCR ground truth
has no coordinates, but the image is still pinned to its input frame so every task sees images
the same way.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from verl_perception.preprocess import runner
from verl_perception.preprocess.images import load_image
from verl_perception.preprocess.prompts import ocr_prompt
from verl_perception.preprocess.rows import DEFAULT_FAMILY, Skip, frame_for, make_row
from verl_perception.tasks import OCR

DATA_SOURCE = "pageocr"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Context:
    image_dir: str
    split: str
    min_pixels: int
    max_pixels: int
    image_key: str = "image"
    text_key: str = "text"
    model_family: str = DEFAULT_FAMILY  # the frame.FAMILIES entry the rows are written for


def read_records(path: str | os.PathLike):
    """Yield ``(position, record)`` from a JSONL file (streamed) or a JSON list."""
    with runner.reading(path, "annotation file"):
        f = open(path, encoding="utf-8")  # noqa: SIM115  (closed by the with below)
    with f:
        head = f.read(1)
        while head and head.isspace():
            head = f.read(1)
        f.seek(0)
        if head == "[":
            with runner.reading(path, "annotation file (a JSON list)"):
                records = json.load(f)
            for n, rec in enumerate(records):
                yield n, rec
            return
        n = 0
        for line in f:
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    rec = {"__error__": f"line {n + 1}: {e}"}
                yield n, rec
                n += 1


def conversation_answer(conversations) -> str | None:
    """The first answer turn of a LLaVA-style ``conversations`` list (Fox's layout), else None."""
    if not isinstance(conversations, list):
        return None
    for turn in conversations:
        if isinstance(turn, dict) and str(turn.get("from", turn.get("role", ""))).lower() in ("gpt", "assistant"):
            value = turn.get("value", turn.get("content"))
            return value if isinstance(value, str) else None
    return None


def iter_records(path: str | os.PathLike):
    for n, rec in read_records(path):
        key = rec.get("image") if isinstance(rec, dict) else None
        yield {"key": key or f"record {n}", "position": n, "raw": rec}


def build(ctx: Context, record: dict):
    """One page record -> (row, {}); :class:`Skip` for unusable records."""
    rec, n = record["raw"], record["position"]
    if not isinstance(rec, dict):
        raise Skip("bad_json", f"record {n} is not an object")
    if "__error__" in rec:
        raise Skip("bad_json", rec["__error__"])
    image, text = rec.get(ctx.image_key), rec.get(ctx.text_key)
    if text is None:
        text = conversation_answer(rec.get("conversations"))
    if not isinstance(image, str) or not image or not isinstance(text, str):
        raise Skip("missing_fields", f"record {n} lacks {ctx.image_key!r} or {ctx.text_key!r}")
    if not text.strip():
        raise Skip("empty_text", f"record {n}")
    img = load_image(os.path.join(ctx.image_dir, image))
    inp = frame_for(img.size, ctx.min_pixels, ctx.max_pixels, ctx.model_family)
    row = make_row(
        data_source=DATA_SOURCE,
        task=OCR,
        instruction=ocr_prompt(),
        image_bytes=img.data,
        orig_size=img.size,
        input_size=inp,
        ground_truth={"text": text},
        split=ctx.split,
        image_id=n,
        file_name=image,
        min_pixels=ctx.min_pixels,
        max_pixels=ctx.max_pixels,
        model_family=ctx.model_family,
    )
    return row, {}


def convert(
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    split: str,
    *,
    min_pixels: int,
    max_pixels: int,
    model_family: str = DEFAULT_FAMILY,
    workers: int = 1,
    strict: bool = False,
    image_key: str = "image",
    text_key: str = "text",
    limit: int | None = None,
    row_group_rows: int = runner.ROW_GROUP_ROWS,
    progress: bool = True,
    allow_empty: bool = False,
) -> runner.Summary:
    """Convert one page-OCR annotation file; returns the run's summary."""
    ctx = Context(str(image_dir), split, min_pixels, max_pixels, image_key, text_key, model_family)
    return runner.run(
        runner.limited(iter_records(ann_file), limit),
        partial(build, ctx),
        Path(output_dir) / f"{split}.parquet",
        workers=workers,
        strict=strict,
        desc=f"pageocr {split}",
        row_group_rows=row_group_rows,
        progress=progress,
        allow_empty=allow_empty,
        source=ann_file,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pageocr.py",
        description="Page OCR annotations (JSONL/JSON of {image, text}) + images -> verl parquet (data_source 'pageocr').",
    )
    p.add_argument("--ann-file", required=True, help='JSONL (or JSON list) of {"image": path, "text": page text}')
    p.add_argument("--image-dir", required=True, help="directory the image paths are relative to")
    runner.add_common_args(p, SPLITS)
    p.add_argument("--image-key", default="image", help="record key holding the image path")
    p.add_argument("--text-key", default="text", help="record key holding the page text")
    return p


def main(argv: list[str] | None = None) -> runner.Summary:
    p = parser()
    args = p.parse_args(argv)
    runner.check_common_args(p, args)
    with runner.cli_errors():
        summary = convert(
            args.ann_file, args.image_dir, args.output_dir, args.split,
            min_pixels=args.min_pixels, max_pixels=args.max_pixels, model_family=args.model_family,
            workers=args.workers, strict=args.strict,
            image_key=args.image_key, text_key=args.text_key, limit=args.limit,
            row_group_rows=args.row_group_size, progress=not args.quiet,
            allow_empty=args.allow_empty,
        )
    return runner.finish(summary)


if __name__ == "__main__":
    main()
