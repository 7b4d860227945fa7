"""Teacher targets: parameter-free normalisation of the top-K block outputs, then their average."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from d2v.core.spec import TargetSpec

Norm = Literal["instance", "layer", "none"]


def instance_norm_over_time(x: Tensor, padding_mask: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise every (sample, channel) over time: x (B, T, D); padded steps are ignored.

    The variance is the mean of the squared centred values, written out: on the CPU, `Tensor.var`
    over the middle dimension of a (16, 128, 128) block takes ~1 ms, seven times the two means."""
    if padding_mask is None:
        centred = x - x.mean(dim=1, keepdim=True)
        var = centred.square().mean(dim=1, keepdim=True)
    else:
        valid = (~padding_mask).unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        count = valid.sum(dim=1, keepdim=True).clamp_min(1.0)
        centred = x - (x * valid).sum(dim=1, keepdim=True) / count
        var = (centred * valid).square().sum(dim=1, keepdim=True) / count
    return centred / torch.sqrt(var + eps)


def normalize(x: Tensor, how: Norm, padding_mask: Tensor | None = None) -> Tensor:
    if how == "instance":
        return instance_norm_over_time(x, padding_mask)
    if how == "layer":
        return F.layer_norm(x, x.shape[-1:])
    return x


def average_top_k(layer_outputs: list[Tensor], spec: TargetSpec, padding_mask: Tensor | None = None) -> Tensor:
    """y = final_norm(1/K sum_{l in top K} layer_norm(a_l)); every a_l is (B, T, D), fp32 result."""
    if not 1 <= spec.top_k <= len(layer_outputs):
        raise ValueError(f"target.top_k={spec.top_k} must be in [1, {len(layer_outputs)}] (encoder depth)")
    top = layer_outputs[-spec.top_k :]
    total = sum(normalize(a.float(), spec.layer_norm, padding_mask) for a in top)
    return normalize(total / spec.top_k, spec.final_norm, padding_mask)
