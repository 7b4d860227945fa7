from __future__ import annotations

import pytest
import torch

from d2v.errors import D2VError
from d2v.eval.augment import ImageAugment
from d2v.eval.config import FinetuneConfig, ImageAugmentConfig
from d2v.eval.finetune import EncoderWithHead, encoder_layer_ids, finetune, finetune_optimizer

from d2v.eval.data import Loading
from d2v.eval.device import EvalRuntime

from eval_standins import DictDataset, GuardedEncoder, PatchEmbed, PlacementGuard, StandInEncoder

CFG = FinetuneConfig(
    epochs=3, lr=3e-3, batch_size=32, weight_decay=0.01, layer_decay=0.65,
    label_smoothing=0.1, warmup_fraction=0.1, n_train=None,
)


def test_finetune_image_classifier_loss_decreases(image_encoder_factory, image_splits) -> None:
    encoder = image_encoder_factory(0)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    augment = ImageAugment(ImageAugmentConfig(random_resized_crop=True, crop_scale_min=0.8, hflip=True))
    cfg = FinetuneConfig(**{**CFG.__dict__, "epochs": 4, "lr": 3e-2})
    result = finetune(encoder, image_splits, cfg, pooling="mean", n_test=None, seed=0, augment=augment)
    first, last = sum(result.train_losses[:3]) / 3, sum(result.train_losses[-3:]) / 3
    assert last < 0.7 * first
    assert result.metrics["top1"] > 0.5 and result.metrics["top5"] == 1.0  # 4 classes: top-5 covers all
    assert (result.n_train, result.n_test) == (256, 128)
    # The caller's encoder is untouched (a copy is fine-tuned), so it can be evaluated again.
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_finetune_is_deterministic(image_encoder_factory, image_splits) -> None:
    cfg = FinetuneConfig(**{**CFG.__dict__, "epochs": 1, "n_train": 64})
    runs = [finetune(image_encoder_factory(0), image_splits, cfg, pooling="cls", n_test=32, seed=1) for _ in range(2)]
    assert runs[0].train_losses == runs[1].train_losses and runs[0].metrics == runs[1].metrics


def test_text_regression_on_padded_tokens(text_encoder_factory) -> None:
    # Target = fraction of token 7 among the non-padding tokens: learnable from mean pooling.
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(5, 9, (192, 10), generator=generator)
    lengths = torch.randint(4, 11, (192,), generator=generator)
    padding = torch.arange(10)[None, :] >= lengths[:, None]  # (N, T)
    tokens = tokens.masked_fill(padding, 0)
    target = ((tokens == 7) & ~padding).sum(1) / lengths
    data = DictDataset(tokens=tokens, padding_mask=padding, label=target.float())
    splits = {"train": torch.utils.data.Subset(data, range(160)), "test": torch.utils.data.Subset(data, range(160, 192))}
    cfg = FinetuneConfig(**{**CFG.__dict__, "epochs": 8, "lr": 1e-2, "layer_decay": 1.0})
    result = finetune(text_encoder_factory(0), splits, cfg, pooling="mean", n_test=None, seed=0)
    assert set(result.metrics) == {"pearson", "spearman"}
    assert result.train_losses[-1] < result.train_losses[0]
    assert result.metrics["pearson"] > 0.5


def test_layer_ids_follow_forward_order(image_encoder_factory, image_splits) -> None:
    encoder = image_encoder_factory(0)
    sample = {"image": torch.zeros(2, 1, 8, 8)}
    ids = encoder_layer_ids(encoder, sample)
    assert ids["feature_extractor.proj.weight"] == 0 and ids["cls_token"] == 0
    assert ids["blocks.0.norm.weight"] == 1 and ids["blocks.1.mlp.0.weight"] == 2
    assert ids["final_norm.weight"] == 3  # runs after the last block: decayed like the head
    model = EncoderWithHead(encoder, 16, 4, "mean")
    groups = finetune_optimizer(model, CFG, sample).param_groups
    lrs = {round(g["lr"], 8) for g in groups}
    assert lrs == {round(CFG.lr * 0.65**k, 8) for k in (0, 1, 2, 3)}
    # The shared weight-decay rule: no decay on positions, the CLS token, biases and norm gains.
    exempt = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    decayed = {id(p) for g in groups if g["weight_decay"] == CFG.weight_decay for p in g["params"]}
    assert {id(encoder.cls_token), id(encoder.blocks[0].norm.weight), id(model.head.bias)} <= exempt
    assert id(model.head.weight) in decayed and len(exempt) + len(decayed) == sum(1 for _ in model.parameters())


def test_mean_pooling_goes_through_a_layer_norm_trained_like_the_head(image_encoder_factory) -> None:
    encoder = image_encoder_factory(0)
    sample = {"image": torch.randn(3, 1, 8, 8)}
    model = EncoderWithHead(encoder, 16, 4, "mean")
    assert isinstance(model.fc_norm, torch.nn.LayerNorm)
    assert isinstance(EncoderWithHead(encoder, 16, 4, "cls").fc_norm, torch.nn.Identity)
    with torch.no_grad():
        model.head.weight.copy_(torch.eye(4, 16))
        logits = model(sample)
        pooled = encoder(sample).x.mean(dim=1)
    normed = (pooled - pooled.mean(-1, keepdim=True)) / pooled.var(-1, unbiased=False, keepdim=True).add(1e-5).sqrt()
    torch.testing.assert_close(logits, normed[:, :4])
    groups = finetune_optimizer(model, CFG, sample).param_groups
    top_lr = max(g["lr"] for g in groups)
    at_top_lr = [p for g in groups if g["lr"] == top_lr for p in g["params"]]
    assert any(p is model.fc_norm.weight for p in at_top_lr) and top_lr == CFG.lr


def test_finetune_errors(image_encoder_factory, image_splits) -> None:
    with pytest.raises(D2VError, match="missing split 'test'"):
        finetune(image_encoder_factory(0), {"train": image_splits["train"]}, CFG, pooling="mean", n_test=None, seed=0)
    empty = DictDataset(image=torch.zeros(0, 1, 8, 8), label=torch.zeros(0, dtype=torch.long))
    with pytest.raises(D2VError, match="split 'train' is empty"):
        finetune(image_encoder_factory(0), {"train": empty, "test": empty}, CFG, pooling="mean", n_test=None, seed=0)


# ------------------------------------------------------------------------------ device, workers, compile

def _encoder(guarded: bool = False) -> StandInEncoder:
    torch.manual_seed(0)
    return (GuardedEncoder if guarded else StandInEncoder)(PatchEmbed(1, 16, 4), dim=16, depth=2)


def test_the_copy_and_every_batch_go_through_the_runtime(image_splits) -> None:
    """Training (augmented), the optimizer's watched pass, test and extra-split predictions."""
    augment = ImageAugment(ImageAugmentConfig(random_resized_crop=True, crop_scale_min=0.8, hflip=True))
    cfg = FinetuneConfig(**{**CFG.__dict__, "epochs": 2, "n_train": 64})
    splits = {**image_splits, "extra": image_splits["test"]}
    kwargs = dict(pooling="mean", n_test=32, seed=0, augment=augment, extra_test_splits=("extra",))
    encoder = _encoder(guarded=True)
    with pytest.raises(AssertionError, match="not placed through the runtime"):
        finetune(encoder, splits, cfg, **kwargs)  # the default runtime marks nothing
    guarded = finetune(encoder, splits, cfg, **kwargs, runtime=PlacementGuard())
    plain = finetune(_encoder(), splits, cfg, **kwargs, runtime=EvalRuntime(device=torch.device("cpu")))
    assert guarded.train_losses == plain.train_losses and guarded.metrics == plain.metrics
    assert guarded.extra_transcripts == plain.extra_transcripts and len(guarded.extra_transcripts["extra"][0]) == 32


def test_finetune_results_do_not_depend_on_loader_workers(image_splits) -> None:
    # Two shuffled epochs: persistent workers would draw the second epoch's order differently
    # without d2v.eval.data.DrawsAsInProcess.
    cfg = FinetuneConfig(**{**CFG.__dict__, "epochs": 2, "n_train": 96})
    runs = [
        finetune(_encoder(), image_splits, cfg, pooling="cls", n_test=32, seed=1,
                 runtime=EvalRuntime(loading=Loading(num_workers=workers)))
        for workers in (0, 2)
    ]
    assert runs[0].train_losses == runs[1].train_losses and runs[0].metrics == runs[1].metrics


def test_compiled_finetuning_goes_through_dynamo_and_matches_eager(image_splits) -> None:
    """Dynamo with AOTAutograd but no code generation (backend aot_eager): inductor's C++ build
    of the forward, backward and eval graphs would take minutes on this CPU. Tolerance: losses
    within 1e-5 relative of eager, the same test predictions."""
    from torch._dynamo.utils import counters

    cfg = FinetuneConfig(**{**CFG.__dict__, "epochs": 1, "n_train": 64})
    eager = finetune(_encoder(), image_splits, cfg, pooling="mean", n_test=32, seed=0)
    torch._dynamo.reset()
    counters.clear()
    runtime = EvalRuntime(compile=True, compile_backend="aot_eager")
    compiled = finetune(_encoder(), image_splits, cfg, pooling="mean", n_test=32, seed=0, runtime=runtime)
    assert counters["stats"]["unique_graphs"] >= 1 and counters["stats"]["calls_captured"] > 0
    assert compiled.train_losses == pytest.approx(eager.train_losses, rel=1e-5)
    assert compiled.predictions == eager.predictions


def test_length_buckets_cut_padding_and_train_on_every_example_each_epoch(text_encoder_factory) -> None:
    from d2v.data.datasets import TextCollate

    generator = torch.Generator().manual_seed(0)
    items = []
    for i in range(256):  # sentences of 3-30 ids from a 32-id vocabulary; label: contains id 7
        ids = torch.randint(5, 32, (int(torch.randint(3, 31, (), generator=generator)),), generator=generator).tolist()
        items.append((ids, None, int(7 in ids)))
    splits = {"train": items[:192], "test": items[192:]}
    collate = TextCollate(max_length=32)
    seen: list[list[int]] = []

    def recording(batch):  # the collated token rows of every training batch, without their padding
        out = collate(batch)
        seen.append([len(ids) for ids, _, _ in batch])
        return out

    cfg = FinetuneConfig(**{**CFG.__dict__, "epochs": 2, "lr": 1e-2, "layer_decay": 1.0, "batch_size": 16})
    padded = {}
    for buckets in (False, True):
        seen.clear()
        result = finetune(text_encoder_factory(0), splits, cfg, pooling="mean", n_test=None, seed=0, collate=recording,
                          item_length=collate.length if buckets else None)
        # Label collection and prediction collate 256 at a time; then the optimizer's sample batch,
        # then 12 training batches an epoch.
        train_batches = [batch for batch in seen if len(batch) <= 16][1:]
        assert len(train_batches) == 2 * 12
        assert sorted(n for batch in train_batches[:12] for n in batch) == sorted(len(ids) for ids, _, _ in items[:192])
        padded[buckets] = sum((max(batch) + 2) * len(batch) for batch in train_batches)
        assert result.train_losses[-1] < result.train_losses[0]
    assert padded[True] < 0.75 * padded[False]  # uniform lengths 3-30: random batches of 16 pad to ~29
