"""Object detection (COCO val2017): AP, AP50, AP75, APs, APm, APl through pycocotools.

Protocol: every answer item with a valid ``bbox_2d`` and a label is one detection (items are
read by the shared parser's :func:`~verl_perception.parsing.item_box` /
:func:`~verl_perception.parsing.item_label`, corners ordered). Boxes are read in the row's
answer convention and mapped back to the original image exactly (``EvalRow.answer_to_original``:
the model family's convention -> input frame -> original, :mod:`verl_perception.frame`), clipped
to the image, converted to COCO ``[x, y, w, h]`` and given the category id whose name equals the
label. **Confidence:** a generative model gives no scores, so each box gets score 1.0 (the
authors' choice) unless the item carries a finite numeric ``"score"``; with equal scores COCOeval
keeps the answer's own order (stable sort) and its first 100 boxes per image. Labels that name
no category are dropped and counted (``unknown_label``).

Ground truth: ``--ann-file`` (the official ``instances_val2017.json``: crowd regions and mask
areas as the benchmark defines them) restricted to the evaluated images, else a COCO object
built from the parquet rows (boxes mapped back to the original frame, area = box area,
``iscrowd`` 0), whose AP can differ slightly from the
official one.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from verl_perception.metrics.rows import EvalInputError, EvalRow
from verl_perception.parsing import item_box, item_label, normalize_label, order_corners, parse_answer

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
DEFAULT_SCORE = 1.0


def load_coco(ann: str | os.PathLike | Mapping):
    """A ``pycocotools.coco.COCO`` from an annotation file path or an in-memory dataset dict."""
    from pycocotools.coco import COCO

    coco = COCO()
    if isinstance(ann, Mapping):
        coco.dataset = dict(ann)
    else:
        if not os.path.exists(ann):
            raise EvalInputError(f"annotation file {os.fspath(ann)!r} does not exist")
        with open(ann, encoding="utf-8") as f:
            coco.dataset = json.load(f)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _image_id(row: EvalRow) -> int:
    iid = row.extra_info.get("image_id")
    try:
        return int(iid)
    except (TypeError, ValueError) as e:
        raise EvalInputError(
            f"row {row.position}: COCO evaluation needs an integer extra_info['image_id'], got {iid!r}"
        ) from e


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` ``[x1, y1, x2, y2]`` -> ``(N, 4)`` COCO ``[x, y, w, h]``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def clip_to_image(boxes: np.ndarray, size_hw) -> np.ndarray:
    """``(N, 4)`` xyxy boxes clipped to ``[0, w] x [0, h]``."""
    h, w = float(size_hw[0]), float(size_hw[1])
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, 0::2] = np.clip(b[:, 0::2], 0.0, w)
    b[:, 1::2] = np.clip(b[:, 1::2], 0.0, h)
    return b


def _norm(name) -> str:
    # The parser's rule, so that a predicted label and a category name compare equal exactly
    # when the reward would count them equal ("traffic_light" is "traffic light").
    return normalize_label(name) or ""


def _row_category_ids(row: EvalRow, name_to_id: Mapping[str, int]) -> list[int]:
    """COCO category id of each ground-truth label: ``extra_info["gt_category_ids"]``, else by name."""
    labels = row.gt.get("labels") or []
    ids = row.extra_info.get("gt_category_ids")
    if ids is not None:
        if len(ids) != len(labels):
            raise EvalInputError(f"row {row.position}: {len(ids)} gt_category_ids for {len(labels)} labels")
        return [int(i) for i in ids]
    out = []
    for lab in labels:
        if _norm(lab) not in name_to_id:
            raise EvalInputError(f"row {row.position}: ground-truth label {lab!r} has no category id")
        out.append(name_to_id[_norm(lab)])
    return out


def category_table(rows: Sequence[EvalRow]) -> dict[str, int]:
    """name -> category id: the rows' ``category_names``/``category_ids`` table, else COCO's 80.

    Labels of rows that carry neither ids nor a table entry get ids from 1000 on, so a custom
    detection dataset still evaluates.
    """
    from verl_perception.coco import COCO_NAME_TO_ID

    table: dict[str, int] = {}
    for row in rows:
        names, ids = row.extra_info.get("category_names"), row.extra_info.get("category_ids")
        if names is not None and ids is not None:
            if len(names) != len(ids):
                raise EvalInputError(f"row {row.position}: {len(names)} category_names for {len(ids)} category_ids")
            for n, i in zip(names, ids):
                if table.setdefault(_norm(n), int(i)) != int(i):
                    raise EvalInputError(f"row {row.position}: category {n!r} has two ids ({table[_norm(n)]}, {i})")
    if not table:
        table = dict(COCO_NAME_TO_ID)
    for row in rows:
        if row.extra_info.get("gt_category_ids") is None:
            for lab in row.gt.get("labels") or []:
                if _norm(lab) not in table:
                    table[_norm(lab)] = 1000 + len(table)
    return table


def gt_from_rows(rows: Sequence[EvalRow]) -> dict:
    """A COCO ground-truth dataset dict built from the parquet rows (original frame).

    Categories: :func:`category_table`; images: one per row (``extra_info.image_id``,
    ``orig_size``); annotations: the ground-truth boxes mapped back to the original frame,
    ``area`` = box area, ``iscrowd`` = 0.
    """
    names = category_table(rows)
    images, anns, seen = [], [], set()
    for row in rows:
        iid = _image_id(row)
        if iid in seen:
            raise EvalInputError(f"row {row.position}: image_id {iid} appears twice; one row per image is expected")
        seen.add(iid)
        images.append({"id": iid, "height": row.orig_size[0], "width": row.orig_size[1]})
        boxes = np.asarray(row.gt.get("boxes") or [], dtype=np.float64).reshape(-1, 4)
        cats = _row_category_ids(row, names)
        if len(cats) != len(boxes):
            raise EvalInputError(f"row {row.position}: {len(boxes)} ground-truth boxes for {len(cats)} labels")
        xywh = xyxy_to_xywh(order_corners(row.to_original(boxes)))
        for b, c in zip(xywh, cats):
            anns.append(
                {"id": len(anns) + 1, "image_id": iid, "category_id": int(c), "bbox": [float(v) for v in b],
                 "area": float(b[2] * b[3]), "iscrowd": 0}
            )  # fmt: skip
    id_to_name = {i: n for n, i in names.items()}
    cat_ids = sorted(set(id_to_name) | {a["category_id"] for a in anns})
    return {
        "images": images,
        "annotations": anns,
        "categories": [{"id": i, "name": id_to_name.get(i, str(i))} for i in cat_ids],
    }


def detections_for_row(row: EvalRow, name_to_id: Mapping[str, int]) -> tuple[list[dict], dict]:
    """COCO result dicts of one row's answer, and counts ``{"boxes", "unknown_label", "bad_item"}``."""
    parsed = parse_answer(row.response or "")
    iid = _image_id(row)
    stats = {"boxes": 0, "unknown_label": 0, "bad_item": parsed.n_malformed}
    boxes, cats, scores = [], [], []
    for item in parsed.items:
        box = item_box(item)
        if box is None:
            stats["bad_item"] += 1
            continue
        label = item_label(item)
        if label is None or label not in name_to_id:
            stats["unknown_label"] += 1
            continue
        score = item.get("score", DEFAULT_SCORE)
        try:
            score = float(score)
        except (TypeError, ValueError):
            score = DEFAULT_SCORE
        boxes.append(box)
        cats.append(name_to_id[label])
        scores.append(score if math.isfinite(score) else DEFAULT_SCORE)
    if not boxes:
        return [], stats
    xyxy = clip_to_image(order_corners(row.answer_to_original(np.asarray(boxes))), row.orig_size)
    xywh = xyxy_to_xywh(xyxy)
    dets = [
        {"image_id": iid, "category_id": int(c), "bbox": [float(v) for v in b], "score": float(s)}
        for b, c, s in zip(xywh, cats, scores)
    ]
    stats["boxes"] = len(dets)
    return dets, stats


def load_results(gt, dets: list[dict]):
    """``gt.loadRes(dets)``, also for an empty detection list (which loadRes cannot take)."""
    from pycocotools.coco import COCO

    if dets:
        with contextlib.redirect_stdout(io.StringIO()):
            return gt.loadRes(dets)
    res = COCO()
    res.dataset = {"images": list(gt.dataset["images"]), "categories": list(gt.dataset["categories"]),
                   "annotations": []}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def coco_eval(gt, dets: list[dict], img_ids: Sequence[int] | None = None) -> dict:
    """Run COCOeval (bbox) on ``dets`` against ``gt`` restricted to ``img_ids``.

    Returns ``{"AP": .., "AP50": .., ..., "per_class": {name: AP or None}, "summary": text}``;
    a stat pycocotools leaves undefined (-1: no ground truth in that area range) is ``None``.
    """
    from pycocotools.cocoeval import COCOeval

    dt = load_results(gt, dets)
    ev = COCOeval(gt, dt, "bbox")
    if img_ids is not None:
        ev.params.imgIds = sorted(int(i) for i in img_ids)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out: dict = {name: (None if v < 0 else float(v)) for name, v in zip(STAT_NAMES, ev.stats)}
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, cid in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        name = gt.cats[cid].get("name", str(cid))
        if p.size:
            per_class[name] = float(p.mean())
    out["per_class"] = per_class
    out["summary"] = buf.getvalue()
    return out


def evaluate(rows: Sequence[EvalRow], ann_file: str | os.PathLike | None = None) -> dict:
    """Score detection rows: ``{"metrics": {...}, "per_row": [...], "notes": [...], "warnings": [...]}``.

    ``warnings`` name what makes the numbers differ from the official COCO evaluation.
    """
    notes, warnings = [], []
    if ann_file:
        gt = load_coco(ann_file)
        notes.append(f"ground truth: {os.fspath(ann_file)} (restricted to the {len(rows)} evaluated images)")
        if len({_image_id(r) for r in rows}) < len(gt.imgs):
            warnings.append(
                f"{len({_image_id(r) for r in rows})} of the {len(gt.imgs)} images of {os.path.basename(ann_file)} "
                "were evaluated: AP on a subset is not the paper's COCO val2017 AP"
            )
        for row in rows:
            iid = _image_id(row)
            if iid not in gt.imgs:
                raise EvalInputError(f"row {row.position}: image_id {iid} is not in {os.fspath(ann_file)}")
            img = gt.imgs[iid]
            if (img.get("height"), img.get("width")) != tuple(row.orig_size):
                raise EvalInputError(
                    f"row {row.position}: orig_size {list(row.orig_size)} differs from the annotation file's "
                    f"{[img.get('height'), img.get('width')]} for image {iid}"
                )
    else:
        gt = load_coco(gt_from_rows(rows))
        warnings.append(
            "ground truth built from the parquet rows (box areas, no crowd regions), not COCO's annotation "
            "file: pass --ann-file instances_val2017.json for numbers comparable to the paper"
        )
    name_to_id = {_norm(c["name"]): int(c["id"]) for c in gt.dataset["categories"]}
    dets, per_row = [], []
    totals = {"boxes": 0, "unknown_label": 0, "bad_item": 0}
    for row in rows:
        d, stats = detections_for_row(row, name_to_id)
        dets.extend(d)
        for k in totals:
            totals[k] += stats[k]
        gt_anns = gt.loadAnns(gt.getAnnIds(imgIds=[_image_id(row)]))
        per_row.append(
            {"position": row.position, "index": row.index, "image_id": _image_id(row), **stats,
             "pred": [{"bbox_xywh": x["bbox"], "label": gt.cats[x["category_id"]]["name"]} for x in d],
             "gt": [{"bbox_xywh": a["bbox"], "label": gt.cats[a["category_id"]]["name"]} for a in gt_anns]}
        )  # fmt: skip
    result = coco_eval(gt, dets, [_image_id(r) for r in rows])
    summary = result.pop("summary")
    metrics = {**result, "n": len(rows), **{f"num_{k}": v for k, v in totals.items()}}
    notes.append(f"score {DEFAULT_SCORE} per box unless the answer item carries a numeric 'score'")
    # the model's own misses (scored as such, as COCO's evaluation does), not a protocol difference
    if totals["unknown_label"]:
        notes.append(f"{totals['unknown_label']} predicted boxes had a label outside the categories and were dropped")
    return {"metrics": metrics, "per_row": per_row, "notes": notes, "warnings": warnings, "summary": summary}
