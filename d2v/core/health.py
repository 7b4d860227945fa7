"""Pretraining health statistics, computed at masked positions every step.

- relative loss, 1 - R^2: the squared error of the predictions over that of predicting each target
  channel's mean. 1.0 means the student learned nothing a constant could not give; it is scale-free,
  unlike the loss, so runs and modalities compare.
- effective rank (Roy & Vetterli 2007): exp of the entropy of the normalised singular values of the
  centred (N, D) matrix; 1 for a single direction, D for an isotropic spread. Low values for targets
  mean the teacher's representation collapsed onto a few directions.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Rows used for the effective rank: an SVD of a few thousand rows per step would cost more than the
# statistic is worth; an evenly strided subset of this many estimates it well for D <= 1024.
RANK_ROWS = 1024


def relative_loss(pred: Tensor, target: Tensor) -> Tensor:
    """sum ||pred - target||^2 / sum ||target - channel mean||^2 over rows of (N, D); 1.0 = no skill."""
    pred, target = pred.float(), target.float()
    baseline = (target - target.mean(dim=0, keepdim=True)).pow(2).sum()
    return (pred - target).pow(2).sum() / baseline.clamp_min(1e-12)


def effective_rank(x: Tensor, max_rows: int = RANK_ROWS) -> Tensor:
    """exp(entropy of normalised singular values) of the centred (N, D) matrix."""
    flat = x.reshape(-1, x.shape[-1]).float()
    if flat.shape[0] > max_rows:
        flat = flat[:: -(-flat.shape[0] // max_rows)]
    # Singular values as the square roots of the Gram matrix's eigenvalues (the smaller of the two
    # Gram matrices, in float64 so that near-zero directions stay near zero): the same values as
    # an SVD of the rows to ~1e-6, at under half its cost on the CPU (docs/benchmarks.md).
    flat = (flat - flat.mean(dim=0, keepdim=True)).double()
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    singular = torch.linalg.eigvalsh(gram).clamp_min(0.0).sqrt()
    total = singular.sum()
    if total <= 0:
        return torch.ones(())
    p = singular / total
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum()).float()
