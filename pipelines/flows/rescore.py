"""Re-score the champion on the candidate's data before a promotion.

A champion's recorded score was measured on the data of its own day. After a refresh the candidate is
scored on new data, so comparing it with the recorded number compares two datasets, not two models.
Before deciding, the retrain flow downloads the champion's checkpoint (checksum-verified) and runs the
same `d2v evaluate` on the same prepared data and params as the candidate; the decision uses that
score. A champion run without a checkpoint (published by hand, or from pretraining-only stages)
cannot be re-scored: its recorded score is used and the manifest says so.

Prefect-free except for the logger, so tests can hand in their own evaluator.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from d2v.artifacts.config import ArtifactsConfig
from d2v.artifacts.store import ArtifactStore
from d2v.layout import PARAMS_FILE, Layout
from pipelines.flows.commands import run_streaming, tool_env
from pipelines.flows.decision import Score, primary_eval_score
from pipelines.flows.logs import run_logger

# (repo root, modality, checkpoint) -> the primary score of that checkpoint on the root's data.
Evaluator = Callable[[Path, str, Path], Score]


@dataclass(frozen=True)
class ChampionScore:
    score: Score
    rescored: bool  # False: the score recorded at promotion (the run has no checkpoint to evaluate)
    how: str

    def as_record(self) -> dict:
        return {"champion_rescored": self.rescored, "champion_score_source": self.how}


def download_run_checkpoint(root: Path, cfg: ArtifactsConfig, run_id: str, modality: str,
                            dest: Path) -> Path | None:
    """A run's checkpoint and the weights beside it, verified, under dest/<run_id>/; None if the run
    has no checkpoint."""
    store = ArtifactStore.from_config(cfg)
    layout = Layout.from_params(root / PARAMS_FILE)
    rel = layout.checkpoint(modality).as_posix()  # runs keep repo paths
    folder = layout.checkpoint_dir(modality).as_posix() + "/"
    manifest = store.manifest(run_id)
    if not any(entry.path == rel for entry in manifest.files):
        return None
    for entry in manifest.files:
        if entry.path.startswith(folder):  # the weights file sits beside checkpoint.pt
            store.download(run_id, dest / run_id, path=entry.path)
    return dest / run_id / rel


def evaluate_checkpoint(root: Path, modality: str, checkpoint: Path) -> Score:
    """`d2v evaluate` of `checkpoint` on root's prepared data and params, written to a temporary
    directory so the candidate's own metrics/ stay exactly as its stages left them."""
    with tempfile.TemporaryDirectory(prefix="d2v-rescore-") as out:
        run_streaming(["d2v", "evaluate", modality, "--checkpoint", str(checkpoint), "--out", out],
                      root, run_logger().info, tool_env())
        return primary_eval_score(Path(out) / f"{modality}.json")


def champion_score(root: Path, cfg: ArtifactsConfig, modality: str, run_id: str, recorded: Score,
                   evaluate: Evaluator = evaluate_checkpoint) -> ChampionScore:
    with tempfile.TemporaryDirectory(prefix="d2v-champion-") as tmp:
        checkpoint = download_run_checkpoint(root, cfg, run_id, modality, Path(tmp))
        if checkpoint is None:
            return ChampionScore(recorded, False, f"recorded at promotion ({run_id} has no checkpoint)")
        score = evaluate(root, modality, checkpoint)
    if score.name != recorded.name:
        run_logger().info("champion %s re-scored on %s (recorded on %s)", run_id, score.name, recorded.name)
    run_logger().info("champion %s re-scored on this data: %s=%g (recorded %g)", run_id, score.name,
                      score.value, recorded.value)
    return ChampionScore(score, True, "re-scored on the candidate's data")


__all__ = ["ChampionScore", "Evaluator", "champion_score", "download_run_checkpoint", "evaluate_checkpoint"]
