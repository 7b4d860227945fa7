from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from d2v.core.types import EncoderOutput
from d2v.errors import ConfigError, D2VError
from d2v.eval.config import LinearProbeConfig
from d2v.eval import linear_probe as linear_probe_module
from d2v.eval.linear_probe import linear_probe

from d2v.eval.data import Loading
from d2v.eval.device import EvalRuntime

from eval_standins import DictDataset, GuardedEncoder, PatchEmbed, PlacementGuard, StandInEncoder, make_image_splits

CFG = LinearProbeConfig(epochs=50, lr=0.05, batch_size=0, weight_decays=(0.0,), n_train=None, n_valid=None)


class FeaturesAsTokens(nn.Module):
    """An encoder whose tokens are given: x = batch["features"] as (B, T, D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.feature_extractor = nn.Identity()
        self.blocks = nn.ModuleList()
        self.embed_dim = dim

    def forward(self, batch: dict) -> EncoderOutput:
        return EncoderOutput(x=batch["features"], padding_mask=batch.get("padding_mask"))


def separable_splits(n_train: int, n_test: int, classes: int = 6, dim: int = 12) -> dict:
    generator = torch.Generator().manual_seed(0)
    centres = 4 * torch.randn(classes, dim, generator=generator)

    def split(n: int) -> DictDataset:
        labels = torch.arange(n) % classes
        tokens = centres[labels].unsqueeze(1) + torch.randn(n, 3, dim, generator=generator)  # (N, 3, D)
        return DictDataset(features=tokens, label=labels)

    return {"train": split(n_train), "test": split(n_test)}


def test_probe_separates_linearly_separable_features() -> None:
    result = linear_probe(FeaturesAsTokens(12), separable_splits(300, 120), CFG, pooling="mean", n_test=None, seed=0)
    assert result.metrics["top1"] >= 0.95
    assert result.metrics["top5"] >= result.metrics["top1"]
    assert (result.n_train, result.n_test) == (300, 120)
    assert result.train_losses[-1] < result.train_losses[0]


def test_probe_is_deterministic_and_subsets(image_encoder_factory, image_splits) -> None:
    cfg = LinearProbeConfig(epochs=20, lr=0.05, batch_size=32, weight_decays=(0.0,), n_train=100, n_valid=None)
    runs = [linear_probe(image_encoder_factory(0), image_splits, cfg, pooling="mean", n_test=64, seed=3) for _ in range(2)]
    assert runs[0].metrics == runs[1].metrics and runs[0].predictions == runs[1].predictions
    assert (runs[0].n_train, runs[0].n_test) == (100, 64)
    assert runs[0].metrics["top1"] > 0.5  # 4 classes: well above chance even from random init


def test_mean_pooling_ignores_padding() -> None:
    splits = separable_splits(60, 30)
    for split in splits.values():
        features = split.columns["features"].clone()
        features[:, -1] = 1e6  # garbage at a padded position
        split.columns["features"] = features
        split.columns["padding_mask"] = torch.tensor([False, False, True]).expand(len(split), 3)
    result = linear_probe(FeaturesAsTokens(12), splits, CFG, pooling="mean", n_test=None, seed=0)
    assert result.metrics["top1"] >= 0.9


def test_probe_errors_are_clear(image_encoder_factory) -> None:
    encoder = FeaturesAsTokens(12)
    splits = separable_splits(30, 12)
    with pytest.raises(D2VError, match="missing split 'test'"):
        linear_probe(encoder, {"train": splits["train"]}, CFG, pooling="mean", n_test=None, seed=0)
    with pytest.raises(D2VError, match="split 'train' is empty"):
        linear_probe(encoder, {"train": DictDataset(features=[], label=[]), "test": splits["test"]}, CFG, pooling="mean", n_test=None, seed=0)
    one_class = DictDataset(features=torch.randn(5, 2, 12), label=torch.zeros(5, dtype=torch.long))
    with pytest.raises(D2VError, match="one distinct label"):
        linear_probe(encoder, {"train": one_class, "test": one_class}, CFG, pooling="mean", n_test=None, seed=0)
    tuples = [(torch.randn(2, 12), 0), (torch.randn(2, 12), 1)]
    with pytest.raises(D2VError, match="pass the readers' collate"):
        linear_probe(encoder, {"train": tuples, "test": tuples}, CFG, pooling="mean", n_test=None, seed=0)
    with pytest.raises(D2VError, match="no CLS output"):
        linear_probe(encoder, splits, CFG, pooling="cls", n_test=None, seed=0)


def with_valid(splits: dict) -> dict:
    return {**splits, "valid": separable_splits(10, 120)["test"]}


def test_weight_decay_is_picked_on_the_valid_split(monkeypatch: pytest.MonkeyPatch) -> None:
    # Optimiser dynamics aside (argmax ignores the scale decay shrinks), the choice itself is pinned:
    # the classifier trained with wd 7.0 is replaced by one that always answers class 0 (chance on
    # the valid split). It is listed first, so keeping the first value instead of the best fails here.
    real_trainer = linear_probe_module.train_linear_classifiers

    def trainer(features, labels, num_classes, cfg, seed, weight_decays):
        trained = real_trainer(features, labels, num_classes, cfg, seed, weight_decays)
        for (head, _), weight_decay in zip(trained, weight_decays):
            if weight_decay == 7.0:
                with torch.no_grad():
                    head.weight.zero_()
                    head.bias.copy_(torch.arange(num_classes, 0, -1, dtype=torch.float))
        return trained

    monkeypatch.setattr(linear_probe_module, "train_linear_classifiers", trainer)
    splits = with_valid(separable_splits(300, 120))
    grid = dataclasses.replace(CFG, weight_decays=(7.0, 0.0))
    picked = linear_probe(FeaturesAsTokens(12), splits, grid, pooling="mean", n_test=None, seed=0)
    single = linear_probe(FeaturesAsTokens(12), splits, dataclasses.replace(grid, weight_decays=(0.0,)),
                          pooling="mean", n_test=None, seed=0)
    assert picked.metrics["weight_decay"] == 0.0
    assert picked.metrics["valid_top1"] >= 0.95
    assert picked.metrics["top1"] == single.metrics["top1"] >= 0.95
    assert picked.train_losses == pytest.approx(single.train_losses, rel=1e-5)  # the kept run's own losses
    assert "weight_decay" not in single.metrics  # one value: nothing picked, nothing recorded
    flipped = linear_probe(FeaturesAsTokens(12), splits, dataclasses.replace(grid, weight_decays=(0.0, 7.0)),
                           pooling="mean", n_test=None, seed=0)
    assert flipped.metrics["weight_decay"] == 0.0  # the order of the grid does not decide

def test_weight_decay_grid_needs_a_valid_split() -> None:
    grid = dataclasses.replace(CFG, epochs=5, weight_decays=(0.0, 1.0))
    with pytest.raises(D2VError, match=r"picks one of weight_decays \[0.0, 1.0\].*missing split 'valid'"):
        linear_probe(FeaturesAsTokens(12), separable_splits(30, 12), grid, pooling="mean", n_test=None, seed=0)


def test_empty_weight_decay_grid_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="image.linear_probe.weight_decays"):
        LinearProbeConfig(epochs=5, lr=0.05, batch_size=0, weight_decays=(), n_train=None, n_valid=None)


@pytest.mark.parametrize("batch_size", [0, 16])
def test_classifiers_trained_together_match_separate_runs(batch_size: int) -> None:
    features, labels = torch.randn(60, 12), torch.arange(60) % 3
    cfg = dataclasses.replace(CFG, epochs=15, batch_size=batch_size)
    together = linear_probe_module.train_linear_classifiers(features, labels, 3, cfg, 0, (0.0, 0.5, 5.0))
    for (head, losses), weight_decay in zip(together, (0.0, 0.5, 5.0)):
        [(alone, alone_losses)] = linear_probe_module.train_linear_classifiers(features, labels, 3, cfg, 0, (weight_decay,))
        assert torch.allclose(head.weight, alone.weight, atol=1e-5) and torch.allclose(head.bias, alone.bias, atol=1e-5)
        assert losses == pytest.approx(alone_losses, rel=1e-5)
    assert not torch.allclose(together[0][0].weight, together[2][0].weight, atol=1e-3)  # the decay did act


# ------------------------------------------------------------------------------ device, workers, compile

def _tiny_image_encoder(guarded: bool = False) -> StandInEncoder:
    torch.manual_seed(0)
    return (GuardedEncoder if guarded else StandInEncoder)(PatchEmbed(1, 16, 4), dim=16, depth=2)


def test_extraction_and_classifiers_go_through_the_runtime(image_splits) -> None:
    splits = {**image_splits, "valid": image_splits["test"]}
    cfg = LinearProbeConfig(epochs=10, lr=0.05, batch_size=32, weight_decays=(0.0, 1.0), n_train=96, n_valid=32)
    encoder = _tiny_image_encoder(guarded=True)
    with pytest.raises(AssertionError, match="not placed through the runtime"):
        linear_probe(encoder, splits, cfg, pooling="mean", n_test=32, seed=0)  # the default runtime marks nothing
    guarded = linear_probe(encoder, splits, cfg, pooling="mean", n_test=32, seed=0, runtime=PlacementGuard())
    plain = linear_probe(_tiny_image_encoder(), splits, cfg, pooling="mean", n_test=32, seed=0,
                         runtime=EvalRuntime(device=torch.device("cpu")))
    assert guarded.metrics == plain.metrics and guarded.predictions == plain.predictions
    assert not hasattr(encoder, "_placed_by_runtime")  # the caller's encoder was borrowed, not moved


def test_the_guard_catches_a_batch_that_was_not_placed() -> None:
    runtime = PlacementGuard()
    encoder = runtime.place_module(_tiny_image_encoder(guarded=True))
    with runtime.autocast(), pytest.raises(AssertionError, match=r"batch\['image'\] was not placed"):
        encoder({"image": torch.zeros(2, 1, 8, 8)})
    with pytest.raises(AssertionError, match="outside runtime.autocast"):
        encoder(runtime.place({"image": torch.zeros(2, 1, 8, 8)}))
    with runtime.autocast():
        encoder(runtime.place({"image": torch.zeros(2, 1, 8, 8)}))


def test_probe_features_and_outputs_are_fp32_on_the_cpu(image_splits) -> None:
    from d2v.eval.data import make_loader
    from d2v.eval.linear_probe import extract_features

    loader = make_loader(image_splits["test"], 64, shuffle=False, seed=0)
    runtime = EvalRuntime(device=torch.device("cpu"))
    features, labels = extract_features(_tiny_image_encoder(), loader, "mean", runtime)
    assert features.dtype == torch.float32 and features.device == runtime.device and labels.device.type == "cpu"


def test_probe_results_do_not_depend_on_loader_workers(image_splits) -> None:
    cfg = LinearProbeConfig(epochs=10, lr=0.05, batch_size=32, weight_decays=(0.0,), n_train=96, n_valid=None)
    runs = [
        linear_probe(_tiny_image_encoder(), image_splits, cfg, pooling="mean", n_test=32, seed=0,
                     runtime=EvalRuntime(loading=Loading(num_workers=workers)))
        for workers in (0, 2)
    ]
    assert runs[0].metrics == runs[1].metrics and runs[0].train_losses == runs[1].train_losses


def test_compiled_feature_extraction_goes_through_dynamo_and_matches_eager() -> None:
    """The real backend (inductor: a C++ build on this CPU), on the smallest encoder and one batch
    shape, so it compiles one graph. Tolerance: features within 1e-5 (abs and rel) of eager."""
    from torch._dynamo.utils import counters

    from d2v.eval.data import make_loader
    from d2v.eval.linear_probe import extract_features

    splits = make_image_splits(32, 32)
    torch.manual_seed(0)
    encoder = StandInEncoder(PatchEmbed(1, 8, 4), dim=8, depth=1)
    loader = make_loader(splits["train"], 32, shuffle=False, seed=0)
    eager, _ = extract_features(encoder, loader, "mean")
    torch._dynamo.reset()
    counters.clear()
    compiled, _ = extract_features(encoder, loader, "mean", EvalRuntime(compile=True))
    assert counters["stats"]["unique_graphs"] >= 1 and counters["stats"]["calls_captured"] > 0
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    assert not list(counters["graph_break"])  # the whole forward, EncoderOutput included, is one graph
