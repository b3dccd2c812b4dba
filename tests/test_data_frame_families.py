"""Model families in the frame module: Qwen3-VL's factor 32 and 0..1000 answers beside Qwen2.5-VL's.

Every rule is checked against the libraries that apply it: qwen-vl-utils (``smart_resize``,
``fetch_image(image_patch_size=16)``) and a tiny offline ``Qwen3VLProcessor`` (transformers).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from qwen_vl_utils import fetch_image, smart_resize

from verl_perception import frame
from verl_perception.frame import QWEN2_5_VL, QWEN3_VL

# (h, w): ordinary, extreme aspect ratios (up to qwen-vl-utils' limit of 200), tiny (upscaled by
# min_pixels), huge (downscaled by max_pixels).
SIZES = [(480, 640), (427, 640), (100, 19000), (19000, 100), (10, 1900), (7, 9), (1, 1), (30, 40),
         (4000, 6000), (20000, 15000), (1080, 1920), (32, 32), (33, 6600)]
QWEN3_BOUNDS = [(QWEN3_VL.min_pixels, QWEN3_VL.max_pixels), (4 * 32 * 32, 64 * 32 * 32), (256 * 32 * 32, 16384 * 32 * 32)]


def test_family_table_matches_the_released_processors():
    # Qwen2.5-VL: patch 14 x merge 2; Qwen3-VL: patch 16 x merge 2 (preprocessor_config.json of the
    # Instruct checkpoints), and the recipes' budget of at most 1280 image tokens for both.
    assert (QWEN2_5_VL.factor, QWEN2_5_VL.patch_size, QWEN2_5_VL.coords) == (28, 14, "absolute")
    assert (QWEN3_VL.factor, QWEN3_VL.patch_size, QWEN3_VL.coords) == (32, 16, "relative1000")
    assert (QWEN3_VL.processor_min_pixels, QWEN3_VL.processor_max_pixels) == (65536, 16777216)
    for spec in (QWEN2_5_VL, QWEN3_VL):
        assert spec.max_pixels // spec.factor**2 == frame.MAX_IMAGE_TOKENS
        frame.check_pixel_bounds(spec.min_pixels, spec.max_pixels, spec)
    # the default family (and its constants) is still Qwen2.5-VL's
    assert frame.DEFAULT_FRAME is QWEN2_5_VL and (frame.DEFAULT_MIN_PIXELS, frame.DEFAULT_MAX_PIXELS) == (3136, 1003520)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("bounds", QWEN3_BOUNDS)
def test_qwen3_input_size_is_qwen_vl_utils_with_factor_32(size, bounds):
    h, w = size
    try:
        want = smart_resize(h, w, factor=32, min_pixels=bounds[0], max_pixels=bounds[1])
    except ValueError:  # aspect ratio above 200
        with pytest.raises(ValueError, match="aspect ratio"):
            frame.input_size(h, w, *bounds, family="qwen3_vl")
        return
    if min(want) <= 0:
        with pytest.raises(ValueError, match="no input frame"):
            frame.input_size(h, w, *bounds, family="qwen3_vl")
        return
    got = frame.input_size(h, w, *bounds, family="qwen3_vl")
    assert got == want
    assert got[0] % 32 == 0 and got[1] % 32 == 0
    assert bounds[0] <= got[0] * got[1] <= bounds[1]
    if h * w < bounds[0]:
        assert got[0] * got[1] > h * w  # tiny images are upscaled
    if h * w > bounds[1]:
        assert got[0] * got[1] < h * w  # huge ones downscaled


def test_families_give_different_frames_for_the_same_image():
    assert frame.input_size(480, 640) == (476, 644)  # Qwen2.5-VL, multiples of 28
    assert frame.input_size(480, 640, family="qwen3_vl") == (480, 640)  # Qwen3-VL, multiples of 32


@pytest.mark.parametrize("size", [(480, 640), (7, 9), (100, 6000), (3000, 4000)])
def test_qwen3_pin_makes_fetch_image_produce_the_frame(size):
    inp = frame.input_size(*size, family=QWEN3_VL)
    img = Image.new("RGB", (size[1], size[0]))
    out = fetch_image({"image": img, **frame.pin(inp, QWEN3_VL)}, image_patch_size=QWEN3_VL.patch_size)
    assert out.size == (inp[1], inp[0])
    with pytest.raises(ValueError, match="multiple of 32"):
        frame.pin((476, 644), QWEN3_VL)


@pytest.mark.parametrize("size", [(480, 640), (7, 9), (100, 6000), (6000, 100), (3000, 4000), (20000, 15000)])
def test_qwen3_processor_sees_the_frame(size, tiny_processor_dir_factory):
    """The tiny Qwen3VLProcessor (transformers) feeds the ViT exactly frame.input_size."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_processor_dir_factory(family="qwen3_vl"))
    assert type(proc).__name__ == "Qwen3VLProcessor" and proc.image_processor.patch_size == 16
    out = proc.image_processor(images=[Image.new("RGB", (size[1], size[0]))], return_tensors="np")
    _, gh, gw = (int(v) for v in out["image_grid_thw"][0])
    assert (gh * 16, gw * 16) == frame.input_size(*size, family=QWEN3_VL)


def test_check_pixel_bounds_uses_the_family_factor():
    frame.check_pixel_bounds(4 * 32 * 32, 16384 * 32 * 32, QWEN3_VL)
    with pytest.raises(ValueError, match="4..16384 x 32"):
        frame.check_pixel_bounds(3136, 1003520, QWEN3_VL)  # 3136 < 4 x 32²: fetch_image would re-resize
    with pytest.raises(ValueError):
        frame.check_pixel_bounds(4096, 16384 * 32 * 32, QWEN2_5_VL)


@pytest.mark.parametrize("size", [(480, 640), (64, 15776), (15776, 64), (256, 320), (960, 1312)])
def test_relative_answers_round_trip(size):
    """0..1000 of the image <-> input-frame pixels, exact up to float error, corners to corners."""
    rng = np.random.default_rng(size[0] + size[1])
    xy = rng.uniform(0, 1, (20, 4)) * [size[1], size[0], size[1], size[0]]
    rel = QWEN3_VL.input_to_answer(xy, size)
    assert rel.min() >= 0 and rel.max() <= 1000
    np.testing.assert_allclose(QWEN3_VL.answer_to_input(rel, size), xy, rtol=0, atol=1e-9)
    np.testing.assert_allclose(QWEN3_VL.answer_to_input([[0, 0, 1000, 1000]], size), [[0, 0, size[1], size[0]]])
    np.testing.assert_allclose(QWEN3_VL.answer_to_input([[500, 250]], size), [[size[1] / 2, size[0] / 4]])
    # Qwen2.5-VL answers are input-frame pixels already
    assert QWEN2_5_VL.answer_scale(size) is None and np.array_equal(QWEN2_5_VL.answer_to_input(xy, size), xy)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 12000), w=st.integers(1, 12000), x=st.floats(0, 1000), y=st.floats(0, 1000))
def test_relative_answer_means_the_same_place_under_any_pixel_bounds(h, w, x, y):
    """A 0..1000 answer names a place in the image: mapped to the original image through any Qwen3-VL
    frame, it lands on the same original pixel (x/1000 of the width), whatever the pixel bounds."""
    if max(h, w) / min(h, w) > 150:
        return
    want = np.array([[x * w / 1000, y * h / 1000]])
    for bounds in QWEN3_BOUNDS:
        inp = frame.input_size(h, w, *bounds, family=QWEN3_VL)
        info = {"model_family": "qwen3_vl", "input_size": list(inp)}
        got = frame.to_original(frame.answer_to_input([[x, y]], info), inp, (h, w))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)


def test_family_names_and_rows():
    for name in ("qwen3_vl", "Qwen3-VL", "qwen3-vl", "QWEN3_VL", "qwen3_vl_moe"):
        assert frame.get_family(name) is QWEN3_VL
    for name in ("qwen2_5_vl", "qwen2.5-vl", "Qwen2.5-VL", None):
        assert frame.get_family(name) is QWEN2_5_VL
    with pytest.raises(frame.UnknownFamilyError, match="known: qwen2_5_vl, qwen3_vl"):
        frame.get_family("llava")
    # rows written before families existed are Qwen2.5-VL rows
    assert frame.family_of({"input_size": [476, 644]}) is QWEN2_5_VL and frame.family_of(None) is QWEN2_5_VL
    assert frame.family_of({"model_family": "qwen3_vl"}) is QWEN3_VL
    with pytest.raises(ValueError, match="input_size"):
        frame.answer_to_input([[1, 2]], {"model_family": "qwen3_vl"})


def test_family_of_model_config_and_hub_names(tmp_path):
    assert frame.family_of_model("Qwen/Qwen3-VL-4B-Instruct") is QWEN3_VL
    assert frame.family_of_model("Qwen/Qwen3-VL-30B-A3B-Instruct") is QWEN3_VL
    assert frame.family_of_model("Qwen/Qwen2.5-VL-3B-Instruct") is QWEN2_5_VL
    # a local directory is read from its config.json, whatever its name
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    assert frame.family_of_model(tmp_path) is QWEN3_VL
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(frame.UnknownFamilyError, match="llava"):
        frame.family_of_model(tmp_path)
    with pytest.raises(frame.UnknownFamilyError, match="pass it explicitly"):
        frame.family_of_model("someone/some-model")


def test_family_of_processor(tiny_processor_dir_factory):
    from transformers import AutoProcessor

    assert frame.family_of_processor(AutoProcessor.from_pretrained(tiny_processor_dir_factory())) is QWEN2_5_VL
    q3 = AutoProcessor.from_pretrained(tiny_processor_dir_factory(family="qwen3_vl"))
    assert frame.family_of_processor(q3) is QWEN3_VL
    assert frame.family_of_processor(q3.image_processor) is QWEN3_VL  # patch 16: only Qwen3-VL
    assert frame.family_of_processor(object()) is None


def test_frame_cli(capsys):
    assert frame.main(["family", "Qwen/Qwen3-VL-8B-Instruct"]) == 0
    assert frame.main(["bounds", "qwen3_vl"]) == 0
    assert capsys.readouterr().out.split() == ["qwen3_vl", "65536", "1310720", "32"]
    assert frame.main(["family", "nobody/nothing"]) == 1
