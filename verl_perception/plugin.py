"""verl plugin entry point (group ``verl.plugins``, name ``perception``).

``import verl`` loads every entry point of that group (unless ``VERL_USE_EXTERNAL_PLUGINS`` says
otherwise), in the driver and in each Ray worker; importing this module registers the
``perception`` reward manager in verl's reward-loop registry and the packed attention implementation
``flash_varlen_torch`` (:mod:`verl_perception.packed_attention`: padding-free training without the
flash-attn package) with transformers and verl. verl logs a failed plugin import only at DEBUG level,
so this module imports nothing optional, and a failure to install the attention is a warning that
leaves the reward manager registered: the dataset adapter is loaded by verl itself from
``data.custom_cls.path=pkg://verl_perception.dataset`` when a run asks for it.
"""

import warnings

from verl_perception import packed_attention
from verl_perception.reward_manager import NAME, PerceptionRewardManager

try:
    packed_attention.install()
except Exception as err:  # noqa: BLE001 - any failure here would otherwise be swallowed by verl
    warnings.warn(
        f"verl-perception: attention implementation {packed_attention.NAME!r} not installed ({err!r}); "
        "runs with ATTN_IMPL=sdpa or flash_attention_2 are unaffected",
        RuntimeWarning,
        stacklevel=1,
    )

__all__ = ["NAME", "PerceptionRewardManager"]
