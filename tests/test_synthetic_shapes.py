"""The synthetic-shapes grounding task of the learning check: deterministic, in the frame, learnable.

The ground truth is checked against the image itself: in the original image, the pixels of the named
colour inside the named box fill it as the named shape does (square ~1, circle ~pi/4, triangle ~1/2)
and touch all four of its edges.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from verl_perception.frame import input_size, to_original
from verl_perception.preprocess import synthetic_shapes as ss
from verl_perception.preprocess.rows import SCHEMA
from verl_perception.rewards import compute_score
from verl_perception.tasks import GROUNDING, resolve_task

MIN_PIXELS, MAX_PIXELS = 3136, 64 * 28 * 28
FILL = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}


def _convert(out, split, n, **kw):
    s = ss.convert(out, split, n, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, **kw)
    assert s.rows_written == n and not s.skipped
    return pq.read_table(out / f"{split}.parquet")


@pytest.fixture(scope="module")
def val_table(tmp_path_factory):
    return _convert(tmp_path_factory.mktemp("shapes"), "val", 24, seed=0)


def test_rows_follow_the_schema_and_name_the_grounding_task(val_table):
    assert val_table.schema.equals(SCHEMA)
    for r in val_table.to_pylist():
        info = r["extra_info"]
        assert r["data_source"] == ss.DATA_SOURCE == "synthetic_shapes"
        assert info["task"] == GROUNDING and resolve_task(r["data_source"], info) == GROUNDING
        assert r["ability"] == GROUNDING and info["split"] == "val"
        assert info["orig_size"] == [300, 400]
        # the drawings are resized: the ground truth lives in the smaller input frame
        assert info["input_size"] == list(input_size(300, 400, MIN_PIXELS, MAX_PIXELS)) == [168, 252]
        assert r["images"][0]["resized_height"] == 168 and r["images"][0]["resized_width"] == 252
        assert (info["min_pixels"], info["max_pixels"]) == (MIN_PIXELS, MAX_PIXELS)
    assert [r["extra_info"]["index"] for r in val_table.to_pylist()] == list(range(24))


def test_generation_is_deterministic_by_seed(tmp_path, val_table):
    again = _convert(tmp_path / "a", "val", 24, seed=0)
    assert again.equals(val_table)
    other = _convert(tmp_path / "b", "val", 24, seed=1)
    assert other.column("images").to_pylist() != val_table.column("images").to_pylist()
    # a row depends only on (seed, split, index): a shorter file is a prefix
    prefix = _convert(tmp_path / "c", "val", 5, seed=0)
    assert prefix.equals(val_table.slice(0, 5))


def test_train_and_val_are_disjoint(tmp_path, val_table):
    train = _convert(tmp_path, "train", 24, seed=0)
    val_images = {r[0]["bytes"] for r in val_table.column("images").to_pylist()}
    assert not val_images & {r[0]["bytes"] for r in train.column("images").to_pylist()}


def test_boxes_lie_inside_the_image_and_the_frame(val_table):
    for r in val_table.to_pylist():
        h, w = r["extra_info"]["input_size"]
        x1, y1, x2, y2 = json.loads(r["reward_model"]["ground_truth"])["bbox"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        oh, ow = r["extra_info"]["orig_size"]
        ox1, oy1, ox2, oy2 = to_original(np.array([x1, y1, x2, y2]), (h, w), (oh, ow))
        assert 0 <= ox1 < ox2 <= ow + 1e-6 and 0 <= oy1 < oy2 <= oh + 1e-6


def test_prompt_names_the_shape_in_the_box(val_table):
    kinds_seen = set()
    for r in val_table.to_pylist():
        info = r["extra_info"]
        color, kind = info["expression"].split()
        assert f"the {color} {kind} in the image" in r["prompt"][0]["content"]
        img = np.asarray(Image.open(io.BytesIO(r["images"][0]["bytes"])).convert("RGB"))
        box = json.loads(r["reward_model"]["ground_truth"])["bbox"]
        x1, y1, x2, y2 = np.round(to_original(np.array(box), info["input_size"], info["orig_size"])).astype(int)
        inside = (img[y1:y2, x1:x2] == ss.COLORS[color]).all(axis=-1)
        # tight: the named colour touches every edge of the box
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        # the right shape: its fill ratio, not another shape's
        fill = inside.mean()
        assert min(FILL, key=lambda k: abs(FILL[k] - fill)) == kind, (info["expression"], fill)
        kinds_seen.add(kind)
    assert kinds_seen == set(ss.SHAPES)


@pytest.mark.parametrize("background", sorted(ss.BACKGROUNDS))
def test_the_named_shape_is_unique_and_the_background_never_takes_a_shape_colour(background):
    for i in range(30):
        scene = ss.make_scene(ss.scene_rng(3, "train", i), background=background)
        names = [s.name for s in scene.shapes]
        assert 1 <= len(names) <= ss.MAX_SHAPES and len(set(names)) == len(names)
        img = np.asarray(Image.open(io.BytesIO(scene.png)).convert("RGB"))
        for s in scene.shapes:
            mask = (img == ss.COLORS[s.color]).all(axis=-1)
            x1, y1, x2, y2 = s.box
            outside = mask.copy()
            outside[y1:y2, x1:x2] = False
            same_colour_boxes = [t.box for t in scene.shapes if t.color == s.color and t is not s]
            for bx1, by1, bx2, by2 in same_colour_boxes:
                outside[by1:by2, bx1:bx2] = False
            assert not outside.any(), f"pixels of {s.color} outside the {s.color} shapes"


def test_ground_truth_written_as_the_answer_scores_the_maximum(val_table):
    for r in val_table.to_pylist():
        gt = json.loads(r["reward_model"]["ground_truth"])
        answer = json.dumps({"bbox_2d": gt["bbox"], "label": r["extra_info"]["expression"]})
        res = compute_score(r["data_source"], answer, r["reward_model"]["ground_truth"], r["extra_info"])
        assert res["score"] == pytest.approx(2.0) and res["format"] == 1.0 and res["hit50"] == 1.0


def test_cli_writes_the_split(tmp_path):
    ss.main(["--output-dir", str(tmp_path), "--split", "train", "--num-rows", "3", "--seed", "5",
             "--min-pixels", str(MIN_PIXELS), "--max-pixels", str(MAX_PIXELS), "--workers", "1", "--quiet",
             "--sizes", "280x280", "200x300"])  # fmt: skip
    rows = pq.read_table(tmp_path / "train.parquet").to_pylist()
    assert len(rows) == 3 and {tuple(r["extra_info"]["orig_size"]) for r in rows} <= {(280, 280), (200, 300)}


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="split"):
        ss.convert(tmp_path, "test", 3)
    with pytest.raises(ValueError, match="num_rows"):
        ss.convert(tmp_path, "val", 0)
    with pytest.raises(ValueError, match="at least 32"):
        ss.convert(tmp_path, "val", 2, sizes=((10, 400),))


def test_cli_refuses_another_model_family(tmp_path, capsys):
    # the rows are built in Qwen2.5-VL's frame: a Qwen3-VL request must not be written as Qwen2.5-VL rows
    with pytest.raises(SystemExit) as e:
        ss.main(["--output-dir", str(tmp_path), "--split", "val", "--num-rows", "2", "--model-family", "qwen3_vl",
                 "--workers", "1", "--quiet"])  # fmt: skip
    assert e.value.code == 2
    assert "generated for qwen2_5_vl only" in capsys.readouterr().err
    assert not (tmp_path / "val.parquet").exists()


def test_the_position_background_says_where_a_pixel_is_and_the_texture_does_not():
    """Default background: red rises left to right, green top to bottom (a small model reads a shape's
    position from the pixels beside it); ``texture`` carries no such ramp. Both stay out of the shapes'
    colour range."""
    h, w = ss.DEFAULT_ORIG_SIZE
    xs, ys = np.arange(w), np.arange(h)
    for background, coded in (("position", True), ("texture", False)):
        for i in range(5):
            rng = ss.scene_rng(0, "val", i)
            img = ss.BACKGROUNDS[background](rng, h, w).astype(float)
            lo, hi = ss.BACKGROUND_RANGE
            assert img.min() >= lo and img.max() <= hi
            r_by_x = np.corrcoef(xs, img[..., 0].mean(axis=0))[0, 1]
            g_by_y = np.corrcoef(ys, img[..., 1].mean(axis=1))[0, 1]
            if coded:
                assert r_by_x > 0.99 and g_by_y > 0.99
                # one merged-token column of the 168 x 252 frame (28 px there, ~44 px here) moves red by ~10
                red = img[..., 0].mean(axis=0)
                assert red[44:].mean() - red[:-44].mean() > 8
            else:
                assert abs(r_by_x) < 0.9 or abs(g_by_y) < 0.9


def test_backgrounds_are_chosen_by_name_and_an_unknown_one_is_refused(tmp_path):
    a = ss.make_scene(ss.scene_rng(0, "val", 0))
    b = ss.make_scene(ss.scene_rng(0, "val", 0), background="texture")
    assert a.shapes == b.shapes and a.png != b.png  # same shapes, other background
    ss.main(["--output-dir", str(tmp_path), "--split", "val", "--num-rows", "2", "--background", "texture",
             "--min-pixels", str(MIN_PIXELS), "--max-pixels", str(MAX_PIXELS), "--workers", "1", "--quiet"])  # fmt: skip
    img = pq.read_table(tmp_path / "val.parquet").to_pylist()[0]["images"][0]["bytes"]
    assert img == b.png
    with pytest.raises(ValueError, match="background must be one of"):
        ss.make_scene(ss.scene_rng(0, "val", 0), background="plain")
    with pytest.raises(ValueError, match="background must be one of"):
        ss.convert(tmp_path, "val", 2, background="plain")


def test_max_shapes_bounds_the_shapes_per_image(tmp_path):
    alone = [ss.make_scene(ss.scene_rng(0, "train", i), max_shapes=1) for i in range(20)]
    assert all(len(s.shapes) == 1 and s.target == 0 for s in alone)
    counts = {len(ss.make_scene(ss.scene_rng(0, "train", i), max_shapes=2).shapes) for i in range(40)}
    assert counts == {1, 2}
    ss.main(["--output-dir", str(tmp_path), "--split", "val", "--num-rows", "3", "--max-shapes", "1",
             "--min-pixels", str(MIN_PIXELS), "--max-pixels", str(MAX_PIXELS), "--workers", "1", "--quiet"])  # fmt: skip
    rows = pq.read_table(tmp_path / "val.parquet").to_pylist()
    assert [r["images"][0]["bytes"] for r in rows] == [
        ss.make_scene(ss.scene_rng(0, "val", i), max_shapes=1).png for i in range(3)
    ]
    for bad in (0, ss.DISTINCT_SHAPES + 1):
        with pytest.raises(ValueError, match="max_shapes must be"):
            ss.make_scene(ss.scene_rng(0, "val", 0), max_shapes=bad)
        with pytest.raises(ValueError, match="max_shapes must be"):
            ss.convert(tmp_path / "x", "val", 2, max_shapes=bad)
