"""verl plugin entry point (group ``verl.plugins``, name ``perception``).

``import verl`` loads every entry point of that group (unless ``VERL_USE_EXTERNAL_PLUGINS`` says
otherwise), in the driver and in each Ray worker. Importing this module

* registers the ``perception`` reward manager in verl's reward-loop registry;
* registers the packed attention implementation ``flash_varlen_torch`` with transformers and verl
  (:mod:`verl_perception.packed_attention`: padding-free training without the flash-attn package);
* makes verl's log-prob fallback for runs without flash-attn a chunked float32 one
  (:mod:`verl_perception.token_log_probs`: verl's own loops once per token of a packed micro-batch).

verl logs a failed plugin import only at DEBUG level, so this module imports nothing optional, and a
failure of the two speed-ups is a warning that leaves the reward manager registered (the runs they
concern then run at verl's own speed). The dataset adapter is loaded by verl itself from
``data.custom_cls.path=pkg://verl_perception.dataset`` when a run asks for it.
"""

import warnings

from verl_perception import packed_attention, token_log_probs
from verl_perception.reward_manager import NAME, PerceptionRewardManager

for _install, _what in (
    (packed_attention.install, f"attention implementation {packed_attention.NAME!r}"),
    (token_log_probs.install, "chunked log-probs for verl without flash-attn"),
):
    try:
        _install()
    except Exception as err:  # noqa: BLE001 - any failure here would otherwise be swallowed by verl
        warnings.warn(f"verl-perception: {_what} not installed ({err!r})", RuntimeWarning, stacklevel=1)

__all__ = ["NAME", "PerceptionRewardManager"]
