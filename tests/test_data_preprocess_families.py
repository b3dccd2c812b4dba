"""Preprocessing for a model family: ``--model-family qwen3_vl`` frames, recorded family, same objects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from verl_perception import frame
from verl_perception.preprocess.samples import convert_samples, samples_dir

ROOT = Path(__file__).resolve().parents[1]
COORDS = {"coco": "boxes", "refcoco": "bbox", "pixmo_count": "points"}


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for family in ("qwen2_5_vl", "qwen3_vl"):
        out[family] = tmp_path_factory.mktemp(f"samples_{family}")
        convert_samples(out[family], model_family=family, tasks=tuple(COORDS))
    return out


def test_rows_record_the_family_and_its_frame(both):
    for family, root in both.items():
        spec = frame.get_family(family)
        for task in COORDS:
            for row in pq.read_table(root / task / "val.parquet").to_pylist():
                info = row["extra_info"]
                assert info["model_family"] == family
                assert (info["min_pixels"], info["max_pixels"]) == (spec.min_pixels, spec.max_pixels)
                h, w = info["input_size"]
                assert (h, w) == frame.input_size(*info["orig_size"], family=spec)
                assert h % spec.factor == 0 and w % spec.factor == 0
                assert [row["images"][0]["resized_height"], row["images"][0]["resized_width"]] == [h, w]


def test_both_families_describe_the_same_objects(both):
    """Mapped back to the original image, the two parquets' ground truths agree to their rounding."""
    for task, key in COORDS.items():
        a, b = (pq.read_table(both[f] / task / "val.parquet").to_pylist() for f in ("qwen2_5_vl", "qwen3_vl"))
        assert len(a) == len(b)
        for ra, rb in zip(a, b):
            back = []
            for row in (ra, rb):
                info = row["extra_info"]
                xy = np.asarray(json.loads(row["reward_model"]["ground_truth"])[key], dtype=np.float64)
                back.append(frame.to_original(xy, info["input_size"], info["orig_size"]) if xy.size else xy)
            # 0.005 input pixel of rounding, at most a few original pixels per input pixel on these images
            scale = max(ra["extra_info"]["orig_size"][0] / ra["extra_info"]["input_size"][0],
                        ra["extra_info"]["orig_size"][1] / ra["extra_info"]["input_size"][1], 1.0)  # fmt: skip
            np.testing.assert_allclose(back[0], back[1], atol=0.02 * scale)


def test_cli_model_family_defaults_its_bounds(tmp_path):
    src = samples_dir() / "refcoco"
    cmd = [sys.executable, str(ROOT / "data_preprocess" / "refcoco.py"), "--dataset", "refcoco", "--data-root", str(src),
           "--image-dir", str(src / "train2014"), "--output-dir", str(tmp_path), "--split", "val", "--quiet",
           "--model-family", "qwen3_vl"]  # fmt: skip
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    info = pq.read_table(tmp_path / "val.parquet").to_pylist()[0]["extra_info"]
    assert info["model_family"] == "qwen3_vl" and info["min_pixels"] == frame.QWEN3_VL.min_pixels
    # Qwen2.5-VL's lower bound is below qwen-vl-utils' 4 x 32² for Qwen3-VL: refused, not silently re-resized
    res = subprocess.run(cmd + ["--min-pixels", "3136"], check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "32^2" in res.stderr
    res = subprocess.run(cmd[:-1] + ["llava"], check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "invalid choice" in res.stderr
