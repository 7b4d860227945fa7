"""Publishing through d2v.artifacts: one immutable run per modality, champion pointers.

The same library calls as `d2v artifacts publish|promote` (publishing is not a DVC stage). A run
keeps the repository layout of what it holds (d2v/layout.py: `models/image/checkpoint.pt`,
`metrics/eval/image.json`, ...), so a champion's checkpoint is found at the same relative path.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.runtime import task_run

from d2v.artifacts.config import ArtifactsConfig, promoter_config
from d2v.artifacts.errors import ArtifactNotFoundError
from d2v.artifacts.store import ArtifactStore, Metric, check_run_id
from d2v.config import load_params, to_mapping
from d2v.layout import PARAMS_FILE, Layout
from pipelines.flows.logs import run_logger
from pipelines.flows.decision import Score
from pipelines.flows.rescore import download_run_checkpoint



def store_config(root: Path, uri: str | None = None, endpoint_url: str | None = None) -> ArtifactsConfig:
    """params.yaml's `artifacts` section, with the flow's overrides; a relative file:// is under root."""
    cfg = load_params(root / PARAMS_FILE).artifacts
    overrides = {k: v for k, v in {"uri": uri, "endpoint_url": endpoint_url}.items() if v is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    local = cfg.uri.removeprefix("file://")
    if cfg.uri.startswith("file://") and not Path(local).is_absolute():
        cfg = dataclasses.replace(cfg, uri=f"file://{(root / local).resolve()}")
    return cfg


def files_to_publish(root: Path, modality: str, patterns: list[str] | None = None) -> dict[str, Path]:
    """{run-relative path: local file} for the paths that exist under root; missing ones are skipped,
    so a stage that is not in the pipeline simply contributes nothing.

    patterns: repository paths with `{modality}` filled in; None = the layout's run files.
    """
    if patterns is None:
        rels = [p.as_posix() for p in Layout.from_params(root / PARAMS_FILE).run_files(modality)]
    else:
        rels = [pattern.format(modality=modality) for pattern in patterns]
    files: dict[str, Path] = {}
    for rel in rels:
        local = root / rel
        if local.is_file():
            files[rel] = local
        elif local.is_dir():
            for path in sorted(p for p in local.rglob("*") if p.is_file()):
                files[path.relative_to(root).as_posix()] = path
    return files


def publish_outputs(root: str, cfg: ArtifactsConfig, run_id: str, modality: str,
                    patterns: list[str] | None, extra: dict[str, Any]) -> dict[str, Any]:
    """Publish a modality's outputs as run `run_id`; returns its id, uri and {path: sha256}."""
    from d2v.artifacts.provenance import collect_provenance

    rootp = Path(root)
    files = files_to_publish(rootp, modality, patterns)
    store = ArtifactStore.from_config(cfg)
    params = to_mapping(load_params(rootp / PARAMS_FILE))
    manifest = store.publish(files, run_id=check_run_id(run_id), modality=modality, params=params,
                             extra=extra, provenance=collect_provenance(params, rootp))
    run_logger().info("published %s: %d files -> %s/runs/%s/", run_id, len(manifest.files),
                      store.backend.uri, run_id)
    return {"run_id": run_id, "uri": f"{store.backend.uri}/runs/{run_id}/",
            "files": {f.path: f.sha256 for f in manifest.files}}


@task(retries=2, retry_delay_seconds=5, cache_policy=NONE, task_run_name="publish {run_id}")
def publish_run(root: str, cfg: ArtifactsConfig, run_id: str, modality: str,
                patterns: list[str] | None, extra: dict[str, Any]) -> dict[str, Any]:
    """publish_outputs, retried under `<run_id>.retryN`: ids of interrupted publishes stay taken."""
    attempt = max(0, int(task_run.run_count or 1) - 1)
    return publish_outputs(root, cfg, run_id if attempt == 0 else f"{run_id}.retry{attempt}",
                           modality, patterns, extra)


def promote(cfg: ArtifactsConfig, run_id: str, modality: str, score: Score, replacing: str | None) -> None:
    """Move champion:<modality> to `run_id` only if it is still `replacing`, the champion the
    decision was made against (compare-and-swap): a concurrent retrain that promoted first makes
    this one fail with PointerConflictError instead of silently overwriting a better champion.
    Runs under `artifacts.promoter_profile` where set (the promoter role: training cannot promote)."""
    ArtifactStore.from_config(promoter_config(cfg)).promote(run_id, modality, Metric(score.name, score.value),
                                                            replacing=replacing)
    run_logger().info("champion:%s -> %s (%s=%g)", modality, run_id, score.name, score.value)


def current_champion(cfg: ArtifactsConfig, modality: str) -> tuple[str, Score] | None:
    """(run id, recorded metric) of the current champion, or None."""
    pointer = ArtifactStore.from_config(cfg).pointer(modality, "champion")
    if pointer is None or pointer.metric is None:
        return None
    return pointer.run_id, Score(pointer.metric.name, pointer.metric.value)


@task(retries=2, retry_delay_seconds=5, cache_policy=NONE)
def fetch_champion_checkpoint(root: str, cfg: ArtifactsConfig, modality: str, dest: str) -> str | None:
    """Download champion:<modality>'s checkpoint (checksum-verified) under dest; None without one."""
    store = ArtifactStore.from_config(cfg)
    pointer = store.pointer(modality, "champion")
    if pointer is None:
        run_logger().info("no champion for %s: pretraining from scratch", modality)
        return None
    path = download_run_checkpoint(Path(root), cfg, pointer.run_id, modality, Path(dest))
    if path is None:
        rel = Layout.from_params(Path(root) / PARAMS_FILE).checkpoint(modality).as_posix()
        raise ArtifactNotFoundError(f"run {pointer.run_id}: no file {rel!r} (champion:{modality} has no checkpoint "
                                    "to warm-start from)")
    run_logger().info("warm start for %s from %s (%s)", modality, pointer.run_id, path)
    return str(path)


__all__ = ["current_champion", "fetch_champion_checkpoint", "files_to_publish",
           "promote", "publish_outputs", "publish_run", "store_config"]
