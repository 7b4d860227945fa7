"""Checkpoints that carry their own spec (written by `d2v import`), for `model.<modality>.init_from`.

A training checkpoint records only a fingerprint of its spec; an imported one also stores the spec
itself (in the payload's `progress` section), because no preset describes a released model's
architecture. `model.<modality>.init_from` makes that spec the base of spec resolution.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from d2v.config import from_mapping, to_mapping
from d2v.core.spec import Data2VecSpec
from d2v.errors import ConfigError

# The preset name recorded in the fingerprint of imported checkpoints, and of every model built
# with init_from (its architecture is the checkpoint's, whatever `preset` says).
IMPORTED_PRESET = "imported"
SPEC_KEY = "spec"
SOURCE_KEY = "imported_from"


def imported_progress(spec: Data2VecSpec, source: dict[str, Any]) -> dict[str, Any]:
    """The `progress` section of an imported checkpoint: its spec and where it came from."""
    return {SPEC_KEY: to_mapping(spec), SOURCE_KEY: source}


def stored_spec(path: str | Path) -> Data2VecSpec:
    """The spec an imported checkpoint carries; ConfigError for a checkpoint without one."""
    path = Path(path)
    stat = path.stat() if path.is_file() else None
    key = (str(path.resolve()), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)
    return _stored_spec(*key)


@lru_cache(maxsize=8)
def _stored_spec(path: str, mtime_ns: int, size: int) -> Data2VecSpec:
    # Keyed on modification time and size: a re-import at the same path is read again.
    from d2v.train.checkpoint import load_checkpoint

    progress = load_checkpoint(path).get("progress")
    if not isinstance(progress, dict) or SPEC_KEY not in progress:
        raise ConfigError(
            f"{path}: this checkpoint stores no model spec (init_from takes checkpoints written by `d2v import`; "
            "to warm-start from a checkpoint of the same model use `d2v pretrain --init-checkpoint`)"
        )
    return from_mapping(Data2VecSpec, progress[SPEC_KEY], path=f"{path}: spec")


def checkpoint_has_spec(payload: dict[str, Any]) -> bool:
    progress = payload.get("progress")
    return isinstance(progress, dict) and SPEC_KEY in progress


def spec_of_payload(payload: dict[str, Any], source: str) -> Data2VecSpec:
    return from_mapping(Data2VecSpec, payload["progress"][SPEC_KEY], path=f"{source}: spec")
