"""Bundled raw samples -> verl parquet for all four tasks, through the real preprocessing code.

    python -m verl_perception.preprocess.samples --output-dir DIR [--model-family F] [--min-pixels N --max-pixels N]

writes ``DIR/{coco,refcoco,pixmo_count,pageocr}/{train,val}.parquet``.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from verl_perception.frame import FAMILIES, check_pixel_bounds, get_family
from verl_perception.preprocess import coco_detection, pageocr, pixmo_count, refcoco
from verl_perception.preprocess.runner import PreprocessError, Summary

TASK_DIRS = ("coco", "refcoco", "pixmo_count", "pageocr")


def samples_dir() -> Path:
    """Where the bundled raw samples are installed."""
    return Path(str(resources.files("verl_perception") / "samples"))


def convert_samples(
    output_dir: str | Path,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    workers: int = 1,
    progress: bool = False,
    tasks: tuple[str, ...] = TASK_DIRS,
    model_family: str | None = None,
) -> dict[str, Summary]:
    """Write the sample parquet files for ``model_family`` (default Qwen2.5-VL; pixel bounds default
    to the family's); returns ``{"<task dir>/<split>": Summary}``.

    Runs strict: the bundled samples are clean, so any skipped record is a bug worth failing on.
    """
    family = get_family(model_family)
    min_pixels = family.min_pixels if min_pixels is None else min_pixels
    max_pixels = family.max_pixels if max_pixels is None else max_pixels
    check_pixel_bounds(min_pixels, max_pixels, family)
    src, out = samples_dir(), Path(output_dir)
    kw = {"min_pixels": min_pixels, "max_pixels": max_pixels, "model_family": family.name, "workers": workers,
          "strict": True, "progress": progress}
    results: dict[str, Summary] = {}
    for split in ("train", "val"):
        if "coco" in tasks:
            results[f"coco/{split}"] = coco_detection.convert(
                src / "coco" / "annotations" / f"instances_{split}.json", src / "coco" / split, out / "coco", split, **kw
            )
        if "refcoco" in tasks:
            root = src / "refcoco"
            results[f"refcoco/{split}"] = refcoco.convert(
                root / "refcoco" / "refs(unc).p", root / "refcoco" / "instances.json", root / "train2014",
                out / "refcoco", "refcoco", split, **kw,
            )
        if "pixmo_count" in tasks:
            hf_split = "validation" if split == "val" else split
            results[f"pixmo_count/{split}"] = pixmo_count.convert(
                src / "pixmo_count" / "data" / f"{hf_split}-00000-of-00001.parquet", src / "pixmo_count" / "images",
                out / "pixmo_count", split, **kw,
            )
        if "pageocr" in tasks:
            results[f"pageocr/{split}"] = pageocr.convert(
                src / "pageocr" / f"{split}.jsonl", src / "pageocr", out / "pageocr", split, **kw
            )
    return results


def main(argv: list[str] | None = None) -> dict[str, Summary]:
    p = argparse.ArgumentParser(prog="python -m verl_perception.preprocess.samples", description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", required=True, help="writes <task>/{train,val}.parquet under it")
    p.add_argument("--model-family", default=get_family().name, choices=list(FAMILIES))
    p.add_argument("--min-pixels", type=int, default=None, help="default: the family's recipe bound")
    p.add_argument("--max-pixels", type=int, default=None, help="default: the family's recipe bound")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--tasks", nargs="+", choices=TASK_DIRS, default=list(TASK_DIRS))
    args = p.parse_args(argv)
    family = get_family(args.model_family)
    args.min_pixels = family.min_pixels if args.min_pixels is None else args.min_pixels
    args.max_pixels = family.max_pixels if args.max_pixels is None else args.max_pixels
    try:
        check_pixel_bounds(args.min_pixels, args.max_pixels, family)
    except ValueError as e:
        p.error(str(e))
    try:
        results = convert_samples(args.output_dir, min_pixels=args.min_pixels, max_pixels=args.max_pixels,
                                  workers=args.workers, tasks=tuple(args.tasks), model_family=family.name)
    except PreprocessError as e:
        sys.exit(f"bundled sample failed to convert (a bug): {e}")
    for name, s in results.items():
        print(f"{name}: {s.rows_written} rows -> {s.path}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
