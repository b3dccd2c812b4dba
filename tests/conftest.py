"""Shared pytest fixtures: the tiny offline Qwen2.5-VL and Qwen3-VL (built once per session, never in the repo)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """Directory of a random-init tiny Qwen2.5-VL (model + tokenizer + processor, default pixel bounds)."""
    from verl_perception.tiny_model import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen2_5_vl"), seed=0)


@pytest.fixture(scope="session")
def tiny_qwen3_model_dir(tmp_path_factory) -> str:
    """Directory of a random-init tiny Qwen3-VL (model + tokenizer + processor, the family's pixel bounds)."""
    from verl_perception.tiny_model import build_tiny_qwen3_vl

    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny_qwen3_vl"), seed=0)


@pytest.fixture(scope="session")
def tiny_processor_dir_factory(tmp_path_factory):
    """``make(min_pixels, max_pixels, family="qwen2_5_vl") -> dir`` of a tiny tokenizer + processor; one
    build per family and pixel bounds (which default to the family's)."""
    from verl_perception.frame import get_family
    from verl_perception.tiny_model import build_tiny_processor

    built: dict[tuple[str, int, int], str] = {}

    def make(min_pixels: int | None = None, max_pixels: int | None = None, family: str = "qwen2_5_vl") -> str:
        spec = get_family(family)
        key = (spec.name, int(min_pixels or spec.min_pixels), int(max_pixels or spec.max_pixels))
        if key not in built:
            out = tmp_path_factory.mktemp(f"tiny_processor_{key[0]}_{key[1]}_{key[2]}")
            built[key] = build_tiny_processor(out, key[1], key[2], spec)
        return built[key]

    return make
