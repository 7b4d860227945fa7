"""The non-learned input baselines: their features are what they claim, and the shared procedures
learn from them."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch.utils.data import Subset

from d2v.core.types import BOS_ID, EOS_ID, PAD_ID
from d2v.errors import D2VError
from d2v.eval.config import FinetuneConfig, LinearProbeConfig
from d2v.eval.finetune import finetune
from d2v.eval.input_features import UNIGRAM_BUCKETS, BagOfNgrams, LogMelFrames, RawPixels, frame_grid
from d2v.eval.linear_probe import linear_probe
from d2v.modalities.speech import ConvFeatureEncoder

from eval_standins import DictDataset, GuardedPixels, GuardedWords, PlacementGuard, make_image_splits

WAV2VEC2_CONV = ((64, 10, 5),) + ((64, 3, 2),) * 4 + ((64, 2, 2),) * 2  # the tiny preset's stack


def test_raw_pixels_are_the_flattened_image_and_a_probe_separates_a_separable_set() -> None:
    splits = make_image_splits(256, 128)  # 4 prototype images + noise: linearly separable in pixel space
    batch = {"image": torch.stack([splits["test"][i]["image"] for i in range(3)])}  # (3, 1, 8, 8)
    pixels = RawPixels.for_batch(batch)
    out = pixels(batch)
    assert pixels.embed_dim == 64 and not list(pixels.parameters()) and len(pixels.blocks) == 0
    assert torch.equal(out.x[:, 0], batch["image"].flatten(1)) and torch.equal(out.cls, out.x[:, 0])
    cfg = LinearProbeConfig(epochs=30, lr=0.05, batch_size=0, weight_decays=(0.0,), n_train=None, n_valid=None)
    result = linear_probe(pixels, splits, cfg, pooling="mean", n_test=None, seed=0)
    assert result.metrics["top1"] == 1.0
    with pytest.raises(D2VError, match="images of 16 values, built for 64"):
        pixels({"image": torch.zeros(2, 1, 4, 4)})


def test_raw_pixels_fine_tune_as_a_linear_head_with_the_recipe() -> None:
    """Fine-tuning code on raw pixels: only the (LayerNorm +) linear head has parameters, and it learns."""
    splits = make_image_splits(256, 128)
    cfg = FinetuneConfig(epochs=3, lr=3e-3, batch_size=32, weight_decay=0.0, layer_decay=0.65, label_smoothing=0.1,
                         warmup_fraction=0.1, n_train=None)
    result = finetune(RawPixels(64), splits, cfg, pooling="mean", n_test=None, seed=0)
    assert result.metrics["top1"] >= 0.95 and result.train_losses[-1] < result.train_losses[0]


def test_bag_of_words_counts_pieces_and_length_per_text() -> None:
    tokens = torch.tensor([
        [BOS_ID, 7, 8, 7, EOS_ID, PAD_ID, PAD_ID, PAD_ID],  # single text, padded
        [BOS_ID, 7, 8, EOS_ID, EOS_ID, 8, 9, EOS_ID],  # pair: a = 7 8, b = 8 9
    ])
    bow = BagOfNgrams(pairs=True)
    counts = bow.log_counts(tokens, tokens.eq(PAD_ID))  # (B, 2, width)
    length = UNIGRAM_BUCKETS  # the length column follows the pieces
    assert bow.width == UNIGRAM_BUCKETS + 1 and bow.embed_dim == 4 * bow.width
    nonzero = {(b, s, int(c)): round(float(counts[b, s, c]), 6) for b, s, c in counts.nonzero().tolist()}
    assert nonzero == {
        (0, 0, 7): round(math.log(3), 6), (0, 0, 8): round(math.log(2), 6), (0, 0, length): round(math.log(4), 6),
        (1, 0, 7): round(math.log(2), 6), (1, 0, 8): round(math.log(2), 6), (1, 0, length): round(math.log(3), 6),
        (1, 1, 8): round(math.log(2), 6), (1, 1, 9): round(math.log(2), 6), (1, 1, length): round(math.log(3), 6),
    }  # BOS, EOS and PAD count for nothing; nothing of b leaks into a
    features = bow({"tokens": tokens}).x[:, 0]  # [a, b, |a - b|, a * b]
    a, b, diff, both = features.view(2, 4, bow.width).unbind(1)
    assert torch.equal(diff, (a - b).abs()) and torch.equal(both, a * b)
    assert both[1].nonzero().flatten().tolist() == [8, length]  # shared piece 8, and both have a length


def test_bag_of_words_optional_bigrams_stay_inside_their_text() -> None:
    bow = BagOfNgrams(pairs=True, bigram_buckets=64)
    counts = bow.log_counts(torch.tensor([[BOS_ID, 7, 8, EOS_ID, EOS_ID, 9, EOS_ID]]))
    bigram_columns = counts[0, :, UNIGRAM_BUCKETS + 1:]
    assert int((bigram_columns[0] > 0).sum()) == 1 and int((bigram_columns[1] > 0).sum()) == 0  # (7, 8) only


def test_bag_of_words_detects_pairs_and_learns_a_word_task() -> None:
    single = {"tokens": torch.tensor([[BOS_ID, 9, 10, EOS_ID]])}
    pair = {"tokens": torch.tensor([[BOS_ID, 9, EOS_ID, EOS_ID, 10, EOS_ID]])}
    assert not BagOfNgrams.for_batch(single).pairs and BagOfNgrams.for_batch(pair).pairs
    # Label = piece 7 occurs at least twice: a count threshold, linear in log(1 + count).
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(5, 9, (192, 8), generator=generator)
    labels = ((tokens == 7).sum(1) >= 2).long()
    data = DictDataset(tokens=tokens, padding_mask=torch.zeros(192, 8, dtype=torch.bool), label=labels)
    splits = {"train": Subset(data, range(128)), "test": Subset(data, range(128, 192))}
    cfg = FinetuneConfig(epochs=15, lr=3e-3, batch_size=16, weight_decay=0.0, layer_decay=1.0, label_smoothing=0.0,
                         warmup_fraction=0.0, n_train=None)
    result = finetune(BagOfNgrams(pairs=False), splits, cfg, pooling="mean", n_test=None, seed=0)
    assert result.metrics["top1"] >= 0.95


def test_log_mel_frames_sit_on_the_model_frame_grid() -> None:
    assert frame_grid(WAV2VEC2_CONV) == (400, 320)  # 25 ms windows every 20 ms at 16 kHz
    frames = LogMelFrames.on_grid_of(WAV2VEC2_CONV)
    lengths = torch.tensor([16000, 8000, 400])
    cnn = ConvFeatureEncoder(WAV2VEC2_CONV)
    assert torch.equal(frames.output_lengths(lengths), cnn.output_lengths(lengths))  # the CNN's frame count
    wave = torch.randn(3, 16000, generator=torch.Generator().manual_seed(0))
    padding = torch.arange(16000)[None, :] >= lengths[:, None]  # (3, S)
    out = frames({"waveform": wave, "padding_mask": padding})
    assert out.x.shape == (3, 49, 80) and frames.embed_dim == 80
    assert (~out.padding_mask).sum(1).tolist() == [49, 24, 1]


def test_log_mel_frames_are_normalised_per_utterance_and_cached_like_batched() -> None:
    frames = LogMelFrames()
    generator = torch.Generator().manual_seed(1)
    short, long = 0.1 * torch.randn(6000, generator=generator), 0.1 * torch.randn(9000, generator=generator)
    batch = {"waveform": torch.stack([torch.cat([short, torch.zeros(3000)]), long]),
             "padding_mask": torch.tensor([[False] * 6000 + [True] * 3000, [False] * 9000])}
    out = frames(batch)
    real = out.x[0][~out.padding_mask[0]]  # (T, 80) of the short utterance
    assert torch.allclose(real.mean(0), torch.zeros(80), atol=1e-4)
    assert torch.allclose(real.std(0, unbiased=False), torch.ones(80), atol=1e-3)
    assert torch.equal(out.x[0][out.padding_mask[0]], torch.zeros_like(out.x[0][out.padding_mask[0]]))
    alone = frames.frozen_features({"waveform": short[None]})  # what CTC caches: a batch of one
    assert torch.allclose(alone["conv_features"][0], real, atol=1e-5)
    louder = frames.frozen_features({"waveform": 10 * short[None]})["conv_features"]
    assert torch.allclose(louder, alone["conv_features"], atol=1e-3)  # the gain is normalised away
    assert torch.equal(frames(alone).x, alone["conv_features"])  # the cache goes through forward as is
    with pytest.raises(D2VError, match="samples >= 400"):
        frames.frozen_features({"waveform": torch.zeros(1, 399)})


def test_every_input_baseline_goes_through_the_runtime() -> None:
    """Raw pixels through the probe and fine-tuning, bag of words through fine-tuning (the log-mel
    frames through CTC: test_ctc.py), each a module placed and fed placed batches."""
    splits = make_image_splits(64, 32)
    probe_cfg = LinearProbeConfig(epochs=5, lr=0.05, batch_size=0, weight_decays=(0.0,), n_train=None, n_valid=None)
    ft_cfg = FinetuneConfig(epochs=1, lr=1e-2, batch_size=32, weight_decay=0.0, layer_decay=1.0,
                            label_smoothing=0.0, warmup_fraction=0.0, n_train=None)
    guard = PlacementGuard()
    for run in (partial(linear_probe, cfg=probe_cfg), partial(finetune, cfg=ft_cfg)):
        with pytest.raises(AssertionError, match="not placed through the runtime"):
            run(GuardedPixels(64), splits, pooling="mean", n_test=None, seed=0)
        guarded = run(GuardedPixels(64), splits, pooling="mean", n_test=None, seed=0, runtime=guard)
        assert guarded.metrics == run(RawPixels(64), splits, pooling="mean", n_test=None, seed=0).metrics
    tokens = torch.randint(5, 40, (48, 6), generator=torch.Generator().manual_seed(0))
    words = DictDataset(tokens=tokens, label=(tokens == 7).any(1).long())
    text = {"train": Subset(words, range(32)), "test": Subset(words, range(32, 48))}
    with pytest.raises(AssertionError, match="not placed through the runtime"):
        finetune(GuardedWords(pairs=False), text, ft_cfg, pooling="mean", n_test=None, seed=0)
    guarded = finetune(GuardedWords(pairs=False), text, ft_cfg, pooling="mean", n_test=None, seed=0, runtime=guard)
    assert guarded.train_losses == finetune(BagOfNgrams(pairs=False), text, ft_cfg, pooling="mean", n_test=None,
                                            seed=0).train_losses
