"""Artifact store: immutable, checksummed runs on a local directory or S3, with pointers.

    from d2v.artifacts.store import ArtifactStore, Metric
    store = ArtifactStore.from_config(params.artifacts)
    manifest = store.publish({"metrics.json": Path("metrics/eval.json")}, modality="image",
                             params=to_mapping(params), extra={"decision": "promoted"})
    store.promote(manifest.run_id, "image", Metric("top1", 0.84))

This package's __init__ imports only the config and the errors: d2v.config imports the config
dataclass, and the store itself builds on d2v.config (import it from d2v.artifacts.store).
"""

from d2v.artifacts.config import ArtifactsConfig, RetryConfig
from d2v.artifacts.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    ChecksumMismatchError,
    RunExistsError,
    TransientStoreError,
)

__all__ = [
    "ArtifactError",
    "ArtifactNotFoundError",
    "ArtifactsConfig",
    "ChecksumMismatchError",
    "RetryConfig",
    "RunExistsError",
    "TransientStoreError",
]
