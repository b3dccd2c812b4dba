"""Shared pytest fixtures: the tiny offline Qwen2.5-VL (built once per session, never in the repo)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """Directory of a random-init tiny Qwen2.5-VL (model + tokenizer + processor, default pixel bounds)."""
    from verl_perception.tiny_model import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen2_5_vl"), seed=0)


@pytest.fixture(scope="session")
def tiny_processor_dir_factory(tmp_path_factory):
    """``make(min_pixels, max_pixels) -> dir`` of a tiny tokenizer + processor; one build per pixel bounds."""
    from verl_perception.frame import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS
    from verl_perception.tiny_model import build_tiny_processor

    built: dict[tuple[int, int], str] = {}

    def make(min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
        key = (int(min_pixels), int(max_pixels))
        if key not in built:
            out = tmp_path_factory.mktemp(f"tiny_processor_{key[0]}_{key[1]}")
            built[key] = build_tiny_processor(out, *key)
        return built[key]

    return make
