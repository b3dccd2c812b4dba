"""PixMo-Count (Hugging Face ``allenai/pixmo-count``) -> verl parquet for counting.

Raw format: the dataset's own parquet files (``data/{train,validation,test}-*.parquet``) or a JSONL
with the same fields, one record per image:

    image_url     str    where the image lives on the web (URLs can repeat)
    image_sha256  str    hex sha256 of the image file
    count         int    number of objects
    points        [{"x", "y"}] (or {"x": [...], "y": [...]})  one point per object
    label         str    object name

Point convention: the dataset card states "the x, y coordinates specified in pixels" (of the
original image), and the card's eval note says points may be missing in val/test. We follow the
card (``--points-convention pixels``); ``percent`` (0..100 of the image, the PixMo-Points
convention in Molmo's code) is a flag in case a release differs. Rows of the eval splits without
points are kept with ``{"points": [], "count": N}``; in train they are skipped (``missing_points``).

Images are read from ``--image-dir`` as ``<sha256>`` (any common extension); ``--download``
fetches missing ones first and keeps a file only if its sha256 matches.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from verl_perception.frame import to_input
from verl_perception.preprocess import runner
from verl_perception.preprocess.images import decode_check, sha256_file, sha256_hex
from verl_perception.preprocess.prompts import counting_prompt
from verl_perception.preprocess.rows import DEFAULT_FAMILY, Skip, frame_for, make_row, round_coords
from verl_perception.tasks import COUNTING

DATA_SOURCE = "pixmo_count"
SPLITS = ("train", "val", "test")
IMAGE_EXTS = ("", ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
CONVENTIONS = ("pixels", "percent")


@dataclass(frozen=True)
class Context:
    image_dir: str
    split: str
    min_pixels: int
    max_pixels: int
    points_convention: str = "pixels"
    verify_sha256: bool = True
    model_family: str = DEFAULT_FAMILY  # the frame.FAMILIES entry the rows are written for


def read_records(path: str | os.PathLike):
    """Yield the raw records of a PixMo-Count parquet or JSONL file, streamed, with their position."""
    path = str(path)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        n = 0
        with runner.reading(path, "PixMo-Count parquet file"):
            batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
        for batch in batches:
            for rec in batch.to_pylist():
                yield n, rec
                n += 1
    else:
        with runner.reading(path, "PixMo-Count JSONL file"):
            f = open(path, encoding="utf-8")  # noqa: SIM115  (closed by the with below)
        with f:
            n = 0
            for line in f:
                if line.strip():
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as e:
                        rec = {"__error__": f"line {n + 1}: {e}"}
                    yield n, rec
                    n += 1


def count_records(path: str | os.PathLike) -> int:
    path = str(path)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        with runner.reading(path, "PixMo-Count parquet file"):
            return pq.ParquetFile(path).metadata.num_rows
    with runner.reading(path, "PixMo-Count JSONL file"), open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def points_array(points) -> np.ndarray:
    """``(N, 2)`` float array from ``[{"x", "y"}, ...]`` or ``{"x": [...], "y": [...]}`` (None -> ``(0, 2)``)."""
    if points is None:
        return np.zeros((0, 2))
    if isinstance(points, dict):
        xs, ys = points.get("x") or [], points.get("y") or []
        if len(xs) != len(ys):
            raise ValueError(f"points have {len(xs)} x and {len(ys)} y values")
        return np.asarray([xs, ys], dtype=np.float64).T.reshape(-1, 2)
    return np.asarray([[p["x"], p["y"]] for p in points], dtype=np.float64).reshape(-1, 2)


def image_path(image_dir: str | os.PathLike, sha256: str) -> Path | None:
    for ext in IMAGE_EXTS:
        p = Path(image_dir) / f"{sha256}{ext}"
        if p.is_file():
            return p
    return None


def iter_records(path: str | os.PathLike):
    for n, rec in read_records(path):
        yield {"key": rec.get("image_sha256") or rec.get("image_url") or f"record {n}", "position": n, "raw": rec}


def build(ctx: Context, record: dict):
    """One raw record -> (row, dropped points by reason); :class:`Skip` for unusable records."""
    rec, n = record["raw"], record["position"]
    if "__error__" in rec:
        raise Skip("bad_json", rec["__error__"])
    sha, label, count = rec.get("image_sha256"), rec.get("label"), rec.get("count")
    if not sha or not isinstance(label, str) or not label.strip() or count is None:
        raise Skip("missing_fields", f"record {n} lacks image_sha256/label/count")
    try:
        pts = points_array(rec.get("points"))
    except (KeyError, TypeError, ValueError) as e:
        raise Skip("bad_points", f"record {n}: {e}") from None
    count = int(count)
    if len(pts) and len(pts) != count:
        raise Skip("count_mismatch", f"record {n}: count {count} but {len(pts)} points")
    if not len(pts) and count > 0 and ctx.split == "train":
        raise Skip("missing_points", f"record {n}: count {count} without points")

    path = image_path(ctx.image_dir, sha)
    if path is None:
        raise Skip("missing_image", f"{sha} not in {ctx.image_dir}")
    data = path.read_bytes()
    if ctx.verify_sha256 and sha256_hex(data) != sha.lower():
        raise Skip("sha256_mismatch", f"{path}")
    img = decode_check(data, str(path))
    orig = img.size
    inp = frame_for(orig, ctx.min_pixels, ctx.max_pixels, ctx.model_family)

    if ctx.points_convention == "percent":
        pts = pts * np.array([orig[1] / 100.0, orig[0] / 100.0])
    finite = np.isfinite(pts).all(axis=1)
    inside = finite & (pts[:, 0] >= 0) & (pts[:, 0] <= orig[1]) & (pts[:, 1] >= 0) & (pts[:, 1] <= orig[0])
    dropped = Counter({"point_not_finite": int((~finite).sum()), "point_outside_image": int((finite & ~inside).sum())})
    dropped = +dropped
    if dropped:
        # A counting target with a missing object would teach a wrong count: skip, don't drop.
        raise Skip(next(iter(dropped)), f"record {n}: {dict(dropped)} of {len(pts)} points")
    gt = {"points": round_coords(to_input(pts, orig, inp)), "count": count}
    row = make_row(
        data_source=DATA_SOURCE,
        task=COUNTING,
        instruction=counting_prompt(label),
        image_bytes=img.data,
        orig_size=orig,
        input_size=inp,
        ground_truth=gt,
        split=ctx.split,
        image_id=n,
        file_name=path.name,
        min_pixels=ctx.min_pixels,
        max_pixels=ctx.max_pixels,
        model_family=ctx.model_family,
        extra={"label": " ".join(label.split()), "count": count, "image_url": rec.get("image_url"),
               "image_sha256": sha},
    )
    return row, {}


def _ext_from_url(url: str) -> str:
    suffix = Path(urllib.request.urlparse(url).path).suffix.lower()
    return suffix if suffix in IMAGE_EXTS else ""


def download_one(url: str, sha256: str, image_dir: str | os.PathLike, timeout: float = 30.0) -> str:
    """Fetch ``url`` into ``image_dir/<sha256><ext>`` unless a verified copy exists.

    Returns ``"exists"``, ``"downloaded"``, ``"sha256_mismatch"`` or ``"download_failed"``. The
    file appears only after its hash is checked (temporary file + rename).
    """
    existing = image_path(image_dir, sha256)
    if existing is not None and sha256_file(existing) == sha256.lower():
        return "exists"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = resp.read()
    except Exception:  # noqa: BLE001  (any network/URL failure is one outcome: counted, not fatal)
        return "download_failed"
    if sha256_hex(data) != sha256.lower():
        return "sha256_mismatch"
    Path(image_dir).mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=image_dir, prefix=".dl.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, Path(image_dir) / f"{sha256}{_ext_from_url(url)}")
    return "downloaded"


def download(path: str | os.PathLike, image_dir: str | os.PathLike, threads: int = 8, progress: bool = True) -> Counter:
    """Download every distinct image of a PixMo-Count file; returns outcome counts."""
    from tqdm import tqdm

    seen: dict[str, str] = {}
    for _, rec in read_records(path):
        sha, url = rec.get("image_sha256"), rec.get("image_url")
        if sha and url and sha not in seen:
            seen[sha] = url
    out: Counter = Counter()
    with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:
        futures = ex.map(lambda kv: download_one(kv[1], kv[0], image_dir), seen.items())
        for status in tqdm(futures, total=len(seen), desc="download", disable=not progress):
            out[status] += 1
    return out


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
    points_convention: str = "pixels",
    verify_sha256: bool = True,
    limit: int | None = None,
    row_group_rows: int = runner.ROW_GROUP_ROWS,
    progress: bool = True,
    allow_empty: bool = False,
) -> runner.Summary:
    """Convert one PixMo-Count split file; returns the run's summary."""
    if points_convention not in CONVENTIONS:
        raise ValueError(f"points_convention must be one of {CONVENTIONS}")
    ctx = Context(str(image_dir), split, min_pixels, max_pixels, points_convention, verify_sha256, model_family)
    total = count_records(ann_file)
    return runner.run(
        runner.limited(iter_records(ann_file), limit),
        partial(build, ctx),
        Path(output_dir) / f"{split}.parquet",
        total=total if limit is None else min(total, limit),
        workers=workers,
        strict=strict,
        desc=f"pixmo_count {split}",
        row_group_rows=row_group_rows,
        progress=progress,
        allow_empty=allow_empty,
        source=ann_file,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pixmo_count.py",
        description="PixMo-Count (allenai/pixmo-count parquet or JSONL) + images -> verl parquet for counting.",
    )
    p.add_argument("--ann-file", required=True, help="the split's parquet (data/<split>-*.parquet) or a JSONL")
    p.add_argument("--image-dir", required=True, help="images named <image_sha256>[.ext]")
    runner.add_common_args(p, SPLITS)
    p.add_argument("--points-convention", choices=CONVENTIONS, default="pixels",
                   help="coordinates of 'points' in the raw file (dataset card: pixels)")
    p.add_argument("--no-verify-sha256", dest="verify_sha256", action="store_false",
                   help="do not check image files against image_sha256")
    p.add_argument("--download", action="store_true",
                   help="first fetch missing images from image_url into --image-dir (sha256-checked)")
    p.add_argument("--download-threads", type=int, default=8)
    return p


def main(argv: list[str] | None = None) -> runner.Summary:
    import sys

    p = parser()
    args = p.parse_args(argv)
    runner.check_common_args(p, args)
    with runner.cli_errors():
        if args.download:
            outcome = download(args.ann_file, args.image_dir, args.download_threads, progress=not args.quiet)
            print(f"download: {dict(outcome)}", file=sys.stderr)
        summary = convert(
            args.ann_file, args.image_dir, args.output_dir, args.split,
            min_pixels=args.min_pixels, max_pixels=args.max_pixels, model_family=args.model_family,
            workers=args.workers, strict=args.strict,
            points_convention=args.points_convention, verify_sha256=args.verify_sha256, limit=args.limit,
            row_group_rows=args.row_group_size, progress=not args.quiet,
            allow_empty=args.allow_empty,
        )
    return runner.finish(summary)


if __name__ == "__main__":
    main()
