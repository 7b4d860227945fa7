import json
import math

import pytest
import torch

from d2v.core.types import Data2VecOutput
from d2v.errors import D2VError
from d2v.train._selftest import FINGERPRINT, StandInModel, SyntheticDataset, tiny_config
from d2v.train.checkpoint import CheckpointError, ModelFingerprint, load_checkpoint
from d2v.train.distributed import DistEnv
from d2v.train.health import RECENT
from d2v.train.loop import RunPaths, pretrain
from d2v.train.update import NonFiniteLossError
from d2v.train.metrics import STEP_COLUMNS
from step_log import step_rows

HEALTH_KEYS = ("first_rel_loss", "final_rel_loss", "final_target_rank", "final_pred_rank", "mean_masked_fraction")
CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


class NaNAt(StandInModel):
    """Returns a NaN loss on the listed forward calls (0-based, counted over micro-batches)."""

    def __init__(self, nan_calls: set[int] | None = None) -> None:
        super().__init__()
        self.nan_calls = nan_calls
        self.calls = 0

    def forward(self, batch, generator=None) -> Data2VecOutput:
        out = super().forward(batch, generator)
        poisoned = self.nan_calls is None or self.calls in self.nan_calls
        self.calls += 1
        return Data2VecOutput(loss=out.loss * math.nan, logs=out.logs) if poisoned else out


class Collapses(StandInModel):
    def forward(self, batch, generator=None) -> Data2VecOutput:
        raise D2VError("target variance 0.001 fell below 0.01: representation collapse")


def _run(tmp_path, model, resume: bool = False, fingerprint: ModelFingerprint = FINGERPRINT, run_id=None, **cfg):
    torch.manual_seed(0)
    paths = RunPaths(tmp_path / "ckpt.pt", tmp_path / "metrics")
    summary = pretrain(
        model, SyntheticDataset(40), tiny_config(**cfg), modality="image", fingerprint=fingerprint,
        seed=0, paths=paths, env=CPU, resume=resume, run_id=run_id,
    )
    return summary, paths


def _tsv(paths: RunPaths) -> list[list[str]]:
    """The DVCLive plot files joined on step, as rows of text in STEP_COLUMNS order (header first)."""
    return step_rows(paths.metrics_dir / "image")


def test_run_writes_metrics_summary_and_final_checkpoint(tmp_path) -> None:
    model = StandInModel()
    teacher_before = model.teacher.proj.weight.clone()
    summary, paths = _run(tmp_path, model, max_steps=6, checkpoint_every=4)
    rows = _tsv(paths)
    assert tuple(rows[0]) == STEP_COLUMNS and [r[0] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"]
    assert all(v != "nan" for r in rows[1:] for v in r)  # the stand-in reports every logged key
    on_disk = json.loads((paths.metrics_dir / "image" / "metrics.json").read_text())
    assert on_disk["steps"] == 6 and on_disk["nonfinite_skipped"] == 0
    assert on_disk["effective_batch_size"] == 8
    assert on_disk["first_loss"] == pytest.approx(float(rows[1][1]), rel=1e-5)
    assert summary["final_loss"] == pytest.approx(float(rows[-1][1]), rel=1e-5)
    payload = load_checkpoint(paths.checkpoint, expected=FINGERPRINT)
    assert payload["step"] == 6 and int(model.num_updates) == 6
    # 40 examples / batch 4 = 10 batches per epoch; 6 updates x 2 micro-batches = 12 batches.
    assert payload["data_position"] == {"epoch": 1, "batches_consumed": 2}
    assert not torch.equal(teacher_before, model.teacher.proj.weight)  # ema_step ran
    assert not any(p.grad is not None for p in model.teacher.parameters())


def test_summary_health_figures_are_those_of_the_step_log(tmp_path) -> None:
    summary, paths = _run(tmp_path, StandInModel(), max_steps=RECENT + 3)
    rows = _tsv(paths)
    column = {name: [float(r[i]) for r in rows[1:]] for i, name in enumerate(rows[0])}
    last = slice(-RECENT, None)
    expected = {
        "first_rel_loss": column["rel_loss"][0],
        "final_rel_loss": sum(column["rel_loss"][last]) / RECENT,
        "final_target_rank": sum(column["target_rank"][last]) / RECENT,
        "final_pred_rank": sum(column["pred_rank"][last]) / RECENT,
        "mean_masked_fraction": sum(column["masked_fraction"]) / len(column["masked_fraction"]),
    }
    on_disk = json.loads((paths.metrics_dir / "image" / "metrics.json").read_text())
    for key, value in expected.items():  # the TSV holds 6 significant digits
        assert on_disk[key] == pytest.approx(value, rel=1e-5) and summary[key] == on_disk[key], key
    assert 0.3 < on_disk["mean_masked_fraction"] < 0.7  # the stand-in masks each value with p = 0.5


def test_nonfinite_update_is_skipped_and_counted(tmp_path) -> None:
    model = NaNAt({3})  # the second micro-batch of update 2
    summary, paths = _run(tmp_path, model, max_steps=4)
    assert summary["nonfinite_skipped"] == 1 and summary["steps"] == 4
    assert int(model.num_updates) == 3  # no optimizer/EMA step for the skipped update
    assert _tsv(paths)[2][1] == "nan" and math.isfinite(summary["first_loss"])


def test_too_many_nonfinite_in_a_row_stops_with_a_clear_error(tmp_path) -> None:
    with pytest.raises(NonFiniteLossError, match="4 consecutive updates had a non-finite loss"):
        _run(tmp_path, NaNAt(None), max_steps=10, max_consecutive_nonfinite=3)


def test_model_errors_propagate(tmp_path) -> None:
    with pytest.raises(D2VError, match="representation collapse"):
        _run(tmp_path, Collapses(), max_steps=2)


def test_dataset_smaller_than_a_batch_is_a_user_error(tmp_path) -> None:
    with pytest.raises(D2VError, match="3 examples cannot fill one batch of 4"):
        pretrain(
            StandInModel(), SyntheticDataset(3), tiny_config(), modality="image", fingerprint=FINGERPRINT,
            seed=0, paths=RunPaths(tmp_path / "c.pt", tmp_path / "m"), env=CPU,
        )


def test_a_model_without_ema_step_is_refused(tmp_path) -> None:
    with pytest.raises(D2VError, match="Linear has no ema_step"):
        _run(tmp_path, torch.nn.Linear(8, 8), max_steps=1)


def test_resume_refuses_a_checkpoint_of_another_preset(tmp_path) -> None:
    _run(tmp_path, StandInModel(), max_steps=2)
    other = ModelFingerprint("image", 2, "base", "f" * 16)
    with pytest.raises(CheckpointError, match="preset 'standin'.*preset 'base'"):
        _run(tmp_path, StandInModel(), resume=True, fingerprint=other, max_steps=4)


def test_resume_continues_only_the_run_that_wrote_the_checkpoint(tmp_path, capsys) -> None:
    from d2v.train.checkpoint import run_of

    _run(tmp_path, _seeded_model(), run_id="run-a", max_steps=4)
    assert run_of(tmp_path / "ckpt.pt") == "run-a"
    capsys.readouterr()
    _run(tmp_path, _seeded_model(), resume=True, run_id="run-a", max_steps=4)
    assert "start_step=4" in capsys.readouterr().err  # the same run: nothing left to train

    _run(tmp_path, _seeded_model(), resume=True, run_id="run-b", max_steps=4)  # params, data or code changed
    err = capsys.readouterr().err
    assert "written by another run" in err and "start_step=0" in err
    assert run_of(tmp_path / "ckpt.pt") == "run-b"


class InterruptedAfter(StandInModel):
    """Dies (like a crash) after `updates` EMA steps, i.e. between two checkpoints."""

    def __init__(self, updates: int) -> None:
        super().__init__()
        self.updates = updates

    def ema_step(self) -> None:
        super().ema_step()
        if int(self.num_updates) == self.updates:
            raise KeyboardInterrupt


def _seeded_model(cls=StandInModel, *args):
    torch.manual_seed(0)
    return cls(*args)


def _summary_without_timings(metrics_dir) -> dict:
    summary = json.loads((metrics_dir / "image" / "metrics.json").read_text())
    return {k: v for k, v in summary.items() if k not in ("train_time_s", "samples_per_s")}


def test_resume_in_process_is_exact_and_trims_metrics(tmp_path) -> None:
    straight = _seeded_model()
    _run(tmp_path / "straight", straight, max_steps=8, checkpoint_every=4)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", _seeded_model(InterruptedAfter, 6), max_steps=8, checkpoint_every=4)
    assert load_checkpoint(tmp_path / "cut" / "ckpt.pt")["step"] == 4
    # Died inside update 6: row 5 was logged after the step-4 checkpoint and is stale.
    assert len(_tsv(RunPaths(tmp_path, tmp_path / "cut" / "metrics"))) == 1 + 5

    resumed = _seeded_model()
    summary, paths = _run(tmp_path / "cut", resumed, resume=True, max_steps=8, checkpoint_every=4)
    # The same summary, health figures included (their first 4 steps come from the checkpoint).
    straight_summary = _summary_without_timings(tmp_path / "straight" / "metrics")
    assert _summary_without_timings(paths.metrics_dir) == straight_summary
    assert all(straight_summary[key] is not None for key in HEALTH_KEYS)
    assert summary["steps"] == 8 and [r[0] for r in _tsv(paths)[1:]] == [str(i) for i in range(1, 9)]
    straight_rows = _tsv(RunPaths(tmp_path, tmp_path / "straight" / "metrics"))
    assert [r[:8] for r in _tsv(paths)] == [r[:8] for r in straight_rows]  # all but samples_per_s
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
