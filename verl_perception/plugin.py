"""verl plugin entry point (group ``verl.plugins``, name ``perception``).

``import verl`` loads every entry point of that group (unless ``VERL_USE_EXTERNAL_PLUGINS`` says
otherwise), in the driver and in each Ray worker; importing this module registers the
``perception`` reward manager in verl's reward-loop registry. verl logs a failed plugin import
only at DEBUG level, so this module imports nothing optional: the dataset adapter is loaded by
verl itself from ``data.custom_cls.path=pkg://verl_perception.dataset`` when a run asks for it.
"""

from verl_perception.reward_manager import NAME, PerceptionRewardManager

__all__ = ["NAME", "PerceptionRewardManager"]
