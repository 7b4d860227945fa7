"""Full fine-tuning of an encoder with a classification or regression head.

Used by image classification and the GLUE-style text tasks. Float labels mean regression (one
output, MSE); integer labels mean classification (cross-entropy with label smoothing). The encoder
passed in is copied first, so a pretrained encoder can be evaluated again afterwards.

Layer-wise lr decay (BEiT / data2vec): the head gets the full lr, block i of L gets
lr * decay^(L - i), and everything the encoder runs before its first block (feature extractor,
positional encoding, CLS token) gets lr * decay^(L + 1). Which parameters run before the blocks
and which after (a final norm) is found by watching one forward pass, so any encoder honouring
the FeatureEncoder contract works without naming conventions.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from d2v.core.types import Batch, FeatureEncoder
from d2v.errors import D2VError
from d2v.eval.config import FinetuneConfig
from d2v.eval.data import (
    Collate,
    EvalResult,
    collect_labels,
    first_batch,
    get_split,
    labels_of,
    make_bucketed_loader,
    make_loader,
    num_classes_of,
    pool,
    take_subset,
)
from d2v.eval.device import CPU_FP32, EvalRuntime, fp32_features, to_cpu
from d2v.eval.metrics import accuracy, pearson, spearman, top_k_accuracy
from d2v.progress import UpdateLog
from d2v.train.optim import LayerDecay, build_optimizer
from d2v.train.schedules import cosine_lr, multiplier, warmup_steps_for

# A train-time augmentation: (batch, generator) -> batch. Seeded by the caller's generator.
Augment = Callable[[Batch, torch.Generator], Batch]
PREDICT_BATCH_SIZE = 256


class EncoderWithHead(nn.Module):
    """encoder -> pooled (B, D) -> [LayerNorm, for mean pooling] -> linear head (B, outputs).

    `autocast` wraps the encoder's forward pass only (EvalRuntime.autocast); pooling, norm and head
    compute in fp32, as the loss after them does."""

    def __init__(
        self, encoder: nn.Module, embed_dim: int, outputs: int, pooling: str,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.autocast = autocast
        # BEiT / data2vec 2.0 fine-tune mean-pooled features through a LayerNorm (fc_norm). Without it
        # a pretrained encoder's pooled features, which vary less between inputs than a random
        # encoder's, leave the small-init head nearly untrainable (measured: text supersense 17 %).
        self.fc_norm: nn.Module = nn.LayerNorm(embed_dim) if pooling == "mean" else nn.Identity()
        self.head = nn.Linear(embed_dim, outputs)
        nn.init.trunc_normal_(self.head.weight, std=0.02)  # small head init, as BEiT/MAE fine-tuning
        nn.init.zeros_(self.head.bias)

    def forward(self, batch: Batch) -> Tensor:
        with self.autocast():
            features = self.encoder(batch)
        return self.head(self.fc_norm(pool(fp32_features(features), self.pooling)))


def encoder_layer_ids(encoder: nn.Module, sample: Batch) -> dict[str, int]:
    """Parameter name -> depth: 0 before the blocks, i + 1 in block i, L + 1 after the last block."""
    blocks = list(encoder.blocks)  # type: ignore[attr-defined]
    depth = len(blocks)
    in_block = {id(p): i + 1 for i, block in enumerate(blocks) for p in block.parameters()}
    clock = itertools.count()
    first_call: dict[nn.Module, int] = {}
    blocks_done = [float("inf")]
    owners = [m for m in encoder.modules() if any(True for _ in m.parameters(recurse=False))]

    def record_call(module: nn.Module, _inputs: object) -> None:  # a hook returning a value would replace the input
        first_call.setdefault(module, next(clock))

    def record_blocks_done(*_: object) -> None:
        blocks_done[0] = next(clock)

    hooks = [m.register_forward_pre_hook(record_call) for m in owners]
    if blocks:
        hooks.append(blocks[-1].register_forward_hook(record_blocks_done))
    try:
        with torch.no_grad():
            encoder(sample)
    finally:
        for hook in hooks:
            hook.remove()
    ids: dict[str, int] = {}
    for module_name, module in encoder.named_modules():
        for name, param in module.named_parameters(prefix=module_name, recurse=False):
            if id(param) in in_block:
                ids[name] = in_block[id(param)]
            else:
                ids[name] = depth + 1 if first_call.get(module, -1) > blocks_done[0] else 0
    return ids


def finetune_optimizer(model: EncoderWithHead, cfg: FinetuneConfig, sample: Batch) -> torch.optim.AdamW:
    """The shared AdamW (d2v.train.optim: no decay on biases, norms, positions, CLS) with lr scaled by depth."""
    top = len(model.encoder.blocks) + 1  # type: ignore[arg-type]
    layer_of = encoder_layer_ids(model.encoder, sample)

    def depth_of(name: str) -> int:  # the head and fc_norm sit above the encoder: full lr
        return layer_of.get(name.removeprefix("encoder."), top) if name.startswith("encoder.") else top

    layer_decay = LayerDecay(cfg.layer_decay, top, depth_of)
    return build_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999), layer_decay=layer_decay)


def _loss(outputs: Tensor, labels: Tensor, regression: bool, label_smoothing: float) -> Tensor:
    if regression:
        return F.mse_loss(outputs.squeeze(-1), labels.float())
    return F.cross_entropy(outputs, labels, label_smoothing=label_smoothing)


@torch.no_grad()
def predict(
    model: nn.Module, dataset: Dataset, collate: Collate | None, runtime: EvalRuntime = CPU_FP32
) -> tuple[Tensor, Tensor]:
    """Model outputs (N, outputs) and labels (N,) over a split, in eval mode; both on the CPU, fp32
    outputs (`model` is on the runtime's device)."""
    model.eval()
    outputs, labels = [], []
    loader = make_loader(dataset, PREDICT_BATCH_SIZE, shuffle=False, seed=0, collate=collate, loading=runtime.loading)
    for batch in loader:
        outputs.append(to_cpu(model(runtime.place(batch))))
        labels.append(labels_of(batch))
    return torch.cat(outputs), torch.cat(labels)


def score(outputs: Tensor, labels: Tensor, regression: bool) -> tuple[dict[str, float], list]:
    """Metrics and predictions: top1/top5 for classification, pearson/spearman for regression."""
    if regression:
        values = outputs.squeeze(-1)
        return {"pearson": pearson(values, labels), "spearman": spearman(values, labels)}, values.tolist()
    predictions = outputs.argmax(dim=1)
    gold = labels.numpy()
    metrics = {"top1": accuracy(predictions.numpy(), gold), "top5": top_k_accuracy(outputs.numpy(), gold, 5)}
    return metrics, predictions.tolist()


def finetune(
    encoder: FeatureEncoder,
    splits: Mapping[str, Dataset],
    cfg: FinetuneConfig,
    *,
    pooling: str,
    n_test: int | None,
    seed: int,
    collate: Collate | None = None,
    augment: Augment | None = None,
    where: str = "fine-tuning",
    extra_test_splits: Sequence[str] = (),
    runtime: EvalRuntime = CPU_FP32,
    item_length: Callable[[Any], int] | None = None,
) -> EvalResult:
    """Fine-tune a copy of `encoder` on splits["train"]; score splits["test"]. The same fine-tuned
    model also predicts each of `extra_test_splits` that exists (MNLI's mismatched dev set): those
    outputs are kept in `extra_transcripts` (split -> (predictions, references)), unscored.

    With `item_length` (an item's length once collated), training batches group items of similar
    length (`LengthBucketBatches`), as fairseq's batching by size does: less padding to compute.

    The copy and every batch go to `runtime`'s device; augmentation runs on the CPU batch before
    it moves (its seeded draws are then the same on every device)."""
    train_set = take_subset(get_split(splits, "train", where), cfg.n_train, seed)
    test_set = take_subset(get_split(splits, "test", where), n_test, seed + 1)
    train_labels = collect_labels(train_set, f"{where}: train split", collate)
    regression = train_labels.is_floating_point()
    outputs = 1
    if not regression:  # size the head for every label seen (a small subset can miss a class)
        test_max = int(collect_labels(test_set, f"{where}: test split", collate).max())
        outputs = max(num_classes_of(train_labels, f"{where}: train split"), test_max + 1)

    torch.manual_seed(seed)
    model = EncoderWithHead(
        copy.deepcopy(encoder), encoder.embed_dim, outputs, pooling, autocast=runtime.autocast  # type: ignore[arg-type]
    )
    model = runtime.place_module(model)
    if item_length is None:
        loader = make_loader(train_set, cfg.batch_size, shuffle=True, seed=seed, collate=collate, loading=runtime.loading)
    else:
        lengths = [item_length(train_set[i]) for i in range(len(train_set))]  # type: ignore[arg-type]
        loader = make_bucketed_loader(train_set, lengths, cfg.batch_size, seed=seed, collate=collate,
                                      loading=runtime.loading)
    with runtime.autocast():  # the watched pass is an encoder forward pass like any other
        optimizer = finetune_optimizer(model, cfg, runtime.place(first_batch(loader)))
    # After the optimizer: its layer-wise lr groups watched an eager forward pass (hooks) and found
    # parameters by name, which in-place compilation keeps.
    runtime.compile_in_place(model.encoder)
    total_steps = cfg.epochs * len(loader)
    warmup_steps = warmup_steps_for(total_steps, cfg.warmup_fraction)
    cosine = multiplier(cosine_lr, warmup_steps=warmup_steps, total_steps=total_steps, min_lr=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    augment_generator = torch.Generator().manual_seed(seed + 2)
    losses: list[float] = []
    log = UpdateLog(where, total_steps)
    for _ in range(cfg.epochs):
        model.train()
        for batch in loader:
            if augment is not None:
                batch = augment(batch, augment_generator)
            batch = runtime.place(batch)
            loss = _loss(model(batch), labels_of(batch), regression, cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise D2VError(f"{where}: loss became {loss.item()} at update {len(losses)}; lower the lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            log.update(losses[-1])

    test_outputs, test_labels = predict(model, test_set, collate, runtime)
    metrics, predictions = score(test_outputs, test_labels, regression)
    extra = {}
    for name in extra_test_splits:
        if name in splits and len(splits[name]) > 0:  # type: ignore[arg-type]
            outputs, labels = predict(model, take_subset(splits[name], n_test, seed + 1), collate, runtime)
            extra[name] = (score(outputs, labels, regression)[1], labels.tolist())
    return EvalResult(
        metrics=metrics,
        n_train=len(train_labels),
        n_test=len(test_labels),
        predictions=predictions,
        references=test_labels.tolist(),
        train_losses=losses,
        extra_transcripts=extra,
    )
