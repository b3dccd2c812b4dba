"""The ``perception`` reward manager reaches verl through the ``verl.plugins`` entry point.

verl's own plugin loader logs a failing import at DEBUG level and carries on, so these tests load
the entry point themselves (a broken plugin fails here, loudly) and check in fresh interpreters
that a plain ``import verl`` registers the manager without any environment variable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from verl_perception.reward_manager import NAME, PerceptionRewardManager


def _fresh_python(code: str, **env: str) -> dict:
    """Run ``code`` in a new interpreter (no VERL_* plugin variables unless given); return its JSON."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    clean.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=clean, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_entry_point_is_declared_and_loads():
    eps = [ep for ep in entry_points(group="verl.plugins") if ep.name == "perception"]
    assert len(eps) == 1, "pyproject.toml must declare exactly one verl.plugins entry point named perception"
    module = eps[0].load()  # raises here, unlike verl's loader, if the plugin is broken
    assert module.__name__ == "verl_perception.plugin"
    assert module.PerceptionRewardManager is PerceptionRewardManager

    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
    from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

    assert get_reward_manager_cls(NAME) is PerceptionRewardManager
    assert issubclass(PerceptionRewardManager, RewardManagerBase)


_PROBE = """
import json, sys
import verl
from verl.experimental.reward_loop.reward_manager.registry import REWARD_MANAGER
cls = REWARD_MANAGER.get("perception")
out = {"cls": None if cls is None else f"{cls.__module__}.{cls.__qualname__}", "modules": sorted(sys.modules)}
# what verl's own reward loop and the verl/transformers modules the plugin patches import, for comparison
# (a no-op when the plugin already loaded them)
import verl.experimental.reward_loop.reward_manager
import transformers.integrations.flash_attention, transformers.masking_utils
import verl.models.transformers.qwen2_vl, verl.utils.torch_functional
out["modules_with_reward_loop"] = sorted(sys.modules)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def fresh_import_verl() -> dict:
    """A plain ``import verl`` in a new interpreter, with no VERL_* plugin variable set."""
    return _fresh_python(_PROBE)


@pytest.fixture(scope="module")
def fresh_import_verl_without_plugins() -> dict:
    return _fresh_python(_PROBE, VERL_USE_EXTERNAL_PLUGINS="none")


def test_plain_import_verl_registers_perception(fresh_import_verl, fresh_import_verl_without_plugins):
    assert fresh_import_verl["cls"] == "verl_perception.reward_manager.PerceptionRewardManager"
    # control: the registration comes from verl's entry-point loader, which this variable turns off
    assert fresh_import_verl_without_plugins["cls"] is None


def test_plugin_adds_no_imports_beyond_verls_reward_loop(fresh_import_verl, fresh_import_verl_without_plugins):
    """The plugin may pull in verl's reward-loop package (the registry lives there), the verl and transformers
    modules its attention and log-prob speed-ups patch, and our small config/task modules, nothing else: no
    scorer dependencies, no dataset adapter."""
    with_plugin = set(fresh_import_verl["modules"])
    reference = set(fresh_import_verl_without_plugins["modules_with_reward_loop"])
    extra = {m for m in with_plugin - reference if not m.startswith("verl_perception")}
    assert extra == set(), f"the plugin imports modules verl's reward loop does not: {sorted(extra)}"
    ours = {m for m in with_plugin if m.startswith("verl_perception")}
    assert "verl_perception.reward_manager" in ours
    assert "verl_perception.dataset" not in ours
    heavy = {"rapidfuzz", "pycocotools", "qwen_vl_utils", "scipy.optimize"} & (with_plugin - reference)
    assert heavy == set()


@pytest.fixture
def verl_base_config_post_init(monkeypatch):
    """verl 0.9.1's ``RewardManagerConfig.__post_init__`` calls ``super().__post_init__()``, which its
    ``BaseConfig`` lacks, so constructing one raises AttributeError for any name (verl never
    constructs it; trainer configs stay DictConfig). A no-op base hook lets the test run verl's own
    registry check, which is the part that concerns us."""
    from verl.base_config import BaseConfig

    if "__post_init__" not in vars(BaseConfig):
        monkeypatch.setattr(BaseConfig, "__post_init__", lambda self: None, raising=False)


def test_reward_manager_config_validates_perception(verl_base_config_post_init):
    from verl.workers.config.reward import RewardManagerConfig

    cfg = RewardManagerConfig(source="register", name="perception")
    assert cfg.name == "perception"
    with pytest.raises(AssertionError, match="not registered"):
        RewardManagerConfig(source="register", name="perceptoin")  # control: the check is real
