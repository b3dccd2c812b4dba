"""Shared pytest fixtures: the tiny offline Qwen2.5-VL and Qwen3-VL (built once per session, never in the repo).

Also the WordNet check of the METEOR tests: without a WordNet 3.0 database they skip, and the end
of the run says so in its own section (a skip in the short summary is easy to miss); with
``VERL_PERCEPTION_REQUIRE_WORDNET=1`` (CI sets it) a missing database stops the run instead.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_WORDNET = "VERL_PERCEPTION_REQUIRE_WORDNET"
WORDNET_SKIP = "no WordNet 3.0 database"  # the METEOR tests' skip reason starts with this


def pytest_sessionstart(session):
    if os.environ.get(REQUIRE_WORDNET, "") not in ("", "0"):
        from verl_perception.metrics.wordnet import load_wordnet

        wn, why = load_wordnet()
        if wn is None:
            raise pytest.UsageError(f"{REQUIRE_WORDNET} is set, so the METEOR tests must run, but: {why}")


def pytest_terminal_summary(terminalreporter):
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if WORDNET_SKIP in str(r.longrepr)]
    if skipped:
        terminalreporter.write_sep("=", f"METEOR NOT VERIFIED: {len(skipped)} tests skipped", yellow=True, bold=True)
        terminalreporter.write_line(
            f"{WORDNET_SKIP} was found offline, so the OCR METEOR metric was not tested. Enable it with "
            "`apt-get install wordnet-base` (Debian/Ubuntu), `python -m nltk.downloader wordnet`, or "
            "VERL_PERCEPTION_WORDNET_DIR=<a WordNet 3.0 dict directory>; CI runs them "
            f"({REQUIRE_WORDNET}=1 turns this skip into an error)."
        )


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
