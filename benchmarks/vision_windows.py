"""Cost of Qwen2.5-VL's windowed vision attention without flash-attn (a benchmark, not a test).

The learning check's small model (``tiny_model.SIZES["small"]``) is built twice, with the real tower's
windowed attention (full attention in the last block only) and with full attention in every block (what
``SIZES["small"]`` uses), on the same random weights. Both run a forward + backward (verl's actor update)
and a forward (its log-prob passes) over the same batch of learning-check rows (synthetic shapes, 300 x 400
drawings seen at 168 x 252, 54 image tokens each, a short prompt and a ~30-token answer), with
``attn_implementation="sdpa"``, on the GPU when there is one. Without flash-attn, transformers' vision
attention makes one attention call per window of each image (6 windows per image here); the benchmark
prints, for each variant, the ops dispatched (torch profiler) and the seconds per pass, then the ratios.

    python benchmarks/vision_windows.py [--rows 64] [--repeats 5] [--device cuda|cpu]

Exits 1 when the windowless variant is not faster per forward + backward (the reason ``SIZES["small"]``
has no windows).
"""

from __future__ import annotations

import argparse
import io
import sys
import time

import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile

from verl_perception.preprocess import synthetic_shapes as ss
from verl_perception.tiny_model import SIZES, make_tiny_processor, tiny_config

MIN_PIXELS, MAX_PIXELS = 3136, 64 * 28 * 28  # recipes/learning_check.sh
ANSWER = '{"bbox_2d": [120, 40, 168, 88], "label": "red circle"}'


def batch(processor, rows: int) -> dict[str, torch.Tensor]:
    images, texts = [], []
    for i in range(rows):
        scene = ss.make_scene(ss.scene_rng(0, "val", i), max_shapes=1)
        images.append(Image.open(io.BytesIO(scene.png)).convert("RGB"))
        prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Locate the red circle."}]}]
        texts.append(processor.apply_chat_template(prompt, add_generation_prompt=True) + ANSWER + "<|im_end|>")
    return dict(processor(text=texts, images=images, return_tensors="pt", padding=True))


def build(processor, windows: bool, seed: int = 0):
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = tiny_config(processor.tokenizer, "small")
    depth = config.vision_config.depth
    config.vision_config.fullatt_block_indexes = [depth - 1] if windows else list(range(depth))
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration._from_config(config, attn_implementation="sdpa")


def measure(model, inputs: dict, device: str, repeats: int) -> dict[str, float]:
    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def train_pass():
        out = model(**inputs)
        out.logits.float().mean().backward()
        model.zero_grad(set_to_none=True)

    def eval_pass():
        with torch.no_grad():
            model(**inputs)

    result = {}
    for name, fn in (("fwd+bwd", train_pass), ("fwd", eval_pass)):
        fn()  # warm-up: allocator, kernels
        sync()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
            sync()
        result[f"{name} ops"] = sum(e.count for e in prof.key_averages())
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync()
        result[f"{name} s"] = (time.perf_counter() - t0) / repeats
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=64, help="rows per pass (verl's micro-batch: ~64 of these rows)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)

    processor = make_tiny_processor(MIN_PIXELS, MAX_PIXELS, "qwen2_5_vl", SIZES["small"].vocab_ranks)
    inputs = {k: v.to(args.device) for k, v in batch(processor, args.rows).items()}
    grid = inputs["image_grid_thw"][0].tolist()
    print(f"{args.rows} rows on {args.device}: input_ids {tuple(inputs['input_ids'].shape)}, image grid {grid}")
    results = {}
    for windows in (True, False):
        model = build(processor, windows).to(args.device).train()
        name = "windows (real tower)" if windows else "no windows (SIZES['small'])"
        results[windows] = measure(model, inputs, args.device, args.repeats)
        r = results[windows]
        print(f"{name:28s} fwd+bwd {r['fwd+bwd s']:.3f} s, {r['fwd+bwd ops']:,} ops; "
              f"fwd {r['fwd s']:.3f} s, {r['fwd ops']:,} ops")  # fmt: skip
        del model
    w, nw = results[True], results[False]
    print(f"windows / no windows: fwd+bwd {w['fwd+bwd s'] / nw['fwd+bwd s']:.2f}x time, "
          f"{w['fwd+bwd ops'] / nw['fwd+bwd ops']:.2f}x ops; fwd {w['fwd s'] / nw['fwd s']:.2f}x time")  # fmt: skip
    return 0 if nw["fwd+bwd s"] < w["fwd+bwd s"] else 1


if __name__ == "__main__":
    sys.exit(main())
