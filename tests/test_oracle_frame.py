"""Independent oracles for the coordinate frame (frame.py), per model family (README, "Coordinate
frames"): Qwen2.5-VL answers in input-frame pixels (factor 28), Qwen3-VL in 0..1000 of the image
(factor 32), Qwen2-VL in 0..1000 (factor 28). Expected values are worked out by hand or by the
resize rule written out here, never by the module's own functions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from verl_perception import frame
from verl_perception.frame import (
    QWEN2_5_VL,
    QWEN2_VL,
    QWEN3_VL,
    FrameSpec,
    UnknownFamilyError,
    answer_to_input,
    box_problems,
    check_pixel_bounds,
    clip_boxes,
    family_of,
    family_of_config,
    family_of_model,
    family_of_processor,
    get_family,
    input_to_answer,
    pin,
    rescale,
    rescale_ground_truth,
    to_input,
    to_original,
    xywh_to_xyxy,
)


def resize_rule(h, w, factor, min_pixels, max_pixels):
    """qwen-vl-utils' smart_resize written out: round to the factor, then scale into the bounds."""
    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = math.floor(h / beta / factor) * factor, math.floor(w / beta / factor) * factor
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def test_family_constants_by_hand():
    assert (QWEN2_5_VL.factor, QWEN2_5_VL.coords, QWEN2_5_VL.patch_size) == (28, "absolute", 14)
    assert (QWEN3_VL.factor, QWEN3_VL.coords, QWEN3_VL.patch_size) == (32, "relative1000", 16)
    assert (QWEN2_VL.factor, QWEN2_VL.coords, QWEN2_VL.patch_size) == (28, "relative1000", 14)
    # recipe bounds: 4..1280 merged patches (Qwen3-VL: its checkpoints' 64..1280)
    assert (QWEN2_5_VL.min_pixels, QWEN2_5_VL.max_pixels) == (4 * 784, 1280 * 784)
    assert (QWEN3_VL.min_pixels, QWEN3_VL.max_pixels) == (64 * 1024, 1280 * 1024)
    assert (QWEN2_VL.min_pixels, QWEN2_VL.max_pixels) == (4 * 784, 1280 * 784)
    assert frame.DEFAULT_MIN_PIXELS == 3136 and frame.DEFAULT_MAX_PIXELS == 1003520
    with pytest.raises(ValueError, match="unknown coordinate convention 'pixels'"):
        FrameSpec("x", 28, "pixels", 1, 2, 1, 2)


@pytest.mark.parametrize(
    ("spec", "hw", "want"),
    [
        (QWEN2_5_VL, (480, 640), (476, 644)),  # 17 x 28, 23 x 28: within bounds
        (QWEN3_VL, (480, 640), (480, 640)),  # 15 x 32, 20 x 32
        (QWEN2_VL, (375, 500), (364, 504)),
        (QWEN2_5_VL, (3000, 4000), None),  # over max_pixels: scaled down
        (QWEN3_VL, (20, 30), None),  # under min_pixels: scaled up
        (QWEN2_5_VL, (10, 10), None),
    ],
)
def test_input_size_follows_the_resize_rule_per_family(spec, hw, want):
    rule = resize_rule(*hw, spec.factor, spec.min_pixels, spec.max_pixels)
    if want is not None:
        assert rule == want
    got = frame.input_size(*hw, family=spec.name)
    assert got == rule == spec.input_size(*hw)
    assert got[0] % spec.factor == 0 and got[1] % spec.factor == 0
    assert spec.min_pixels <= got[0] * got[1] <= spec.max_pixels
    assert all(type(v) is int for v in got)


def test_input_size_bounds_and_errors():
    # explicit bounds override the family's
    assert frame.input_size(480, 640, min_pixels=3136, max_pixels=200 * 784) == resize_rule(480, 640, 28, 3136, 200 * 784)
    assert frame.input_size(480, 640) == (476, 644)  # default family: Qwen2.5-VL
    with pytest.raises(ValueError, match="image size must be positive, got height=0, width=5"):
        frame.input_size(0, 5)
    with pytest.raises(ValueError, match="image size must be positive"):
        frame.input_size(5, -1)
    with pytest.raises(ValueError, match="short side rounds to 0"):
        frame.input_size(10, 1900, max_pixels=4 * 784)


def test_rescale_by_hand():
    # (h, w) 100 x 200 -> 50 x 600: x * 3, y * 0.5
    got = rescale([[10, 20, 30, 40]], (100, 200), (50, 600))
    assert got.tolist() == [[30, 10, 90, 20]]
    assert rescale([[10, 20]], (100, 200), (50, 600)).tolist() == [[30, 10]]
    assert rescale(np.zeros((0, 4)), (1, 1), (2, 2)).shape == (0, 4)
    assert to_input([[64, 48]], (480, 640), (240, 320)).tolist() == [[32, 24]]
    assert to_original([[32, 24]], (240, 320), (480, 640)).tolist() == [[64, 48]]
    assert to_original([[10, 10, 20, 20]], (100, 100), (300, 200)).tolist() == [[20, 30, 40, 60]]
    with pytest.raises(ValueError, match="frame sizes must be positive"):
        rescale([[1, 2]], (0, 1), (1, 1))
    with pytest.raises(ValueError, match="frame sizes must be positive"):
        rescale([[1, 2]], (1, 1), (1, -1))
    with pytest.raises(ValueError, match=r"last dimension must hold x,y pairs, got shape \(1, 3\)"):
        rescale([[1, 2, 3]], (1, 1), (2, 2))


@pytest.mark.parametrize("spec", [QWEN3_VL, QWEN2_VL])
def test_relative_families_by_hand(spec):
    size = (400, 600)  # h, w
    info = {"model_family": spec.name, "input_size": list(size)}
    # 0..1000 of the image: x * 600 / 1000, y * 400 / 1000
    assert answer_to_input([[500, 250, 1000, 1000]], info).tolist() == [[300, 100, 600, 400]]
    assert input_to_answer([[300, 100, 600, 400]], info).tolist() == [[500, 250, 1000, 1000]]
    assert spec.answer_scale(size) == (0.6, 0.4)
    assert spec.answer_to_input([[1000, 0]], size).tolist() == [[600, 0]]
    assert spec.input_to_answer([[600, 400]], size).tolist() == [[1000, 1000]]
    # the size argument wins over extra_info's
    assert answer_to_input([[500, 500]], info, (100, 100)).tolist() == [[50, 50]]
    assert input_to_answer([[50, 50]], info, (100, 100)).tolist() == [[500, 500]]
    with pytest.raises(ValueError, match="input size must be positive"):
        spec.answer_scale((0, 10))
    with pytest.raises(ValueError, match=f"a {spec.name} answer is relative to the image"):
        answer_to_input([[1, 2]], {"model_family": spec.name})
    with pytest.raises(ValueError, match="input_size'] is needed"):
        input_to_answer([[1, 2]], {"model_family": spec.name})


def test_absolute_family_is_the_identity():
    for info in (None, {}, {"model_family": "qwen2_5_vl"}):
        out = answer_to_input([[1, 2, 3, 4]], info)
        assert out.dtype == np.float64 and out.tolist() == [[1, 2, 3, 4]]
        assert input_to_answer([[1, 2, 3, 4]], info).tolist() == [[1, 2, 3, 4]]
    assert QWEN2_5_VL.answer_scale((10, 10)) is None
    assert QWEN2_5_VL.answer_to_input([[7, 8]], (1, 1)).tolist() == [[7, 8]]
    assert QWEN2_5_VL.input_to_answer([[7, 8]], (1, 1)).tolist() == [[7, 8]]
    assert QWEN2_5_VL.answer_to_input([[7, 8]], (1, 1)).dtype == np.float64


def test_family_names_and_lookups():
    assert get_family(None) is QWEN2_5_VL
    assert get_family(QWEN3_VL) is QWEN3_VL
    for name in ("qwen3_vl", "Qwen3-VL", "qwen3.vl", " QWEN3 VL ", "qwen3_vl_moe"):
        assert get_family(name) is QWEN3_VL, name
    assert get_family("qwen2.5-vl") is QWEN2_5_VL and get_family("Qwen2-VL") is QWEN2_VL
    with pytest.raises(UnknownFamilyError, match="unknown model family 'llava'; known: qwen2_5_vl, qwen3_vl, qwen2_vl"):
        get_family("llava")
    with pytest.raises(UnknownFamilyError):
        get_family(3)
    assert family_of(None) is QWEN2_5_VL and family_of({}) is QWEN2_5_VL
    assert family_of({"model_family": "qwen3_vl"}) is QWEN3_VL
    assert family_of_config({"model_type": "qwen3_vl_moe"}) is QWEN3_VL
    assert family_of_config({"model_type": "qwen2_vl"}) is QWEN2_VL
    assert family_of_config({"model_type": "llama"}) is None

    class Cfg:
        model_type = "qwen2_5_vl"

    assert family_of_config(Cfg()) is QWEN2_5_VL


def test_family_of_processor_by_class_and_patch():
    Qwen3VLProcessor = type("Qwen3VLProcessor", (), {})
    Qwen2VLProcessor = type("Qwen2VLProcessor", (), {})
    Qwen2_5_VLProcessor = type("Qwen2_5_VLProcessor", (), {})
    assert family_of_processor(Qwen3VLProcessor()) is QWEN3_VL
    assert family_of_processor(Qwen2VLProcessor()) is QWEN2_VL
    assert family_of_processor(Qwen2_5_VLProcessor()) is QWEN2_5_VL
    other = type("Other", (), {})
    with16 = other()
    with16.image_processor = type("IP", (), {"patch_size": 16})()
    assert family_of_processor(with16) is QWEN3_VL
    bare16 = type("IP", (), {"patch_size": 16})()  # an image processor itself
    assert family_of_processor(bare16) is QWEN3_VL
    with14 = other()
    with14.image_processor = type("IP", (), {"patch_size": 14})()
    assert family_of_processor(with14) is None  # Qwen2-VL or Qwen2.5-VL: no guess
    assert family_of_processor(other()) is None


def test_family_of_model(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    assert family_of_model(d) is QWEN3_VL
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UnknownFamilyError, match="model_type 'llama' is not a known family"):
        family_of_model(str(d))
    assert family_of_model("Qwen/Qwen3-VL-4B-Instruct") is QWEN3_VL
    assert family_of_model("Qwen/Qwen2.5-VL-3B-Instruct/") is QWEN2_5_VL
    assert family_of_model("org/qwen2-vl-2b") is QWEN2_VL
    assert family_of_model("local/qwen25vl-7b") is QWEN2_5_VL
    with pytest.raises(UnknownFamilyError, match="cannot tell the model family of 'org/llava'"):
        family_of_model("org/llava")


def test_frame_cli(tmp_path, capsys):
    assert frame.main(["bounds", "qwen3_vl"]) == 0
    assert capsys.readouterr().out == "65536 1310720 32\n"
    assert frame.main(["bounds", "Qwen2.5-VL"]) == 0
    assert capsys.readouterr().out == "3136 1003520 28\n"
    assert frame.main(["family", "Qwen/Qwen3-VL-8B"]) == 0
    assert capsys.readouterr().out == "qwen3_vl\n"
    assert frame.main(["bounds", "llava"]) == 1
    assert capsys.readouterr().err.startswith("error: unknown model family 'llava'")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    assert frame.main(["family", str(bad)]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(SystemExit):
        frame.main([])


def test_pixel_bounds_and_pin_by_hand():
    check_pixel_bounds(4 * 784, 16384 * 784)  # the widest pinnable range for factor 28
    check_pixel_bounds(4 * 1024, 16384 * 1024, "qwen3_vl")
    with pytest.raises(ValueError, match=r"must lie within \[3136, 12845056\] \(4\.\.16384 x 28\^2\)"):
        check_pixel_bounds(3135, 10000)
    with pytest.raises(ValueError, match="must lie within"):
        check_pixel_bounds(3136, 16384 * 784 + 1)
    with pytest.raises(ValueError, match=r"must lie within \[4096, 16777216\]"):
        check_pixel_bounds(3136, 10000, "qwen3_vl")
    with pytest.raises(ValueError, match="min_pixels=5000 is larger than max_pixels=4000"):
        check_pixel_bounds(5000, 4000)
    check_pixel_bounds(5000, 5000)
    with pytest.raises(TypeError, match="pixel bounds must be integers"):
        check_pixel_bounds(3136.0, 5000)
    with pytest.raises(TypeError):
        check_pixel_bounds(3136, "5000")
    assert pin((476, 644)) == {"resized_height": 476, "resized_width": 644}
    assert pin((480, 640), "qwen3_vl") == {"resized_height": 480, "resized_width": 640}
    for bad, spec in (((480, 640), None), ((476, 650), None), ((0, 28), None), ((476, 644), "qwen3_vl")):
        with pytest.raises(ValueError, match="is not a positive multiple of"):
            pin(bad, spec)
    with pytest.raises(ValueError, match=r"input size \(-28, 28\) is not a positive multiple of 28"):
        pin((-28, 28))


def test_box_helpers_by_hand():
    assert xywh_to_xyxy([[10, 20, 30, 40]]).tolist() == [[10, 20, 40, 60]]
    assert xywh_to_xyxy([]).shape == (0, 4)
    assert clip_boxes([[-5, -5, 700, 300], [10, 20, 30, 40]], (200, 640)).tolist() == [[0, 0, 640, 200], [10, 20, 30, 40]]
    boxes = [
        [10, 10, 20, 20],  # fine
        [float("nan"), 0, 5, 5],
        [20, 10, 10, 20],  # reversed x
        [10, 20, 20, 10],  # reversed y
        [700, 10, 800, 20],  # right of the image
        [10, -50, 20, 0],  # above it (touches y = 0 only)
        [5, 5, 5, 50],  # zero width
        [-10, 10, 0.0, 20],  # left of it
        [10, 250, 20, 260],  # below it
        [639, 199, 641, 201],  # corner overlap: fine
    ]
    got = box_problems(boxes, (200, 640)).tolist()
    assert got == ["", "box_not_finite", "box_reversed", "box_reversed", "box_outside_image", "box_outside_image",
                   "box_zero_area", "box_outside_image", "box_outside_image", ""]
    assert box_problems(np.zeros((0, 4)), (1, 1)).tolist() == []
    # a reversed box outside the image reports the reversal (the more specific reason)
    assert box_problems([[900, 10, 800, 20]], (200, 640)).tolist() == ["box_reversed"]
    # a box cut to nothing by the clip (but overlapping the border line) has zero area
    assert box_problems([[640, 10, 640, 20]], (200, 640)).tolist() == ["box_outside_image"]


def test_rescale_ground_truth_by_hand():
    gt = {"bbox": [10, 20, 30, 40], "boxes": [[1, 1, 3, 3]], "points": [[2, 4]], "labels": ["a"], "text": "t",
          "count": 1}
    out = rescale_ground_truth(gt, (100, 200), (300, 100))  # x * 0.5, y * 3
    assert out == {"bbox": [5, 60, 15, 120], "boxes": [[0.5, 3, 1.5, 9]], "points": [[1, 12]], "labels": ["a"],
                   "text": "t", "count": 1}
    assert gt["bbox"] == [10, 20, 30, 40]  # the input is not modified
    # rounded to 2 decimals; empty lists and None stay
    out = rescale_ground_truth({"points": [[1, 1]], "boxes": [], "bbox": None}, (3, 3), (1, 1))
    assert out == {"points": [[0.33, 0.33]], "boxes": [], "bbox": None}


def test_frame_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        frame.main(["-h"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m verl_perception.frame [-h] {family,bounds}")
    assert "python -m verl_perception.frame family MODEL`` prints the model's family" in " ".join(out.split())
    assert "the family of a model directory or hub name" in out
    assert "recipe pixel bounds and resize factor of a family" in out
    with pytest.raises(SystemExit) as e:
        frame.main(["family"])  # the model argument is required
    assert e.value.code == 2 and "model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        frame.main(["bounds"])
    assert "family" in capsys.readouterr().err


def test_frame_edge_values_by_hand(tmp_path):
    with pytest.raises(ValueError, match="image size must be positive, got height=5, width=0"):
        frame.input_size(5, 0)
    assert QWEN3_VL.answer_scale((1, 2)) == (0.002, 0.001) and QWEN3_VL.answer_scale((2, 1)) == (0.001, 0.002)
    with pytest.raises(ValueError, match="input size must be positive"):
        QWEN3_VL.answer_scale((10, 0))
    assert QWEN2_5_VL.input_to_answer([[7, 8]], (1, 1)).dtype == np.float64
    assert input_to_answer([[7, 8]], None).dtype == np.float64
    assert xywh_to_xyxy([[1, 2, 3, 4]]).dtype == np.float64
    with pytest.raises(ValueError, match="frame sizes must be positive"):
        rescale([[1, 2]], (1, 0), (1, 1))
    with pytest.raises(ValueError, match="frame sizes must be positive"):
        rescale([[1, 2]], (1, 1), (0, 1))
    with pytest.raises(ValueError, match="last dimension must hold x,y pairs"):
        rescale([5], (1, 1), (2, 2))
    with pytest.raises(ValueError, match="is not a positive multiple of 28"):
        pin((28, 0))
    with pytest.raises(ValueError, match="the stored ground truth would be off$"):
        check_pixel_bounds(3135, 10000)
    # the family is read from the model's own name, not from a folder above it
    with pytest.raises(UnknownFamilyError, match=r"cannot tell the model family of '/models/qwen3_vl_runs/checkpoint-5'; "
                                                 r"pass it explicitly \(qwen2_5_vl, qwen3_vl, qwen2_vl\)$"):
        family_of_model("/models/qwen3_vl_runs/checkpoint-5")
    assert family_of_model("qwen3-vl-exp/Qwen2.5-VL-3B/") is QWEN2_5_VL
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UnknownFamilyError, match=r"\(qwen2_5_vl, qwen3_vl, qwen2_vl\); pass the family explicitly$"):
        family_of_model(d)
    got = box_problems([[10, 20, 30, 20], [10, 200, 20, 210], [0, 10, 1, 20], [10, 0, 20, 1], [10, 50, 20, 60],
                        [10, 5, 20, 5]], (200, 640)).tolist()
    assert got == ["box_zero_area", "box_outside_image", "", "", "", "box_zero_area"]


def test_frame_cli_help_lines(capsys):
    import re

    with pytest.raises(SystemExit):
        frame.main(["-h"])
    out = capsys.readouterr().out
    assert re.search(r"\n\s+family\s+the family of a model directory or hub name\n", out)
    assert re.search(r"\n\s+bounds\s+recipe pixel bounds and resize factor of a family\n", out)


def test_frame_cli_description_and_bare_configs(capsys):
    with pytest.raises(SystemExit):
        frame.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "prints the model's family" in out
    assert "min_pixels max_pixels factor" not in out  # the description is the docstring's first sentence
    assert family_of_config(object()) is None  # no model_type at all
