"""The coordinate frame: original -> input -> original round trips, pinning, box checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from qwen_vl_utils import fetch_image, smart_resize

from verl_perception import frame
from verl_perception.frame import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

# (h, w): ordinary, extreme aspect ratios, tiny (upscaled by min_pixels), huge (downscaled).
SIZES = [(480, 640), (427, 640), (100, 19000), (19000, 100), (10, 1900), (7, 9), (1, 1), (30, 40),
         (4000, 6000), (20000, 15000), (1080, 1920), (28, 28)]
BOUNDS = [(DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS), (256 * 28 * 28, 512 * 28 * 28), (4 * 28 * 28, 64 * 28 * 28)]


def _random_boxes(rng, h, w, n=50):
    x = np.sort(rng.uniform(0, w, size=(n, 2)), axis=1)
    y = np.sort(rng.uniform(0, h, size=(n, 2)), axis=1)
    boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    boxes[0] = [0, 0, w, h]  # the whole image maps to the whole input frame
    return boxes


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("bounds", BOUNDS)
def test_round_trip_within_one_input_pixel(size, bounds):
    h, w = size
    if max(h, w) / min(h, w) * 28 * 28 > bounds[1]:
        # a 28-pixel short side would exceed max_pixels: smart_resize floors it to 0; refused
        with pytest.raises(ValueError, match="no input frame"):
            frame.input_size(h, w, *bounds)
        return
    inp = frame.input_size(h, w, *bounds)
    assert inp[0] % 28 == 0 and inp[1] % 28 == 0
    assert bounds[0] <= inp[0] * inp[1] <= bounds[1]
    rng = np.random.default_rng(h * 7 + w)
    boxes = _random_boxes(rng, h, w)
    points = boxes[:, :2]
    # Ground truth is stored rounded to 0.01 input pixel; the trip back must land within one
    # input pixel (measured in input pixels: scale the error by input/original).
    stored_b = np.round(frame.to_input(boxes, (h, w), inp), 2)
    stored_p = np.round(frame.to_input(points, (h, w), inp), 2)
    back_b = frame.to_original(stored_b, inp, (h, w))
    back_p = frame.to_original(stored_p, inp, (h, w))
    sx, sy = inp[1] / w, inp[0] / h
    err_b = np.abs(back_b - boxes) * np.array([sx, sy, sx, sy])
    err_p = np.abs(back_p - points) * np.array([sx, sy])
    assert err_b.max() <= 0.0051 and err_p.max() <= 0.0051
    np.testing.assert_allclose(stored_b[0], [0, 0, inp[1], inp[0]])
    assert (stored_b[:, [0, 2]] <= inp[1] + 1e-9).all() and (stored_b[:, [1, 3]] <= inp[0] + 1e-9).all()


def test_tiny_images_are_upscaled_and_huge_downscaled():
    assert frame.input_size(7, 9) == smart_resize(7, 9, 28, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
    h, w = frame.input_size(7, 9)
    assert h * w >= DEFAULT_MIN_PIXELS and h > 7 and w > 9
    h, w = frame.input_size(20000, 15000)
    assert h * w <= DEFAULT_MAX_PIXELS and h < 20000


def test_aspect_ratio_above_200_is_refused():
    with pytest.raises(ValueError, match="aspect ratio"):
        frame.input_size(10, 2100)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 12000), w=st.integers(1, 12000), x=st.floats(0, 1), y=st.floats(0, 1))
def test_round_trip_property(h, w, x, y):
    if max(h, w) / min(h, w) > 200:
        return
    inp = frame.input_size(h, w)
    pt = np.array([[x * w, y * h]])
    stored = np.round(frame.to_input(pt, (h, w), inp), 2)
    back = frame.to_original(stored, inp, (h, w))
    assert np.all(np.abs(back - pt) * np.array([inp[1] / w, inp[0] / h]) <= 0.0051)


@pytest.mark.parametrize("size", [(480, 640), (45, 60), (1200, 1600), (100, 1400), (1754, 1240)])
@pytest.mark.parametrize("bounds", BOUNDS)
def test_pin_makes_qwen_vl_utils_produce_the_input_frame(size, bounds):
    """verl loads images with qwen-vl-utils fetch_image: the pinned dict gives exactly input_size,
    even when the image dict also carries other pixel bounds."""
    h, w = size
    inp = frame.input_size(h, w, *bounds)
    img = Image.new("RGB", (w, h))
    for extra in ({}, {"min_pixels": 100 * 28 * 28, "max_pixels": 120 * 28 * 28}):
        out = fetch_image({"image": img, **frame.pin(inp), **extra}, image_patch_size=14)
        assert (out.height, out.width) == inp


def test_pin_refuses_sizes_off_the_grid():
    with pytest.raises(ValueError):
        frame.pin((100, 280))


def test_check_pixel_bounds():
    frame.check_pixel_bounds(DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
    with pytest.raises(ValueError, match="larger than"):
        frame.check_pixel_bounds(5000, 4000)
    with pytest.raises(ValueError, match="within"):
        frame.check_pixel_bounds(784, DEFAULT_MAX_PIXELS)  # qwen-vl-utils would re-resize a 28x28 pin
    with pytest.raises(ValueError, match="within"):
        frame.check_pixel_bounds(DEFAULT_MIN_PIXELS, 16385 * 28 * 28)


def test_box_problems_and_clip():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 5, 9], [-10, 0, -1, 4], [3, 3, 1, 1], [np.nan, 0, 1, 1],
                      [15, 15, 40, 40], [20, 0, 30, 5]])
    assert frame.box_problems(boxes, (20, 20)).tolist() == [
        "", "box_zero_area", "box_outside_image", "box_reversed", "box_not_finite", "", "box_outside_image"]
    np.testing.assert_array_equal(frame.clip_boxes(boxes[5:6], (20, 20)), [[15, 15, 20, 20]])
    np.testing.assert_array_equal(frame.xywh_to_xyxy([[1, 2, 3, 4]]), [[1, 2, 4, 6]])


def test_rescale_ground_truth_moves_only_coordinates():
    gt = {"boxes": [[0, 0, 100, 50]], "labels": ["cat"], "bbox": [10, 10, 20, 20], "points": [[50, 25]],
          "count": 1, "text": "x"}
    out = frame.rescale_ground_truth(gt, (100, 200), (50, 400))
    assert out["boxes"] == [[0, 0, 200, 25]] and out["bbox"] == [20, 5, 40, 10] and out["points"] == [[100, 12.5]]
    assert out["labels"] == ["cat"] and out["count"] == 1 and out["text"] == "x"
    assert gt["boxes"] == [[0, 0, 100, 50]]  # the input is not modified
    assert frame.rescale_ground_truth({"boxes": [], "labels": []}, (10, 10), (20, 20)) == {"boxes": [], "labels": []}
