"""Packed (variable-length) attention without the flash-attn package: PyTorch's own flash kernel behind
flash-attn's API, registered with transformers and verl as the attention implementation :data:`NAME`.

Why: verl trains padding-free (``use_remove_padding``: each micro-batch's sequences packed into one row,
attention kept inside each sequence by ``cu_seqlens``) only through flash-attn's ``flash_attn_varlen_func``,
and transformers gives Qwen2.5-VL's vision tower one attention call per image (or window) only under a
"flash" implementation. flash-attn is built per CUDA and torch version and is often missing (the recipes'
GPU host has none); sdpa then pads every micro-batch and makes one attention call per 112-pixel window of
every image, ~80 per image per block. PyTorch >= 2.10 ships the same FA2 kernel as
``torch.nn.attention.varlen.varlen_attn`` (forward and backward, bf16/fp16, CUDA).

``install()`` (run by the verl plugin in every process, so in verl's actor and reference workers):

* registers :data:`NAME` in transformers' ``AttentionInterface`` (its flash path, which unpads, packs by
  ``position_ids`` or takes ``cu_seq_lens``) and ``AttentionMaskInterface`` (flash's 2-D padding mask), and
  points transformers' lazily imported flash functions at ours, so ``attn_implementation=NAME`` builds and
  runs any model transformers runs under flash attention;
* gives ``verl.models.transformers.qwen2_vl`` (verl's padding-free Qwen2-VL/2.5-VL attention, which imports
  ``flash_attn_varlen_func`` from flash-attn when it is installed) these functions when flash-attn is absent.

The name must contain "flash" (transformers' test for its varlen paths) and must not be
``flash_attention_<N>`` (transformers would then look for the flash-attn package). Tensors on a CPU, or in
float32, go through a per-sequence ``scaled_dot_product_attention`` (the reference the tests compare with):
same function, no speed claim.
"""

from __future__ import annotations

import inspect
import sys
from functools import lru_cache

import torch
import torch.nn.functional as F

NAME = "flash_varlen_torch"


@lru_cache(maxsize=1)
def _torch_varlen():
    """``(varlen_attn, takes_window_size)``, or ``None`` when this torch has no varlen attention."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, "window_size" in inspect.signature(varlen_attn).parameters


def available() -> bool:
    """True when the fast path exists here: CUDA and a torch with ``torch.nn.attention.varlen`` (>= 2.10)."""
    return torch.cuda.is_available() and _torch_varlen() is not None


def _window(causal: bool, window_size) -> tuple[int, int]:
    left, right = (-1, -1) if window_size is None else (int(window_size[0]), int(window_size[1]))
    return (left, 0) if causal else (left, right)


def reference_attention(q, k, v, cu_q, cu_k, scale, window):
    """The reference path: per-sequence sdpa with flash-attn's masking (causal and windows aligned to the bottom
    right). ``q`` (total_q, H, D), ``k``/``v`` (total_k, H_k, D), ``cu_*`` (B + 1,) int, ``scale`` float or
    None, ``window`` (left, right) with -1 unbounded; returns (total_q, H, D)."""
    out = torch.empty_like(q)
    groups = q.shape[1] // k.shape[1]
    left, right = window
    for i in range(cu_q.numel() - 1):
        qs, qe, ks, ke = int(cu_q[i]), int(cu_q[i + 1]), int(cu_k[i]), int(cu_k[i + 1])
        qi = q[qs:qe].transpose(0, 1)
        ki = k[ks:ke].transpose(0, 1).repeat_interleave(groups, dim=0)
        vi = v[ks:ke].transpose(0, 1).repeat_interleave(groups, dim=0)
        mask = None
        if left >= 0 or right >= 0:
            rows = torch.arange(qe - qs, device=q.device)[:, None] + (ke - ks) - (qe - qs)
            cols = torch.arange(ke - ks, device=q.device)[None, :]
            mask = torch.ones(qe - qs, ke - ks, dtype=torch.bool, device=q.device)
            if left >= 0:
                mask &= cols >= rows - left
            if right >= 0:
                mask &= cols <= rows + right
        out[qs:qe] = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask, scale=scale).transpose(0, 1)
    return out


def flash_attn_varlen_func(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q,
    max_seqlen_k,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size=(-1, -1),
    deterministic: bool = False,
) -> torch.Tensor:
    """flash-attn's ``flash_attn_varlen_func`` on PyTorch's kernel.

    ``q``: (total_q, H, D); ``k``, ``v``: (total_k, H_k, D) with H % H_k == 0 (GQA/MQA without repeating);
    ``cu_seqlens_*``: (B + 1,) cumulative sequence starts (any integer dtype); ``max_seqlen_*``: ints or
    0-d tensors. ``causal`` masks as flash-attn >= 2.1 (aligned to the bottom right when q is shorter than
    k); ``window_size`` = (left, right), -1 unbounded. Returns (total_q, H, D). No dropout (the Qwen-VL
    models train without attention dropout); ``deterministic`` is accepted for API parity (FA2's forward is
    deterministic, its backward as PyTorch's).
    """
    if dropout_p:
        raise ValueError(f"{NAME} has no attention dropout (got dropout_p={dropout_p})")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"query heads ({q.shape[1]}) must be a multiple of key/value heads ({k.shape[1]})")
    window = _window(causal, window_size)
    cu_q = cu_seqlens_q.to(torch.int32)
    cu_k = cu_seqlens_k.to(torch.int32)
    fast = _torch_varlen()
    if fast is None or not q.is_cuda or q.dtype not in (torch.bfloat16, torch.float16):
        return reference_attention(q, k, v, cu_q, cu_k, softmax_scale, window)
    varlen_attn, takes_window = fast
    shape = {"window_size": window} if takes_window else {"is_causal": window == (-1, 0)}
    if not takes_window and window not in ((-1, 0), (-1, -1)):
        raise ValueError(f"this torch's varlen_attn has no attention windows (window_size={window_size})")
    return varlen_attn(q, k, v, cu_q, cu_k, int(max_seqlen_q), int(max_seqlen_k), scale=softmax_scale, **shape)


def flash_attn_func(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size=(-1, -1),
    deterministic: bool = False,
) -> torch.Tensor:
    """flash-attn's ``flash_attn_func``: ``q`` (B, L_q, H, D), ``k``/``v`` (B, L_k, H_k, D), no padding;
    returns (B, L_q, H, D). Each row is one sequence of :func:`flash_attn_varlen_func`."""
    batch, len_q, len_k = q.shape[0], q.shape[1], k.shape[1]
    steps = torch.arange(batch + 1, device=q.device, dtype=torch.int32)
    out = flash_attn_varlen_func(
        q.reshape(batch * len_q, *q.shape[2:]), k.reshape(batch * len_k, *k.shape[2:]),
        v.reshape(batch * len_k, *v.shape[2:]), steps * len_q, steps * len_k, len_q, len_k,
        dropout_p=dropout_p, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
        deterministic=deterministic,
    )  # fmt: skip
    return out.view(batch, len_q, *q.shape[2:])


def _point_transformers_flash_at_ours() -> None:
    """Make transformers' lazily imported flash functions ours for :data:`NAME` (it would otherwise try to
    fetch a kernel named NAME from the Hugging Face hub)."""
    import transformers.modeling_flash_attention_utils as fa

    if fa._loaded_implementation == NAME:
        return
    fa._loaded_implementation = NAME
    fa._flash_fn, fa._flash_varlen_fn, fa._flash_with_kvcache_fn = flash_attn_func, flash_attn_varlen_func, None
    fa._pad_fn, fa._unpad_fn = fa._pad_input, fa._unpad_input
    fa._process_flash_kwargs_fn = fa._lazy_define_process_function(flash_attn_varlen_func)


def attention_forward(module, query, key, value, attention_mask, **kwargs):
    """transformers' flash attention forward under :data:`NAME` (another model in the process may have
    loaded another flash implementation since: point it back first, a comparison per call)."""
    from transformers.integrations.flash_attention import flash_attention_forward

    _point_transformers_flash_at_ours()
    return flash_attention_forward(module, query, key, value, attention_mask, **kwargs)


VERL_QWEN2_VL = "verl.models.transformers.qwen2_vl"


def _give_verl_our_functions(module) -> bool:
    """verl's padding-free Qwen2-VL attention calls these module globals, defined there only when flash-attn
    is installed; fill the gap, never replace a real flash-attn."""
    if hasattr(module, "flash_attn_varlen_func"):
        return False
    module.flash_attn_varlen_func = flash_attn_varlen_func
    module.flash_attn_func = flash_attn_func
    module._flash_supports_window_size = True
    module._flash_supports_deterministic = True
    module._flash_use_top_left_mask = False
    return True


def install() -> None:
    """Register :data:`NAME` with transformers and fill verl's missing flash functions (idempotent)."""
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, flash_attention_mask)
    _point_transformers_flash_at_ours()
    if "verl" in sys.modules:
        import importlib

        _give_verl_our_functions(importlib.import_module(VERL_QWEN2_VL))
