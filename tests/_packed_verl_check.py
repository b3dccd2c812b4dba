"""Run in a child process by tests/test_packed_attention.py (verl's monkey patch changes model classes for the
whole process): the log-probs of a packed micro-batch, the way verl's padding-free FSDP engine feeds it
(one row of all sequences, 4-row position ids, no attention mask, verl's patched model forward), against each
sequence alone through transformers' eager attention.

    python tests/_packed_verl_check.py MODEL_DIR [DTYPE]  ->  one JSON line {"max_abs_diff": ..., "tokens": ...}

DTYPE (default float32) is the weights' and the reference's: verl's Qwen2.5-VL attention casts float32
queries to bfloat16, as FSDP's mixed precision computes, so that family is checked in bfloat16.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import verl  # noqa: F401  - loads the plugin, which installs the packed attention
from verl_perception.packed_attention import NAME

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from actor_step import position_ids  # noqa: E402  - verl's (4, 1, L) position ids, as the benchmark builds them


def sequences(processor):
    """Two prompt + answer sequences with images of different sizes (processor outputs, one per sequence)."""
    rng = np.random.default_rng(0)
    out = []
    for (h, w), prompt, answer in [((200, 300), "Detect all objects.", '[{"bbox_2d": [1, 2, 30, 40]}]'),
                                   ((120, 90), "Find the red dog please.", "none here")]:
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True) + answer
        out.append(processor(text=[text], images=[image], return_tensors="pt"))
    return out


def log_probs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits[:-1].double(), -1).gather(-1, ids[1:, None])[:, 0]


def main(path: str, dtype: str = "float32") -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from verl.models.transformers.monkey_patch import apply_monkey_patch

    processor = AutoProcessor.from_pretrained(path)
    encs = sequences(processor)
    dtype = getattr(torch, dtype)
    reference = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, attn_implementation="eager")
    with torch.no_grad():
        expected = [log_probs(reference(**e).logits[0], e["input_ids"][0]) for e in encs]

    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, attn_implementation=NAME).eval()
    apply_monkey_patch(model, use_remove_padding=True)
    packed = {
        "input_ids": torch.cat([e["input_ids"] for e in encs], dim=1),
        "position_ids": torch.cat([position_ids(model, e) for e in encs], dim=-1),
        "pixel_values": torch.cat([e["pixel_values"] for e in encs]).to(dtype),
        "image_grid_thw": torch.cat([e["image_grid_thw"] for e in encs]),
        "attention_mask": None,
    }
    with torch.no_grad():
        logits = model(**packed).logits[0]
    got, start = [], 0
    for e in encs:
        n = e["input_ids"].shape[1]
        got.append(log_probs(logits[start:start + n], e["input_ids"][0]))
        start += n
    diff = max((g - x).abs().max().item() for g, x in zip(got, expected))
    print(json.dumps({"max_abs_diff": diff, "tokens": start, "mean_log_prob": float(torch.cat(got).mean())}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
