"""RefCOCO / RefCOCO+ / RefCOCOg (standard ``refer`` layout) -> verl parquet for grounding.

Layout (as the ``refer`` toolkit expects it)::

    DATA_ROOT/refcoco/refs(unc).p       DATA_ROOT/refcoco/instances.json
    DATA_ROOT/refcoco+/refs(unc).p      DATA_ROOT/refcoco+/instances.json
    DATA_ROOT/refcocog/refs(umd).p      DATA_ROOT/refcocog/instances.json

``refs(*).p`` is a pickled list of refs ``{ref_id, ann_id, image_id, split, category_id,
sentences: [{sent_id, sent, raw, tokens}]}``; ``instances.json`` holds the COCO train2014 images
and boxes the refs point to. One row per referring expression (sentence), data_source = the
dataset name; ground truth ``{"bbox": [x1, y1, x2, y2]}`` in the input frame.

The pickles are Python pickles: load only files you trust (the official release).
"""

from __future__ import annotations

import argparse
import os
import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from verl_perception.frame import box_problems, clip_boxes, to_input, xywh_to_xyxy
from verl_perception.preprocess import runner
from verl_perception.preprocess.coco_json import load_coco
from verl_perception.preprocess.images import load_image
from verl_perception.preprocess.prompts import grounding_prompt
from verl_perception.preprocess.rows import DEFAULT_FAMILY, Skip, frame_for, make_row, round_coords
from verl_perception.tasks import GROUNDING

DATASETS = ("refcoco", "refcoco+", "refcocog")
SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
SPLITS = ("train", "val", "testA", "testB", "test")
VALID_SPLITS = {"refcoco": ("train", "val", "testA", "testB"), "refcoco+": ("train", "val", "testA", "testB"),
                "refcocog": ("train", "val", "test")}


@dataclass(frozen=True)
class Context:
    image_dir: str
    dataset: str
    split: str
    min_pixels: int
    max_pixels: int
    model_family: str = DEFAULT_FAMILY  # the frame.FAMILIES entry the rows are written for


def load_refs(path: str | os.PathLike) -> list[dict]:
    """Load a ``refs(*).p`` pickle (written by Python 2 in the official release)."""
    with runner.reading(path, "refs pickle"), open(path, "rb") as f:
        try:
            refs = pickle.load(f)
        except UnicodeDecodeError:
            f.seek(0)
            refs = pickle.load(f, encoding="latin1")
    if not isinstance(refs, list):
        raise runner.InputError(f"{path}: expected a pickled list of refs, got {type(refs).__name__}; "
                                "pass the refs(*).p file of the dataset")
    return refs


def iter_records(refs: list[dict], ann_file: str | os.PathLike, split: str):
    """One record per sentence of the refs in ``split``, with its image entry and box."""
    index = load_coco(ann_file)
    ann_pos = index.annotation_rows()
    for ref in refs:
        if ref.get("split") != split:
            continue
        ref_id, ann_id, image_id = ref.get("ref_id"), ref.get("ann_id"), ref.get("image_id")
        sentences = ref.get("sentences")
        base = {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "category_id": ref.get("category_id")}
        if None in (ref_id, ann_id, image_id) or not isinstance(sentences, list):
            yield {"key": f"ref {ref_id}", **base, "skip": "missing_fields",
                   "detail": "ref lacks ref_id/ann_id/image_id/sentences"}
            continue
        image = index.images.get(int(image_id))
        pos = ann_pos.get(int(ann_id))
        for sent in sentences:
            sent = sent if isinstance(sent, dict) else {}
            rec = {"key": f"ref {ref_id} sent {sent.get('sent_id')}", **base, "sent_id": sent.get("sent_id"),
                   "expression": sent.get("sent") if sent.get("sent") is not None else sent.get("raw")}
            if image is None:
                rec.update(skip="missing_image_entry", detail=f"image_id {image_id} not in {ann_file}")
            elif pos is None:
                rec.update(skip="missing_annotation", detail=f"ann_id {ann_id} not in {ann_file}")
            else:
                rec.update(file_name=image[0], size=(image[1], image[2]), bbox=index.ann_boxes[pos].tolist())
            yield rec


def build(ctx: Context, record: dict):
    """One sentence record -> (row, {}); :class:`Skip` for unusable records."""
    if record.get("skip"):
        raise Skip(record["skip"], record.get("detail", ""))
    expression = record.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise Skip("empty_expression", f"sentence {record.get('sent_id')}")
    img = load_image(os.path.join(ctx.image_dir, record["file_name"]))
    ann_h, ann_w = record["size"]
    if (ann_h, ann_w) != (0, 0) and (ann_h, ann_w) != img.size:
        raise Skip("size_mismatch", f"annotation says {ann_h}x{ann_w}, the file is {img.size[0]}x{img.size[1]}")
    orig = img.size
    box = xywh_to_xyxy(np.asarray(record["bbox"], dtype=np.float64))
    problem = box_problems(box, orig)[0]
    if problem:
        raise Skip(problem, f"bbox {record['bbox']} in image {orig}")
    inp = frame_for(orig, ctx.min_pixels, ctx.max_pixels, ctx.model_family)
    gt = {"bbox": round_coords(to_input(clip_boxes(box, orig), orig, inp))[0]}
    row = make_row(
        data_source=ctx.dataset,
        task=GROUNDING,
        instruction=grounding_prompt(expression),
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
            "expression": " ".join(expression.split()),
            "ref_id": int(record["ref_id"]),
            "ann_id": int(record["ann_id"]),
            "sent_id": None if record.get("sent_id") is None else int(record["sent_id"]),
            "category_id": None if record.get("category_id") is None else int(record["category_id"]),
        },
    )
    return row, {}


def default_paths(data_root: str | os.PathLike, dataset: str, split_by: str | None = None) -> tuple[Path, Path]:
    """``(refs pickle, instances.json)`` of ``dataset`` in the standard layout under ``data_root``."""
    root = Path(data_root) / dataset
    return root / f"refs({split_by or SPLIT_BY[dataset]}).p", root / "instances.json"


def convert(
    refs_file: str | os.PathLike,
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    dataset: str,
    split: str,
    *,
    min_pixels: int,
    max_pixels: int,
    model_family: str = DEFAULT_FAMILY,
    workers: int = 1,
    strict: bool = False,
    limit: int | None = None,
    row_group_rows: int = runner.ROW_GROUP_ROWS,
    progress: bool = True,
    allow_empty: bool = False,
) -> runner.Summary:
    """Convert one split of one RefCOCO-family dataset; returns the run's summary."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if split not in VALID_SPLITS[dataset]:
        raise ValueError(f"{dataset} has splits {VALID_SPLITS[dataset]}, not {split!r}")
    refs = load_refs(refs_file)
    total = sum(len(r.get("sentences") or [1]) for r in refs if r.get("split") == split)
    ctx = Context(str(image_dir), dataset, split, min_pixels, max_pixels, model_family)
    return runner.run(
        runner.limited(iter_records(refs, ann_file, split), limit),
        partial(build, ctx),
        Path(output_dir) / f"{split}.parquet",
        total=total if limit is None else min(total, limit),
        workers=workers,
        strict=strict,
        desc=f"{dataset} {split}",
        row_group_rows=row_group_rows,
        progress=progress,
        allow_empty=allow_empty,
        source=refs_file,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="refcoco.py",
        description="RefCOCO/RefCOCO+/RefCOCOg (refer layout) + COCO train2014 images -> verl parquet for grounding.",
    )
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-root", help="directory holding <dataset>/refs(<split_by>).p and <dataset>/instances.json")
    p.add_argument("--refs-file", help="refs(unc).p / refs(umd).p (overrides --data-root)")
    p.add_argument("--ann-file", help="the dataset's instances.json (overrides --data-root)")
    p.add_argument("--split-by", help="refs file variant (default: unc for refcoco/refcoco+, umd for refcocog)")
    p.add_argument("--image-dir", required=True, help="COCO train2014 image directory")
    runner.add_common_args(p, SPLITS)
    return p


def main(argv: list[str] | None = None) -> runner.Summary:
    p = parser()
    args = p.parse_args(argv)
    runner.check_common_args(p, args)
    if args.split not in VALID_SPLITS[args.dataset]:
        p.error(f"{args.dataset} has splits {VALID_SPLITS[args.dataset]}, not {args.split!r}")
    refs_file, ann_file = args.refs_file, args.ann_file
    if args.data_root:
        d_refs, d_ann = default_paths(args.data_root, args.dataset, args.split_by)
        refs_file, ann_file = refs_file or d_refs, ann_file or d_ann
    if not refs_file or not ann_file:
        p.error("give --data-root, or both --refs-file and --ann-file")
    with runner.cli_errors():
        summary = convert(
            refs_file, ann_file, args.image_dir, args.output_dir, args.dataset, args.split,
            min_pixels=args.min_pixels, max_pixels=args.max_pixels, model_family=args.model_family,
            workers=args.workers, strict=args.strict,
            limit=args.limit, row_group_rows=args.row_group_size, progress=not args.quiet,
            allow_empty=args.allow_empty,
        )
    return runner.finish(summary)


if __name__ == "__main__":
    main()
