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
