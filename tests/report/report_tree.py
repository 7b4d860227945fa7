"""A fake-but-realistic pipeline output tree, written with the producers' own writers.

Image and text ran everything; speech ran nothing (its sections must say "not run") unless a test
adds it. Numbers are chosen so that every one the report shows is recognisable in the output.
Used by conftest.py (the `tree` fixture) and imported by the tests for the expected numbers.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from d2v.eval.record import BaselineRecord, write_confusion_csv, write_eval_metrics
from d2v.train.metrics import PretrainLog

REPO_ROOT = Path(__file__).resolve().parents[2]

DVC_LOCK = """\
schema: '2.0'
stages:
  prepare@image:
    cmd: d2v data prepare image
    outs:
    - path: data/prepared/image
      hash: md5
      md5: 0123456789abcdef0123456789abcdef.dir
      size: 55123456
      nfiles: 8
  pretrain@image:
    cmd: d2v pretrain image
    outs:
    - path: models/image
      hash: md5
      md5: fedcba9876543210fedcba9876543210.dir
      size: 4321000
      nfiles: 1
  report:
    cmd: d2v report
    outs:
    - path: reports/benchmark.html
      hash: md5
      md5: 99999999999999999999999999999999
"""

# The probe loses to raw pixels (not yet a result), fine-tuning beats them; speech's records predate
# input baselines (no input_baseline keys at all).
IMAGE_RECORDS = (
    BaselineRecord("linear_probe", "top1", True, 0.7912, 0.6563, 0.7912 - 0.6563, 3000, 1000, 41.5,
                   input_baseline_name="raw pixels", input_baseline=0.8320, input_baseline_delta=0.7912 - 0.8320,
                   input_baseline_delta_ci95_low=-0.061, input_baseline_delta_ci95_high=-0.021,
                   pretrained_final_train_loss=0.30124, random_init_final_train_loss=0.9),
    BaselineRecord("finetune", "top1", True, 0.8234, 0.7745, 0.8234 - 0.7745, 1000, 1000, 95.25, 0.021, 0.077,
                   input_baseline_name="raw pixels", input_baseline=0.6990, input_baseline_delta=0.8234 - 0.6990,
                   input_baseline_delta_ci95_low=0.093, input_baseline_delta_ci95_high=0.155),
)
TEXT_TASKS = (
    BaselineRecord("sst2", "score", True, 0.7310, 0.6620, 0.7310 - 0.6620, 1000, 500, 30.0),
    BaselineRecord("mrpc", "score", True, 0.6480, 0.6010, 0.6480 - 0.6010, 1000, 500, 31.0, -0.012, 0.105),
    BaselineRecord("supersense", "score", True, 0.4150, 0.3300, 0.4150 - 0.3300, 1000, 500, 32.0),
)
TEXT_AVERAGE = sum(r.pretrained for r in TEXT_TASKS) / 3  # 0.598 -> "59.80"
SPEECH_RECORDS = (
    BaselineRecord("ctc", "wer", False, 0.6120, 0.8450, 0.6120 - 0.8450, 216, 72, 120.0),
    BaselineRecord("ctc_cer", "cer", False, 0.2500, 0.4000, -0.15, 216, 72, 120.0),
)
CLASS_NAMES = ["T-shirt", "Trouser", "Pullover"]


@dataclass(frozen=True)
class Tree:
    root: Path
    params: Path


@dataclass(frozen=True)
class Health:
    """A run's health figures: relative loss goes first -> final linearly over the steps."""

    first_rel_loss: float
    final_rel_loss: float
    target_rank: float
    pred_rank: float
    masked_fraction: float

    def at(self, step: int, steps: int) -> dict[str, float]:
        rel_loss = self.first_rel_loss + (self.final_rel_loss - self.first_rel_loss) * (step - 1) / (steps - 1)
        return {"rel_loss": rel_loss, "target_rank": self.target_rank, "pred_rank": self.pred_rank,
                "masked_fraction": self.masked_fraction}

    def summary(self) -> dict[str, float]:
        return {"first_rel_loss": self.first_rel_loss, "final_rel_loss": self.final_rel_loss,
                "final_target_rank": self.target_rank, "final_pred_rank": self.pred_rank,
                "mean_masked_fraction": self.masked_fraction}


IMAGE_HEALTH = Health(0.9987, 0.4012, 41.26, 27.61, 0.8)  # learned: shown as "0.999 → 0.401"
SPEECH_HEALTH = Health(1.0004, 1.0213, 12.35, 1.94, 0.4931)  # learned nothing: flagged
# text is written as a run from before the health figures: no rel_loss column values, no summary keys


def write_pretrain(root: Path, modality: str, steps: int, samples_per_s: float, train_time_s: float,
                   health: Health | None = None) -> None:
    """The DVCLive directory exactly as d2v.train.loop writes it (the real writer)."""
    log = PretrainLog(root / "metrics" / "pretrain" / modality)
    log.start(0)
    for step in range(1, steps + 1):
        log.append({
            "step": step, "loss": 2.0 * math.exp(-step / 20) + 0.1, "target_var": 0.9 - 0.002 * step,
            "pred_var": 0.3 + 0.005 * step, "lr": 1e-3 * min(1.0, step / 10), "tau": 0.99 + 0.0001 * step,
            "masked_fraction": 0.8, "grad_norm": 3.0, "samples_per_s": samples_per_s,
            **(health.at(step, steps) if health else {}),
        })
    log.finish({
        "modality": modality, "steps": steps, "first_loss": 2.0123, "final_loss": 0.4567, "final_loss_avg": 0.4711,
        "nonfinite_skipped": 0, "train_time_s": train_time_s, "samples_per_s": samples_per_s,
        "effective_batch_size": 64, "world_size": 1, "device": "cpu", **(health.summary() if health else {}),
    })


def write_validation(root: Path, modality: str, success: bool = True) -> None:
    path = root / "reports" / "validation" / f"{modality}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    results = [{"expectation": "expect_column_values_to_be_unique", "file": "manifest.csv", "success": True}] * 8
    results.append({"expectation": "expect_column_values_to_be_between", "file": "manifest.csv", "success": success})
    path.write_text(json.dumps({"modality": modality, "n_expectations": 9, "n_failed": 0 if success else 1,
                                "results": results, "rows": {"manifest": 65000, "shards": 7},
                                "success": success}), encoding="utf-8")


def write_speech(root: Path) -> None:
    write_pretrain(root, "speech", steps=30, samples_per_s=12.5, train_time_s=48.0, health=SPEECH_HEALTH)
    write_eval_metrics(root / "metrics" / "eval" / "speech.json", SPEECH_RECORDS)
    write_validation(root, "speech")


def make_tree(tmp_path: Path) -> Tree:
    root = tmp_path / "project"
    root.mkdir()
    params = root / "params.yaml"
    shutil.copy(REPO_ROOT / "params.yaml", params)
    (root / "dvc.lock").write_text(DVC_LOCK, encoding="utf-8")
    write_pretrain(root, "image", steps=60, samples_per_s=213.37, train_time_s=90.12, health=IMAGE_HEALTH)
    write_pretrain(root, "text", steps=40, samples_per_s=55.5, train_time_s=70.0)
    eval_dir = root / "metrics" / "eval"
    write_eval_metrics(eval_dir / "image.json", IMAGE_RECORDS)
    actual = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    predicted = [0, 0, 2, 1, 1, 1, 2, 0, 2, 2]
    write_confusion_csv(eval_dir / "image_confusion.csv", actual, predicted, CLASS_NAMES)
    average = BaselineRecord("average", "score", True, TEXT_AVERAGE, sum(r.random_init for r in TEXT_TASKS) / 3,
                             TEXT_AVERAGE - sum(r.random_init for r in TEXT_TASKS) / 3, 3000, 1500, 93.0)
    write_eval_metrics(eval_dir / "text.json", (average, *TEXT_TASKS))
    write_validation(root, "image")
    write_validation(root, "text")
    return Tree(root=root, params=params)
