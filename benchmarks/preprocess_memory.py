"""Peak memory and throughput of COCO preprocessing at COCO-train2017 scale (a benchmark, not a test).

Builds a synthetic ``instances_train2017``-sized annotation file (118,287 images, 860,001 boxes,
each with a 24-vertex polygon so the file is about as large as the real 448 MB one), pointing at a
few distinct small placeholder images, then runs ``data_preprocess/coco_detection.py`` on it in a
child process and prints rows/s and peak RSS (target: < 2 GiB).

    python benchmarks/preprocess_memory.py [--scale 0.1] [--workers 2] [--dir /tmp/bench]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from PIL import Image

COCO_TRAIN_IMAGES = 118_287
COCO_TRAIN_BOXES = 860_001
POLYGON_VERTICES = 24
DISTINCT_IMAGES = 16
ROOT = Path(__file__).resolve().parents[1]


def make_images(img_dir: Path, rng: random.Random) -> list[tuple[str, int, int]]:
    """A few small JPEGs of different sizes; every annotation image entry points at one of them."""
    img_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(DISTINCT_IMAGES):
        w, h = rng.randint(48, 128), rng.randint(48, 128)
        buf = io.BytesIO()
        Image.new("RGB", (w, h), tuple(rng.randint(0, 255) for _ in range(3))).save(buf, format="JPEG", quality=70)
        name = f"placeholder_{i:02d}.jpg"
        (img_dir / name).write_bytes(buf.getvalue())
        out.append((name, h, w))
    return out


def write_annotations(path: Path, n_images: int, n_boxes: int, images: list[tuple[str, int, int]],
                      rng: random.Random) -> None:
    """Stream a COCO instances JSON of the given size to ``path`` (never held in memory)."""
    per_image = [n_boxes // n_images] * n_images
    for i in rng.sample(range(n_images), n_boxes - sum(per_image)):
        per_image[i] += 1
    sizes = {}
    with open(path, "w") as f:
        f.write('{"info": {"description": "synthetic COCO-train-sized benchmark"}, "licenses": [], "images": [')
        for image_id in range(1, n_images + 1):
            name, h, w = images[image_id % len(images)]
            sizes[image_id] = (h, w)
            f.write(("," if image_id > 1 else "") + json.dumps(
                {"license": 1, "file_name": name, "coco_url": "", "height": h, "width": w,
                 "date_captured": "2013-11-14 11:18:45", "flickr_url": "", "id": image_id}))
        f.write('], "annotations": [')
        ann_id, first = 1, True
        for image_id in range(1, n_images + 1):
            h, w = sizes[image_id]
            for _ in range(per_image[image_id - 1]):
                bw, bh = rng.uniform(2, w / 2), rng.uniform(2, h / 2)
                x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                poly = [round(v, 2) for _ in range(POLYGON_VERTICES) for v in (x + rng.random() * bw, y + rng.random() * bh)]
                f.write(("" if first else ",") + json.dumps(
                    {"segmentation": [poly], "area": round(bw * bh, 2), "iscrowd": 0, "image_id": image_id,
                     "bbox": [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)],
                     "category_id": rng.choice([1, 2, 3, 18, 44, 62, 90]), "id": ann_id}))
                first = False
                ann_id += 1
        cats = [{"supercategory": "x", "id": cid, "name": f"class{cid}"} for cid in range(1, 91)]
        f.write('], "categories": ' + json.dumps(cats) + "}")


CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from verl_perception.preprocess.coco_detection import main
    t = time.perf_counter()
    s = main(sys.argv[1:])
    print(json.dumps({"rows": s.rows_written, "seconds": time.perf_counter() - t, "loop_seconds": s.seconds,
                      "peak_main_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "peak_worker_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
""")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="fraction of COCO train2017's size (default 1.0)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one, removed)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    tmp = None if args.dir else tempfile.TemporaryDirectory(prefix="preprocess_bench_")
    work = args.dir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    n_images = max(1, round(COCO_TRAIN_IMAGES * args.scale))
    n_boxes = max(n_images, round(COCO_TRAIN_BOXES * args.scale))
    t = time.perf_counter()
    images = make_images(work / "images", rng)
    ann = work / "instances_train_synthetic.json"
    write_annotations(ann, n_images, n_boxes, images, rng)
    print(f"synthetic annotations: {n_images} images, {n_boxes} boxes, {ann.stat().st_size / 2**20:.0f} MiB "
          f"(built in {time.perf_counter() - t:.0f}s)")

    cmd = [sys.executable, "-c", CHILD, "--ann-file", str(ann), "--image-dir", str(work / "images"),
           "--output-dir", str(work / "out"), "--split", "train", "--workers", str(args.workers), "--quiet"]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if res.returncode != 0:
        sys.exit(f"preprocessing failed:\n{res.stderr[-4000:]}")
    stats = json.loads(res.stdout.strip().splitlines()[-1])
    out = work / "out" / "train.parquet"
    print(res.stderr.strip().splitlines()[0])
    print(f"rows/s: {stats['rows'] / stats['seconds']:.0f} end to end ({stats['rows']} rows in {stats['seconds']:.0f}s "
          f"with {args.workers} workers, reading the annotation file included); "
          f"{stats['rows'] / stats['loop_seconds']:.0f} in the image/row loop alone")
    print(f"peak RSS: main process {stats['peak_main_kib'] / 2**20:.2f} GiB, largest worker "
          f"{stats['peak_worker_kib'] / 2**20:.2f} GiB (target: < 2 GiB); output {out.stat().st_size / 2**20:.0f} MiB")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
