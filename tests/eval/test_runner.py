"""The per-modality runners: both runs, the records, and the files the DVC stages declare."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch.utils.data import Subset

from d2v.errors import D2VError
from d2v.eval.config import (
    FinetuneConfig, ImageAugmentConfig, ImageEvalConfig, LinearProbeConfig, SpeechEvalConfig, TextEvalConfig,
)
from d2v.eval.input_features import LogMelFrames
from d2v.eval.runner import evaluate_image, evaluate_speech, evaluate_text

from d2v.eval.device import EvalRuntime

from eval_standins import DictDataset, FrameEmbed, GuardedEncoder, PatchEmbed, PlacementGuard, StandInEncoder, TokenEmbed
from test_ctc import pad_collate, synthetic_speech

FT = FinetuneConfig(
    epochs=1, lr=3e-3, batch_size=32, weight_decay=0.0, layer_decay=0.8, label_smoothing=0.0,
    warmup_fraction=0.0, n_train=None,
)


def test_evaluate_image_writes_metrics_and_confusion(tmp_path, image_splits) -> None:
    cfg = ImageEvalConfig(
        pooling="mean", n_test=40, seed=0,
        linear_probe=LinearProbeConfig(epochs=5, lr=0.05, batch_size=0, weight_decays=(0.0,), n_train=64, n_valid=None),
        finetune=FinetuneConfig(**{**FT.__dict__, "n_train": 64}),
        augment=ImageAugmentConfig(random_resized_crop=True, crop_scale_min=0.8, hflip=False),
    )
    torch.manual_seed(0)
    pretrained = StandInEncoder(PatchEmbed(1, 16, 4), 16, 2)
    records = evaluate_image(pretrained, lambda: StandInEncoder(PatchEmbed(1, 16, 4), 16, 2), image_splits, cfg, tmp_path)
    assert [r.task for r in records] == ["linear_probe", "finetune"]
    written = json.loads((tmp_path / "image.json").read_text())
    assert written["linear_probe"]["n_train"] == 64 and written["linear_probe"]["n_test"] == 40
    for record in records:  # both tasks keep per-image predictions, so both get a delta interval
        assert record.delta_ci95_low is not None and record.delta_ci95_high is not None
        assert record.delta_ci95_low <= record.delta_ci95_high
        assert written[record.task]["delta_ci95_low"] == record.delta_ci95_low
    rows = list(csv.DictReader((tmp_path / "image_confusion.csv").open()))
    assert len(rows) == 40 and set(rows[0]) == {"actual", "predicted"}
    # Raw pixels through the same probe and fine-tuning, with their own intervals.
    for record in records:
        assert record.input_baseline_name == "raw pixels" and record.input_baseline is not None
        assert record.input_baseline_delta == pytest.approx(record.pretrained - record.input_baseline)
        assert record.input_baseline_delta_ci95_low is not None and record.beats_input_baseline is not None
        assert written[record.task]["beats_input_baseline"] == record.beats_input_baseline


def text_task(regression: bool) -> dict:
    generator = torch.Generator().manual_seed(int(regression))
    tokens = torch.randint(5, 9, (96, 8), generator=generator)
    count = (tokens == 7).sum(1)
    labels = count.float() / 8 if regression else (count >= 2).long()
    data = DictDataset(tokens=tokens, padding_mask=torch.zeros(96, 8, dtype=torch.bool), label=labels)
    return {"train": Subset(data, range(64)), "test": Subset(data, range(64, 96))}


def test_evaluate_text_scores_glue_style_with_average(tmp_path) -> None:
    cfg = TextEvalConfig(tasks=("sst2", "STS-B"), pooling="mean", max_len=8, n_test=None, seed=0, finetune=FT, length_buckets=False)
    factory = lambda: StandInEncoder(TokenEmbed(32, 16), 16, 2, with_cls=False)  # noqa: E731
    splits = {"sst2": text_task(False), "STS-B": text_task(True)}
    records = evaluate_text(factory(), factory, splits, cfg, tmp_path)
    assert [r.task for r in records] == ["average", "sst2", "STS-B"]
    assert records[0].pretrained == pytest.approx((records[1].pretrained + records[2].pretrained) / 2)
    assert json.loads((tmp_path / "text.json").read_text())["average"]["metric"] == "score"
    assert all(r.delta_ci95_low is not None and r.delta_ci95_low <= r.delta_ci95_high for r in records)  # type: ignore[operator]
    # Bag-of-words baselines per task; the average's is the mean of theirs, with its own interval.
    assert [r.input_baseline_name for r in records] == ["bag of words"] * 3
    assert records[0].input_baseline == pytest.approx((records[1].input_baseline + records[2].input_baseline) / 2)  # type: ignore[operator]
    assert records[0].input_baseline_delta_ci95_low is not None
    with pytest.raises(D2VError, match=r"no data for task\(s\) \['STS-B'\]"):
        evaluate_text(factory(), factory, {"sst2": splits["sst2"]}, cfg, tmp_path)


def test_mnli_is_fine_tuned_once_and_also_scored_on_the_mismatched_dev_set(tmp_path, monkeypatch) -> None:
    from d2v.eval import runner

    calls = []
    real_finetune = runner.finetune
    monkeypatch.setattr(runner, "finetune", lambda *a, **k: calls.append(k["where"]) or real_finetune(*a, **k))
    cfg = TextEvalConfig(tasks=("mnli", "sst2"), pooling="mean", max_len=8, n_test=None, seed=0, finetune=FT, length_buckets=False)
    factory = lambda: StandInEncoder(TokenEmbed(32, 16), 16, 2, with_cls=False)  # noqa: E731
    mnli = text_task(False)
    mnli["test_mismatched"] = Subset(mnli["test"].dataset, range(40, 70))  # another dev set, same labels
    records = evaluate_text(factory(), factory, {"mnli": mnli, "sst2": text_task(False)}, cfg, tmp_path)
    assert [r.task for r in records] == ["average", "mnli", "sst2", "mnlimm"]
    assert len([c for c in calls if c == "text task mnli"]) == 3  # pretrained, random init, bag of words: once each
    mm = records[-1]
    assert mm.n_test == 30 and mm.n_train == records[1].n_train
    assert mm.delta_ci95_low is not None and mm.input_baseline is not None
    assert records[0].pretrained == pytest.approx((records[1].pretrained + records[2].pretrained) / 2)  # mm not averaged
    assert json.loads((tmp_path / "text.json").read_text())["mnlimm"]["metric"] == "score"


def test_evaluate_speech_records_wer_cer_and_extra_split(tmp_path) -> None:
    cfg = SpeechEvalConfig(
        steps=4, lr=1e-3, batch_size=4, weight_decay=0.0, freeze_feature_encoder=True, freeze_encoder_steps=0,
        tri_stage=(0.25, 0.25, 0.5), init_lr_scale=0.01, final_lr_scale=0.05, n_train=None, n_test=None, seed=0,
    )
    factory = lambda: StandInEncoder(FrameEmbed(32, 8), 32, 1, with_cls=False)  # noqa: E731
    splits = {"train": synthetic_speech(8, 1), "test": synthetic_speech(6, 2), "asr_real": synthetic_speech(3, 3)}
    frames = LogMelFrames(window=32, hop=8, bands=8)  # the stand-in's 8-sample grid (utterances are short)
    records = evaluate_speech(
        factory(), factory, splits, cfg, tmp_path, pad_collate, extra_test_splits=("asr_real",), input_baseline=frames
    )
    by_task = {r.task: r for r in records}
    assert list(by_task) == ["ctc", "ctc_cer", "ctc_asr_real_wer", "ctc_asr_real_cer"]
    assert not by_task["ctc"].higher_is_better and by_task["ctc_asr_real_wer"].n_test == 3
    assert set(json.loads((tmp_path / "speech.json").read_text())) == set(by_task)
    # Every record gets an interval, the extra split's from its own per-utterance transcripts.
    for record in records:
        assert record.delta_ci95_low is not None and record.delta_ci95_high is not None
        assert record.delta_ci95_low <= record.delta <= record.delta_ci95_high
    assert (by_task["ctc_asr_real_cer"].delta_ci95_low, by_task["ctc_asr_real_cer"].delta_ci95_high) != (
        by_task["ctc_cer"].delta_ci95_low, by_task["ctc_cer"].delta_ci95_high
    )
    # Each record keeps both runs' output-length ratios on the split it scored.
    for record in records:
        assert record.pretrained_output_ratio is not None and record.random_init_output_ratio is not None
    assert by_task["ctc"].random_init_output_ratio == by_task["ctc_cer"].random_init_output_ratio
    assert by_task["ctc_asr_real_wer"].random_init_output_ratio == by_task["ctc_asr_real_cer"].random_init_output_ratio
    # The log-mel baseline is scored on every metric and split the encoders are.
    for record in records:
        assert record.input_baseline_name == "log-mel frames" and record.input_baseline_output_ratio is not None
        assert record.input_baseline_delta_ci95_low is not None
    assert by_task["ctc_asr_real_cer"].input_baseline_output_ratio == by_task["ctc_asr_real_wer"].input_baseline_output_ratio


def test_runners_hand_the_runtime_to_every_run(tmp_path, image_splits) -> None:
    """Pretrained, random-init and input-baseline runs of both image comparisons: the guarded
    encoders fail on anything not placed, and the records equal those of the default runtime."""
    cfg = ImageEvalConfig(
        pooling="mean", n_test=32, seed=0,
        linear_probe=LinearProbeConfig(epochs=5, lr=0.05, batch_size=0, weight_decays=(0.0,), n_train=64, n_valid=None),
        finetune=FinetuneConfig(**{**FT.__dict__, "n_train": 64}),
        augment=ImageAugmentConfig(random_resized_crop=False, crop_scale_min=1.0, hflip=True),
    )

    def records(encoder_cls: type, runtime: EvalRuntime | None) -> list[dict]:
        torch.manual_seed(0)
        pretrained = encoder_cls(PatchEmbed(1, 16, 4), 16, 2)
        extra = {} if runtime is None else {"runtime": runtime}
        out = evaluate_image(pretrained, lambda: encoder_cls(PatchEmbed(1, 16, 4), 16, 2), image_splits, cfg,
                             tmp_path, **extra)
        return [{k: v for k, v in r.__dict__.items() if k != "wall_time_s"} for r in out]

    with pytest.raises(AssertionError, match="not placed through the runtime"):
        records(GuardedEncoder, None)
    assert records(GuardedEncoder, PlacementGuard()) == records(StandInEncoder, None)


def test_length_buckets_need_a_collate_that_measures_items(tmp_path) -> None:
    cfg = TextEvalConfig(tasks=("sst2",), pooling="mean", max_len=8, n_test=None, seed=0, finetune=FT, length_buckets=True)
    factory = lambda: StandInEncoder(TokenEmbed(32, 16), 16, 2, with_cls=False)  # noqa: E731
    with pytest.raises(D2VError, match=r"text task sst2: evaluate.text.length_buckets needs a collate with a length\(item\)"):
        evaluate_text(factory(), factory, {"sst2": text_task(False)}, cfg, tmp_path)
