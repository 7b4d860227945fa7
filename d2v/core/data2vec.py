"""The data2vec model (versions 1.0 and 2.0), modality-agnostic.

One forward = one pretraining step's loss:
  1. the modality front end turns the batch into local features (B, T, D)
  2. the EMA teacher encodes the unmasked input once and averages its normalised top-K block outputs
  3. masks are drawn for M copies of every sample (M = clone_batch; 1 in version 1.0)
  4. the student predicts the targets at masked positions:
     v1: masked positions replaced, full sequence through the encoder, a regression head
     v2: only kept tokens through the encoder, a conv decoder fills the rest (noise) and predicts
  5. regression loss at masked positions (+ the v2 image CLS loss); a collapse guard watches spreads,
     and the logs carry health statistics (relative loss, effective ranks; d2v.core.health)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from d2v.core.decoder import ConvDecoder
from d2v.core.ema import EmaTeacher
from d2v.core.encoder import TransformerEncoder
from d2v.core.health import effective_rank, relative_loss
from d2v.core.loss import channel_spread, regression_loss
from d2v.core.masking import equalize_kept, make_mask
from d2v.core.spec import Data2VecSpec
from d2v.core.targets import average_top_k
from d2v.core.types import Batch, Data2VecOutput, EncoderOutput
from d2v.errors import D2VError
from d2v.modalities.base import Features, Frontend


class CollapseError(D2VError):
    """Targets or predictions lost their spread: the representation collapsed."""


class Data2Vec(nn.Module):
    def __init__(self, spec: Data2VecSpec, frontend: Frontend) -> None:
        super().__init__()
        if spec.version == 2 and spec.decoder is None:
            raise D2VError("data2vec 2.0 needs a decoder spec (model overrides: decoder)")
        if spec.ema.share_local_features and not spec.ema.include_frontend:
            raise D2VError(
                "ema.share_local_features needs ema.include_frontend: true "
                "(without it the teacher has no positional encoder of its own)"
            )
        if spec.encoder.alibi and frontend.num_extra_tokens:
            raise D2VError(f"encoder.alibi is not supported for {spec.modality}: its CLS token has no time position")
        self.spec = spec
        self.frontend = frontend
        self.encoder = TransformerEncoder(spec.encoder)
        dim = spec.encoder.dim
        if spec.version == 1:
            self.head = _regression_head(dim, spec.head_layers)
        else:
            assert spec.decoder is not None
            self.decoder = ConvDecoder(spec.decoder, dim, dim, two_d=spec.modality == "image")
        if spec.loss.cls_weight > 0 and (spec.version != 2 or not frontend.num_extra_tokens):
            raise D2VError(f"loss.cls_weight needs data2vec 2.0 and a CLS token ({spec.modality} v{spec.version} has none)")
        self.teacher = EmaTeacher(self._ema_source(), spec.ema)

    # ---------------------------------------------------------------------------------- training

    def forward(self, batch: Batch, generator: torch.Generator | None = None) -> Data2VecOutput:
        features = self.frontend.local_features(batch)  # (B, T, D)
        targets = self.teacher_targets(batch, features)  # (B, T, D) fp32, once per sample
        clones = self.spec.clone_batch if self.spec.version == 2 else 1
        features, targets = _repeat(features, clones), targets.repeat_interleave(clones, dim=0)
        mask = self.draw_mask(features, generator).to(targets.device)  # (B*M, T) True = masked
        if self.spec.version == 1:
            pred, cls_out = self._student_v1(features, mask, batch, generator)
        else:
            pred, cls_out = self._student_v2(features, mask)
        loss = regression_loss(pred[mask], targets[mask], self.spec.loss).mean()
        if cls_out is not None:
            # fairseq weights this term by cls_loss x sample_size before the whole loss is divided by
            # sample_size: relative to the main loss (a mean over masked tokens) it is a SUM over rows.
            cls_target = _mean_over_valid(targets, features.padding_mask)  # (B*M, D)
            loss = loss + self.spec.loss.cls_weight * regression_loss(cls_out, cls_target, self.spec.loss).sum()
        logs = self._logs(loss, pred[mask], targets[mask], mask, features.padding_mask)
        self._guard_against_collapse(logs)
        return Data2VecOutput(loss=loss, logs=logs)

    @torch.no_grad()
    def ema_step(self) -> float:
        """Move the teacher towards the student; call after every optimizer step. Returns tau."""
        return self.teacher.update(self._ema_source())

    @torch.no_grad()
    def teacher_targets(self, batch: Batch, features: Features) -> Tensor:
        parts = self.teacher.module
        # The teacher's own EMA front end where it has one (v2 images: patch embedding, CLS token,
        # positions; v2 speech: the positional encoder), else the student's, which is shared.
        frontend = parts["frontend"] if "frontend" in parts else self.frontend
        if "frontend" in parts and not self.spec.ema.share_local_features:
            features = frontend.local_features(batch)
            x = frontend.add_positions(features)
        else:
            # The student's local features, unmasked and without gradients.
            x = frontend.add_positions(Features(features.x.detach(), features.padding_mask, features.grid))
        x, padding = _prepend(frontend, x, features.padding_mask)
        _, layers = parts["encoder"](
            x, padding, collect=self.spec.target.source, attn_bias=frontend.attention_bias(features)
        )
        extra = self.frontend.num_extra_tokens
        return average_top_k([layer[:, extra:] for layer in layers], self.spec.target, features.padding_mask)

    def draw_mask(self, features: Features, generator: torch.Generator | None) -> Tensor:
        b, t, _ = features.x.shape
        mask = make_mask(self.spec.mask, b, t, features.padding_mask, features.grid, generator)
        if self.spec.version == 2:
            mask = equalize_kept(mask, features.padding_mask, generator)
        return mask

    def _student_v1(
        self, features: Features, mask: Tensor, batch: Batch, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor | None]:
        masked = self.frontend.mask_input(features, mask, batch, generator)
        x, padding = self._prepend_extra_tokens(self.frontend.add_positions(masked), features.padding_mask)
        out, _ = self.encoder(x, padding, attn_bias=self.frontend.attention_bias(features))
        return self.head(out[:, self.frontend.num_extra_tokens :]), None  # (B, T, D)

    def _student_v2(self, features: Features, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        # Masked steps are zeroed before positions are added (fairseq's encoder_zero_mask): the
        # speech positional encoder is a convolution over content, and would otherwise carry the
        # masked frames into their kept neighbours, letting the student copy its targets.
        hidden = Features(features.x.masked_fill(mask.unsqueeze(-1), 0.0), features.padding_mask, features.grid)
        x = self.frontend.add_positions(hidden)  # (B, T, D)
        keep_ids = _kept_indices(mask, features.padding_mask)  # (B, K)
        index = keep_ids.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        kept, _ = self._prepend_extra_tokens(torch.gather(x, 1, index), None)  # (B, n_extra + K, D)
        out, _ = self.encoder(kept, None, positions=keep_ids)
        extra = self.frontend.num_extra_tokens
        # Decoder input: encoder outputs where kept, small Gaussian noise where masked.
        decoder_in = self.decoder.decoder_input(out[:, extra:].to(x.dtype), keep_ids, x.shape[1], self.spec.mask_noise_std)
        pred = self.decoder(decoder_in, features.grid)  # (B, T, D)
        # fairseq regresses the CLS token's encoder output itself, without a head.
        cls_out = out[:, 0] if self.spec.loss.cls_weight > 0 else None
        return pred, cls_out

    def weight_decay_exempt(self, name: str, param: nn.Parameter) -> bool:
        """The released recipes' weight-decay exemptions (read by d2v.train.optim):
        - data2vec 2.0 (fairseq data2vec_multi): 1-D parameters, biases and the ALiBi scale;
        - data2vec 1.0 images (data2vec_vision / BEiT): 1-D parameters, biases, pos_embed, cls_token;
        - data2vec 1.0 speech and text (fairseq's Adam): none, every parameter is decayed."""
        if self.spec.version == 2:
            return param.ndim <= 1 or name.endswith(".bias") or "alibi_scale" in name
        if self.spec.modality == "image":
            return param.ndim <= 1 or name.endswith(".bias") or any(p in name for p in ("pos_embed", "cls_token"))
        return False

    # ------------------------------------------------------------------------------- downstream

    def student_encoder(self) -> "StudentEncoder":
        """The student as a feature encoder for evaluation (shares this model's weights)."""
        return StudentEncoder(self.frontend, self.encoder)

    # --------------------------------------------------------------------------------- helpers

    def _ema_source(self) -> nn.ModuleDict:
        # Built on demand (not registered) so the student's modules appear once in state_dict.
        parts: dict[str, nn.Module] = {"encoder": self.encoder}
        if self.spec.ema.include_frontend:
            parts["frontend"] = self.frontend
        return nn.ModuleDict(parts)

    def _prepend_extra_tokens(self, x: Tensor, padding: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return _prepend(self.frontend, x, padding)

    def _logs(self, loss: Tensor, pred: Tensor, target: Tensor, mask: Tensor, padding: Tensor | None) -> dict[str, float]:
        valid = mask.numel() if padding is None else int((~padding).sum())
        pred, target = pred.detach(), target.detach()
        return {
            "loss": float(loss.detach()),
            "target_var": float(channel_spread(target)),
            "pred_var": float(channel_spread(pred)),
            "rel_loss": float(relative_loss(pred, target)),
            "target_rank": float(effective_rank(target)),
            "pred_rank": float(effective_rank(pred)),
            "tau": self.teacher.tau,
            "masked_fraction": float(mask.sum()) / max(valid, 1),
        }

    def _guard_against_collapse(self, logs: dict[str, float]) -> None:
        guard = self.spec.collapse
        if not self.training or int(self.teacher.num_updates) < guard.warmup_steps:
            return
        if logs["target_var"] < guard.min_target_var:
            raise CollapseError(
                f"target variance {logs['target_var']:.4g} < collapse.min_target_var={guard.min_target_var} "
                f"after {int(self.teacher.num_updates)} updates: lower the learning rate, lengthen warm-up "
                "or raise ema.tau0"
            )
        if logs["pred_var"] < guard.min_pred_var:
            raise CollapseError(
                f"prediction variance {logs['pred_var']:.4g} < collapse.min_pred_var={guard.min_pred_var} "
                f"after {int(self.teacher.num_updates)} updates"
            )


class StudentEncoder(nn.Module):
    """`FeatureEncoder` view of a student: batch -> EncoderOutput, no masking."""

    def __init__(self, frontend: Frontend, encoder: TransformerEncoder) -> None:
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder
        self.feature_extractor = frontend.local_encoder
        self.blocks = encoder.blocks
        self.embed_dim = frontend.dim

    def frozen_features(self, batch: Batch) -> Batch | None:
        """The feature extractor's output as a batch `forward` accepts in its place, for callers that
        keep the extractor frozen and want to run it once per item; None where not supported."""
        precompute = getattr(self.frontend, "frozen_conv_features", None)
        return precompute(batch) if precompute is not None else None

    def forward(self, batch: Batch) -> EncoderOutput:
        features = self.frontend.local_features(batch)
        x, padding = _prepend(self.frontend, self.frontend.add_positions(features), features.padding_mask)
        out, _ = self.encoder(x, padding, attn_bias=self.frontend.attention_bias(features))
        extra = self.frontend.num_extra_tokens
        return EncoderOutput(out[:, extra:], features.padding_mask, out[:, 0] if extra else None)


def _prepend(frontend: Frontend, x: Tensor, padding: Tensor | None) -> tuple[Tensor, Tensor | None]:
    extra = frontend.extra_tokens(x.shape[0])
    if extra is None:
        return x, padding
    x = torch.cat([extra.to(x.dtype), x], dim=1)
    if padding is not None:
        padding = torch.cat([padding.new_zeros(padding.shape[0], extra.shape[1]), padding], dim=1)
    return x, padding


def _regression_head(dim: int, layers: int) -> nn.Module:
    if layers == 1:
        return nn.Linear(dim, dim)
    # fairseq's text head: widen to 2D, GELU, back to D (per extra layer).
    parts: list[nn.Module] = []
    width = dim
    for _ in range(layers - 1):
        parts += [nn.Linear(width, dim * 2), nn.GELU()]
        width = dim * 2
    return nn.Sequential(*parts, nn.Linear(width, dim))


def _repeat(features: Features, clones: int) -> Features:
    if clones == 1:
        return features
    padding = None if features.padding_mask is None else features.padding_mask.repeat_interleave(clones, dim=0)
    return Features(features.x.repeat_interleave(clones, dim=0), padding, features.grid)


def _kept_indices(mask: Tensor, padding: Tensor | None) -> Tensor:
    """Sorted positions that are neither masked nor padding; every row keeps the same count."""
    hidden = mask if padding is None else mask | padding
    counts = (~hidden).sum(dim=1)
    if bool((counts != counts[0]).any()):
        raise RuntimeError("v2 masks must keep the same number of tokens in every row")
    order = torch.argsort(hidden.to(torch.int8), dim=1, stable=True)  # kept first, in order
    return order[:, : int(counts[0])]


def _mean_over_valid(x: Tensor, padding: Tensor | None) -> Tensor:
    if padding is None:
        return x.mean(dim=1)
    valid = (~padding).unsqueeze(-1).to(x.dtype)
    return (x * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1.0)
