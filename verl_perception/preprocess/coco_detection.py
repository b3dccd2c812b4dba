"""COCO detection (``instances_{train,val}2017.json`` + image directory) -> verl parquet.

One row per image, data_source ``coco``. Ground truth: ``{"boxes": [[x1, y1, x2, y2], ...],
"labels": [name, ...]}`` in the input frame. Crowd annotations are left out of the ground truth
(COCOeval treats them as ignore regions, evaluated from the annotation file). Images without
(non-crowd) annotations are kept for val (they count for AP: every box there is a false positive)
and skipped for train unless ``--keep-empty``.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from verl_perception.frame import box_problems, clip_boxes, to_input, xywh_to_xyxy
from verl_perception.preprocess import runner
from verl_perception.preprocess.coco_json import CocoIndex, load_coco
from verl_perception.preprocess.images import load_image
from verl_perception.preprocess.prompts import detection_prompt
from verl_perception.preprocess.rows import DEFAULT_FAMILY, Skip, frame_for, make_row, round_coords
from verl_perception.tasks import DETECTION

DATA_SOURCE = "coco"
SPLITS = ("train", "val")


@dataclass(frozen=True)
class Context:
    image_dir: str
    split: str
    min_pixels: int
    max_pixels: int
    category_ids: tuple[int, ...]
    category_names: tuple[str, ...]
    instruction: str
    model_family: str = DEFAULT_FAMILY  # the frame.FAMILIES entry the rows are written for


def iter_records(index: CocoIndex, keep_empty: bool):
    """Raw records in image-id order: image file, annotated size and its non-crowd boxes.

    Images whose annotations are all crowd count as empty. ``keep_empty=False`` drops them here
    with reason ``no_annotations`` (yielded as a record with ``"skip"`` so the summary counts it).
    """
    by_image = index.annotations_by_image()
    for image_id in sorted(index.images):
        file_name, h, w = index.images[image_id]
        sl = by_image.get(image_id, slice(0, 0))
        keep = ~index.ann_crowd[sl]
        boxes = index.ann_boxes[sl][keep]
        cats = index.ann_category_ids[sl][keep]
        record = {
            "key": file_name,
            "image_id": image_id,
            "file_name": file_name,
            "size": (h, w),
            "boxes": boxes.tolist(),
            "category_ids": cats.tolist(),
        }
        if not len(boxes) and not keep_empty:
            record["skip"] = "no_annotations"
        yield record


def build(ctx: Context, record: dict):
    """One raw record -> (row, dropped boxes by reason); :class:`Skip` for unusable images."""
    if record.get("skip"):
        raise Skip(record["skip"], f"image_id {record['image_id']}")
    known = dict(zip(ctx.category_ids, ctx.category_names))
    cats = [int(c) for c in record["category_ids"]]
    unknown = sorted({c for c in cats if c not in known})
    if unknown:
        raise Skip("unknown_category", f"category ids {unknown} are not in the annotation file's categories")
    img = load_image(os.path.join(ctx.image_dir, record["file_name"]))
    ann_h, ann_w = record["size"]
    if (ann_h, ann_w) != (0, 0) and (ann_h, ann_w) != img.size:
        raise Skip("size_mismatch", f"annotation says {ann_h}x{ann_w}, the file is {img.size[0]}x{img.size[1]}")
    orig = img.size
    inp = frame_for(orig, ctx.min_pixels, ctx.max_pixels, ctx.model_family)

    boxes = xywh_to_xyxy(np.asarray(record["boxes"], dtype=np.float64).reshape(-1, 4))
    problems = box_problems(boxes, orig)
    ok = problems == ""
    dropped = Counter(str(p) for p in problems[~ok])
    boxes = clip_boxes(boxes[ok], orig)
    cats = [c for c, keep in zip(cats, ok) if keep]
    if not len(boxes) and ctx.split == "train" and record["boxes"]:
        raise Skip("no_valid_boxes", f"all {len(record['boxes'])} boxes unusable: {dict(dropped)}")

    gt = {"boxes": round_coords(to_input(boxes, orig, inp)), "labels": [known[c] for c in cats]}
    row = make_row(
        data_source=DATA_SOURCE,
        task=DETECTION,
        instruction=ctx.instruction,
        image_bytes=img.data,
        orig_size=orig,
        input_size=inp,
        ground_truth=gt,
        split=ctx.split,
        image_id=record["image_id"],
        file_name=record["file_name"],
        min_pixels=ctx.min_pixels,
        max_pixels=ctx.max_pixels,
        model_family=ctx.model_family,
        extra={
            "gt_category_ids": cats,
            "category_names": list(ctx.category_names),
            "category_ids": list(ctx.category_ids),
        },
    )
    return row, dict(dropped)


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
    keep_empty: bool | None = None,
    limit: int | None = None,
    row_group_rows: int = runner.ROW_GROUP_ROWS,
    progress: bool = True,
    allow_empty: bool = False,
) -> runner.Summary:
    """Convert one COCO split; returns the run's :class:`~verl_perception.preprocess.runner.Summary`."""
    index = load_coco(ann_file)
    if not index.categories:
        raise runner.InputError(f"{ann_file}: has no categories; is it a COCO instances_*.json file?")
    ids, names = zip(*index.categories)
    ctx = Context(
        image_dir=str(image_dir),
        split=split,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        category_ids=tuple(ids),
        category_names=tuple(names),
        instruction=detection_prompt(names),
        model_family=model_family,
    )
    if keep_empty is None:
        keep_empty = split != "train"
    records = runner.limited(iter_records(index, keep_empty), limit)
    total = len(index.images) if limit is None else min(limit, len(index.images))
    return runner.run(
        records,
        partial(build, ctx),
        Path(output_dir) / f"{split}.parquet",
        total=total,
        workers=workers,
        strict=strict,
        desc=f"coco {split}",
        row_group_rows=row_group_rows,
        progress=progress,
        allow_empty=allow_empty,
        source=ann_file,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="coco_detection.py",
        description="COCO instances JSON + images -> verl parquet for detection (data_source 'coco').",
    )
    p.add_argument("--ann-file", required=True, help="instances_{train,val}2017.json")
    p.add_argument("--image-dir", required=True, help="directory holding the images' file_name")
    runner.add_common_args(p, SPLITS)
    p.add_argument("--keep-empty", action=argparse.BooleanOptionalAction, default=None,
                   help="keep images without annotations (default: yes for val, no for train)")
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
            keep_empty=args.keep_empty, limit=args.limit, row_group_rows=args.row_group_size, progress=not args.quiet,
            allow_empty=args.allow_empty,
        )
    return runner.finish(summary)


if __name__ == "__main__":
    main()
