"""Token log-probs of one packed micro-batch: verl's fallback without flash-attn (a Python loop over tokens) against
verl_perception.token_log_probs (chunked float32), forward + backward, time and dispatched operations.

    python benchmarks/token_log_probs.py [--tokens 15848] [--vocab 151936] [--dtype bfloat16] [--repeats 3]

Defaults are the coco_detection micro-batch of the Qwen2.5-VL-3B twin (benchmarks/actor_step.py: 6 sequences,
15,848 tokens, bfloat16 logits of the 151,936-word vocabulary); on a CPU use fewer tokens. Prints the speed-up
of ours over verl's in this run, and the largest difference of their values.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import verl  # noqa: F401  - the plugin installs ours and keeps verl's as VERL_FALLBACK
import verl_perception.token_log_probs as ours


class CountOps(TorchDispatchMode):
    """Counts the ATen operations dispatched inside it (each at least one kernel launch on a GPU)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def run(fn, logits, labels):
    x = logits.detach().requires_grad_()
    out = fn(x, labels)
    out.float().sum().backward()
    return out.detach()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=15848)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g = torch.Generator(device=device).manual_seed(0)
    logits = (torch.randn(args.tokens, args.vocab, generator=g, device=device) * 3).to(getattr(torch, args.dtype))
    labels = torch.randint(0, args.vocab, (args.tokens,), generator=g, device=device)
    results = {}
    for name, fn in (("verl fallback (per-token loop)", ours.VERL_FALLBACK), ("chunked float32 (ours)", ours.token_log_probs)):
        with CountOps() as ops:
            out = run(fn, logits, labels)
        times = []
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            run(fn, logits, labels)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        results[name] = (statistics.median(times), ops.count, out.double())
    (t_verl, ops_verl, v_verl), (t_ours, ops_ours, v_ours) = results.values()
    print(f"{device} {args.tokens} tokens x {args.vocab} vocabulary, {args.dtype} logits, forward + backward:")
    for name, (t, n, _) in results.items():
        print(f"  {name:<32} {t:8.3f} s  {n:8d} ops dispatched")
    print(f"speed-up ours/verl: {t_verl / t_ours:.1f}x; max |difference| {float((v_verl - v_ours).abs().max()):.4f} "
          f"(verl's loop computes bfloat16 logits in bfloat16, ours in float32)")


if __name__ == "__main__":
    main()
