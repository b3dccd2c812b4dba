"""Actor-phase cost of verl micro-batches on a real-shape twin: the padded sdpa path against the packed
flash_varlen_torch path, their log-probs against a float32 reference, and where the time goes.

    python benchmarks/actor_step.py [--family qwen2_5_vl --size 3b] [--seqs 6] [--response 2048] [--out DIR]

One micro-batch of the recipe's shape: ``--seqs`` sequences, each a COCO-like image of a COCO size at the
family's recipe pixel bounds with the 80-class detection instruction, plus ``--response`` random answer
tokens (6 x ~2,600 tokens fill verl's default ``ppo_max_token_len_per_gpu`` of 16,384). The twin's
weights are random (built on the device in seconds, no file); its shapes are the released model's.

1. kernel: ``packed_attention.flash_attn_varlen_func`` (torch's varlen FA2 kernel) against the module's
   per-sequence reference in float32, forward and backward, for the text shape (GQA, causal) and the vision
   tower's windows; and the vision windows' cost as transformers' sdpa path makes it (one call per window)
   against one varlen call;
2. model, through verl's own monkey patch as its FSDP engine runs it: (a) ``use_remove_padding=False`` +
   sdpa (the micro-batch padded to its longest sequence, the vision tower split per window) and (b)
   ``use_remove_padding=True`` + flash_varlen_torch (one packed row); a forward (the log-prob passes) and a
   forward + backward with gradient checkpointing (the update), median of ``--repeats`` after a warm-up;
   tokens/s and TFLOP/s by verl's ``FlopsCounter`` (MFU against its H200 figure, 989 TFLOP/s);
3. equality: the response log-probs of (a) and (b) against float32 weights and attention on the same
   inputs (the first two sequences): the packed path must be as close to it as the padded one;
4. profile: ``torch.profiler`` of one forward + backward of each path: kernel launches, top ops by CUDA time.

Prints a table last; ``--out DIR`` also gets ``actor_step.json`` and the two profiles.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import verl  # noqa: E402,F401  - loads the plugin: registers flash_varlen_torch
from dataset_throughput import make_image, pool_sizes  # noqa: E402

from verl_perception.coco import COCO_NAMES  # noqa: E402
from verl_perception.packed_attention import NAME, flash_attn_varlen_func, reference_attention  # noqa: E402
from verl_perception.preprocess.prompts import detection_prompt  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int, warmup: int = 1) -> tuple[float, object]:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup``, and the last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


# ----------------------------------------------------------------------------------------------
# 1. the kernel


def kernel_checks(device, heads: int, kv_heads: int, head_dim: int, lengths: list[int], causal: bool) -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    total = sum(lengths)
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32, device=device)
    q, k, v = (torch.randn(total, h, head_dim, generator=g, device=device, dtype=torch.bfloat16)
               for h in (heads, kv_heads, kv_heads))
    weight = torch.randn(total, heads, head_dim, generator=g, device=device)

    def run(fn, *ts):
        ts = [t.detach().clone().requires_grad_() for t in ts]
        out = fn(*ts)
        (out.float() * weight).sum().backward()
        return out.detach(), [t.grad for t in ts]

    got, grads = run(lambda a, b, c: flash_attn_varlen_func(a, b, c, cu, cu, max(lengths), max(lengths),
                                                            causal=causal), q, k, v)
    window = (-1, 0) if causal else (-1, -1)
    want, want_grads = run(lambda a, b, c: reference_attention(a, b, c, cu, cu, None, window), q.float(), k.float(), v.float())
    return {"heads": f"{heads}/{kv_heads}x{head_dim}", "tokens": total, "sequences": len(lengths),
            "causal": causal, "out_rel_err": rel_err(got, want),
            "grad_rel_err": max(rel_err(a, b) for a, b in zip(grads, want_grads))}


def vision_window_timing(device, heads: int, head_dim: int, windows: list[int], repeats: int) -> dict:
    """One vision block's attention over ``windows`` (tokens per window): transformers' sdpa path (split,
    one call per window, concatenate) against one varlen call; forward + backward."""
    import torch.nn.functional as F

    total = sum(windows)
    cu = torch.tensor([0] + list(torch.tensor(windows).cumsum(0)), dtype=torch.int32, device=device)
    qkv = torch.randn(3, total, heads, head_dim, device=device, dtype=torch.bfloat16, requires_grad=True)

    def split_sdpa():
        q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in qkv)  # (1, H, T, D) as transformers holds them
        outs = [F.scaled_dot_product_attention(a, b, c) for a, b, c in
                zip(*(torch.split(t, windows, dim=2) for t in (q, k, v)))]
        torch.cat(outs, dim=2).float().sum().backward()

    def varlen():
        flash_attn_varlen_func(qkv[0], qkv[1], qkv[2], cu, cu, max(windows), max(windows)).float().sum().backward()

    t_split, _ = timed(split_sdpa, device, repeats)
    t_varlen, _ = timed(varlen, device, repeats)
    return {"windows": len(windows), "tokens": total, "split_sdpa_s": t_split, "varlen_s": t_varlen,
            "speedup": t_split / t_varlen}


# ----------------------------------------------------------------------------------------------
# 2-4. the model


def make_sequences(processor, seqs: int, response: int, seed: int) -> list[dict]:
    from io import BytesIO

    from PIL import Image

    rng = random.Random(seed)
    sizes = pool_sizes(rng)
    tokenizer = processor.tokenizer
    special = set(tokenizer.all_special_ids) | set(range(151643, len(tokenizer)))
    answer_ids = [i for i in range(0, 151643, 7) if i not in special]
    prompt = detection_prompt(COCO_NAMES)
    out = []
    for i in range(seqs):
        w, h = sizes[i % len(sizes)]
        image = Image.open(BytesIO(make_image(w, h, rng))).convert("RGB")
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        enc = processor(text=[text], images=[image], return_tensors="pt")
        answer = torch.tensor([[rng.choice(answer_ids) for _ in range(response)]])
        enc["input_ids"] = torch.cat([enc["input_ids"], answer], dim=1)
        enc["attention_mask"] = torch.ones_like(enc["input_ids"])
        if "mm_token_type_ids" in enc:
            enc["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], torch.zeros_like(answer)], dim=1)
        enc["response_len"] = response
        enc["size"] = (w, h)
        out.append(enc)
    return out


def position_ids(model, enc) -> torch.Tensor:
    """verl's (4, 1, L) position ids: text positions, then the model's 3-D M-RoPE positions."""
    kwargs = {"image_grid_thw": enc["image_grid_thw"], "attention_mask": enc["attention_mask"]}
    if "mm_token_type_ids" in enc:
        kwargs["mm_token_type_ids"] = enc["mm_token_type_ids"]
    vision, _ = model.model.get_rope_index(enc["input_ids"], **kwargs)
    text = torch.arange(enc["input_ids"].shape[1])[None, None]
    return torch.cat([text, vision.cpu()], dim=0)


def padded_batch(model, encs, device, dtype, pad_id: int) -> dict:
    """verl's use_remove_padding=False micro-batch: right-padded to the longest sequence, 2-D mask."""
    longest = max(e["input_ids"].shape[1] for e in encs)
    ids = torch.full((len(encs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encs), longest), dtype=torch.long)
    pos = torch.zeros((4, len(encs), longest), dtype=torch.long)
    for i, e in enumerate(encs):
        n = e["input_ids"].shape[1]
        ids[i, :n], mask[i, :n], pos[:, i, :n] = e["input_ids"][0], 1, position_ids(model, e)[:, 0]
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": pos.to(device),
            "pixel_values": torch.cat([e["pixel_values"] for e in encs]).to(device, dtype),
            "image_grid_thw": torch.cat([e["image_grid_thw"] for e in encs]).to(device)}


def packed_batch(model, encs, device, dtype) -> dict:
    """verl's use_remove_padding=True micro-batch: one row of every sequence, no mask."""
    return {"input_ids": torch.cat([e["input_ids"] for e in encs], dim=1).to(device),
            "position_ids": torch.cat([position_ids(model, e) for e in encs], dim=-1).to(device),
            "attention_mask": None,
            "pixel_values": torch.cat([e["pixel_values"] for e in encs]).to(device, dtype),
            "image_grid_thw": torch.cat([e["image_grid_thw"] for e in encs]).to(device)}


def response_log_probs(logits_rows: list[torch.Tensor], encs) -> list[torch.Tensor]:
    """Per sequence, the log-prob of each response token (float32), from that sequence's logits rows."""
    out = []
    for logits, e in zip(logits_rows, encs):
        ids = e["input_ids"][0].to(logits.device)
        r = e["response_len"]
        lp = torch.log_softmax(logits[-r - 1:-1].float(), -1).gather(-1, ids[-r:, None])[:, 0]
        out.append(lp)
    return out


def split_logits(logits: torch.Tensor, encs, packed: bool) -> list[torch.Tensor]:
    rows, start = [], 0
    for i, e in enumerate(encs):
        n = e["input_ids"].shape[1]
        if packed:
            rows.append(logits[0, start:start + n])
            start += n
        else:
            rows.append(logits[i, :n])
    return rows


def run_path(model, batch, encs, packed: bool, device, repeats: int):
    def forward():
        with torch.no_grad():
            return response_log_probs(split_logits(model(**batch).logits, encs, packed), encs)

    def update():
        model.zero_grad(set_to_none=True)
        lps = response_log_probs(split_logits(model(**batch).logits, encs, packed), encs)
        loss = -torch.stack([lp.mean() for lp in lps]).mean()
        loss.backward()
        return loss.detach()

    t_fwd, lps = timed(forward, device, repeats)
    t_upd, _ = timed(update, device, repeats)
    model.zero_grad(set_to_none=True)
    return t_fwd, t_upd, [lp.cpu() for lp in lps]


def profile_path(model, batch, encs, packed: bool, out_file: Path | None) -> dict:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        model.zero_grad(set_to_none=True)
        lps = response_log_probs(split_logits(model(**batch).logits, encs, packed), encs)
        (-torch.stack([lp.mean() for lp in lps]).mean()).backward()
        sync(next(model.parameters()).device)
    model.zero_grad(set_to_none=True)
    events = prof.key_averages()
    sort = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
    table = events.table(sort_by=sort, row_limit=25)
    if out_file is not None:
        out_file.write_text(table)
    kernels = sum(e.count for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA)
    sdpa_calls = sum(e.count for e in events if e.key == "aten::scaled_dot_product_attention")
    return {"cuda_kernels": kernels, "sdpa_calls": sdpa_calls, "top": table.splitlines()[:12]}


def build_model(family: str, size: str, device, dtype, attn: str):
    from verl_perception.tiny_model import model_class, make_tiny_processor
    from verl_perception.frame import get_family

    fam = get_family(family)
    processor = make_tiny_processor(None, None, fam)
    if size in ("3b", "4b"):
        from verl_perception.twins import get_twin, twin_config

        config = twin_config(get_twin(fam, size), processor.tokenizer)
    else:  # the tiny model: a CPU run of this script checks its own code paths
        from verl_perception.tiny_model import tiny_config, tiny_qwen3_config

        config = tiny_qwen3_config(processor.tokenizer) if fam.name == "qwen3_vl" else tiny_config(processor.tokenizer)
    config._attn_implementation = attn
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = model_class(fam)(config)
    finally:
        torch.set_default_dtype(previous)
    return model, processor


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="qwen2_5_vl", choices=["qwen2_5_vl", "qwen3_vl"])
    parser.add_argument("--size", default="3b", help="3b (qwen2_5_vl), 4b (qwen3_vl) or tiny (a CPU check)")
    parser.add_argument("--seqs", type=int, default=6, help="sequences per micro-batch (default 6: ~16k tokens)")
    parser.add_argument("--response", type=int, default=2048, help="answer tokens per sequence (recipe max)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-seqs", type=int, default=2, help="sequences checked against float32")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="directory for actor_step.json and profiles")
    args = parser.parse_args(argv)
    from verl.models.transformers.monkey_patch import apply_monkey_patch
    from verl.utils.flops_counter import FlopsCounter

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16  # verl trains under FSDP mixed precision: bf16 compute
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "family": args.family, "size": args.size}

    t0 = time.perf_counter()
    model, processor = build_model(args.family, args.size, device, dtype, "sdpa")
    text, vision = model.config.get_text_config(), model.config.vision_config
    result["build_s"] = time.perf_counter() - t0
    result["params"] = sum(p.numel() for p in model.parameters())

    # 1. kernel
    if device.type == "cuda":
        tdim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        vdim = vision.hidden_size // vision.num_heads
        result["kernel"] = [
            kernel_checks(device, text.num_attention_heads, text.num_key_value_heads, tdim, [2600, 2100, 700], True),
            kernel_checks(device, vision.num_heads, vision.num_heads, vdim, [64] * 40 + [48] * 8, False),
        ]
        result["vision_windows"] = vision_window_timing(device, vision.num_heads, vdim, [64] * 30 * args.seqs,
                                                        args.repeats)

    encs = make_sequences(processor, args.seqs, args.response, seed=0)
    lengths = [e["input_ids"].shape[1] for e in encs]
    result["micro_batch"] = {"sequences": len(encs), "tokens": sum(lengths), "longest": max(lengths),
                             "image_tokens": [int(e["image_grid_thw"].prod() // 4) for e in encs],
                             "image_sizes": [e["size"] for e in encs]}
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    flops = FlopsCounter(model.config)
    pad_id = processor.tokenizer.pad_token_id

    # (a) padded sdpa, as verl runs it without flash-attn before this change
    apply_monkey_patch(model, use_remove_padding=False)
    model.train()
    batch_a = padded_batch(model, encs, device, dtype, pad_id)
    t_fwd_a, t_upd_a, lp_a = run_path(model, batch_a, encs, False, device, args.repeats)
    profile_a = None if args.no_profile else profile_path(model, batch_a, encs, False,
                                                           args.out / "profile_padded_sdpa.txt" if args.out else None)

    # float32 reference of the same weights, same (padded sdpa) inputs, first sequences
    ref_n = min(args.reference_seqs, len(encs))
    reference = copy.deepcopy(model).float().eval()
    with torch.no_grad():
        ref_batch = padded_batch(reference, encs[:ref_n], device, torch.float32, pad_id)
        lp_ref = [lp.cpu() for lp in response_log_probs(split_logits(reference(**ref_batch).logits, encs[:ref_n], False),
                                                        encs[:ref_n])]
    del reference, ref_batch
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # (b) packed flash_varlen_torch, verl's padding-free path
    apply_monkey_patch(model, use_remove_padding=True)
    model.set_attn_implementation(NAME)
    batch_b = packed_batch(model, encs, device, dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_fwd_b, t_upd_b, lp_b = run_path(model, batch_b, encs, True, device, args.repeats)
    profile_b = None if args.no_profile else profile_path(model, batch_b, encs, True,
                                                           args.out / "profile_packed_varlen.txt" if args.out else None)
    result["peak_allocated_gb_packed"] = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None

    def err(lps):
        diffs = torch.cat([(a - b).abs() for a, b in zip(lps[:ref_n], lp_ref)])
        return {"mean_abs": float(diffs.mean()), "max_abs": float(diffs.max())}

    ab = torch.cat([(a - b).abs() for a, b in zip(lp_a, lp_b)])
    result["log_probs"] = {"padded_vs_fp32": err(lp_a), "packed_vs_fp32": err(lp_b),
                           "packed_vs_padded": {"mean_abs": float(ab.mean()), "max_abs": float(ab.max())},
                           "mean_log_prob": float(torch.cat(lp_ref).mean())}
    images = [int(e["image_grid_thw"].prod()) for e in encs]

    def perf(t, passes):  # verl's FlopsCounter counts fwd + bwd (6 N T); a forward is a third of it
        if device.type == "cuda":
            achieved, promised = flops.estimate_flops(lengths, t, images_seqlens=images)
        else:  # verl's device table needs a GPU name; the count alone on a CPU
            from verl.utils.flops_counter import ESTIMATE_FUNC

            achieved = ESTIMATE_FUNC[model.config.model_type](model.config, sum(lengths), lengths, t,
                                                              images_seqlens=images)
            promised = float("nan")
        return {"s": t, "tokens_per_s": sum(lengths) / t, "tflops": achieved * passes / 3,
                "mfu": achieved * passes / 3 / promised}

    result["paths"] = {
        "padded_sdpa": {"forward": perf(t_fwd_a, 1), "update": perf(t_upd_a, 3), "profile": profile_a},
        "packed_varlen": {"forward": perf(t_fwd_b, 1), "update": perf(t_upd_b, 3), "profile": profile_b},
    }
    result["speedup"] = {"forward": t_fwd_a / t_fwd_b, "update": t_upd_a / t_upd_b}
    if args.out:
        (args.out / "actor_step.json").write_text(json.dumps(result, indent=1))

    print(json.dumps({k: result[k] for k in ("device", "family", "size", "params", "build_s", "micro_batch")}))
    for row in result.get("kernel", []):
        print(f"kernel {row['heads']} causal={row['causal']}: {row['sequences']} seqs / {row['tokens']} tokens, "
              f"out rel err {row['out_rel_err']:.2e}, grad rel err {row['grad_rel_err']:.2e} (vs float32)")
    if "vision_windows" in result:
        vw = result["vision_windows"]
        print(f"vision block attention, {vw['windows']} windows / {vw['tokens']} tokens, fwd+bwd: split sdpa "
              f"{vw['split_sdpa_s'] * 1e3:.1f} ms, varlen {vw['varlen_s'] * 1e3:.1f} ms ({vw['speedup']:.1f}x)")
    lp = result["log_probs"]
    print(f"log-probs vs float32 (mean |d| / max |d|, mean log-prob {lp['mean_log_prob']:.2f}): padded sdpa "
          f"{lp['padded_vs_fp32']['mean_abs']:.4f} / {lp['padded_vs_fp32']['max_abs']:.4f}, packed varlen "
          f"{lp['packed_vs_fp32']['mean_abs']:.4f} / {lp['packed_vs_fp32']['max_abs']:.4f}; packed vs padded "
          f"{lp['packed_vs_padded']['mean_abs']:.4f} / {lp['packed_vs_padded']['max_abs']:.4f}")
    print(f"{'path':<14} {'fwd s':>7} {'fwd tok/s':>10} {'upd s':>7} {'upd tok/s':>10} {'upd TFLOP/s':>12} "
          f"{'upd MFU':>8} {'kernels':>8} {'sdpa calls':>10}")
    for name, p in result["paths"].items():
        prof = p["profile"] or {}
        print(f"{name:<14} {p['forward']['s']:7.2f} {p['forward']['tokens_per_s']:10.0f} {p['update']['s']:7.2f} "
              f"{p['update']['tokens_per_s']:10.0f} {p['update']['tflops']:12.1f} {p['update']['mfu']:8.1%} "
              f"{prof.get('cuda_kernels', 0):8d} {prof.get('sdpa_calls', 0):10d}")
    print(f"speed-up packed/padded: forward {result['speedup']['forward']:.2f}x, update {result['speedup']['update']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
