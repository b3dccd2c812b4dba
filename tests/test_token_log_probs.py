"""Chunked float32 token log-probs (verl_perception.token_log_probs): the function, its gradient, verl's use of
it, and the number of operations it dispatches against verl's per-row fallback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from verl_perception.token_log_probs import token_log_probs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from token_log_probs import CountOps  # noqa: E402  - the benchmark's counter of dispatched operations


def case(rows=37, vocab=101, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(rows, vocab, generator=g) * 4).to(dtype)
    labels = torch.randint(0, vocab, (rows,), generator=g)
    return logits, labels


@pytest.mark.parametrize("chunk", [1, 5, 37, 1000])
def test_equals_log_softmax_in_float64(chunk):
    logits, labels = case()
    got = token_log_probs(logits, labels, rows=chunk)
    want = torch.log_softmax(logits.double(), -1).gather(-1, labels[:, None])[:, 0]
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-6)


def test_any_leading_shape_and_bfloat16_logits_in_float32():
    logits, labels = case(rows=24, dtype=torch.bfloat16)
    got = token_log_probs(logits.view(2, 3, 4, -1), labels.view(2, 3, 4))
    assert got.shape == (2, 3, 4) and got.dtype == torch.float32
    want = torch.log_softmax(logits.double(), -1).gather(-1, labels[:, None])[:, 0]
    torch.testing.assert_close(got.reshape(-1).double(), want, atol=1e-5, rtol=1e-6)  # exact on the bf16 inputs


def test_gradient_is_exact():
    logits, labels = case(rows=7, vocab=11)
    logits = logits.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: token_log_probs(x, labels, rows=3), (logits,))
    # and against autograd of the plain formula, in bfloat16 storage
    weights = torch.randn(7, generator=torch.Generator().manual_seed(1))
    b = logits.detach().bfloat16().requires_grad_()
    (token_log_probs(b, labels, rows=2) * weights).sum().backward()
    ref = b.detach().double().requires_grad_()
    (torch.log_softmax(ref, -1).gather(-1, labels[:, None])[:, 0] * weights.double()).sum().backward()
    torch.testing.assert_close(b.grad.double(), ref.grad, atol=1e-2, rtol=1e-2)  # bf16 storage of the gradient


def test_verl_uses_it_without_flash_attn():
    import verl  # noqa: F401  - the plugin installs it
    import verl.utils.torch_functional as F

    assert F.logprobs_from_logits_v2 is token_log_probs
    if not F.FLAH_ATTN_CROSS_ENTROPY_LOSS_AVAILABLE:
        logits, labels = case()
        torch.testing.assert_close(F.logprobs_from_logits(logits, labels), token_log_probs(logits, labels))


def test_dispatches_per_chunk_not_per_token():
    """verl's own fallback dispatches operations per row (per token of a packed micro-batch), forward and
    backward; this one per chunk. 3,000 tokens in one chunk, float32 and bfloat16 logits."""
    import verl  # noqa: F401
    from verl.utils.torch_functional import logprobs_from_logits_naive

    import verl_perception.token_log_probs as mod

    assert mod.VERL_FALLBACK is not None and mod.VERL_FALLBACK.__module__ == "verl.utils.torch_functional"
    for dtype in (torch.float32, torch.bfloat16):
        logits, labels = case(rows=3000, vocab=64, dtype=dtype)
        counts, values = {}, {}
        for name, fn in (("ours", mod.token_log_probs), ("verl", mod.VERL_FALLBACK),
                         ("naive", logprobs_from_logits_naive)):
            x = logits.clone().requires_grad_()
            with CountOps() as ops:
                out = fn(x, labels)
                out.float().sum().backward()
            counts[name], values[name] = ops.count, out.detach().double()
        assert counts["ours"] < 40 and counts["naive"] < 40, counts
        assert counts["verl"] > 3000 * 2, counts
        torch.testing.assert_close(values["ours"], values["naive"], atol=0.1 if dtype == torch.bfloat16 else 1e-5,
                                   rtol=0)
        torch.testing.assert_close(values["ours"], values["verl"], atol=0.1 if dtype == torch.bfloat16 else 1e-5,
                                   rtol=0)
