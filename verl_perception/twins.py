"""Real-shape twins: random-weight models with the exact shapes of Qwen2.5-VL-3B-Instruct and Qwen3-VL-4B-Instruct.

A twin measures what the real model costs (step time, memory, throughput) where its weights are not at
hand (no model hub here): every architecture number is the released ``config.json``'s, the tokenizer is
the real Qwen2.5 BPE with the real added-token ids (:mod:`verl_perception.tiny_model`), the vocabulary
is the real padded 151,936, and the processor is the family's with the recipes' pixel bounds. Only the
weights are random.

A random model stops at random: an end-of-turn token ends a rollout early, a vision token breaks the
next forward pass over prompt + response ("Image features and image tokens do not match"). A twin never
samples either: its embedding is tied to the LM head (as in both released models), so the rows of
:func:`never_sampled_ids` (vision tokens, ``<|im_end|>``, ``<|endoftext|>`` and the padding ids past the
tokenizer) are zeroed and the rest scaled by :data:`LOGIT_SCALE`. Those tokens then get logit exactly 0
while the others spread over about +-40 (hidden state norm ~45 after the final RMSNorm, initial embedding
std 0.02, times 10), so their probability is ~e^-40 even before top-k: every rollout runs to
``max_response_length``, the worst case for time and memory. Figures measured with a twin say so.

Weights are built on the device (``device="cuda"``: seconds on a GPU; 3.75B / 4.44B parameters in
bfloat16 are 7.5 / 8.9 GB) and never shipped; ``config_only=True`` writes config, generation config,
tokenizer and processor only (for CPU checks and dry runs).

Command line: ``python -m verl_perception.tiny_model --out DIR --size 3b`` (Qwen2.5-VL) or
``--family qwen3_vl --size 4b``, with ``--config-only`` or ``--device cuda``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from verl_perception.frame import QWEN2_5_VL, QWEN3_VL, get_family

# Scale of the kept embedding rows (see the module docstring).
LOGIT_SCALE = 10.0
# The released checkpoints pad the vocabulary to 151,936 (the tokenizer has 151,665 / 151,669 tokens).
REAL_VOCAB_SIZE = 151_936


@dataclass(frozen=True)
class Twin:
    """One released model's architecture: ``text`` and ``vision`` are its ``config.json`` sub-configs
    (every field that sets a shape or the computation), ``params`` its published parameter count."""

    family: str
    size: str
    source: str
    params: int
    text: dict = field(repr=False)
    vision: dict = field(repr=False)


TWINS: dict[tuple[str, str], Twin] = {
    # Qwen/Qwen2.5-VL-3B-Instruct, config.json (transformers 4.52 layout); 3,754,622,976 parameters as the
    # released safetensors load (e.g. MTEB's model record: n_parameters=3754622976).
    (QWEN2_5_VL.name, "3b"): Twin(
        family=QWEN2_5_VL.name,
        size="3b",
        source="Qwen/Qwen2.5-VL-3B-Instruct config.json",
        params=3_754_622_976,
        text=dict(
            hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
            num_key_value_heads=2, hidden_act="silu", max_position_embeddings=128000, max_window_layers=70,
            rms_norm_eps=1e-6, sliding_window=32768, use_sliding_window=False, attention_dropout=0.0,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
        ),
        vision=dict(
            depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
            hidden_act="silu", in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
            window_size=112, fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2,
        ),
    ),
    # Qwen/Qwen3-VL-4B-Instruct, config.json (transformers 4.57 layout); 4,437,815,808 parameters as the
    # released checkpoint loads ("4.44B params").
    (QWEN3_VL.name, "4b"): Twin(
        family=QWEN3_VL.name,
        size="4b",
        source="Qwen/Qwen3-VL-4B-Instruct config.json",
        params=4_437_815_808,
        text=dict(
            hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
            num_key_value_heads=8, head_dim=128, hidden_act="silu", max_position_embeddings=262144,
            rms_norm_eps=1e-6, attention_bias=False, attention_dropout=0.0,
            rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20],
                             "mrope_interleaved": True},
        ),
        vision=dict(
            depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2560,
            hidden_act="gelu_pytorch_tanh", in_channels=3, patch_size=16, spatial_merge_size=2,
            temporal_patch_size=2, num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17],
        ),
    ),
}


def get_twin(family, size: str) -> Twin:
    """The twin of ``family`` (a name or :class:`~verl_perception.frame.FrameSpec`) at ``size``."""
    name = get_family(family).name
    try:
        return TWINS[(name, size)]
    except KeyError:
        known = ", ".join(f"--family {f} --size {s}" for f, s in TWINS)
        raise ValueError(f"no real-shape twin {size!r} for {name} (known: {known})") from None


def twin_config(twin: Twin, tokenizer):
    """The transformers config of ``twin``, with every special-token id the tokenizer defines (the real ids)."""
    from transformers import Qwen2_5_VLConfig, Qwen3VLConfig

    from verl_perception.tiny_model import special_token_ids

    _, token_ids, vision_ids = special_token_ids(tokenizer)
    text = dict(twin.text, vocab_size=REAL_VOCAB_SIZE, tie_word_embeddings=True, **token_ids)
    if twin.family == QWEN3_VL.name:
        return Qwen3VLConfig(text_config=text, vision_config=dict(twin.vision), tie_word_embeddings=True,
                             architectures=["Qwen3VLForConditionalGeneration"], **vision_ids)
    text.update(vision_ids)  # generation and the rope index read them from the text config too
    return Qwen2_5_VLConfig(text_config=text, vision_config=dict(twin.vision), tie_word_embeddings=True,
                            architectures=["Qwen2_5_VLForConditionalGeneration"], **vision_ids, **token_ids)


def never_sampled_ids(tokenizer, vocab_size: int) -> list[int]:
    """Ids a twin must never generate: the vision tokens, both end tokens (so every rollout runs to its
    length limit) and the padding ids no tokenizer entry spells."""
    from verl_perception.tiny_model import vision_token_ids

    ends = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    return sorted(set(vision_token_ids(tokenizer)) | set(ends) | set(range(len(tokenizer), vocab_size)))


def count_parameters(config) -> int:
    """Parameters of a model of ``config``, built on the meta device (no memory, no init)."""
    import torch

    from verl_perception.tiny_model import model_class

    family = QWEN3_VL if config.model_type == "qwen3_vl" else QWEN2_5_VL
    with torch.device("meta"):
        model = model_class(family)(config)
    return sum(p.numel() for p in model.parameters())


def build_twin(
    out_dir: str | os.PathLike,
    family,
    size: str,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    seed: int = 0,
    config_only: bool = False,
    device: str = "cpu",
) -> str:
    """Write the real-shape twin of ``family`` at ``size`` to ``out_dir``; return the path.

    ``config_only``: config, generation config, tokenizer and processor only. Otherwise the bfloat16
    weights are initialised on ``device`` (use ``"cuda"``: a CPU takes minutes and 7-9 GB), made never to
    sample :func:`never_sampled_ids`, and saved as safetensors.
    """
    import torch
    from transformers import GenerationConfig

    from verl_perception.tiny_model import model_class, make_tiny_processor

    twin = get_twin(family, size)
    family = get_family(twin.family)
    out_dir = os.fspath(out_dir)
    processor = make_tiny_processor(min_pixels, max_pixels, family)
    tokenizer = processor.tokenizer
    config = twin_config(twin, tokenizer)
    config.dtype = "bfloat16"
    generation_config = GenerationConfig(
        bos_token_id=config.get_text_config().bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"]),
        pad_token_id=config.get_text_config().pad_token_id,
    )
    if config_only:
        os.makedirs(out_dir, exist_ok=True)
        config.save_pretrained(out_dir)
        generation_config.save_pretrained(out_dir)
    else:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            with torch.random.fork_rng(devices=[]), torch.device(device):
                torch.manual_seed(seed)
                if device.startswith("cuda"):
                    torch.cuda.manual_seed(seed)
                model = model_class(family)(config)
        finally:
            torch.set_default_dtype(previous)
        embedding = model.get_input_embeddings().weight
        if model.get_output_embeddings().weight.data_ptr() != embedding.data_ptr():
            raise RuntimeError("a twin needs its LM head tied to the embedding (both released models tie them)")
        with torch.no_grad():
            embedding.mul_(LOGIT_SCALE)
            embedding[never_sampled_ids(tokenizer, config.get_text_config().vocab_size)] = 0
        model.generation_config = generation_config
        model.eval().save_pretrained(out_dir, safe_serialization=True)
        del model
    processor.save_pretrained(out_dir)
    return out_dir
