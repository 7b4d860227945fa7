"""AdamW with two parameter groups: decayed weights, and everything weight decay would harm."""

from __future__ import annotations

from torch import nn
from torch.optim import AdamW

from d2v.train.config import TrainConfig

# Learned positions, CLS tokens and mask embeddings are "lookup" parameters: decaying them towards
# zero only erases information, as with norms and biases (ndim <= 1).
NO_DECAY_NAME_PARTS = ("pos_embed", "cls_token", "mask_embed")


def uses_weight_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim > 1 and not any(part in name for part in NO_DECAY_NAME_PARTS)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Trainable parameters only (the EMA teacher has requires_grad=False), split by decay."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if uses_weight_decay(name, param) else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> AdamW:
    return AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
    )
