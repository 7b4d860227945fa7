"""Linear probe: a linear classifier on frozen, pooled encoder features; top-1 and top-5 accuracy.

Features are extracted once (encoder in eval mode, no gradients) and standardised with the train
split's statistics (MAE's parameter-free BatchNorm before the head does the same job), so one
learning rate suits encoders whose feature scales differ, such as pretrained and random-init ones.

The classifier is trained to convergence, so its regularisation decides what it can do: 784 raw
pixels from 3000 examples overfit where 128 encoder features do not. Each encoder therefore gets
the weight decay (of `weight_decays`) that scores best on the valid split, as probes in the
literature sweep their hyperparameters per model.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from d2v.core.types import FeatureEncoder
from d2v.errors import D2VError
from d2v.eval.config import LinearProbeConfig
from d2v.eval.data import Collate, EvalResult, get_split, labels_of, make_loader, num_classes_of, pool, take_subset
from d2v.eval.device import CPU_FP32, EvalRuntime, fp32_features, to_cpu
from d2v.eval.metrics import accuracy, top_k_accuracy
from d2v.train.schedules import cosine_lr, multiplier

EXTRACT_BATCH_SIZE = 256


@torch.no_grad()
def extract_features(
    encoder: FeatureEncoder, loader: DataLoader, pooling: str, runtime: EvalRuntime = CPU_FP32
) -> tuple[Tensor, Tensor]:
    """Pooled fp32 features (N, D) on the runtime's device and labels (N,) on the CPU, of every
    batch; `encoder` (already on that device) frozen in eval mode."""
    was_training = encoder.training  # type: ignore[attr-defined]
    encoder.eval()  # type: ignore[attr-defined]
    forward = runtime.compiled(encoder)  # type: ignore[arg-type]
    features, labels = [], []
    try:
        for batch in loader:
            labels.append(labels_of(batch, "linear probe"))  # first: a clear error for non-dict batches
            with runtime.autocast():
                output = forward(runtime.place(batch))
            features.append(pool(fp32_features(output), pooling))  # (B, D)
    finally:
        encoder.train(was_training)  # type: ignore[attr-defined]
    if not features:
        raise D2VError("linear probe: no batches to extract features from (empty split?)")
    return torch.cat(features), torch.cat(labels)


def train_linear_classifiers(
    features: Tensor, labels: Tensor, num_classes: int, cfg: LinearProbeConfig, seed: int,
    weight_decays: Sequence[float],
) -> list[tuple[nn.Linear, list[float]]]:
    """One classifier per weight decay, each with its losses: AdamW + cosine on (N, D) standardised
    features, full batch when cfg.batch_size is 0.

    The classifiers are independent (same init, same batches, own decay: what separate runs would
    do) but trained together, one matmul per step for all of them, so a grid costs about one run."""
    heads = []
    for _ in weight_decays:
        torch.manual_seed(seed)  # every classifier starts where a run of its own would
        # Built on the CPU, then moved: the same initial weights on every device.
        heads.append(nn.Linear(features.shape[1], num_classes).to(features.device))
    labels = labels.to(features.device)
    n = features.shape[0]
    batch_size = n if cfg.batch_size == 0 else min(cfg.batch_size, n)
    steps_per_epoch = -(-n // batch_size)
    optimizer = torch.optim.AdamW(
        [{"params": head.parameters(), "weight_decay": wd} for head, wd in zip(heads, weight_decays)], lr=cfg.lr
    )
    total_steps = cfg.epochs * steps_per_epoch
    cosine = multiplier(cosine_lr, warmup_steps=0, total_steps=total_steps, min_lr=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    generator = torch.Generator().manual_seed(seed)
    per_step: list[Tensor] = []  # (H,) per update; read once at the end, not a device sync per step
    for _ in range(cfg.epochs):
        # Drawn on the CPU: the same order on every device. None: full batch, in the features' order.
        order = torch.randperm(n, generator=generator).to(features.device) if batch_size < n else None
        for start in range(0, n, batch_size):
            if order is None:
                # The features as they are: indexing with arange(n) would copy the whole matrix every
                # update (784 raw pixels: 1.6 ms of a 10 ms update) for the same values.
                batch_x, batch_y = features, labels
            else:
                index = order[start : start + batch_size]
                batch_x, batch_y = features[index], labels[index]
            weight = torch.cat([head.weight for head in heads])  # (H*C, D)
            bias = torch.cat([head.bias for head in heads])
            logits = F.linear(batch_x, weight, bias).view(len(batch_x), len(heads), num_classes)  # (B, H, C)
            targets = batch_y.unsqueeze(1).expand(-1, len(heads))  # (B, H)
            per_head = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(dim=0)  # (H,)
            optimizer.zero_grad(set_to_none=True)
            per_head.sum().backward()  # the heads share no parameter: each gets its own gradient
            optimizer.step()
            schedule.step()
            per_step.append(per_head.detach())
    losses = torch.stack(per_step).T.tolist() if per_step else [[] for _ in heads]  # (H, updates)
    return list(zip(heads, losses))


def standardise(train: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    """Every tensor standardised with the train features' per-channel mean and std."""
    mean, std = train.mean(dim=0), train.std(dim=0).clamp_min(1e-6)
    return tuple((x - mean) / std for x in (train, *others))


def select_weight_decay(
    train: tuple[Tensor, Tensor], valid: tuple[Tensor, Tensor] | None, num_classes: int, cfg: LinearProbeConfig,
    seed: int,
) -> tuple[nn.Linear, list[float], float, float | None]:
    """The classifier (and its losses, weight decay, valid top-1) whose valid top-1 is best.

    Ties go to the value listed first; with one value (or no valid split needed) nothing is compared."""
    trained = train_linear_classifiers(*train, num_classes, cfg, seed, cfg.weight_decays)
    if valid is None:
        head, losses = trained[0]
        return head, losses, cfg.weight_decays[0], None
    best: tuple[nn.Linear, list[float], float, float | None] | None = None
    for (head, losses), weight_decay in zip(trained, cfg.weight_decays):
        with torch.no_grad():
            valid_top1 = accuracy(to_cpu(head(valid[0])).argmax(dim=1).numpy(), valid[1].numpy())
        if best is None or valid_top1 > best[3]:  # type: ignore[operator]
            best = (head, losses, weight_decay, valid_top1)
    assert best is not None  # weight_decays is never empty (LinearProbeConfig checks)
    return best


def linear_probe(
    encoder: FeatureEncoder,
    splits: Mapping[str, Dataset],
    cfg: LinearProbeConfig,
    *,
    pooling: str,
    n_test: int | None,
    seed: int,
    collate: Collate | None = None,
    runtime: EvalRuntime = CPU_FP32,
) -> EvalResult:
    """Train on splits["train"], score splits["test"]: metrics top1, top5 (fractions in [0, 1]).

    With several `cfg.weight_decays`, splits["valid"] picks one; the metrics then also hold
    `weight_decay` (the one kept) and `valid_top1` (its score there). Extraction and the
    classifiers run on `runtime`'s device; the caller's encoder is not moved."""
    train_set = take_subset(get_split(splits, "train", "linear probe"), cfg.n_train, seed)
    test_set = take_subset(get_split(splits, "test", "linear probe"), n_test, seed + 1)
    in_order = dict(batch_size=EXTRACT_BATCH_SIZE, shuffle=False, seed=seed, collate=collate, loading=runtime.loading)
    encoder = runtime.borrow_module(encoder)  # type: ignore[type-var]
    train_x, train_y = extract_features(encoder, make_loader(train_set, **in_order), pooling, runtime)
    test_x, test_y = extract_features(encoder, make_loader(test_set, **in_order), pooling, runtime)
    valid: tuple[Tensor, Tensor] | None = None
    if len(cfg.weight_decays) > 1:
        valid_set = take_subset(
            get_split(splits, "valid", f"linear probe (picks one of weight_decays {list(cfg.weight_decays)})"),
            cfg.n_valid, seed + 2,
        )
        valid = extract_features(encoder, make_loader(valid_set, **in_order), pooling, runtime)
    # A small train subset of a many-class task can miss a class the test split has: size the head
    # for every label seen, the classifier then simply never predicts the missing one.
    num_classes = max(num_classes_of(train_y, "linear probe: train split"), int(test_y.max()) + 1)
    if valid is None:
        train_x, test_x = standardise(train_x, test_x)
    else:
        train_x, test_x, valid_x = standardise(train_x, test_x, valid[0])
        valid = (valid_x, valid[1])
    head, losses, weight_decay, valid_top1 = select_weight_decay((train_x, train_y), valid, num_classes, cfg, seed)
    with torch.no_grad():
        scores = to_cpu(head(test_x))  # (N, C)
    predictions = scores.argmax(dim=1)
    gold = test_y.numpy()
    chosen = {} if valid_top1 is None else {"weight_decay": weight_decay, "valid_top1": valid_top1}
    return EvalResult(
        metrics={
            "top1": accuracy(predictions.numpy(), gold),
            "top5": top_k_accuracy(scores.numpy(), gold, 5),
            **chosen,
        },
        n_train=len(train_y),
        n_test=len(test_y),
        predictions=predictions.tolist(),
        references=test_y.tolist(),
        train_losses=losses,
    )
