"""Per-token log-probabilities for verl without flash-attn's cross-entropy kernel: chunked, float32, O(1) kernel
launches per chunk instead of per token.

Why: verl's ``logprobs_from_logits`` uses flash-attn's Triton cross-entropy when flash-attn is installed and
otherwise falls back to ``logprobs_from_logits_v2``, which loops in Python over the first dimension of the
logits to save memory. Padding-free training (``use_remove_padding``) hands it logits of shape (total tokens,
vocab), so that loop runs once per token: ~15,000 iterations of log_softmax + gather per micro-batch, forward
and backward, each a handful of kernel launches, in every log-prob pass (old policy, reference) and in the
update. On an H200 with the Qwen2.5-VL-3B twin (coco_detection, 112 rollouts of ~2,600 tokens) verl's
old-log-prob pass took 27 s where the same model's packed forward takes 6.4 s for the same tokens
(benchmarks/actor_step.py; docs/recipes.md).

:func:`token_log_probs` computes ``log_softmax(logits)[label]`` as ``logit[label] - logsumexp(logits)`` in
float32, ``rows_per_chunk`` rows at a time (~1 GiB of float32 logits per chunk), with a backward that recomputes
the softmax per chunk from the saved logits and log-sum-exp: ``d logits = (onehot(label) - softmax) * grad``.
It is the same function flash-attn's kernel computes (also in float32), and more accurate than the loop's
bfloat16 ``log_softmax`` for bfloat16 logits. :func:`install` (run by the verl plugin) makes it verl's fallback.
"""

from __future__ import annotations

import torch

# verl's own fallback, as it was before install() replaced it (benchmarks and tests compare with it).
VERL_FALLBACK = None
# Rows of float32 logits per chunk: about this many bytes at once (152k vocabulary: ~1,700 rows).
CHUNK_BYTES = 1 << 30


def rows_per_chunk(vocab: int) -> int:
    return max(1, CHUNK_BYTES // (4 * vocab))


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


class _TokenLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, chunk: int) -> torch.Tensor:
        dtype = _compute_dtype(logits)
        out = torch.empty(labels.shape, dtype=dtype, device=logits.device)
        lse = torch.empty_like(out)
        for start in range(0, logits.shape[0], chunk):
            rows = logits[start:start + chunk].to(dtype)
            lse[start:start + chunk] = torch.logsumexp(rows, dim=-1)
            out[start:start + chunk] = rows.gather(-1, labels[start:start + chunk, None])[:, 0]
        out -= lse
        ctx.save_for_backward(logits, labels, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, labels, lse = ctx.saved_tensors
        grad_logits = torch.empty_like(logits)
        grad = grad.to(lse.dtype)
        for start in range(0, logits.shape[0], ctx.chunk):
            end = start + ctx.chunk
            g = torch.exp(logits[start:end].to(lse.dtype) - lse[start:end, None]).mul_(-grad[start:end, None])
            g.scatter_add_(-1, labels[start:end, None], grad[start:end, None])
            grad_logits[start:end] = g
        return grad_logits, None, None


def token_log_probs(logits: torch.Tensor, labels: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """``log_softmax(logits, -1).gather(-1, labels)`` in float32 (float64 for float64 logits), chunked.

    ``logits``: (..., V) of any float dtype; ``labels``: (...) integer ids in [0, V). Returns (...) float32.
    ``rows``: rows per chunk (default :func:`rows_per_chunk`). Differentiable in ``logits``; peak extra memory
    one float32 chunk, plus the (..., V) gradient in the backward.
    """
    vocab = logits.shape[-1]
    flat_logits = logits.reshape(-1, vocab)
    flat_labels = labels.reshape(-1).to(torch.long)
    out = _TokenLogProbs.apply(flat_logits, flat_labels, rows or rows_per_chunk(vocab))
    return out.view(labels.shape)


def install() -> None:
    """Make :func:`token_log_probs` verl's fallback (``verl.utils.torch_functional.logprobs_from_logits_v2``,
    which ``logprobs_from_logits`` calls when flash-attn's cross-entropy is missing). Float32 out, as
    flash-attn's kernel returns, where the loop returned bfloat16 for bfloat16 logits. Idempotent."""
    global VERL_FALLBACK
    import verl.utils.torch_functional as verl_functional

    if verl_functional.logprobs_from_logits_v2 is not token_log_probs:
        VERL_FALLBACK = verl_functional.logprobs_from_logits_v2
        verl_functional.logprobs_from_logits_v2 = token_log_probs
