"""Text: token and learned positional embeddings (RoBERTa-style; vocabulary from the tokenizer)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from d2v.core.masking import bert_corruption
from d2v.core.spec import MaskSpec, TextFrontSpec
from d2v.core.types import MASK_ID, PAD_ID, Batch
from d2v.errors import D2VError
from d2v.modalities.base import Features, Frontend

FIRST_ORDINARY_ID = MASK_ID + 1  # random replacement tokens are never special tokens


class TextFrontend(Frontend):
    def __init__(self, spec: TextFrontSpec, dim: int, mask_spec: MaskSpec) -> None:
        super().__init__(dim, learned_mask=False)
        self.spec = spec
        self.mask_spec = mask_spec
        self.local_encoder = nn.Embedding(spec.vocab_size, dim, padding_idx=PAD_ID)
        nn.init.normal_(self.local_encoder.weight, std=0.02)
        with torch.no_grad():
            self.local_encoder.weight[PAD_ID].zero_()
        self.pos_embed = nn.Embedding(spec.max_positions, dim)
        nn.init.normal_(self.pos_embed.weight, std=0.02)

    def local_features(self, batch: Batch) -> Features:
        tokens = batch["tokens"]
        if tokens.ndim != 2:
            raise D2VError(f"text batch 'tokens' must be (B, T), got {tuple(tokens.shape)}")
        if tokens.shape[1] > self.spec.max_positions:
            raise D2VError(f"sequence of {tokens.shape[1]} tokens exceeds max_positions={self.spec.max_positions}")
        if int(tokens.max()) >= self.spec.vocab_size or int(tokens.min()) < 0:
            raise D2VError(f"token ids must be in [0, {self.spec.vocab_size}), got {int(tokens.min())}..{int(tokens.max())}")
        padding = batch.get("padding_mask")
        if padding is None:
            padding = tokens == PAD_ID
        return Features(self.local_encoder(tokens), padding if bool(padding.any()) else None)  # (B, T, D)

    def add_positions(self, features: Features) -> Tensor:
        positions = torch.arange(features.x.shape[1], device=features.x.device)
        return features.x + self.pos_embed(positions)[None]

    def mask_input(
        self, features: Features, mask: Tensor, batch: Batch, generator: torch.Generator | None
    ) -> Features:
        """data2vec 1.0 text: masked tokens become [MASK] (span variant) or BERT's 80/10/10 mix."""
        if self.mask_spec.kind == "bert":
            use_mask, use_random = bert_corruption(mask.cpu(), self.mask_spec, generator)
        else:
            use_mask, use_random = mask.cpu(), torch.zeros_like(mask.cpu())
        tokens = batch["tokens"]
        random_ids = torch.randint(FIRST_ORDINARY_ID, self.spec.vocab_size, tokens.shape, generator=generator)
        corrupted = torch.where(use_mask.to(tokens.device), torch.full_like(tokens, MASK_ID), tokens)
        corrupted = torch.where(use_random.to(tokens.device), random_ids.to(tokens.device), corrupted)
        return Features(self.local_encoder(corrupted), features.padding_mask, features.grid)
