"""The recipes with Qwen3-VL: the family follows MODEL_PATH (or MODEL_FAMILY) and picks the pixel
bounds; the smoke dry run builds a tiny Qwen3-VL; the preflight refuses a parquet of the other family."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from _recipes_support import RECIPES, bundled_sample, recipe_args, recipe_env

from verl_perception.frame import QWEN2_5_VL, QWEN3_VL


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory):
    return bundled_sample(tmp_path_factory)


def _overrides(args: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in args if "=" in a)


def test_qwen3_model_path_picks_the_family_bounds(tmp_path, sample_data):
    args = _overrides(recipe_args("refcoco_grounding.sh", tmp_path, MODEL_PATH="Qwen/Qwen3-VL-4B-Instruct",
                                  DATA_DIR=sample_data))  # fmt: skip
    assert args["actor_rollout_ref.model.path"] == "Qwen/Qwen3-VL-4B-Instruct"
    assert args["+data.mm_processor_kwargs.min_pixels"] == str(QWEN3_VL.min_pixels)
    assert args["+data.mm_processor_kwargs.max_pixels"] == str(QWEN3_VL.max_pixels)
    # the same image-token budget as Qwen2.5-VL's recipe, so the same prompt length holds it
    assert QWEN3_VL.max_pixels // 32**2 == QWEN2_5_VL.max_pixels // 28**2 == 1280
    assert args["data.max_prompt_length"] == "2048"
    default = _overrides(recipe_args("refcoco_grounding.sh", tmp_path, DATA_DIR=sample_data))
    assert default["+data.mm_processor_kwargs.max_pixels"] == str(QWEN2_5_VL.max_pixels)
    forced = _overrides(recipe_args("refcoco_grounding.sh", tmp_path, MODEL_PATH="/nowhere/custom-model",
                                    MODEL_FAMILY="qwen3_vl", DATA_DIR=sample_data))  # fmt: skip
    assert forced["+data.mm_processor_kwargs.min_pixels"] == str(QWEN3_VL.min_pixels)


def test_unknown_model_needs_model_family(tmp_path, sample_data):
    run = subprocess.run(["bash", str(RECIPES / "pageocr.sh")], cwd=tmp_path, capture_output=True, text=True,
                         env=recipe_env(tmp_path, DRY_RUN="args", MODEL_PATH="someone/some-model", DATA_DIR=sample_data),
                         timeout=120, check=False)  # fmt: skip
    assert run.returncode == 1 and "set MODEL_FAMILY" in run.stderr


def test_smoke_dry_run_with_tiny_qwen3(tmp_path):
    run = subprocess.run(["bash", str(RECIPES / "smoke.sh")], cwd=tmp_path, capture_output=True, text=True,
                         env=recipe_env(tmp_path, MODEL_FAMILY="qwen3_vl", SMOKE_DIR=tmp_path / "smoke"),
                         timeout=900, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "preflight: model family: qwen3_vl" in run.stderr and "preflight: all checks passed" in run.stderr
    cfg = yaml.safe_load(run.stdout)
    model = tmp_path / "smoke" / "tiny_qwen3_vl_4096_65536"
    assert cfg["actor_rollout_ref"]["model"]["path"] == str(model)
    assert yaml.safe_load((model / "config.json").read_text())["model_type"] == "qwen3_vl"
    assert cfg["data"]["mm_processor_kwargs"] == {"min_pixels": 4 * 32 * 32, "max_pixels": 64 * 32 * 32}
    assert len(cfg["data"]["train_files"]) == 4 and all("bundled_sample_qwen3_vl_" in f for f in cfg["data"]["train_files"])


def test_preflight_refuses_a_parquet_of_the_other_family(tmp_path, sample_data, tiny_qwen3_model_dir):
    """Qwen2.5-VL parquet + a Qwen3-VL model: the check names --model-family before any GPU is used."""
    run = subprocess.run(["bash", str(RECIPES / "refcoco_grounding.sh")], cwd=tmp_path, capture_output=True,
                         text=True, env=recipe_env(tmp_path, MODEL_PATH=tiny_qwen3_model_dir, DATA_DIR=sample_data),
                         timeout=600, check=False)  # fmt: skip
    assert run.returncode != 0
    assert "preprocessed for qwen2_5_vl" in run.stderr and "--model-family qwen3_vl" in run.stderr
