"""Reading COCO-style ``instances_*.json`` files with bounded memory.

The real ``instances_train2017.json`` is 448 MB, mostly segmentation polygons; ``json.load`` of it
needs several GiB. With ``ijson`` installed the file is streamed and only what detection and
grounding need is kept (boxes as flat arrays, ~40 bytes per box); without it, ``json.load`` is used.
"""

from __future__ import annotations

import json
import os
from array import array
from dataclasses import dataclass

import numpy as np

try:  # optional: streaming parser (pip install ijson)
    import ijson
except ImportError:  # pragma: no cover - exercised only where ijson is absent
    ijson = None


@dataclass
class CocoIndex:
    """The parts of a COCO instances file needed here.

    images: ``{image_id: (file_name, height, width)}``
    categories: ``[(id, name), ...]`` sorted by id
    ann_ids, ann_image_ids, ann_category_ids: ``(M,)`` int64; ann_boxes: ``(M, 4)`` float64 ``[x, y, w, h]``;
    ann_crowd: ``(M,)`` bool. Annotations are sorted by image id (stable, file order within an image).
    """

    images: dict[int, tuple[str, int, int]]
    categories: list[tuple[int, str]]
    ann_ids: np.ndarray
    ann_image_ids: np.ndarray
    ann_category_ids: np.ndarray
    ann_boxes: np.ndarray
    ann_crowd: np.ndarray

    def annotations_by_image(self) -> dict[int, slice]:
        """``{image_id: slice into the ann_* arrays}``."""
        ids = self.ann_image_ids
        if not len(ids):
            return {}
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        ends = np.r_[starts[1:], len(ids)]
        return {int(ids[s]): slice(int(s), int(e)) for s, e in zip(starts, ends)}

    def annotation_rows(self) -> dict[int, int]:
        """``{annotation id: position in the ann_* arrays}``."""
        return {int(a): i for i, a in enumerate(self.ann_ids)}


class _Acc:
    def __init__(self):
        self.ids, self.img, self.cat = array("q"), array("q"), array("q")
        self.box, self.crowd = array("d"), array("b")

    def add(self, ann: dict) -> None:
        bbox = ann.get("bbox")
        if bbox is None or len(bbox) != 4:
            bbox = [float("nan")] * 4  # reported as a bad box when the image is built
        self.ids.append(int(ann.get("id", -1)))
        self.img.append(int(ann["image_id"]))
        self.cat.append(int(ann.get("category_id", -1)))
        self.box.extend(float(v) for v in bbox)
        self.crowd.append(1 if ann.get("iscrowd", 0) else 0)


def load_coco(path: str | os.PathLike) -> CocoIndex:
    """Read ``path`` (a COCO instances JSON) into a :class:`CocoIndex`.

    A missing, truncated or malformed file raises
    :class:`~verl_perception.preprocess.runner.InputError` naming it.
    """
    from verl_perception.preprocess.runner import reading

    with reading(path, "COCO annotation file"):
        return _load_coco(path)


def _load_coco(path: str | os.PathLike) -> CocoIndex:
    images: dict[int, tuple[str, int, int]] = {}
    cats: list[tuple[int, str]] = []
    acc = _Acc()

    def add_image(im: dict) -> None:
        images[int(im["id"])] = (str(im["file_name"]), int(im.get("height") or 0), int(im.get("width") or 0))

    if ijson is not None:
        with open(path, "rb") as f:
            for c in ijson.items(f, "categories.item", use_float=True):
                cats.append((int(c["id"]), str(c["name"])))
        with open(path, "rb") as f:
            for im in ijson.items(f, "images.item", use_float=True):
                add_image(im)
        with open(path, "rb") as f:
            for ann in ijson.items(f, "annotations.item", use_float=True):
                acc.add(ann)
    else:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object with images/annotations/categories, got {type(data).__name__}")
        cats = [(int(c["id"]), str(c["name"])) for c in data.get("categories", [])]
        for im in data.get("images", []):
            add_image(im)
        for ann in data.get("annotations", []):
            acc.add(ann)
        del data
    img = np.frombuffer(acc.img, dtype=np.int64)
    order = np.argsort(img, kind="stable")
    return CocoIndex(
        images=images,
        categories=sorted(cats),
        ann_ids=np.frombuffer(acc.ids, dtype=np.int64)[order],
        ann_image_ids=img[order],
        ann_category_ids=np.frombuffer(acc.cat, dtype=np.int64)[order],
        ann_boxes=np.frombuffer(acc.box, dtype=np.float64).reshape(-1, 4)[order],
        ann_crowd=np.frombuffer(acc.crowd, dtype=np.int8)[order].astype(bool),
    )
