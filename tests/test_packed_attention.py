"""The packed attention implementation (verl_perception.packed_attention): flash-attn's API and masking, the
transformers registration, and verl's padding-free path, against independent references on the CPU.

The CUDA kernel behind it (torch.nn.attention.varlen) is checked on a GPU by benchmarks/actor_step.py, which
compares it with this module's reference path and with sdpa on the real-shape twins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from verl_perception import packed_attention
from verl_perception.packed_attention import NAME, flash_attn_func, flash_attn_varlen_func

CHECK = Path(__file__).with_name("_packed_verl_check.py")


def naive_attention(q, k, v, lengths_q, lengths_k, causal, window=(-1, -1), scale=None):
    """Float64 softmax(q k^T) v per sequence, masks written out element by element (flash-attn's rule:
    query i of a sequence sits at key position i + len_k - len_q)."""
    q, k, v = (t.double() for t in (q, k, v))
    groups = q.shape[1] // k.shape[1]
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    out, sq, sk = torch.zeros_like(q), 0, 0
    for lq, lk in zip(lengths_q, lengths_k):
        for h in range(q.shape[1]):
            scores = q[sq:sq + lq, h] @ k[sk:sk + lk, h // groups].T * scale
            for i in range(lq):
                for j in range(lk):
                    pos = i + lk - lq
                    if (causal and j > pos) or (window[0] >= 0 and j < pos - window[0]) or (
                            window[1] >= 0 and j > pos + window[1]):
                        scores[i, j] = -torch.inf
            out[sq:sq + lq, h] = torch.softmax(scores, -1) @ v[sk:sk + lk, h // groups]
        sq, sk = sq + lq, sk + lk
    return out


def packed(lengths, heads, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(sum(lengths), heads, dim, generator=g)


def cu(lengths):
    return torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int32)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_varlen_matches_naive_attention(causal, kv_heads):
    lengths = [5, 1, 9, 3]
    q, k, v = packed(lengths, 4), packed(lengths, kv_heads, seed=1), packed(lengths, kv_heads, seed=2)
    got = flash_attn_varlen_func(q, k, v, cu(lengths), cu(lengths), max(lengths), max(lengths), causal=causal)
    assert got.shape == q.shape
    torch.testing.assert_close(got.double(), naive_attention(q, k, v, lengths, lengths, causal), atol=1e-5, rtol=1e-5)


def test_varlen_shorter_queries_and_windows_align_bottom_right():
    """Decode-like shapes (queries shorter than keys) and sliding windows, with a custom scale."""
    lq, lk = [2, 1, 3], [6, 4, 3]
    q, k, v = packed(lq, 2), packed(lk, 1, seed=1), packed(lk, 1, seed=2)
    for causal, window in [(True, (-1, -1)), (True, (2, -1)), (False, (1, 1)), (False, (-1, 0))]:
        got = flash_attn_varlen_func(q, k, v, cu(lq), cu(lk), 3, 6, softmax_scale=0.3, causal=causal,
                                     window_size=window)
        want = naive_attention(q, k, v, lq, lk, causal, window if not causal else (window[0], 0), scale=0.3)
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def test_varlen_rejects_what_it_does_not_do():
    q = packed([3], 4)
    with pytest.raises(ValueError, match="dropout"):
        flash_attn_varlen_func(q, q, q, cu([3]), cu([3]), 3, 3, dropout_p=0.1)
    with pytest.raises(ValueError, match="multiple"):
        flash_attn_varlen_func(q, packed([3], 3), packed([3], 3), cu([3]), cu([3]), 3, 3)


def test_flash_attn_func_is_one_sequence_per_row():
    q, k, v = (torch.randn(3, 7, 4, 8, generator=torch.Generator().manual_seed(s)) for s in range(3))
    got = flash_attn_func(q, k[:, :, :2], v[:, :, :2], causal=True)
    want = naive_attention(q.reshape(21, 4, 8), k[:, :, :2].reshape(21, 2, 8), v[:, :, :2].reshape(21, 2, 8),
                           [7] * 3, [7] * 3, causal=True)
    torch.testing.assert_close(got.double(), want.view(3, 7, 4, 8), atol=1e-5, rtol=1e-5)


def test_gradients_match_naive_attention():
    lengths = [4, 6]
    q, k, v = (t.requires_grad_() for t in (packed(lengths, 2), packed(lengths, 1, seed=1), packed(lengths, 1, seed=2)))
    weights = torch.randn(q.shape, generator=torch.Generator().manual_seed(9))
    (flash_attn_varlen_func(q, k, v, cu(lengths), cu(lengths), 6, 6, causal=True) * weights).sum().backward()
    got = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    (naive_attention(q, k, v, lengths, lengths, True) * weights.double()).sum().backward()
    for g, t in zip(got, (q, k, v)):
        torch.testing.assert_close(g, t.grad, atol=1e-5, rtol=1e-5)


def test_install_registers_with_transformers_and_verl():
    import verl  # noqa: F401  - the plugin runs install()
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    import verl.models.transformers.qwen2_vl as verl_qwen2_vl

    assert NAME in ALL_ATTENTION_FUNCTIONS.valid_keys() and NAME in ALL_MASK_ATTENTION_FUNCTIONS.valid_keys()
    assert verl_qwen2_vl.flash_attn_varlen_func is flash_attn_varlen_func  # no flash-attn in the test venv
    packed_attention.install()  # idempotent
    assert ALL_ATTENTION_FUNCTIONS[NAME] is packed_attention.attention_forward


def test_install_never_replaces_a_real_flash_attn():
    class Module:  # a verl module that imported flash-attn
        flash_attn_varlen_func = object()

    assert packed_attention._give_verl_our_functions(Module) is False
    assert not hasattr(Module, "flash_attn_func")


def _padded_batch(processor):
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(200, 300), (120, 90)]]
    texts = [processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}],
                                           add_generation_prompt=True)
             for t in ["Detect all objects.", "Find the red dog in the picture, please, and say where it is."]]
    return processor(text=texts, images=images, return_tensors="pt", padding=True, padding_side="left")


@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_qwen3_model_dir"])
def test_model_under_packed_attention_matches_eager(fixture, request):
    """A left-padded batch with two images through the whole model (vision tower in one varlen call per
    block, text unpadded by the mask): the logits of every real token equal eager attention's, and so do
    the gradients of the vision tower's first block."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import verl  # noqa: F401

    path = request.getfixturevalue(fixture)
    enc = _padded_batch(AutoProcessor.from_pretrained(path))
    keep = enc["attention_mask"].bool()
    results = {}
    for impl in ("eager", NAME):
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, attn_implementation=impl)
        assert model.model.visual.config._attn_implementation == impl
        logits = model(**enc).logits[keep]
        (logits.float().square().mean()).backward()
        grad = next(model.model.visual.blocks[0].parameters()).grad
        results[impl] = (logits.detach(), grad.clone())
    torch.testing.assert_close(results[NAME][0], results["eager"][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(results[NAME][1], results["eager"][1], atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("fixture,dtype,tolerance", [
    ("tiny_model_dir", "bfloat16", 0.02),   # verl's Qwen2.5-VL attention computes in bf16 (FSDP's precision)
    ("tiny_qwen3_model_dir", "float32", 1e-5),
])
def test_verl_padding_free_micro_batch_matches_each_sequence_alone(fixture, dtype, tolerance, request):
    """verl's use_remove_padding path (its monkey patch, packed input, 4-row position ids, no mask) under
    the packed attention gives each sequence the log-probs it has alone under eager attention. Leaking
    attention across the two sequences moves them by 0.26-0.44 (seen when cu_seqlens is cut to one span)."""
    path = request.getfixturevalue(fixture)
    proc = subprocess.run([sys.executable, str(CHECK), path, dtype], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["tokens"] > 100
    assert result["max_abs_diff"] < tolerance, result
