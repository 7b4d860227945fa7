"""Regression loss at masked positions and the spread statistic used by the collapse guard."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from d2v.core.spec import LossSpec


def regression_loss(pred: Tensor, target: Tensor, spec: LossSpec) -> Tensor:
    """pred, target (N, D) at masked positions -> (N,) per-position losses.

    Elementwise L2 or smooth L1, reduced over D (sum or mean), times `scale` (default 1/sqrt(D)).
    """
    pred, target = pred.float(), target.float()
    if spec.kind == "l2" or spec.beta == 0.0:
        elementwise = F.mse_loss(pred, target, reduction="none")
    else:
        elementwise = F.smooth_l1_loss(pred, target, reduction="none", beta=spec.beta)
    per_position = elementwise.sum(dim=-1) if spec.reduction == "sum" else elementwise.mean(dim=-1)
    scale = spec.scale if spec.scale is not None else 1.0 / math.sqrt(pred.shape[-1])
    return per_position * scale


def channel_spread(x: Tensor) -> Tensor:
    """Mean over channels of the per-channel standard deviation across all positions (fairseq's
    `compute_var`): near zero when every position predicts/targets the same vector (collapse)."""
    flat = x.reshape(-1, x.shape[-1]).float()
    if flat.shape[0] < 2:
        return torch.zeros((), device=x.device)
    # The unbiased variance over rows, written out: `Tensor.var(dim=0)` is several times slower on the CPU.
    centred = flat - flat.mean(dim=0, keepdim=True)
    var = centred.square().sum(dim=0) / (flat.shape[0] - 1)
    return torch.sqrt(var + 1e-6).mean()
