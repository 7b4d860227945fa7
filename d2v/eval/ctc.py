"""Speech recognition by CTC fine-tuning on letters (the wav2vec 2.0 / data2vec recipe, scaled down).

A linear head maps each encoder frame (`EncoderOutput.x`, (B, T, D)) to letter log-probabilities;
`EncoderOutput.padding_mask` gives each utterance's output length. The feature extractor (the CNN)
stays frozen, the lr follows the tri-stage schedule, training batches group utterances of similar
length (less padding), and test utterances are decoded greedily (best letter per frame, repeats
collapsed, blanks dropped) and scored by WER and CER.

Batches carry the waveform keys of d2v.core.types plus "transcript": a list of B strings.
`with_transcripts` adds that key to a collate that only stacks waveforms (d2v.data's SpeechCollate).
"""

from __future__ import annotations

import contextlib
import copy
import re
import string
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, default_collate

from d2v.core.types import Batch, FeatureEncoder
from d2v.errors import D2VError
from d2v.eval.config import SpeechEvalConfig
from d2v.eval.data import Collate, EvalResult, get_split, make_bucketed_loader, make_loader, take_subset
from d2v.eval.device import CPU_FP32, EvalRuntime, fp32_features, to_cpu
from d2v.eval.metrics import character_error_rate, output_length_ratio, word_error_rate
from d2v.progress import UpdateLog
from d2v.train.optim import build_optimizer
from d2v.train.schedules import multiplier, tri_stage_lr

BLANK, WORD_SEPARATOR = "<blank>", "|"
PREDICT_BATCH_SIZE = 16


class LetterVocabulary:
    """blank = 0, "|" between words = 1, apostrophe = 2, a..z = 3..28 (LibriSpeech's letter set)."""

    def __init__(self) -> None:
        self.symbols: tuple[str, ...] = (BLANK, WORD_SEPARATOR, "'", *string.ascii_lowercase)
        self.index = {symbol: i for i, symbol in enumerate(self.symbols)}
        self.blank = 0

    def __len__(self) -> int:
        return len(self.symbols)

    @staticmethod
    def normalise(text: str) -> str:
        """Lower case; anything but a-z and apostrophes separates words; single spaces.

        Digits and symbols are not spelled out here: transcripts should arrive with numbers as words.
        """
        return " ".join(re.sub(r"[^a-z']+", " ", text.lower()).split())

    def encode(self, text: str) -> list[int]:
        words = self.normalise(text).split()
        return [self.index[ch] for ch in WORD_SEPARATOR.join(words)]

    def decode(self, ids: Sequence[int]) -> str:
        letters = "".join(self.symbols[i] for i in ids if i != self.blank)
        return " ".join(letters.replace(WORD_SEPARATOR, " ").split())


def _item_transcript(item: object) -> str:
    text = item.get("transcript") if isinstance(item, Mapping) else item[1]  # type: ignore[index]
    if not isinstance(text, str):
        raise D2VError(f"speech recognition: an utterance has no transcript (got {text!r})")
    return text


def _samples_of(item: object) -> int:
    waveform = item.get("waveform") if isinstance(item, Mapping) else item[0]  # type: ignore[index]
    if waveform is None:
        raise D2VError("speech recognition: an utterance has no waveform")
    return len(waveform)


def utterance_lengths(dataset: Dataset) -> list[int]:
    """Audio samples of every utterance (items: dicts with "waveform", or tuples with it first)."""
    return [_samples_of(dataset[i]) for i in range(len(dataset))]  # type: ignore[arg-type]


def with_transcripts(collate: Collate | None) -> Collate:
    """Wrap a waveform collate so batches also carry "transcript" (items: dicts, or tuples with the
    transcript second, as d2v.data's SpeechDataset yields (waveform, transcript, speaker))."""
    base = collate or default_collate

    def collate_with_transcripts(items: list) -> Batch:
        batch = dict(base(items))
        if "transcript" not in batch:
            batch["transcript"] = [_item_transcript(item) for item in items]  # type: ignore[assignment]
        return batch

    return collate_with_transcripts


def greedy_decode(log_probs: Tensor, lengths: Tensor, blank: int = 0) -> list[list[int]]:
    """(B, T, V) scores + (B,) lengths -> per utterance: best ids, repeats collapsed, blanks dropped."""
    best = log_probs.argmax(dim=-1)  # (B, T)
    decoded = []
    for row, length in zip(best.tolist(), lengths.tolist()):
        ids, previous = [], None
        for symbol in row[:length]:
            if symbol != previous and symbol != blank:
                ids.append(symbol)
            previous = symbol
        decoded.append(ids)
    return decoded


class CtcModel(nn.Module):
    """encoder -> per-frame letter log-probabilities (B, T, V) and output lengths (B,).

    `autocast` wraps the encoder's forward pass only (EvalRuntime.autocast); the head, the
    log-softmax and the CTC loss compute in fp32."""

    def __init__(
        self, encoder: nn.Module, embed_dim: int, vocab_size: int,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(embed_dim, vocab_size)
        self.autocast = autocast

    def forward(self, batch: Batch, train_encoder: bool = True) -> tuple[Tensor, Tensor]:
        with torch.set_grad_enabled(train_encoder and torch.is_grad_enabled()), self.autocast():
            out = fp32_features(self.encoder(batch))
        log_probs = F.log_softmax(self.head(out.x).float(), dim=-1)  # (B, T, V)
        if out.padding_mask is None:
            lengths = torch.full((out.x.shape[0],), out.x.shape[1], dtype=torch.long, device=out.x.device)
        else:
            lengths = (~out.padding_mask).sum(dim=1).long()
        return log_probs, lengths


def _transcripts(batch: Batch, where: str) -> list[str]:
    if "transcript" not in batch:
        raise D2VError(f"{where}: batch has no 'transcript' (have: {', '.join(batch)})")
    return list(batch["transcript"])  # type: ignore[arg-type]


def ctc_loss(model: CtcModel, batch: Batch, vocab: LetterVocabulary, train_encoder: bool, where: str) -> Tensor:
    log_probs, lengths = model(batch, train_encoder)
    targets = [torch.tensor(vocab.encode(t), dtype=torch.long) for t in _transcripts(batch, where)]
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    if int(target_lengths.min()) == 0:
        raise D2VError(f"{where}: an utterance has an empty transcript after normalisation")
    # zero_infinity: an utterance shorter (in frames) than its transcript gives no gradient instead of inf.
    # Targets are built on the CPU from the strings and go where the log-probabilities are.
    device = log_probs.device
    return F.ctc_loss(
        log_probs.transpose(0, 1), torch.cat(targets).to(device), lengths, target_lengths.to(device),
        blank=vocab.blank, zero_infinity=True,
    )


def _endless(loader: DataLoader) -> Iterator[Batch]:
    while True:
        yield from loader


def optimizer_and_schedule(model: CtcModel, cfg: SpeechEvalConfig) -> tuple[torch.optim.Optimizer, object]:
    """Freeze the feature extractor (when asked); the shared AdamW over the rest; the tri-stage lr."""
    if cfg.freeze_feature_encoder:
        model.encoder.feature_extractor.requires_grad_(False)  # type: ignore[union-attr]
    optimizer = build_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    tri_stage = multiplier(
        tri_stage_lr, total_steps=cfg.steps, fractions=cfg.tri_stage,
        init_scale=cfg.init_lr_scale, final_scale=cfg.final_lr_scale,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, tri_stage)


@torch.no_grad()
def transcribe(
    model: CtcModel, dataset: Dataset, vocab: LetterVocabulary, collate: Collate | None, where: str,
    runtime: EvalRuntime = CPU_FP32,
) -> tuple[list[str], list[str]]:
    """Greedy hypotheses and normalised references for every utterance of a split (decoded from
    fp32 CPU log-probabilities; `model` is on the runtime's device)."""
    model.eval()
    hypotheses, references = [], []
    loader = make_loader(dataset, PREDICT_BATCH_SIZE, shuffle=False, seed=0, collate=collate, loading=runtime.loading)
    for batch in loader:
        log_probs, lengths = model(runtime.place(batch))
        hypotheses += [vocab.decode(ids) for ids in greedy_decode(to_cpu(log_probs), lengths.cpu(), vocab.blank)]
        references += [vocab.normalise(t) for t in _transcripts(batch, where)]
    return hypotheses, references


class FrozenFeatureSplit(Dataset):
    """A speech split with the frozen feature extractor already applied: every utterance goes through
    `precompute` (an encoder's `frozen_features`) once, as a batch of one, so no padding enters it.
    Items: {"conv_features": (T, C), "transcript": str}; `collate_frozen` batches them."""

    def __init__(
        self, dataset: Dataset, collate: Collate, precompute: Callable[[Batch], Batch | None],
        runtime: EvalRuntime = CPU_FP32,
    ) -> None:
        self.items: list[dict] = []
        self.samples: list[int] = []
        for i in range(len(dataset)):  # type: ignore[arg-type]
            item = dataset[i]
            self.samples.append(_samples_of(item))
            batch = collate([item])
            with torch.no_grad(), runtime.autocast():
                features = precompute(runtime.place(batch))
            if features is None:
                raise D2VError("this encoder cannot precompute its frozen features")
            frames = features["conv_features"][0]
            if "frame_padding_mask" in features:
                frames = frames[~features["frame_padding_mask"][0]]
            # Kept as fp32 on the CPU: loaders batch (and workers pickle) CPU tensors; batches go
            # back to the device with every other batch.
            self.items.append({"conv_features": to_cpu(frames), "transcript": batch["transcript"][0]})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]

    def lengths(self) -> list[int]:
        """Audio samples of each source utterance, for length-bucketed batches."""
        return list(self.samples)


def collate_frozen(items: list[dict]) -> Batch:
    """Pad FrozenFeatureSplit items: "conv_features" (B, T, C), "frame_padding_mask" (B, T), "transcript"."""
    frames = [item["conv_features"] for item in items]
    lengths = torch.tensor([len(f) for f in frames])
    padded = nn.utils.rnn.pad_sequence(frames, batch_first=True)  # (B, T, C)
    padding = torch.arange(padded.shape[1])[None, :] >= lengths[:, None]
    return {"conv_features": padded, "frame_padding_mask": padding, "transcript": [item["transcript"] for item in items]}  # type: ignore[dict-item]


def _frozen_feature_splits(
    encoder: nn.Module, cfg: SpeechEvalConfig, collate: Collate, named: Mapping[str, Dataset],
    runtime: EvalRuntime = CPU_FP32,
) -> tuple[dict[str, Dataset], Collate] | None:
    """With the feature extractor frozen, run it once per utterance instead of once per update (the
    result is identical: it has no trainable state then); None when the encoder cannot."""
    precompute = getattr(encoder, "frozen_features", None)
    if not cfg.freeze_feature_encoder or precompute is None or len(named["train"]) == 0:  # type: ignore[arg-type]
        return None
    with torch.no_grad(), runtime.autocast():
        probe = precompute(runtime.place(collate([named["train"][0]])))
    if probe is None:
        return None
    splits = {name: FrozenFeatureSplit(data, collate, precompute, runtime) for name, data in named.items()}
    return splits, collate_frozen


def ctc_finetune(
    encoder: FeatureEncoder,
    splits: Mapping[str, Dataset],
    cfg: SpeechEvalConfig,
    *,
    collate: Collate | None = None,
    extra_test_splits: Sequence[str] = (),
    where: str = "speech recognition",
    runtime: EvalRuntime = CPU_FP32,
) -> EvalResult:
    """Fine-tune a copy of `encoder` with CTC on splits["train"]; WER/CER on splits["test"].

    Each name in extra_test_splits that exists in `splits` (e.g. the real Asterisk prompts) adds
    `<name>_wer` and `<name>_cer`, and its per-utterance transcripts (`EvalResult.on_split(name)`).
    The copy, the frozen-feature cache's passes and every batch run on `runtime`'s device.
    """
    train_set = take_subset(get_split(splits, "train", where), cfg.n_train, cfg.seed)
    test_set = take_subset(get_split(splits, "test", where), cfg.n_test, cfg.seed + 1)
    collate = with_transcripts(collate)
    vocab = LetterVocabulary()
    torch.manual_seed(cfg.seed)
    model = CtcModel(copy.deepcopy(encoder), encoder.embed_dim, len(vocab), autocast=runtime.autocast)  # type: ignore[arg-type]
    model = runtime.place_module(model)
    optimizer, schedule = optimizer_and_schedule(model, cfg)
    named: dict[str, Dataset] = {"train": train_set, "test": test_set}
    named.update({name: splits[name] for name in extra_test_splits if name in splits and len(splits[name]) > 0})  # type: ignore[arg-type]
    cached = _frozen_feature_splits(model.encoder, cfg, collate, named, runtime)
    if cached is not None:
        named, collate = cached
        train_set, test_set = named["train"], named["test"]
    runtime.compile_in_place(model.encoder)  # after the cache: frozen_features runs eagerly, once per utterance
    # Batches of similar length pad little; both paths order by source samples, so cached and
    # uncached runs see the same batches.
    lengths = train_set.lengths() if isinstance(train_set, FrozenFeatureSplit) else utterance_lengths(train_set)
    batches = _endless(make_bucketed_loader(
        train_set, lengths, cfg.batch_size, seed=cfg.seed, collate=collate, loading=runtime.loading
    ))
    losses: list[float] = []
    log = UpdateLog(where, cfg.steps)
    model.train()
    for step in range(cfg.steps):
        batch = runtime.place(next(batches))
        loss = ctc_loss(model, batch, vocab, step >= cfg.freeze_encoder_steps, where)
        if not torch.isfinite(loss):
            raise D2VError(f"{where}: CTC loss became {loss.item()} at update {step}; lower speech.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        log.update(losses[-1])

    hypotheses, references = transcribe(model, test_set, vocab, collate, where, runtime)
    metrics = {"wer": word_error_rate(references, hypotheses), "cer": character_error_rate(references, hypotheses)}
    output_ratios = {"test": output_length_ratio(references, hypotheses)}
    extra_transcripts: dict[str, tuple[list[str], list[str]]] = {}
    for name in extra_test_splits:
        if name in named:
            hyp, ref = transcribe(model, named[name], vocab, collate, where, runtime)
            metrics[f"{name}_wer"] = word_error_rate(ref, hyp)
            metrics[f"{name}_cer"] = character_error_rate(ref, hyp)
            output_ratios[name] = output_length_ratio(ref, hyp)
            extra_transcripts[name] = (hyp, ref)
    return EvalResult(
        metrics=metrics,
        n_train=len(train_set),  # type: ignore[arg-type]
        n_test=len(test_set),  # type: ignore[arg-type]
        predictions=hypotheses,
        references=references,
        train_losses=losses,
        output_ratios=output_ratios,
        extra_transcripts=extra_transcripts,
    )
