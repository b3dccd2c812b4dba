"""Helpers shared by the recipe tests (plain functions; the fixtures live in the test modules)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"


def bundled_sample(tmp_path_factory) -> Path:
    """The bundled sample preprocessed with the recipes' default pixel bounds, built once per session."""
    from verl_perception.preprocess.samples import convert_samples

    out = tmp_path_factory.getbasetemp() / "recipes_bundled_sample"
    if not (out / "pageocr" / "val.parquet").is_file():
        convert_samples(out)
    return out


def recipe_env(tmp: Path, **extra) -> dict:
    # ray.init() in this process (verl's trainer in-process tests) exports RAY_AUTH_MODE=token and
    # leaves it set; a recipe is run as from a user's fresh shell, so Ray's connection settings do not leak
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(
        DRY_RUN="1",
        PYTHON=sys.executable,
        CKPT_ROOT=str(tmp / "checkpoints"),
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def recipe_args(script: str, tmp: Path, *extra_args: str, **env) -> list[str]:
    """The Hydra overrides a recipe passes to main_ppo (``DRY_RUN=args``; no verl import)."""
    run = subprocess.run(
        ["bash", str(RECIPES / script), *extra_args],
        cwd=tmp,
        env=recipe_env(tmp, DRY_RUN="args", **env),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    return [a.decode() for a in run.stdout.split(b"\0") if a]


def cfg_with(base: dict, **dotted):
    """A copy of a composed config with ``dotted.key=value`` changes (``__`` stands for ``.``)."""
    from omegaconf import OmegaConf

    conf = OmegaConf.create(copy.deepcopy(base))
    for key, value in dotted.items():
        OmegaConf.update(conf, key.replace("__", "."), value, force_add=True)
    return conf
