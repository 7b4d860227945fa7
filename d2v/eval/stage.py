"""The `evaluate@<modality>` stage: checkpoint + prepared splits -> metrics/eval/<modality>.json.

Loads the pretrained student from `models/<modality>/checkpoint.pt` (refusing a checkpoint of another
modality or preset), builds a random-init twin of the same architecture as the baseline, maps the
prepared splits onto the names the procedures use ("train", "test") and runs the modality's runner.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from d2v.atomic import atomic_write_text
from d2v.config import ModelChoice
from d2v.core.types import FeatureEncoder
from d2v.data.datasets import ImageCollate, ImageDataset, SpeechCollate, SpeechDataset, TextCollate, TextTaskDataset
from d2v.errors import D2VError
from d2v.eval.record import BaselineRecord
from d2v.eval.config import ImageEvalConfig, SpeechEvalConfig, TextEvalConfig
from d2v.eval.device import CPU_FP32, EvalRuntime, log_line
from d2v.eval.input_features import LogMelFrames
from d2v.eval.live import log_eval_metrics
from d2v.eval.runner import evaluate_image, evaluate_speech, evaluate_text
from d2v.layout import eval_tasks_name
from d2v.models import fingerprint_preset, model_spec
from d2v.train.checkpoint import ModelFingerprint, load_checkpoint
from d2v.train.run import build_pretraining_model, prepared_meta, prepared_shape

# Prepared split names -> the procedures' names. Models never see the test split before scoring.
IMAGE_SPLITS = {"train": "train", "valid": "valid", "test": "test"}
SPEECH_SPLITS = {"train": "asr_train", "test": "asr_test"}
# Scored and reported one by one beside asr_test: the prepared meta.json lists them (LibriSpeech: one per
# further evaluation subset); a meta.json without the list is the embedded set's: the real Asterisk prompts.
SPEECH_EXTRA_TEST = ("asr_real",)
# test_mismatched: MNLI's mismatched dev set (GLUE); empty for every other task, and then not scored.
TEXT_SPLITS = {"train": "train", "test": "test", "test_mismatched": "test_mismatched"}


def load_pretrained(modality: str, choice: ModelChoice, data_root: Path, checkpoint: Path) -> FeatureEncoder:
    model = build_pretraining_model(modality, choice, data_root)
    fingerprint = ModelFingerprint.of(modality, choice.version, fingerprint_preset(choice), model.spec)
    payload = load_checkpoint(checkpoint, expected=fingerprint)
    model.load_state_dict(payload["model"])
    model.eval()
    return model.student_encoder()


def evaluate_modality(
    modality: str,
    choice: ModelChoice,
    cfg: ImageEvalConfig | SpeechEvalConfig | TextEvalConfig,
    *,
    data_root: Path,
    checkpoint: Path,
    out_dir: Path,
    side_by_side: bool = False,
    runtime: EvalRuntime = CPU_FP32,
) -> list[BaselineRecord]:
    """`runtime` (EvalRuntime.from_config(params.evaluate)): where every procedure runs. Both
    encoders are loaded and built on the CPU, as in pretraining's seeding; the procedures move them."""
    log_line(f"{modality}: running on {runtime.describe()}")
    pretrained = load_pretrained(modality, choice, data_root, checkpoint)

    def random_init() -> FeatureEncoder:
        return build_pretraining_model(modality, choice, data_root).student_encoder()

    if modality == "image":
        assert isinstance(cfg, ImageEvalConfig)
        meta = prepared_meta(data_root)
        splits = {name: ImageDataset(data_root, split) for name, split in IMAGE_SPLITS.items()}
        records = evaluate_image(
            pretrained, random_init, splits, cfg, out_dir,
            class_names=meta.get("class_names"), collate=ImageCollate(meta["mean"], meta["std"]),
            side_by_side=side_by_side, runtime=runtime,
        )
        log_eval_metrics(out_dir / modality, records)
        return records
    if modality == "speech":
        assert isinstance(cfg, SpeechEvalConfig)
        records = evaluate_speech(
            pretrained, random_init, speech_splits(choice, data_root), cfg, out_dir, collate=SpeechCollate(crop=False),
            extra_test_splits=speech_extra_test_splits(data_root), side_by_side=side_by_side,
            input_baseline=log_mel_on_model_grid(choice, data_root), runtime=runtime,
        )
    elif modality == "text":
        assert isinstance(cfg, TextEvalConfig)
        task_splits = {
            task: {name: TextTaskDataset(data_root, task, split) for name, split in TEXT_SPLITS.items()}
            for task in cfg.tasks
        }
        records = evaluate_text(
            pretrained, random_init, task_splits, cfg, out_dir, collate=TextCollate(cfg.max_len),
            side_by_side=side_by_side, runtime=runtime,
        )
    else:
        raise D2VError(f"unknown modality {modality!r}")
    write_task_table(out_dir / eval_tasks_name(modality), records)
    log_eval_metrics(out_dir / modality, records)
    return records


def log_mel_on_model_grid(choice: ModelChoice, data_root: Path) -> LogMelFrames:
    """The log-mel input baseline on the speech model's own frame grid (its conv stack's window and hop)."""
    spec = model_spec("speech", choice, prepared_shape("speech", data_root)).speech
    if spec is None:
        raise D2VError("speech evaluation: the model has no speech front end spec")
    return LogMelFrames.on_grid_of(spec.conv_layers)


def write_task_table(path: Path, records: list[BaselineRecord]) -> Path:
    """The records as a CSV for `dvc plots`: task, metric, pretrained, random_init, delta, then the
    input baseline's score and pretrained - input baseline (empty where a record has none)."""
    lines = ["task,metric,pretrained,random_init,delta,input_baseline,input_baseline_delta"]
    lines += [
        f"{r.task},{r.metric},{r.pretrained:.6f},{r.random_init:.6f},{r.delta:.6f},"
        f"{_csv_number(r.input_baseline)},{_csv_number(r.input_baseline_delta)}"
        for r in records
    ]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def _csv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def speech_extra_test_splits(data_root: Path) -> tuple[str, ...]:
    """The test splits scored separately beside asr_test, as the prepare stage recorded them."""
    return tuple(prepared_meta(data_root).get("extra_test_splits", SPEECH_EXTRA_TEST))


def speech_splits(choice: ModelChoice, data_root: Path) -> dict[str, Dataset]:
    """The ASR splits (and the real prompts, when prepared), read as the model expects them: each
    utterance normalised on its own when `speech.normalize_waveform` is set. The model's front end
    does not normalise, so this flag is read here as pretraining reads it (d2v.train.run); the
    frozen-CNN cache of d2v.eval.ctc reads the same items."""
    front = model_spec("speech", choice, prepared_shape("speech", data_root)).speech
    assert front is not None
    normalize = front.normalize_waveform
    splits: dict[str, Dataset] = {
        name: SpeechDataset(data_root, split, normalize=normalize) for name, split in SPEECH_SPLITS.items()
    }
    for split in speech_extra_test_splits(data_root):
        try:
            splits[split] = SpeechDataset(data_root, split, normalize=normalize)
        except D2VError:  # not prepared (the transcripts file is optional): skip that test set
            continue
    return splits
