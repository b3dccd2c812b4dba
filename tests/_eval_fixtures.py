"""Synthetic perception parquet files for the evaluation tests (built with the real row builder)."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from verl_perception.coco import COCO_CATEGORIES
from verl_perception.frame import input_size, to_input
from verl_perception.preprocess.prompts import counting_prompt, detection_prompt, grounding_prompt, ocr_prompt
from verl_perception.preprocess.rows import SCHEMA, make_row

SIZES = [(480, 640), (375, 500), (427, 640), (640, 480), (333, 500), (500, 375)]


def image_bytes(h: int, w: int, boxes=(), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 255, 3)))
    d = ImageDraw.Draw(img)
    for b in boxes:
        d.rectangle([float(v) for v in b], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def random_boxes(rng, h, w, n):
    x1 = rng.uniform(0, w * 0.6, n)
    y1 = rng.uniform(0, h * 0.6, n)
    bw = rng.uniform(w * 0.05, w * 0.4, n)
    bh = rng.uniform(h * 0.05, h * 0.4, n)
    return np.stack([x1, y1, np.minimum(x1 + bw, w), np.minimum(y1 + bh, h)], axis=1)


def _row(i, data_source, task, instruction, orig, gt, orig_boxes=(), extra=None, split="val", image_id=None):
    inp = input_size(*orig)
    row = make_row(
        data_source=data_source,
        task=task,
        instruction=instruction,
        image_bytes=image_bytes(*orig, orig_boxes, i),
        orig_size=orig,
        input_size=inp,
        ground_truth=gt,
        split=split,
        image_id=image_id,
        file_name=None,
        min_pixels=4 * 28 * 28,
        max_pixels=1280 * 28 * 28,
        extra=extra,
    )
    row["extra_info"]["index"] = i
    return row


def grounding_rows(n=6, seed=0):
    """Rows plus the original-frame ground-truth boxes ``(n, 4)``."""
    rng = np.random.default_rng(seed)
    rows, gts = [], []
    for i in range(n):
        orig = SIZES[i % len(SIZES)]
        box = random_boxes(rng, *orig, 1)
        inp = input_size(*orig)
        gt = {"bbox": np.round(to_input(box, orig, inp), 2)[0].tolist()}
        ds = ["refcoco", "refcoco+", "refcocog"][i % 3]
        rows.append(
            _row(
                i,
                ds,
                "grounding",
                grounding_prompt("the red box"),
                orig,
                gt,
                box,
                extra={"expression": "the red box"},
                split=["val", "testA"][i % 2],
            )
        )
        gts.append(box[0])
    return rows, np.array(gts)


def counting_rows(n=6, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        orig = SIZES[i % len(SIZES)]
        k = int(rng.integers(0, 7))
        pts = np.stack([rng.uniform(0, orig[1], k), rng.uniform(0, orig[0], k)], axis=1).reshape(-1, 2)
        inp = input_size(*orig)
        gt = {"points": np.round(to_input(pts, orig, inp), 2).tolist()}
        rows.append(
            _row(i, "pixmo_count", "counting", counting_prompt("dot"), orig, gt, extra={"label": "dot", "count": k})
        )
    return rows


OCR_TEXTS = [
    "The quick brown fox jumps over the lazy dog",
    "Perception R1 applies rule based reinforcement learning to visual perception",
    "我们提出了一种基于规则的强化学习方法",
    "Invoice number 1234 total due 56.78 EUR",
]


def ocr_rows(n=4):
    return [
        _row(i, "pageocr", "ocr", ocr_prompt(), SIZES[i % len(SIZES)], {"text": OCR_TEXTS[i % len(OCR_TEXTS)]})
        for i in range(n)
    ]


def detection_rows(n=6, seed=0):
    """Rows plus, per row, ``(orig_boxes (k, 4), names)``."""
    rng = np.random.default_rng(seed)
    names = [nm for _, nm in COCO_CATEGORIES]
    rows, truth = [], []
    for i in range(n):
        orig = SIZES[i % len(SIZES)]
        k = int(rng.integers(1, 5))
        boxes = random_boxes(rng, *orig, k)
        cat = [COCO_CATEGORIES[int(j)] for j in rng.integers(0, 6, k)]
        inp = input_size(*orig)
        gt = {"boxes": np.round(to_input(boxes, orig, inp), 2).tolist(), "labels": [c[1] for c in cat]}
        extra = {
            "gt_category_ids": [c[0] for c in cat],
            "category_names": names,
            "category_ids": [c for c, _ in COCO_CATEGORIES],
        }
        rows.append(
            _row(i, "coco", "detection", detection_prompt(names), orig, gt, boxes, extra=extra, image_id=1000 + i)
        )
        truth.append((boxes, [c[1] for c in cat]))
    return rows, truth


def write_parquet(rows, path) -> str:
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    return str(path)


def write_responses(texts, path, rows=None) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            rec = {"row": i, "response": t}
            if rows is not None:
                rec["index"] = rows[i]["extra_info"]["index"]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return str(path)
