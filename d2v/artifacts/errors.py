"""Errors of the artifact store; all are D2VError, so the CLI prints them as one line."""

from __future__ import annotations

from d2v.errors import D2VError


class ArtifactError(D2VError):
    """Anything wrong with the artifact store, its objects or a transfer."""


class ArtifactNotFoundError(ArtifactError):
    """A run, file or pointer that does not exist (or a run without a manifest)."""


class RunExistsError(ArtifactError):
    """Publishing to a run id that already has objects: runs are immutable."""


class ChecksumMismatchError(ArtifactError):
    """A downloaded file's sha256 differs from the manifest."""


class ConditionFailedError(ArtifactError):
    """A conditional write lost: the object changed (or appeared) since the writer read it."""


class PointerConflictError(ArtifactError):
    """A pointer moved under a promotion: another writer won; the message names both runs."""


class TransientStoreError(ArtifactError):
    """The store stayed unreachable (or kept failing transiently) after every retry."""


__all__ = [
    "ArtifactError",
    "ArtifactNotFoundError",
    "ChecksumMismatchError",
    "ConditionFailedError",
    "PointerConflictError",
    "RunExistsError",
    "TransientStoreError",
]
