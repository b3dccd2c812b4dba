"""Generate the bundled raw samples (``verl_perception/samples/``): made by this project, no third-party data.

Each task gets a few dozen records in its dataset's *raw* format, so the real preprocessing code
runs on them unchanged:

* ``coco/``: ``annotations/instances_{train,val}.json`` (COCO format, the 80 COCO categories) and
  ``{train,val}/*.jpg``; includes a crowd annotation and an image without annotations (val).
* ``refcoco/``: the ``refer`` layout, ``refcoco/refs(unc).p`` + ``refcoco/instances.json`` over
  ``train2014/COCO_train2014_*.jpg``; splits train, val, testA, testB.
* ``pixmo_count/``: ``data/{train,validation}-00000-of-00001.parquet`` with the Hugging Face
  ``allenai/pixmo-count`` columns (image_url, image_sha256, count, points in pixels, label) and
  ``images/<sha256>.png``.
* ``pageocr/``: ``{train,val}.jsonl`` of ``{"image", "text"}`` and ``images/*.png``.

Images are drawn shapes on plain or gradient backgrounds; the annotations describe what is drawn
(box = the shape's extent, point = its centre, text = the rendered lines). Sizes cover the frame's
edge cases: tiny images that min_pixels upscales, large ones that max_pixels downscales and
extreme aspect ratios. Deterministic: a fixed seed per file.

    python -m verl_perception.preprocess.make_samples [--out verl_perception/samples]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import pickle
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

from verl_perception.coco import COCO_CATEGORIES

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "samples"

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 50, 170),
    "orange": (245, 130, 20),
    "black": (20, 20, 20),
    "white": (250, 250, 250),
}
SHAPES = ("square", "circle", "triangle")

# (width, height): ordinary photos plus the frame's edge cases.
COCO_SIZES = {
    "train": [(640, 480), (480, 640), (500, 375), (800, 600), (1600, 1200), (60, 45), (1400, 140), (300, 900),
              (640, 427), (427, 640), (1024, 768), (333, 500)],
    "val": [(640, 480), (500, 333), (1920, 1080), (48, 64), (1200, 100), (640, 640), (375, 500), (720, 540)],
}


def _background(rng: random.Random, w: int, h: int) -> Image.Image:
    top = tuple(rng.randint(150, 235) for _ in range(3))
    bottom = tuple(rng.randint(100, 200) for _ in range(3))
    col = Image.linear_gradient("L").resize((1, 256))
    bg = Image.composite(Image.new("RGB", (1, 256), bottom), Image.new("RGB", (1, 256), top), col)
    return bg.resize((w, h))


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box, color) -> None:
    x1, y1, x2, y2 = box
    if shape == "square":
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=color)
    elif shape == "circle":
        draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=color)
    else:
        draw.polygon([((x1 + x2) / 2, y1), (x2 - 1, y2 - 1), (x1, y2 - 1)], fill=color)


def _place(rng: random.Random, w: int, h: int, taken: list, min_frac=0.12, max_frac=0.35, tries=200):
    """A box [x1, y1, x2, y2] (ints, exclusive end) that does not overlap the boxes in ``taken``."""
    for _ in range(tries):
        bw = max(4, int(w * rng.uniform(min_frac, max_frac)))
        bh = max(4, int(h * rng.uniform(min_frac, max_frac)))
        x1, y1 = rng.randint(0, w - bw), rng.randint(0, h - bh)
        box = (x1, y1, x1 + bw, y1 + bh)
        if all(box[2] <= t[0] or t[2] <= box[0] or box[3] <= t[1] or t[3] <= box[1] for t in taken):
            taken.append(box)
            return box
    return None


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80, optimize=True)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def make_coco(out: Path) -> None:
    """COCO-format detection sample; labels are COCO category names drawn as labelled shapes."""
    categories = [{"id": cid, "name": name, "supercategory": "synthetic"} for cid, name in COCO_CATEGORIES]
    font = ImageFont.load_default(size=12)
    image_id, ann_id = 1, 1
    for split, sizes in COCO_SIZES.items():
        rng = random.Random(f"coco-{split}")
        (out / "coco" / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i, (w, h) in enumerate(sizes):
            img = _background(rng, w, h)
            draw = ImageDraw.Draw(img)
            empty = split == "val" and i == len(sizes) - 1  # an image without annotations (kept for val)
            n = 0 if empty else rng.randint(1, 5)
            if split == "train" and i == 0:
                n = 3  # holds the crowd region, plus ordinary objects
            taken: list = []
            for k in range(n):
                box = _place(rng, w, h, taken)
                if box is None:
                    break
                cid, name = rng.choice(COCO_CATEGORIES[:20])
                color = rng.choice(list(COLORS.values())[:6])
                _draw_shape(draw, rng.choice(SHAPES), box, color)
                if box[2] - box[0] > 40 and box[3] - box[1] > 16:
                    draw.text((box[0] + 2, box[1] + 2), name, fill=(255, 255, 255), font=font)
                x1, y1, x2, y2 = box
                crowd = split == "train" and i == 0 and k == 0  # one crowd region, left out of the ground truth
                annotations.append({
                    "id": ann_id, "image_id": image_id, "category_id": cid,
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "area": float((x2 - x1) * (y2 - y1)), "iscrowd": 1 if crowd else 0,
                    "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
                })
                ann_id += 1
            file_name = f"{image_id:012d}.jpg"
            (out / "coco" / split / file_name).write_bytes(_jpeg(img))
            images.append({"id": image_id, "file_name": file_name, "height": h, "width": w, "license": 0})
            image_id += 1
        (out / "coco" / "annotations").mkdir(parents=True, exist_ok=True)
        doc = {
            "info": {"description": "verl-perception synthetic COCO-format sample", "version": "1"},
            "licenses": [{"id": 0, "name": "Apache-2.0 (generated by verl-perception)"}],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        (out / "coco" / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc, indent=1))


REFCOCO_SPLITS = ["train"] * 7 + ["val"] * 3 + ["testA", "testB"]
REFCOCO_SIZES = [(640, 480), (480, 640), (640, 427), (500, 375), (1280, 720), (50, 70), (1000, 150),
                 (640, 480), (427, 640), (800, 800), (640, 480), (640, 512)]


def make_refcoco(out: Path) -> None:
    """RefCOCO sample in the ``refer`` layout: refs(unc).p + instances.json + train2014 images."""
    rng = random.Random("refcoco")
    img_dir = out / "refcoco" / "train2014"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, annotations, refs = [], [], []
    ann_id, ref_id, sent_id = 1000, 0, 0
    cat_of = {"square": (62, "chair"), "circle": (37, "sports ball"), "triangle": (38, "kite")}
    for i, ((w, h), split) in enumerate(zip(REFCOCO_SIZES, REFCOCO_SPLITS)):
        image_id = 500000 + i
        img = _background(rng, w, h)
        draw = ImageDraw.Draw(img)
        taken: list = []
        colors = rng.sample(list(COLORS)[:6], 3)
        objs = []
        for color in colors:
            box = _place(rng, w, h, taken, 0.15, 0.3)
            if box is None:
                break
            shape = rng.choice(SHAPES)
            _draw_shape(draw, shape, box, COLORS[color])
            objs.append((color, shape, box))
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        (img_dir / file_name).write_bytes(_jpeg(img))
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
        xs = sorted(o[2][0] for o in objs)
        for color, shape, (x1, y1, x2, y2) in objs:
            cid, _ = cat_of[shape]
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": cid,
                                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                                "area": float((x2 - x1) * (y2 - y1)), "iscrowd": 0,
                                "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]]})
            where = "left" if x1 == xs[0] else ("right" if x1 == xs[-1] else "middle")
            texts = [f"{color} {shape}", f"the {shape} on the {where}"]
            if rng.random() < 0.5:
                texts.append(f"{where} {color} one")
            sentences = []
            for t in texts:
                sentences.append({"sent_id": sent_id, "sent": t, "raw": t.capitalize(), "tokens": t.split()})
                sent_id += 1
            refs.append({"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split,
                         "category_id": cid, "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
                         "sent_ids": [s["sent_id"] for s in sentences], "sentences": sentences})
            ref_id += 1
            ann_id += 1
    (out / "refcoco" / "refcoco").mkdir(parents=True, exist_ok=True)
    categories = [{"id": cid, "name": name, "supercategory": "synthetic"} for cid, name in COCO_CATEGORIES]
    doc = {"info": {"description": "verl-perception synthetic refer-layout sample"}, "images": images,
           "annotations": annotations, "categories": categories}
    (out / "refcoco" / "refcoco" / "instances.json").write_text(json.dumps(doc, indent=1))
    with open(out / "refcoco" / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)  # the official files are Python 2 pickles


PIXMO_LABELS = [("apples", "red", "circle"), ("tiles", "blue", "square"), ("sails", "orange", "triangle"),
                ("coins", "yellow", "circle"), ("stamps", "green", "square"), ("buttons", "purple", "circle")]
PIXMO_SIZES = {"train": [(640, 480), (500, 500), (800, 450), (60, 40), (1500, 1100), (1100, 120), (480, 640),
                         (640, 360), (300, 300), (700, 525), (512, 384), (450, 800)],
               "validation": [(640, 480), (480, 480), (960, 540), (600, 400), (350, 700), (800, 600)]}


def make_pixmo(out: Path) -> None:
    """PixMo-Count sample: HF columns, points in pixels of the original image (the card's convention)."""
    img_dir = out / "pixmo_count" / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    (out / "pixmo_count" / "data").mkdir(parents=True, exist_ok=True)
    point_type = pa.struct([pa.field("x", pa.list_(pa.float32())), pa.field("y", pa.list_(pa.float32()))])
    schema = pa.schema([("image_url", pa.string()), ("image_sha256", pa.string()), ("count", pa.int32()),
                        ("points", point_type), ("label", pa.string())])
    for split, sizes in PIXMO_SIZES.items():
        rng = random.Random(f"pixmo-{split}")
        rows = []
        for w, h in sizes:
            label, color, shape = rng.choice(PIXMO_LABELS)
            img = _background(rng, w, h)
            draw = ImageDraw.Draw(img)
            n = rng.randint(2, 10)
            taken: list = []
            xs, ys = [], []
            for _ in range(n):
                box = _place(rng, w, h, taken, 0.06, 0.14)
                if box is None:
                    break
                _draw_shape(draw, shape, box, COLORS[color])
                xs.append((box[0] + box[2]) / 2)
                ys.append((box[1] + box[3]) / 2)
            data = _png(img)
            sha = hashlib.sha256(data).hexdigest()
            (img_dir / f"{sha}.png").write_bytes(data)
            rows.append({"image_url": f"https://example.invalid/verl-perception/pixmo/{sha}.png",
                         "image_sha256": sha, "count": len(xs), "points": {"x": xs, "y": ys}, "label": label})
        pq.write_table(pa.Table.from_pylist(rows, schema=schema),
                       out / "pixmo_count" / "data" / f"{split}-00000-of-00001.parquet")


WORDS = ["the", "model", "reads", "every", "line", "of", "this", "page", "and", "returns", "the", "text", "in", "order", "perception", "reward", "policy", "gradient", "group", "relative", "advantage", "image", "token", "frame", "pixel", "box", "point", "count", "detect", "ground", "answer", "format", "score", "sample", "batch", "rollout", "verl", "parquet", "train", "value"]
PAGE_SIZES = {"train": [(600, 800), (800, 600), (500, 700), (1240, 1754), (400, 120), (700, 900), (640, 480),
                        (900, 1200)],
              "val": [(600, 800), (1000, 700), (350, 500), (720, 960)]}


def make_pageocr(out: Path) -> None:
    """Page-OCR sample: rendered text lines on white pages; the text is exactly what is drawn."""
    img_dir = out / "pageocr" / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for split, sizes in PAGE_SIZES.items():
        rng = random.Random(f"pageocr-{split}")
        lines_out = []
        for i, (w, h) in enumerate(sizes):
            size = max(10, min(28, w // 30))
            font = ImageFont.load_default(size=size)
            img = Image.new("RGB", (w, h), (255, 255, 255))
            draw = ImageDraw.Draw(img)
            margin, y, lines = size, size, []
            while y + 2 * size < h and len(lines) < 20:
                words = []
                while True:
                    cand = " ".join(words + [rng.choice(WORDS)])
                    if draw.textlength(cand, font=font) > w - 2 * margin:
                        break
                    words = cand.split()
                    if len(words) >= 12:
                        break
                if not words:
                    break
                text = " ".join(words)
                if not lines:
                    text = text.capitalize()
                draw.text((margin, y), text, fill=(0, 0, 0), font=font)
                lines.append(text)
                y += int(size * 1.6)
            name = f"{split}_{i:03d}.png"
            (img_dir / name).write_bytes(_png(img.convert("L")))
            lines_out.append(json.dumps({"image": f"images/{name}", "text": "\n".join(lines)}))
        (out / "pageocr" / f"{split}.jsonl").write_text("\n".join(lines_out) + "\n")


README = """# Bundled raw samples

Generated by `python -m verl_perception.preprocess.make_samples` (deterministic); drawn shapes and
rendered text made by this project, no third-party data; same license as the package.
Each directory is in its dataset's raw format; `python -m verl_perception.preprocess.samples
--output-dir DIR` turns them into verl parquet with the real preprocessing code.
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    for sub in ("coco", "refcoco", "pixmo_count", "pageocr"):
        shutil.rmtree(args.out / sub, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    make_coco(args.out)
    make_refcoco(args.out)
    make_pixmo(args.out)
    make_pageocr(args.out)
    (args.out / "README.md").write_text(README)
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote samples to {args.out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
