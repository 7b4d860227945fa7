from __future__ import annotations

import pytest
import torch

from d2v.errors import D2VError
from d2v.eval.config import SpeechEvalConfig
from d2v.eval.ctc import LetterVocabulary, ctc_finetune, greedy_decode

from d2v.eval.data import Loading
from d2v.eval.device import EvalRuntime
from d2v.eval.input_features import LogMelFrames

from eval_standins import DictDataset, FrameEmbed, GuardedEncoder, GuardedLogMel, PlacementGuard, StandInEncoder

FRAME = 8  # samples per encoder frame in the stand-in speech encoder
WORDS = ["abc", "bad", "cab", "dab", "cad", "bca"]  # no doubled letters: one frame run per letter


def test_vocabulary_normalises_and_round_trips() -> None:
    vocab = LetterVocabulary()
    assert len(vocab) == 29 and vocab.blank == 0 and vocab.symbols[1] == "|"
    assert vocab.normalise("  Don't STOP-believing, 42!  ") == "don't stop believing"
    ids = vocab.encode("Hi there")
    assert [vocab.symbols[i] for i in ids] == list("hi|there")
    assert vocab.decode([0, *ids, 0, 1]) == "hi there"


def test_greedy_decoding_on_hand_made_logits() -> None:
    # frames:  a  a  blank  a  b  b  |  c  (padding)   -> "aab|c" ; second row is cut by its length.
    frames = [[3, 3, 0, 3, 4, 4, 1, 5, 0, 0], [4, 0, 4, 4, 5, 5, 5, 5, 5, 5]]
    logits = torch.full((2, 10, 29), -5.0)
    for b, row in enumerate(frames):
        for t, symbol in enumerate(row):
            logits[b, t, symbol] = 5.0
    decoded = greedy_decode(logits.log_softmax(-1), torch.tensor([8, 3]))
    assert decoded == [[3, 3, 4, 1, 5], [4, 4]]
    assert LetterVocabulary().decode(decoded[0]) == "aab c"


def synthetic_speech(n: int, seed: int) -> DictDataset:
    """Each letter = a fixed 8-sample pattern held for 2 frames; words are separated by 2 silent frames."""
    patterns = torch.randn(26, FRAME, generator=torch.Generator().manual_seed(123))
    generator = torch.Generator().manual_seed(seed)
    waveforms, transcripts = [], []
    for _ in range(n):
        words = [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (int(torch.randint(1, 4, (1,), generator=generator)),), generator=generator)]
        pieces = []
        for w, word in enumerate(words):
            if w:
                pieces.append(torch.zeros(2 * FRAME))
            pieces += [patterns[ord(ch) - ord("a")].repeat(2) for ch in word]
        waveforms.append(torch.cat(pieces) + 0.05 * torch.randn(sum(p.numel() for p in pieces), generator=generator))
        transcripts.append(" ".join(words).upper())
    return DictDataset(waveform=waveforms, transcript=transcripts)


def pad_collate(items: list[dict]) -> dict:
    longest = max(item["waveform"].numel() for item in items)
    waveform = torch.zeros(len(items), longest)  # (B, S)
    padding_mask = torch.ones(len(items), longest, dtype=torch.bool)
    for i, item in enumerate(items):
        waveform[i, : item["waveform"].numel()] = item["waveform"]
        padding_mask[i, : item["waveform"].numel()] = False
    return {"waveform": waveform, "padding_mask": padding_mask, "transcript": [it["transcript"] for it in items]}


def speech_cfg(**changes) -> SpeechEvalConfig:
    base = dict(
        steps=80, lr=5e-3, batch_size=8, weight_decay=0.0, freeze_feature_encoder=True,
        freeze_encoder_steps=10, tri_stage=(0.1, 0.4, 0.5), init_lr_scale=0.01, final_lr_scale=0.05,
        n_train=None, n_test=None, seed=0,
    )
    return SpeechEvalConfig(**{**base, **changes})


def test_ctc_learns_synthetic_letters(speech_encoder_factory) -> None:
    encoder = speech_encoder_factory(0, FRAME)
    extractor_before = [p.clone() for p in encoder.feature_extractor.parameters()]
    splits = {"train": synthetic_speech(64, 1), "test": synthetic_speech(24, 2), "real": synthetic_speech(8, 3)}
    result = ctc_finetune(encoder, splits, speech_cfg(), collate=pad_collate, extra_test_splits=("real", "absent"))
    assert result.train_losses[-1] < 0.3 * result.train_losses[0]
    assert result.metrics["cer"] < 0.2 and result.metrics["wer"] < 0.5
    assert set(result.metrics) == {"wer", "cer", "real_wer", "real_cer"}
    assert set(result.output_ratios) == {"test", "real"} and 0.5 < result.output_ratios["test"] < 1.5
    real = result.on_split("real")  # the extra split's per-utterance transcripts, for its interval
    assert len(real.predictions) == len(real.references) == result.extra_test_sizes["real"] == 8
    assert result.on_split("test") is result and result.on_split("absent").references == []
    assert result.references[0] == result.references[0].lower() and (result.n_train, result.n_test) == (64, 24)
    assert all(torch.equal(a, b) for a, b in zip(extractor_before, encoder.feature_extractor.parameters()))


def test_feature_extractor_frozen_during_finetuning(speech_encoder_factory) -> None:
    from d2v.eval.ctc import CtcModel, optimizer_and_schedule

    model = CtcModel(speech_encoder_factory(0, FRAME), 32, 29)
    optimizer, _ = optimizer_and_schedule(model, speech_cfg(steps=4))
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not any(p.requires_grad for p in model.encoder.feature_extractor.parameters())
    assert not optimised & {id(p) for p in model.encoder.feature_extractor.parameters()}
    assert {id(p) for p in model.head.parameters()} <= optimised


def test_ctc_errors(speech_encoder_factory) -> None:
    data = synthetic_speech(4, 0)
    with pytest.raises(D2VError, match="missing split 'test'"):
        ctc_finetune(speech_encoder_factory(0, FRAME), {"train": data}, speech_cfg(steps=1), collate=pad_collate)
    silent = DictDataset(waveform=[torch.zeros(64)] * 2, transcript=["42 !", "?"])
    with pytest.raises(D2VError, match="empty transcript"):
        ctc_finetune(speech_encoder_factory(0, FRAME), {"train": silent, "test": silent}, speech_cfg(steps=1), collate=pad_collate)


def test_with_transcripts_reads_tuple_items() -> None:
    """d2v.data's SpeechDataset yields (waveform, transcript, speaker); its collate drops the text."""
    from d2v.eval.ctc import with_transcripts

    def waveform_only(items: list) -> dict:
        return {"waveform": torch.stack([torch.as_tensor(w) for w, _, _ in items])}

    batch = with_transcripts(waveform_only)([(torch.zeros(4), "Hello", "slt"), (torch.ones(4), "World", "awb")])
    assert batch["transcript"] == ["Hello", "World"] and batch["waveform"].shape == (2, 4)
    with pytest.raises(D2VError, match="no transcript"):
        with_transcripts(waveform_only)([(torch.zeros(4), None, "slt")])


# ------------------------------------------------------------------------------ device, workers, compile

def _guarded_speech_encoder() -> GuardedEncoder:
    torch.manual_seed(0)
    return GuardedEncoder(FrameEmbed(32, FRAME), dim=32, depth=2, with_cls=False)


def test_the_copy_and_every_batch_go_through_the_runtime() -> None:
    """Training, decoding of test and extra splits (an encoder without a frozen-feature cache)."""
    splits = {"train": synthetic_speech(16, 1), "test": synthetic_speech(8, 2), "real": synthetic_speech(4, 3)}
    cfg = speech_cfg(steps=6, batch_size=4, freeze_encoder_steps=2)
    encoder = _guarded_speech_encoder()
    with pytest.raises(AssertionError, match="not placed through the runtime"):
        ctc_finetune(encoder, splits, cfg, collate=pad_collate)  # the default runtime marks nothing
    guarded = ctc_finetune(encoder, splits, cfg, collate=pad_collate, extra_test_splits=("real",), runtime=PlacementGuard())
    torch.manual_seed(0)
    plain_encoder = StandInEncoder(FrameEmbed(32, FRAME), dim=32, depth=2, with_cls=False)
    plain = ctc_finetune(plain_encoder, splits, cfg, collate=pad_collate, extra_test_splits=("real",),
                         runtime=EvalRuntime(device=torch.device("cpu")))
    assert guarded.train_losses == plain.train_losses and guarded.metrics == plain.metrics
    assert guarded.extra_transcripts == plain.extra_transcripts


def test_the_frozen_feature_cache_goes_through_the_runtime() -> None:
    """The cached path (an encoder with frozen_features: here the log-mel baseline) and its batches."""
    splits = {"train": synthetic_speech(12, 1), "test": synthetic_speech(6, 2)}
    cfg = speech_cfg(steps=4, batch_size=4, freeze_encoder_steps=0)
    frames = GuardedLogMel(window=32, hop=8, bands=8)
    with pytest.raises(AssertionError, match="not placed through the runtime"):
        ctc_finetune(frames, splits, cfg, collate=pad_collate)
    guarded = ctc_finetune(frames, splits, cfg, collate=pad_collate, runtime=PlacementGuard())
    plain = ctc_finetune(LogMelFrames(window=32, hop=8, bands=8), splits, cfg, collate=pad_collate)
    assert guarded.train_losses == plain.train_losses and guarded.predictions == plain.predictions


class DroppingFrames(FrameEmbed):
    """FrameEmbed + dropout: training draws from the global RNG, as real encoders' dropout does."""

    def __init__(self, dim: int, frame: int) -> None:
        super().__init__(dim, frame)
        self.drop = torch.nn.Dropout(0.3)

    def forward(self, batch: dict) -> tuple:
        x, mask = super().forward(batch)
        return self.drop(x), mask


def test_ctc_results_do_not_depend_on_loader_workers() -> None:
    """14 updates over 4 batches per pass: passes restart 3 times between dropout draws."""
    splits = {"train": synthetic_speech(16, 1), "test": synthetic_speech(6, 2)}
    cfg = speech_cfg(steps=14, batch_size=4, freeze_encoder_steps=0)
    runs = []
    for workers in (0, 2):
        torch.manual_seed(0)
        encoder = StandInEncoder(DroppingFrames(32, FRAME), dim=32, depth=1, with_cls=False)
        runs.append(ctc_finetune(encoder, splits, cfg, collate=pad_collate,
                                 runtime=EvalRuntime(loading=Loading(num_workers=workers))))
    assert runs[0].train_losses == runs[1].train_losses and runs[0].predictions == runs[1].predictions


def test_compiled_ctc_goes_through_dynamo_and_matches_eager() -> None:
    """Backend aot_eager (dynamo + AOTAutograd, no C++ build); variable-length batches. Tolerance:
    losses within 1e-4 relative of eager."""
    from torch._dynamo.utils import counters

    splits = {"train": synthetic_speech(8, 1), "test": synthetic_speech(4, 2)}
    cfg = speech_cfg(steps=4, batch_size=4, freeze_encoder_steps=0)
    eager = ctc_finetune(_guarded_speech_encoder(), splits, cfg, collate=pad_collate, runtime=PlacementGuard())
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    encoder = StandInEncoder(FrameEmbed(32, FRAME), dim=32, depth=2, with_cls=False)
    runtime = EvalRuntime(compile=True, compile_backend="aot_eager")
    compiled = ctc_finetune(encoder, splits, cfg, collate=pad_collate, runtime=runtime)
    assert counters["stats"]["unique_graphs"] >= 1 and counters["stats"]["calls_captured"] > 0
    assert compiled.train_losses == pytest.approx(eager.train_losses, rel=1e-4)
