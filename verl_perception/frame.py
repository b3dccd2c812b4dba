"""The coordinate frame: every resize factor, pixel bound and coordinate convention lives here.

Qwen2.5-VL does not see the original image: qwen-vl-utils ``smart_resize`` rescales it so that
both sides are multiples of 28 (the ViT patch 14 x the 2x2 merge) and the pixel count lies in
[min_pixels, max_pixels]. The model answers in absolute pixels of that *input frame*. Ground
truth is therefore stored in the input frame (``extra_info["input_size"] = [h, w]``) and
predictions are mapped back to the original frame (``extra_info["orig_size"]``) only for
benchmark evaluation.

Sizes are always ``(height, width)``; boxes are ``(N, 4)`` ``[x1, y1, x2, y2]``; points are
``(N, 2)`` ``[x, y]``. Supporting another model family is one new :class:`FrameSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Recipe defaults (configuration in one place): 4..1280 merged 28x28 patches per image, i.e. at
# most 1280 image tokens, which a 2048-token prompt holds with the 80-class detection instruction.
DEFAULT_MIN_PIXELS = 4 * 28 * 28
DEFAULT_MAX_PIXELS = 1280 * 28 * 28


@dataclass(frozen=True)
class FrameSpec:
    """How a model family resizes images and writes coordinates.

    factor: both input sides are multiples of it (28 for Qwen2/2.5-VL, 32 for Qwen3-VL).
    coords: ``"absolute"`` (pixels of the input frame, Qwen2.5-VL) or ``"relative1000"``
        (0..1000 of the input frame, Qwen2-VL and Qwen3-VL).
    """

    name: str
    factor: int
    coords: str = "absolute"

    def input_size(
        self, height: int, width: int, min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> tuple[int, int]:
        """``(h, w)`` of the image the model sees for an original ``(height, width)`` image."""
        from qwen_vl_utils import smart_resize  # imports torchvision; keep it off the reward path

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

    def model_to_input(self, xy: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
        """Map coordinates written by the model (``(..., 2k)`` x,y pairs) to input-frame pixels."""
        xy = np.asarray(xy, dtype=np.float64)
        if self.coords == "absolute":
            return xy
        if self.coords == "relative1000":
            return rescale(xy, (1000.0, 1000.0), input_size)
        raise ValueError(f"unknown coordinate convention {self.coords!r}")


QWEN2_5_VL = FrameSpec("qwen2.5-vl", factor=28, coords="absolute")
QWEN2_VL = FrameSpec("qwen2-vl", factor=28, coords="relative1000")
QWEN3_VL = FrameSpec("qwen3-vl", factor=32, coords="relative1000")
DEFAULT_FRAME = QWEN2_5_VL


def input_size(
    height: int, width: int, min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[int, int]:
    """Input frame ``(h, w)`` of the default model family (Qwen2.5-VL)."""
    return DEFAULT_FRAME.input_size(height, width, min_pixels, max_pixels)


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


# qwen-vl-utils ``fetch_image`` re-runs smart_resize on a pinned ``resized_height``/``resized_width``
# with its own default bounds (4..16384 merged patches). A pin outside them would be resized again,
# so preprocessing refuses pixel bounds that cannot be pinned.
FETCH_MIN_TOKENS = 4
FETCH_MAX_TOKENS = 16384


def check_pixel_bounds(min_pixels: int, max_pixels: int, spec: FrameSpec = DEFAULT_FRAME) -> None:
    """Raise ``ValueError`` unless ``min_pixels..max_pixels`` is a bound whose frames can be pinned.

    The bounds must satisfy ``min <= max`` and lie within qwen-vl-utils' own image range
    ``[4, 16384] * factor**2``, because verl's loader re-resizes pinned sizes with that range.
    """
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


def pin(input_size_hw, spec: FrameSpec = DEFAULT_FRAME) -> dict[str, int]:
    """Keys to put in a verl image dict so qwen-vl-utils produces exactly this input frame.

    ``fetch_image`` honours ``resized_height``/``resized_width`` (rounded to ``factor``, which an
    input size already is), whatever ``min_pixels``/``max_pixels`` are configured elsewhere.
    """
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
