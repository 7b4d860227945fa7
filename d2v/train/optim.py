"""AdamW for pretraining and fine-tuning: decayed weights apart from everything weight decay would harm,
optionally split further by depth for layer-wise lr decay (BEiT / data2vec fine-tuning)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn
from torch.optim import AdamW

# Learned positions, CLS tokens and mask embeddings are "lookup" parameters: decaying them towards
# zero only erases information, as with norms and biases (ndim <= 1). BEiT / MAE fine-tuning exempt
# the same names (timm's no_weight_decay: pos_embed, cls_token).
NO_DECAY_NAME_PARTS = ("pos_embed", "cls_token", "mask_embed")


def uses_weight_decay(name: str, param: nn.Parameter) -> bool:
    """The default rule (fine-tuning, and models that do not state their own)."""
    return param.ndim > 1 and not any(part in name for part in NO_DECAY_NAME_PARTS)


# A model may state its own rule as a method `weight_decay_exempt(name, param) -> bool` (the data2vec
# model does: each released recipe exempts different parameters).
DecayRule = Callable[[str, nn.Parameter], bool]


def decay_rule_of(model: nn.Module) -> DecayRule:
    exempt = getattr(model, "weight_decay_exempt", None)
    if exempt is None:
        return uses_weight_decay
    return lambda name, param: not exempt(name, param)


@dataclass(frozen=True)
class LayerDecay:
    """Layer-wise lr decay: a parameter at depth d (0 = input side, `top` = the head) gets lr * decay ** (top - d)."""

    decay: float
    top: int
    depth_of: Callable[[str], int]  # parameter name (as model.named_parameters() gives it) -> 0..top

    def scale(self, depth: int) -> float:
        return self.decay ** (self.top - depth)


def param_groups(
    model: nn.Module, weight_decay: float, lr: float, layer_decay: LayerDecay | None = None
) -> list[dict[str, Any]]:
    """Trainable parameters only (the EMA teacher and frozen parts have requires_grad=False), one
    group per (depth, decayed or not), input side first and decayed before exempt at each depth."""
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    decays_weight = decay_rule_of(model)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = 0 if layer_decay is None else layer_decay.depth_of(name)
        decays = decays_weight(name, param)
        group = groups.setdefault(
            (depth, decays),
            {
                "params": [],
                "lr": lr if layer_decay is None else lr * layer_decay.scale(depth),
                "weight_decay": weight_decay if decays else 0.0,
            },
        )
        group["params"].append(param)
    return [groups[key] for key in sorted(groups, key=lambda k: (k[0], not k[1]))]


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float = 1e-8,
    layer_decay: LayerDecay | None = None,
) -> AdamW:
    """AdamW over `param_groups`; schedules then scale each group's lr (pretraining sets it outright)."""
    groups = param_groups(model, weight_decay, lr, layer_decay)
    return AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused_adamw_supported(groups))


def fused_adamw_supported(groups: list[dict[str, Any]]) -> bool:
    """True when every parameter is a floating-point tensor on the CPU or a CUDA device: there torch's
    fused AdamW does one kernel per step instead of a loop over tensors (the same update rule;
    2.4 ms against 11-15 ms per step for the tiny text encoder on one CPU thread,
    docs/benchmarks.md). Elsewhere (meta tensors, other backends) the default implementation runs."""
    params = [p for g in groups for p in g["params"]]
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
