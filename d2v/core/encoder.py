"""Transformer encoder whose blocks also return the data2vec 1.0 target activation.

The target is "the output of the FFN prior to the last residual connection" (data2vec paper,
footnote 5): fc2's output before dropout, layer-scale and the residual add. Both layouts are here:
pre-LN (ViT/BEiT, `norm_first=True`, a final LayerNorm after the last block) and post-LN
(wav2vec 2.0 / RoBERTa, a LayerNorm on the input embeddings instead).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from d2v.core.spec import EncoderSpec


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"encoder.dim={dim} must be divisible by encoder.heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: Tensor, padding_mask: Tensor | None, bias: Tensor | None = None) -> Tensor:
        """bias: an additive (B, H, T, T) float attention bias that already excludes padded keys."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        if bias is not None:
            attn_mask: Tensor | None = bias.to(q.dtype)
        else:
            # SDPA's boolean mask means "may attend": keys that are padding are excluded.
            attn_mask = None if padding_mask is None else ~padding_mask[:, None, None, :]  # (B, 1, 1, T)
        if attn_mask is not None and dropout == 0.0 and takes_cpu_math_path(q, attn_mask):
            out = math_attention(q, k, v, attn_mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)  # (B, H, T, D/H)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


def takes_cpu_math_path(q: Tensor, attn_mask: Tensor) -> bool:
    """True where SDPA would fall back to its unfused math path on the CPU: a float bias that needs a
    gradient (a learned relative position bias, ALiBi with a learned scale), which the fused CPU
    kernels do not differentiate."""
    return q.device.type == "cpu" and attn_mask.requires_grad and torch.is_grad_enabled()


def math_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """softmax(q kᵀ / √d + bias) v with the same operations, in the same order, as SDPA's math path
    (the scale split as √ over q and k), so outputs and gradients are bit for bit SDPA's; without
    its check for rows masked entirely (isneginf, all, where: a quarter of the attention's time
    here), which no caller can produce: every query keeps at least one unpadded key."""
    half_scale = math.sqrt(1.0 / math.sqrt(q.shape[-1]))
    # In place on the product (a fresh tensor that backward does not need): one allocation fewer.
    scores = torch.matmul(q * half_scale, (k * half_scale).transpose(-2, -1)).add_(bias)
    return torch.matmul(torch.softmax(scores, dim=-1), v)


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch for whole samples."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.p  # (B, 1, 1)
        return x * keep / (1.0 - self.p)


class Block(nn.Module):
    def __init__(self, spec: EncoderSpec, drop_path: float) -> None:
        super().__init__()
        hidden = int(spec.dim * spec.mlp_ratio)
        self.norm_first = spec.norm_first
        self.attn = SelfAttention(spec.dim, spec.heads, spec.attn_dropout)
        self.fc1 = nn.Linear(spec.dim, hidden)
        self.fc2 = nn.Linear(hidden, spec.dim)
        self.norm1 = nn.LayerNorm(spec.dim, eps=spec.norm_eps)
        self.norm2 = nn.LayerNorm(spec.dim, eps=spec.norm_eps)
        self.dropout = nn.Dropout(spec.dropout)
        self.act_dropout = nn.Dropout(spec.activation_dropout)
        self.drop_path = DropPath(drop_path)
        if spec.layer_scale_init is not None:
            self.gamma1 = nn.Parameter(torch.full((spec.dim,), spec.layer_scale_init))
            self.gamma2 = nn.Parameter(torch.full((spec.dim,), spec.layer_scale_init))
        else:
            self.gamma1 = self.gamma2 = None

    def ffn(self, x: Tensor) -> Tensor:
        return self.fc2(self.act_dropout(F.gelu(self.fc1(x))))

    def _branch(self, y: Tensor, gamma: Tensor | None) -> Tensor:
        y = self.dropout(y)
        return self.drop_path(y if gamma is None else y * gamma)

    def forward(
        self, x: Tensor, padding_mask: Tensor | None = None, bias: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Returns (block output, FFN output before the last residual), both (B, T, D)."""
        if self.norm_first:
            x = x + self._branch(self.attn(self.norm1(x), padding_mask, bias), self.gamma1)
            ffn_out = self.ffn(self.norm2(x))
            x = x + self._branch(ffn_out, self.gamma2)
        else:
            x = self.norm1(x + self._branch(self.attn(x, padding_mask, bias), self.gamma1))
            ffn_out = self.ffn(x)
            x = self.norm2(x + self._branch(ffn_out, self.gamma2))
        return x, ffn_out


class TransformerEncoder(nn.Module):
    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        self.spec = spec
        # Stochastic depth rises linearly from 0 at the first block to drop_path at the last.
        rates = [spec.drop_path * i / max(spec.depth - 1, 1) for i in range(spec.depth)]
        self.blocks = nn.ModuleList(Block(spec, rate) for rate in rates)
        # post-LN stacks normalise their input (RoBERTa's layernorm_embedding, wav2vec 2.0's
        # encoder.layer_norm); pre-LN stacks normalise their output instead.
        self.input_norm = nn.LayerNorm(spec.dim, eps=spec.norm_eps) if not spec.norm_first else nn.Identity()
        self.final_norm = nn.LayerNorm(spec.dim, eps=spec.norm_eps) if spec.norm_first else nn.Identity()
        self.input_dropout = nn.Dropout(spec.dropout)
        # One ALiBi scale per head shared by all blocks, learned (fairseq learned_alibi_scale_per_head)
        # or fixed at 1. Part of the encoder, so the EMA teacher averages it too.
        if spec.alibi and spec.alibi_learned_scale:
            self.alibi_scale = nn.Parameter(torch.ones(spec.heads))
        else:
            self.register_buffer("alibi_scale", torch.ones(spec.heads) if spec.alibi else None, persistent=False)
        self.apply(_init_weights)

    def forward(
        self,
        x: Tensor,
        padding_mask: Tensor | None = None,
        collect: str | None = None,
        positions: Tensor | None = None,
        attn_bias: Tensor | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """x (B, T, D) -> (B, T, D) and, when `collect` is "ffn" or "block", every block's output.

        positions: (B, T) original time index of every step, for ALiBi when x holds only some of a
        sequence's steps (the v2 student's kept ones); default 0..T-1.
        attn_bias: an additive (1 or B, H, T, T) attention bias shared by every block (the image
        front end's relative position bias).
        """
        bias = attn_bias
        if self.alibi_scale is not None:
            if positions is None:
                positions = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
            scale = self.alibi_scale.clamp_min(0.0)
            alibi = alibi_bias(positions, self.spec.heads, padding_mask, scale)
            bias = alibi if bias is None else alibi + bias
        elif bias is not None and padding_mask is not None:
            bias = bias.masked_fill(padding_mask[:, None, None, :], float("-inf"))
        x = self.input_dropout(self.input_norm(x))
        collected: list[Tensor] = []
        for block in self.blocks:
            # LayerDrop skips whole blocks while training; never when targets are collected.
            if self.training and collect is None and self.spec.layer_drop > 0.0:
                if torch.rand(()) < self.spec.layer_drop:
                    continue
            x, ffn_out = block(x, padding_mask, bias)
            if collect is not None:
                collected.append(ffn_out if collect == "ffn" else x)
        return self.final_norm(x), collected


def alibi_slopes(heads: int) -> Tensor:
    """ALiBi's per-head slopes. For H a power of two: 2^(-8/H), 2^(-16/H), ..., 2^(-8). Otherwise the
    slopes of the power of two P just below H, then every other slope of 2P, H - P of them (ALiBi's
    rule, as fairseq's get_alibi)."""

    def power_of_two(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    if heads & (heads - 1) == 0:
        return torch.tensor(power_of_two(heads))
    below = 1 << (heads.bit_length() - 1)
    return torch.tensor(power_of_two(below) + power_of_two(2 * below)[0::2][: heads - below])


def alibi_bias(positions: Tensor, heads: int, padding_mask: Tensor | None = None, scale: Tensor | None = None) -> Tensor:
    """(B, T) positions -> (B, H, T, T) additive bias -scale_h x slope_h x |p_i - p_j|; padded keys -inf."""
    # In float from the start: positions are small integers (exact in fp32), and the int64
    # subtract-and-abs costs 3.6x as much on the CPU.
    where = positions.float()
    distance = (where[:, None, :, None] - where[:, None, None, :]).abs()  # (B, 1, T, T)
    slopes = alibi_slopes(heads).to(positions.device)
    if scale is not None:
        slopes = slopes * scale.float()
    bias = -slopes[None, :, None, None] * distance
    if padding_mask is not None:
        # In place: the product is a fresh (B, H, T, T) tensor that its backward does not read.
        bias.masked_fill_(padding_mask[:, None, None, :], float("-inf"))
    return bias


def _init_weights(module: nn.Module) -> None:
    # BERT/ViT-style init: small normal weights, zero biases, unit LayerNorms.
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
