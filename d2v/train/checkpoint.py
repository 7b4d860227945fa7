"""Training checkpoints: atomic writes, `weights_only` loads, and a refusal to mix models.

Everything stored is a tensor or a plain Python value (RNG states included), so loading works with
`torch.load(..., weights_only=True)`: a checkpoint cannot execute code.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from d2v.atomic import atomic_open
from d2v.config import to_mapping
from d2v.errors import D2VError

FORMAT_VERSION = 1


class CheckpointError(D2VError):
    """A checkpoint is missing, unreadable, or belongs to another model."""


@dataclass(frozen=True)
class ModelFingerprint:
    """Identifies the model a checkpoint belongs to; `spec_hash` covers every field of its spec."""

    modality: str
    version: int
    preset: str
    spec_hash: str

    @classmethod
    def of(cls, modality: str, version: int, preset: str, spec: Any) -> "ModelFingerprint":
        """Fingerprint from a spec dataclass (or any JSON-able tree)."""
        text = json.dumps(to_mapping(spec), sort_keys=True, default=repr)
        return cls(modality, version, preset, hashlib.sha256(text.encode()).hexdigest()[:16])

    def describe(self) -> str:
        return f"{self.modality} v{self.version} preset {self.preset!r} (spec {self.spec_hash})"


@dataclass(frozen=True)
class DataPosition:
    """Where the data stream stands: the epoch and how many batches of it were consumed."""

    epoch: int
    batches_consumed: int


# --------------------------------------------------------------------------------------------------
# RNG states as checkpoint-safe values
# --------------------------------------------------------------------------------------------------


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """Python, numpy, torch CPU (+ CUDA) and the training generator's states as tensors/plain types."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (np_state["kind"], keys, np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` atomically: a killed process leaves the old file or the new one, never half."""
    with atomic_open(path, "wb") as fh:
        torch.save(payload, fh)


def build_payload(
    *,
    fingerprint: ModelFingerprint,
    model_state: dict[str, Any],
    optimizer_state: dict[str, Any],
    scheduler_state: dict[str, Any],
    rng_per_rank: list[dict[str, Any]],
    step: int,
    position: DataPosition,
    progress: dict[str, Any],
) -> dict[str, Any]:
    """The checkpoint layout. `model_state` holds student + teacher (+ the EMA update counter)."""
    return {
        "format_version": FORMAT_VERSION,
        "fingerprint": asdict(fingerprint),
        "model": model_state,
        "optimizer": optimizer_state,
        "scheduler": scheduler_state,
        "rng": rng_per_rank,
        "step": step,
        "data_position": asdict(position),
        "progress": progress,
    }


def load_checkpoint(path: str | Path, expected: ModelFingerprint | None = None) -> dict[str, Any]:
    """Load safely; with `expected`, refuse a checkpoint of another model, naming both."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt or not a torch file: all are the user's to fix
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a d2v training checkpoint (format {FORMAT_VERSION} expected)")
    if expected is not None:
        found = ModelFingerprint(**payload["fingerprint"])
        if found != expected:
            raise CheckpointError(
                f"{path}: checkpoint is for {found.describe()}, but the model is {expected.describe()}; "
                "use another checkpoint path or start without resume"
            )
    return payload


def data_position_of(payload: dict[str, Any]) -> DataPosition:
    return DataPosition(**payload["data_position"])
