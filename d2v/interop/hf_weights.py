"""State-dict mapping between a d2v student (front end + encoder) and transformers' Data2Vec models.

Names on the d2v side are those of `Data2Vec.state_dict()` ("frontend.*", "encoder.*"); on the
transformers side, those of the base model (`Data2Vec{Vision,Audio,Text}Model.state_dict()`).
Most tensors are renamed one to one; the exceptions, each exact:
- d2v's fused qkv projection is split into query / key / value (and joined on import).
- Vision: transformers' key projection has no bias. A key bias adds q_i . b_k to every score of
  query i, the same constant for all keys, which softmax cancels: dropped on export, zero on import.
- Vision with absolute positions: transformers' table has a row for the CLS token; d2v's has none.
  Export writes a zero row; import folds that row into the CLS token (both are added to it only).
- Text: transformers numbers positions from PAD_ID + 1 (RoBERTa) and adds a token-type embedding.
  Export shifts the table by PAD_ID + 1 rows and writes one zero token type; import folds token
  type 0 into every position row.
"""

from __future__ import annotations

import torch
from torch import Tensor

from d2v.core.spec import Data2VecSpec
from d2v.core.types import PAD_ID
from d2v.errors import D2VError

StateDict = dict[str, Tensor]


class WeightMismatch(D2VError):
    """Weights that do not fit the architecture they were mapped to."""


# ------------------------------------------------------------------------------------ per modality


def _block_renames(spec: Data2VecSpec, i: int) -> list[tuple[str, str]]:
    """(d2v, transformers) names of block i's tensors, apart from the qkv projection."""
    d2v = f"encoder.blocks.{i}"
    if spec.modality == "image":
        hf = f"encoder.layer.{i}"
        pairs = [("attn.proj", "attention.output.dense"), ("norm1", "layernorm_before"),
                 ("norm2", "layernorm_after"), ("fc1", "intermediate.dense"), ("fc2", "output.dense")]
        scales = [(f"{d2v}.gamma1", f"{hf}.lambda_1"), (f"{d2v}.gamma2", f"{hf}.lambda_2")]
        extra = scales if spec.encoder.layer_scale_init is not None else []
    elif spec.modality == "speech":
        hf = f"encoder.layers.{i}"
        pairs = [("attn.proj", "attention.out_proj"), ("norm1", "layer_norm"), ("norm2", "final_layer_norm"),
                 ("fc1", "feed_forward.intermediate_dense"), ("fc2", "feed_forward.output_dense")]
        extra = []
    else:
        hf = f"encoder.layer.{i}"
        pairs = [("attn.proj", "attention.output.dense"), ("norm1", "attention.output.LayerNorm"),
                 ("fc1", "intermediate.dense"), ("fc2", "output.dense"), ("norm2", "output.LayerNorm")]
        extra = []
    return [(f"{d2v}.{a}.{p}", f"{hf}.{b}.{p}") for a, b in pairs for p in ("weight", "bias")] + extra


def _qkv_names(spec: Data2VecSpec, i: int) -> tuple[str, str, str]:
    """transformers' query / key / value module names in block i."""
    if spec.modality == "image":
        base = f"encoder.layer.{i}.attention.attention"
        return f"{base}.query", f"{base}.key", f"{base}.value"
    if spec.modality == "speech":
        base = f"encoder.layers.{i}.attention"
        return f"{base}.q_proj", f"{base}.k_proj", f"{base}.v_proj"
    base = f"encoder.layer.{i}.attention.self"
    return f"{base}.query", f"{base}.key", f"{base}.value"


def _front_renames(spec: Data2VecSpec, has_mask_embed: bool) -> list[tuple[str, str]]:
    """(d2v, transformers) names of the front end's and the encoder's non-block tensors."""
    wb = ("weight", "bias")
    if spec.modality == "image":
        assert spec.image is not None
        pairs = [(f"frontend.local_encoder.{p}", f"embeddings.patch_embeddings.projection.{p}") for p in wb]
        pairs += [(f"encoder.final_norm.{p}", f"layernorm.{p}") for p in wb]
        if spec.image.positions == "relative_bias":
            pairs.append(("frontend.relative_bias.table", "encoder.relative_position_bias.relative_position_bias_table"))
        return pairs
    if spec.modality == "speech":
        assert spec.speech is not None
        pairs = []
        for i in range(len(spec.speech.conv_layers)):
            pairs.append((f"frontend.local_encoder.blocks.{i}.0.weight", f"feature_extractor.conv_layers.{i}.conv.weight"))
            pairs += [(f"frontend.local_encoder.blocks.{i}.1.norm.{p}", f"feature_extractor.conv_layers.{i}.layer_norm.{p}")
                      for p in wb]
        for j in range(spec.speech.conv_pos_depth):
            pairs += [(f"frontend.pos_conv.{j}.0.{p}", f"encoder.pos_conv_embed.layers.{j}.conv.{p}") for p in wb]
        pairs += [(f"frontend.feature_norm.{p}", f"feature_projection.layer_norm.{p}") for p in wb]
        pairs += [(f"frontend.project.{p}", f"feature_projection.projection.{p}") for p in wb]
        pairs += [(f"encoder.input_norm.{p}", f"encoder.layer_norm.{p}") for p in wb]
        if has_mask_embed:
            pairs.append(("frontend.mask_embed", "masked_spec_embed"))
        return pairs
    pairs = [("frontend.local_encoder.weight", "embeddings.word_embeddings.weight")]
    return pairs + [(f"encoder.input_norm.{p}", f"embeddings.LayerNorm.{p}") for p in wb]


def _renames(spec: Data2VecSpec, has_mask_embed: bool) -> list[tuple[str, str]]:
    blocks = [pair for i in range(spec.encoder.depth) for pair in _block_renames(spec, i)]
    return _front_renames(spec, has_mask_embed) + blocks


# ------------------------------------------------------------------------------------------ export


def to_hf_state(spec: Data2VecSpec, student: StateDict, sincos_table: Tensor | None = None) -> StateDict:
    """transformers state dict of a d2v student state ("frontend.*" / "encoder.*" tensors).

    sincos_table: the image front end's fixed (1, N, D) position table, which is a buffer (not in
    the state dict); needed only for `image.positions: sincos`.
    """
    has_mask = "frontend.mask_embed" in student
    out: StateDict = {hf: student[d2v] for d2v, hf in _renames(spec, has_mask)}
    dim = spec.encoder.dim
    for i in range(spec.encoder.depth):
        q, k, v = _qkv_names(spec, i)
        weight, bias = student[f"encoder.blocks.{i}.attn.qkv.weight"], student[f"encoder.blocks.{i}.attn.qkv.bias"]
        for j, name in enumerate((q, k, v)):
            out[f"{name}.weight"] = weight[j * dim : (j + 1) * dim]
            if not (spec.modality == "image" and name == k):  # softmax cancels a key bias (module docstring)
                out[f"{name}.bias"] = bias[j * dim : (j + 1) * dim]
    if spec.modality == "image":
        _image_extras_out(spec, student, out, sincos_table)
    elif spec.modality == "text":
        table = student["frontend.pos_embed.weight"]  # (P, D)
        out["embeddings.position_embeddings.weight"] = torch.cat([table.new_zeros(PAD_ID + 1, dim), table])
        out["embeddings.token_type_embeddings.weight"] = table.new_zeros(1, dim)
    return {name: tensor.detach().clone().contiguous() for name, tensor in out.items()}


def _image_extras_out(spec: Data2VecSpec, student: StateDict, out: StateDict, sincos_table: Tensor | None) -> None:
    assert spec.image is not None
    out["embeddings.cls_token"] = student["frontend.cls_token"]
    if "frontend.mask_embed" in student:
        out["embeddings.mask_token"] = student["frontend.mask_embed"].view(1, 1, -1)
    if spec.image.positions == "relative_bias":
        return
    table = student["frontend.pos_embed"] if spec.image.positions == "learned" else sincos_table
    if table is None:
        raise WeightMismatch("image positions: sincos export needs the front end's position table")
    out["embeddings.position_embeddings"] = torch.cat([table.new_zeros(1, 1, table.shape[-1]), table], dim=1)


# ------------------------------------------------------------------------------------------ import


def from_hf_state(spec: Data2VecSpec, hf: StateDict, has_mask_embed: bool) -> StateDict:
    """d2v student state ("frontend.*" / "encoder.*") of a transformers base-model state dict.

    has_mask_embed: whether the d2v model has a learned mask embedding (data2vec 1.0 images and
    speech); it is filled from transformers' mask token when the model has one.
    """
    mask_in_hf = has_mask_embed and any(k in hf for k in ("embeddings.mask_token", "masked_spec_embed"))
    out: StateDict = {d2v: _take(hf, name) for d2v, name in _renames(spec, mask_in_hf)}
    for i in range(spec.encoder.depth):
        q, k, v = _qkv_names(spec, i)
        out[f"encoder.blocks.{i}.attn.qkv.weight"] = torch.cat([_take(hf, f"{n}.weight") for n in (q, k, v)])
        query_bias = _take(hf, f"{q}.bias")
        # transformers' vision key has no bias: zero is exact (softmax cancels a key bias).
        key_bias = torch.zeros_like(query_bias) if spec.modality == "image" else _take(hf, f"{k}.bias")
        out[f"encoder.blocks.{i}.attn.qkv.bias"] = torch.cat([query_bias, key_bias, _take(hf, f"{v}.bias")])
    if spec.modality == "image":
        _image_extras_in(spec, hf, out, mask_in_hf)
    elif spec.modality == "text":
        table = _take(hf, "embeddings.position_embeddings.weight")[PAD_ID + 1 :]
        token_type = _take(hf, "embeddings.token_type_embeddings.weight")[0]
        out["frontend.pos_embed.weight"] = table + token_type  # both are added to every token
    return {name: tensor.detach().clone().contiguous() for name, tensor in out.items()}


def _image_extras_in(spec: Data2VecSpec, hf: StateDict, out: StateDict, mask_in_hf: bool) -> None:
    assert spec.image is not None
    cls = _take(hf, "embeddings.cls_token")
    if spec.image.positions == "learned":
        table = _take(hf, "embeddings.position_embeddings")  # (1, N + 1, D), row 0 for CLS
        cls = cls + table[:, :1]
        out["frontend.pos_embed"] = table[:, 1:]
    out["frontend.cls_token"] = cls
    if mask_in_hf:
        out["frontend.mask_embed"] = _take(hf, "embeddings.mask_token").view(-1)


def _take(state: StateDict, name: str) -> Tensor:
    if name not in state:
        raise WeightMismatch(f"transformers weights: tensor {name!r} not found (the config and weights disagree)")
    return state[name]
