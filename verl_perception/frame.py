"""The coordinate frame: every resize factor, pixel bound and coordinate convention lives here.

A Qwen-VL model does not see the original image: qwen-vl-utils ``smart_resize`` rescales it so that
both sides are multiples of the family's *factor* (ViT patch x the 2x2 merge) and the pixel count
lies in [min_pixels, max_pixels]. That resized image is the *input frame*. Ground truth is stored in
absolute pixels of the input frame (``extra_info["input_size"] = [h, w]``) for every family, and
predictions are mapped back to the original frame (``extra_info["orig_size"]``) only for benchmark
evaluation.

Families differ in how the model *writes* coordinates (:class:`FrameSpec`, one per family):

* ``qwen2_5_vl``: absolute pixels of the input frame, factor 28 (patch 14 x merge 2);
* ``qwen3_vl``: relative to the image on a 0..1000 scale (``x * 1000 / w``), factor 32 (patch 16 x
  merge 2); Qwen2-VL (``qwen2_vl``) used the same 0..1000 convention with factor 28.

The family of a row is ``extra_info["model_family"]`` (rows without it are Qwen2.5-VL rows, the
original contract). Rewards and evaluation read an answer through :func:`answer_to_input`, so the
same physical box scores the same in either convention; nothing outside this module branches on
the family.

Sizes are always ``(height, width)``; boxes are ``(N, 4)`` ``[x1, y1, x2, y2]``; points are
``(N, 2)`` ``[x, y]``. Supporting another model family is one new :class:`FrameSpec` in
:data:`FAMILIES`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# Every Qwen-VL merges 2x2 patches into one image token.
MERGE_SIZE = 2
# qwen-vl-utils ``fetch_image`` re-runs smart_resize on a pinned ``resized_height``/``resized_width``
# with its own default bounds (4..16384 merged patches). A pin outside them would be resized again,
# so preprocessing refuses pixel bounds that cannot be pinned.
FETCH_MIN_TOKENS = 4
FETCH_MAX_TOKENS = 16384
# The recipes' image-token budget: at most 1280 image tokens, which a 2048-token prompt holds with
# the 80-class detection instruction, whatever the family.
MAX_IMAGE_TOKENS = 1280
COORD_CONVENTIONS = ("absolute", "relative1000")
RELATIVE_SCALE = 1000.0


@dataclass(frozen=True)
class FrameSpec:
    """How a model family resizes images and writes coordinates.

    name: the family's name (``extra_info["model_family"]``, ``--model-family``).
    factor: both input sides are multiples of it (patch x merge: 28 for Qwen2/2.5-VL, 32 for Qwen3-VL).
    coords: ``"absolute"`` (pixels of the input frame, Qwen2.5-VL) or ``"relative1000"``
        (0..1000 of the image's width and height, Qwen2-VL and Qwen3-VL).
    min_pixels / max_pixels: the recipes' default pixel bounds of the input frame.
    processor_min_pixels / processor_max_pixels: the bounds in the released checkpoints'
        ``preprocessor_config.json`` (what the processor does when nobody passes bounds).
    model_types: Hugging Face ``config.model_type`` values of the family.
    """

    name: str
    factor: int
    coords: str
    min_pixels: int
    max_pixels: int
    processor_min_pixels: int
    processor_max_pixels: int
    model_types: tuple[str, ...] = ()

    def __post_init__(self):
        if self.coords not in COORD_CONVENTIONS:
            raise ValueError(f"unknown coordinate convention {self.coords!r}; one of {COORD_CONVENTIONS}")

    @property
    def patch_size(self) -> int:
        """The ViT patch side (qwen-vl-utils' ``image_patch_size``, the processor's ``patch_size``)."""
        return self.factor // MERGE_SIZE

    def input_size(
        self, height: int, width: int, min_pixels: int | None = None, max_pixels: int | None = None
    ) -> tuple[int, int]:
        """``(h, w)`` of the image the model sees for an original ``(height, width)`` image.

        ``min_pixels``/``max_pixels`` default to the family's recipe bounds.
        """
        from qwen_vl_utils import smart_resize  # imports torchvision; keep it off the reward path

        min_pixels = self.min_pixels if min_pixels is None else min_pixels
        max_pixels = self.max_pixels if max_pixels is None else max_pixels
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got height={height}, width={width}")
        h, w = smart_resize(int(height), int(width), factor=self.factor, min_pixels=min_pixels, max_pixels=max_pixels)
        if h <= 0 or w <= 0:
            # smart_resize floors the short side to 0 for very elongated images under a small
            # max_pixels; such an image has no input frame (and would crash the resize later).
            raise ValueError(
                f"image of height={height}, width={width} has no input frame under max_pixels={max_pixels}: "
                f"its short side rounds to 0 (aspect ratio too extreme for this pixel budget)"
            )
        return int(h), int(w)

    def answer_scale(self, input_size_hw) -> tuple[float, float] | None:
        """``(sx, sy)`` that map the model's answer coordinates to input-frame pixels, or None when
        the answer already is in input-frame pixels."""
        if self.coords == "absolute":
            return None
        h, w = float(input_size_hw[0]), float(input_size_hw[1])
        if not (h > 0 and w > 0):
            raise ValueError(f"input size must be positive, got {input_size_hw}")
        return w / RELATIVE_SCALE, h / RELATIVE_SCALE

    def answer_to_input(self, xy: np.ndarray, input_size_hw) -> np.ndarray:
        """Coordinates written by the model (``(..., 2k)`` x,y pairs) -> input-frame pixels."""
        xy = np.asarray(xy, dtype=np.float64)
        if self.coords == "absolute":
            return xy
        return rescale(xy, (RELATIVE_SCALE, RELATIVE_SCALE), input_size_hw)

    def input_to_answer(self, xy: np.ndarray, input_size_hw) -> np.ndarray:
        """Input-frame pixels (``(..., 2k)``) -> coordinates as the model writes them (the inverse)."""
        xy = np.asarray(xy, dtype=np.float64)
        if self.coords == "absolute":
            return xy
        return rescale(xy, input_size_hw, (RELATIVE_SCALE, RELATIVE_SCALE))


QWEN2_5_VL = FrameSpec(
    "qwen2_5_vl", factor=28, coords="absolute",
    min_pixels=FETCH_MIN_TOKENS * 28 * 28, max_pixels=MAX_IMAGE_TOKENS * 28 * 28,
    # Qwen2.5-VL-*-Instruct preprocessor_config.json: min_pixels 3136, max_pixels 12845056
    processor_min_pixels=3136, processor_max_pixels=12845056,
    model_types=("qwen2_5_vl",),
)  # fmt: skip
QWEN3_VL = FrameSpec(
    "qwen3_vl", factor=32, coords="relative1000",
    # The checkpoints' own lower bound (64 merged patches): a smaller image is upscaled by the
    # processor anyway, so the recipes keep it rather than fight it.
    min_pixels=64 * 32 * 32, max_pixels=MAX_IMAGE_TOKENS * 32 * 32,
    # Qwen3-VL-*-Instruct preprocessor_config.json: size {shortest_edge: 65536, longest_edge: 16777216}
    processor_min_pixels=65536, processor_max_pixels=16777216,
    model_types=("qwen3_vl", "qwen3_vl_moe"),
)  # fmt: skip
QWEN2_VL = FrameSpec(
    "qwen2_vl", factor=28, coords="relative1000",
    min_pixels=FETCH_MIN_TOKENS * 28 * 28, max_pixels=MAX_IMAGE_TOKENS * 28 * 28,
    processor_min_pixels=3136, processor_max_pixels=12845056,
    model_types=("qwen2_vl",),
)  # fmt: skip
FAMILIES: dict[str, FrameSpec] = {spec.name: spec for spec in (QWEN2_5_VL, QWEN3_VL, QWEN2_VL)}
DEFAULT_FRAME = QWEN2_5_VL
# Rows written before model families existed are Qwen2.5-VL rows.
LEGACY_FAMILY = QWEN2_5_VL

# Recipe defaults of the default family (configuration in one place): 4..1280 merged 28x28
# patches per image.
DEFAULT_MIN_PIXELS = DEFAULT_FRAME.min_pixels
DEFAULT_MAX_PIXELS = DEFAULT_FRAME.max_pixels


class UnknownFamilyError(ValueError):
    """A model family name (or a model) that no :class:`FrameSpec` describes."""


def get_family(family: str | FrameSpec | None = None) -> FrameSpec:
    """The :class:`FrameSpec` of ``family``: a spec, a name (``qwen3_vl``, ``Qwen3-VL``,
    ``qwen2.5-vl``... case, dots and dashes do not matter) or None (the default family)."""
    if family is None:
        return DEFAULT_FRAME
    if isinstance(family, FrameSpec):
        return family
    spec = FAMILIES.get(family) if isinstance(family, str) else None
    if spec is not None:  # the usual spelling: no normalisation on the reward path
        return spec
    key = re.sub(r"[-.\s]+", "_", str(family).strip().lower())
    for spec in FAMILIES.values():
        if key == spec.name or key in spec.model_types:
            return spec
    raise UnknownFamilyError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")


def family_of(extra_info: Mapping[str, Any] | None) -> FrameSpec:
    """The family a row was written for: ``extra_info["model_family"]``, else Qwen2.5-VL."""
    name = extra_info.get("model_family") if isinstance(extra_info, Mapping) else None
    return LEGACY_FAMILY if name is None else get_family(name)


def answer_to_input(xy: np.ndarray, extra_info: Mapping[str, Any] | None, input_size_hw=None) -> np.ndarray:
    """A row's answer coordinates (``(..., 2k)``, as the model wrote them) in input-frame pixels.

    ``input_size_hw`` defaults to ``extra_info["input_size"]``; a relative convention without it
    raises ``ValueError`` (the row does not say which image the 0..1000 refer to).
    """
    spec = family_of(extra_info)
    if spec.coords == "absolute":
        return np.asarray(xy, dtype=np.float64)
    size = input_size_hw if input_size_hw is not None else (extra_info or {}).get("input_size")
    if size is None:
        raise ValueError(f"a {spec.name} answer is relative to the image: extra_info['input_size'] is needed")
    return spec.answer_to_input(xy, size)


def input_to_answer(xy: np.ndarray, extra_info: Mapping[str, Any] | None, input_size_hw=None) -> np.ndarray:
    """Input-frame pixels -> the row's answer convention (the inverse of :func:`answer_to_input`)."""
    spec = family_of(extra_info)
    if spec.coords == "absolute":
        return np.asarray(xy, dtype=np.float64)
    size = input_size_hw if input_size_hw is not None else (extra_info or {}).get("input_size")
    if size is None:
        raise ValueError(f"a {spec.name} answer is relative to the image: extra_info['input_size'] is needed")
    return spec.input_to_answer(xy, size)


def family_of_config(config: Mapping[str, Any] | Any) -> FrameSpec | None:
    """The family of a Hugging Face model config (a ``PretrainedConfig`` or the ``config.json``
    dict), from its ``model_type``; None when no family has that model type."""
    model_type = config.get("model_type") if isinstance(config, Mapping) else getattr(config, "model_type", None)
    for spec in FAMILIES.values():
        if model_type in spec.model_types:
            return spec
    return None


_PROCESSOR_CLASSES = {"Qwen3VLProcessor": "qwen3_vl", "Qwen2_5_VLProcessor": "qwen2_5_vl", "Qwen2VLProcessor": "qwen2_vl"}


def family_of_processor(processor: Any) -> FrameSpec | None:
    """The family of a loaded processor (or image processor): its class (``Qwen3VLProcessor``...),
    else its image processor's ``patch_size`` when only one family has it; None when it cannot tell."""
    name = _PROCESSOR_CLASSES.get(type(processor).__name__)
    if name is not None:
        return FAMILIES[name]
    patch = getattr(getattr(processor, "image_processor", processor), "patch_size", None)
    matches = [spec for spec in FAMILIES.values() if spec.patch_size == patch]
    # patch 14 is both Qwen2-VL and Qwen2.5-VL, which write coordinates differently: no guess
    return matches[0] if len(matches) == 1 else None


# Hub names without a local config.json (e.g. "Qwen/Qwen3-VL-4B-Instruct" before a download).
_NAME_PATTERNS = ((re.compile(r"qwen3[-_.]?vl", re.I), QWEN3_VL), (re.compile(r"qwen2\.?5[-_.]?vl", re.I), QWEN2_5_VL),
                  (re.compile(r"qwen2[-_.]?vl", re.I), QWEN2_VL))


def family_of_model(model_path: str | os.PathLike) -> FrameSpec:
    """The family of a model directory (its ``config.json``'s ``model_type``) or, for a hub name
    not on disk, of its name (``Qwen/Qwen3-VL-4B-Instruct``). Raises :class:`UnknownFamilyError`."""
    path = os.fspath(model_path)
    config = os.path.join(path, "config.json")
    if os.path.isfile(config):
        with open(config, encoding="utf-8") as f:
            cfg = json.load(f)
        spec = family_of_config(cfg)
        if spec is None:
            raise UnknownFamilyError(
                f"{config}: model_type {cfg.get('model_type')!r} is not a known family "
                f"({', '.join(FAMILIES)}); pass the family explicitly"
            )
        return spec
    for pattern, spec in _NAME_PATTERNS:
        if pattern.search(os.path.basename(path.rstrip("/")) or path):
            return spec
    raise UnknownFamilyError(f"cannot tell the model family of {path!r}; pass it explicitly ({', '.join(FAMILIES)})")


def input_size(
    height: int,
    width: int,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    family: str | FrameSpec | None = None,
) -> tuple[int, int]:
    """Input frame ``(h, w)`` for ``family`` (default Qwen2.5-VL; bounds default to the family's)."""
    return get_family(family).input_size(height, width, min_pixels, max_pixels)


def rescale(xy: np.ndarray, src_size, dst_size) -> np.ndarray:
    """Map x,y coordinates from one frame to another.

    Args:
        xy: ``(..., 2k)`` array of interleaved x, y (boxes ``(N, 4)`` or points ``(N, 2)``).
        src_size, dst_size: ``(h, w)`` of the frames.

    Pixel coordinates are continuous (a box edge at x means the left border of column x), so
    the map is a pure scale ``x * dst_w / src_w``: round trips are exact up to float error.
    """
    xy = np.asarray(xy, dtype=np.float64)
    sh, sw = float(src_size[0]), float(src_size[1])
    dh, dw = float(dst_size[0]), float(dst_size[1])
    if min(sh, sw, dh, dw) <= 0:
        raise ValueError(f"frame sizes must be positive, got {src_size} -> {dst_size}")
    if xy.size == 0:
        return xy.copy()
    if xy.shape[-1] % 2:
        raise ValueError(f"last dimension must hold x,y pairs, got shape {xy.shape}")
    scale = np.tile([dw / sw, dh / sh], xy.shape[-1] // 2)
    return xy * scale


def to_input(xy: np.ndarray, orig_size, input_size_hw) -> np.ndarray:
    """Original-image pixels -> input-frame pixels (ground truth at preprocessing time)."""
    return rescale(xy, orig_size, input_size_hw)


def to_original(xy: np.ndarray, input_size_hw, orig_size) -> np.ndarray:
    """Input-frame pixels -> original-image pixels (predictions at evaluation time)."""
    return rescale(xy, input_size_hw, orig_size)


def check_pixel_bounds(min_pixels: int, max_pixels: int, spec: str | FrameSpec | None = None) -> None:
    """Raise ``ValueError`` unless ``min_pixels..max_pixels`` is a bound whose frames can be pinned.

    The bounds must satisfy ``min <= max`` and lie within qwen-vl-utils' own image range
    ``[4, 16384] * factor**2``, because verl's loader re-resizes pinned sizes with that range.
    """
    spec = get_family(spec)
    lo, hi = FETCH_MIN_TOKENS * spec.factor**2, FETCH_MAX_TOKENS * spec.factor**2
    if not (isinstance(min_pixels, int) and isinstance(max_pixels, int)):
        raise TypeError(f"pixel bounds must be integers, got min_pixels={min_pixels!r}, max_pixels={max_pixels!r}")
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels={min_pixels} is larger than max_pixels={max_pixels}")
    if min_pixels < lo or max_pixels > hi:
        raise ValueError(
            f"pixel bounds [{min_pixels}, {max_pixels}] must lie within [{lo}, {hi}] "
            f"({FETCH_MIN_TOKENS}..{FETCH_MAX_TOKENS} x {spec.factor}^2): qwen-vl-utils would resize a "
            "frame pinned outside that range again, and the stored ground truth would be off"
        )


def pin(input_size_hw, spec: str | FrameSpec | None = None) -> dict[str, int]:
    """Keys to put in a verl image dict so qwen-vl-utils produces exactly this input frame.

    ``fetch_image`` honours ``resized_height``/``resized_width`` (rounded to ``factor``, which an
    input size already is), whatever ``min_pixels``/``max_pixels`` are configured elsewhere.
    """
    spec = get_family(spec)
    h, w = int(input_size_hw[0]), int(input_size_hw[1])
    if h % spec.factor or w % spec.factor or h <= 0 or w <= 0:
        raise ValueError(f"input size {(h, w)} is not a positive multiple of {spec.factor}")
    return {"resized_height": h, "resized_width": w}


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` ``[x, y, w, h]`` (COCO) -> ``(N, 4)`` ``[x1, y1, x2, y2]``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def clip_boxes(boxes: np.ndarray, size_hw) -> np.ndarray:
    """Clip ``(N, 4)`` ``[x1, y1, x2, y2]`` boxes to ``[0, w] x [0, h]``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    h, w = float(size_hw[0]), float(size_hw[1])
    return np.clip(boxes, 0.0, np.array([w, h, w, h]))


def box_problems(boxes: np.ndarray, size_hw) -> np.ndarray:
    """Per-box reason a ``(N, 4)`` xyxy box is unusable in an image of ``(h, w)``, or ``""``.

    Reasons: ``"box_not_finite"``, ``"box_reversed"`` (x2 < x1 or y2 < y1), ``"box_outside_image"``
    (no overlap with the image), ``"box_zero_area"`` (zero width or height after clipping).
    Returns an ``(N,)`` array of str.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.full(len(boxes), "", dtype=object)
    if not len(boxes):
        return out
    h, w = float(size_hw[0]), float(size_hw[1])
    finite = np.isfinite(boxes).all(axis=1)
    safe = np.where(finite[:, None], boxes, 0.0)
    reversed_ = (safe[:, 2] < safe[:, 0]) | (safe[:, 3] < safe[:, 1])
    outside = (safe[:, 0] >= w) | (safe[:, 1] >= h) | (safe[:, 2] <= 0) | (safe[:, 3] <= 0)
    clipped = clip_boxes(safe, size_hw)
    empty = (clipped[:, 2] - clipped[:, 0] <= 0) | (clipped[:, 3] - clipped[:, 1] <= 0)
    out[empty] = "box_zero_area"
    out[outside] = "box_outside_image"
    out[reversed_] = "box_reversed"
    out[~finite] = "box_not_finite"
    return out


# Ground-truth keys of the rewards contract that hold input-frame coordinates.
GT_COORD_KEYS = ("bbox", "boxes", "points")


def rescale_ground_truth(gt: dict, src_size, dst_size) -> dict:
    """A copy of a contract ground truth with its coordinates moved from frame ``src_size`` to ``dst_size``.

    ``bbox`` ``[x1, y1, x2, y2]``, ``boxes`` ``(N, 4)`` and ``points`` ``(N, 2)`` are rescaled; other
    keys (``labels``, ``text``, ``count``) are kept as they are.
    """
    out = dict(gt)
    for key in GT_COORD_KEYS:
        if key in out and out[key] is not None:
            arr = np.asarray(out[key], dtype=np.float64)
            out[key] = np.round(rescale(arr, src_size, dst_size), 2).tolist() if arr.size else out[key]
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m verl_perception.frame family MODEL`` prints the model's family;
    ``python -m verl_perception.frame bounds FAMILY`` prints ``min_pixels max_pixels factor`` (the
    recipes read both, so the numbers live here only)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m verl_perception.frame", description=main.__doc__.split(";")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("family", help="the family of a model directory or hub name").add_argument("model")
    sub.add_parser("bounds", help="recipe pixel bounds and resize factor of a family").add_argument("family")
    args = p.parse_args(argv)
    try:
        if args.command == "family":
            print(family_of_model(args.model).name)
        else:
            spec = get_family(args.family)
            print(spec.min_pixels, spec.max_pixels, spec.factor)
    except (UnknownFamilyError, OSError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
