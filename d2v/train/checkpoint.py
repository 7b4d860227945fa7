"""Training checkpoints: safetensors weights, atomic writes, safe loads, a refusal to mix models.

A checkpoint at `<dir>/<name>.pt` is two files:

    <name>.pt                         torch file: optimizer, scheduler, RNG, step, data position,
                                      progress, fingerprint, and which weights file belongs to it
    <name>.<sha256[:16]>.safetensors  the model state's tensors (student + teacher)

The weights file is named by its content, so a save never overwrites the weights that the current
`<name>.pt` points at: it writes the new weights under their own name, then replaces `<name>.pt`
(the commit), then removes weights no longer pointed at. A process killed at any moment leaves the
old checkpoint or the new one, never new weights with old optimizer state. Loading checks the
weights' sha256 against the pointer. Neither file can execute code: safetensors holds only tensors,
and the torch file only tensors and plain values, loaded with `torch.load(..., weights_only=True)`.
Checkpoints of format 1 (everything in one torch file) still load.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from d2v.atomic import TMP_MARKER, atomic_open, atomic_write_bytes, durable_replace, is_temporary
from d2v.config import to_mapping
from d2v.train.checkpoint_errors import CheckpointError, file_identity, write_error

FORMAT_VERSION = 2  # 2: weights in a safetensors file beside the torch file
LEGACY_FORMAT_VERSION = 1  # one torch file with everything; still loaded


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
# Save / load
# --------------------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, payload: dict[str, Any], keep_last: int = 1) -> Path:
    """Write `payload` (see build_payload) as `path` + a safetensors weights file beside it, atomically:
    a killed process leaves the old checkpoint or the new one, never half, never a mix. -> the weights file.

    Temporary files an earlier, killed save of this checkpoint left beside it are removed first. A
    write that fails (a full disk, EFBIG, EIO) raises CheckpointError naming the file and the OS's
    reason; it leaves no temporary file and no new weights file, and the previous checkpoint as it was.

    `keep_last` K > 1 also keeps the last K saves as `<stem>-step<N>.pt` beside it (each a pointer to
    its own weights file); older ones and their weights are removed. `path` is always the latest.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    previous = file_identity(path)
    tensors, index = _split_model_state(payload["model"])
    try:
        weights_name, digest, created = _write_weights(path, tensors)
    except Exception as exc:
        raise write_error(path, f"its weights file ({path.stem}.<sha256>.safetensors beside it)", exc,
                           previous) from exc
    state = {key: value for key, value in payload.items() if key != "model"}
    state["format_version"] = FORMAT_VERSION
    state["weights"] = {"file": weights_name, "sha256": digest, **index}
    try:
        with atomic_open(path, "wb") as fh:  # the commit point: from here on the new weights count
            torch.save(state, fh)
    except BaseException as exc:
        # Not committed: the new weights file belongs to no checkpoint. Remove it unless it was
        # already there (the same bytes as weights a checkpoint may still point at).
        if created:
            (path.parent / weights_name).unlink(missing_ok=True)
        if not isinstance(exc, Exception):
            raise
        raise write_error(path, "the checkpoint", exc, previous) from exc
    kept = _keep_step_copies(path, int(payload["step"]), keep_last)
    _remove_unreferenced_weights(path, keep={weights_name, *kept})
    return path.parent / weights_name


def step_copies(path: str | Path) -> list[Path]:
    """The `<stem>-step<N>.pt` copies kept beside checkpoint `path`, oldest first."""
    path = Path(path)
    pattern = re.compile(re.escape(path.stem) + r"-step(\d{8})" + re.escape(path.suffix))
    found = [(int(m.group(1)), p) for p in path.parent.iterdir() if (m := pattern.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def _keep_step_copies(path: Path, step: int, keep_last: int) -> set[str]:
    """Copy the committed `path` to its step name, drop copies beyond the last `keep_last`; -> the
    weights files the kept copies point at."""
    if keep_last > 1:
        atomic_write_bytes(path.with_name(f"{path.stem}-step{step:08d}{path.suffix}"), path.read_bytes())
    # Copies of later steps are another run's (one that was replaced from step 0): never "the last".
    later = [p for p in step_copies(path) if _step_of(p) > step]
    copies = [p for p in step_copies(path) if p not in later]
    stale = later + (copies[: max(len(copies) - keep_last, 0)] if keep_last > 1 else copies)
    for old in stale:
        old.unlink(missing_ok=True)
    return {_read_state(p)["weights"]["file"] for p in copies if p not in stale}


def _step_of(copy: Path) -> int:
    return int(copy.stem.rsplit("-step", 1)[1])


def remove_stale_temporaries(path: str | Path) -> list[str]:
    """Delete the temporary files a killed save of the checkpoint `path` left beside it: its weights'
    `.<stem>.d2v-tmp-<8 hex>.safetensors`, its own `.<name>.d2v-tmp-<8 hex>` and the temporaries of its step
    copies (`keep_last`), nothing else.
    Call only where no other process is saving this checkpoint (rank 0 saves). The names removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    marker = re.escape(TMP_MARKER)
    patterns = (re.compile(re.escape(f".{path.stem}") + marker + r"[0-9a-f]{8}\.safetensors"),
                re.compile(re.escape(f".{path.name}") + marker + r"[0-9a-f]{8}"),
                re.compile(re.escape(f".{path.stem}-step") + r"\d{8}" + re.escape(path.suffix) + marker + r"[0-9a-f]{8}"))
    removed = []
    for candidate in path.parent.iterdir():
        if is_temporary(candidate.name) and any(p.fullmatch(candidate.name) for p in patterns) \
                and candidate.is_file() and not candidate.is_symlink():
            candidate.unlink(missing_ok=True)
            removed.append(candidate.name)
    return sorted(removed)


def weights_file_of(path: str | Path) -> Path | None:
    """The safetensors file a checkpoint's weights live in (None for a format-1 checkpoint)."""
    state = _read_state(Path(path))
    return None if "weights" not in state else Path(path).parent / state["weights"]["file"]


def _split_model_state(model_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors for safetensors, and what the torch file needs to rebuild the exact state dict.

    safetensors refuses tensors that share memory. A key whose tensor *is* an earlier key's (same
    storage, offset, shape, strides: tied weights) is recorded as an alias and comes back as the
    same tensor object; a tensor that only overlaps another is stored as its own copy.
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    extras: dict[str, Any] = {}  # non-tensor entries (e.g. an int counter in a module's extra state)
    seen: dict[tuple, str] = {}
    storages: set[tuple[str, int]] = set()
    for key, value in model_state.items():
        if not torch.is_tensor(value):
            extras[key] = value
            continue
        storage = (str(value.device), value.untyped_storage().data_ptr())
        view = (*storage, value.storage_offset(), tuple(value.shape), value.stride(), value.dtype)
        if view in seen and value.numel() > 0:
            aliases[key] = seen[view]
            continue
        seen[view] = key
        shares = storage in storages and value.numel() > 0
        storages.add(storage)
        tensor = value.detach().to("cpu")
        tensors[key] = tensor.clone() if shares or not tensor.is_contiguous() else tensor
    index = {"keys": list(model_state), "aliases": aliases, "extras": extras,
             "metadata": dict(getattr(model_state, "_metadata", None) or {})}
    return tensors, index


def _write_weights(path: Path, tensors: dict[str, torch.Tensor]) -> tuple[str, str, bool]:
    """Write the tensors under a content-derived name beside `path`; (file name, sha256, whether that
    name is new: False when a file of that name, hence those bytes, was already there)."""
    tmp = path.with_name(f".{path.stem}{TMP_MARKER}{uuid.uuid4().hex[:8]}.safetensors")
    try:
        safetensors.torch.save_file(tensors, str(tmp), metadata={"format": "pt"})
        digest = _sha256(tmp)
        name = f"{path.stem}.{digest[:16]}.safetensors"
        created = not path.with_name(name).exists()
        durable_replace(tmp, path.with_name(name))  # same name = same bytes: replacing is harmless
    finally:
        tmp.unlink(missing_ok=True)
    return name, digest, created


def _remove_unreferenced_weights(path: Path, keep: set[str]) -> None:
    """Delete `<stem>.<hash>.safetensors` files beside `path` not in `keep` (older saves, or weights a
    killed save wrote but never committed)."""
    pattern = re.compile(re.escape(path.stem) + r"\.[0-9a-f]{16}\.safetensors")
    for candidate in path.parent.iterdir():
        if candidate.name not in keep and pattern.fullmatch(candidate.name):
            candidate.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    run: str | None = None,
) -> dict[str, Any]:
    """The checkpoint layout. `model_state` holds student + teacher (+ the EMA update counter);
    `run` is the run identity (d2v/train/run_identity.py) that `--resume` compares."""
    return {
        "run": run,
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


def run_of(path: str | Path) -> str | None:
    """The run identity a checkpoint was written by (None: older checkpoints, or none recorded);
    reads the small torch file only, not the weights."""
    return _read_state(Path(path)).get("run")


def load_checkpoint(path: str | Path, expected: ModelFingerprint | None = None) -> dict[str, Any]:
    """Load safely (the build_payload layout); with `expected`, refuse a checkpoint of another model,
    naming both."""
    path = Path(path)
    state = _read_state(path)
    if expected is not None:
        found = ModelFingerprint(**state["fingerprint"])
        if found != expected:
            raise CheckpointError(
                f"{path}: checkpoint is for {found.describe()}, but the model is {expected.describe()}; "
                "use another checkpoint path or start without resume"
            )
    if state["format_version"] == LEGACY_FORMAT_VERSION:
        return state
    index = state.pop("weights")
    state["model"] = _read_model_state(path, index)
    return state


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt or not a torch file: all are the user's to fix
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
    version = state.get("format_version") if isinstance(state, dict) else None
    if version not in (FORMAT_VERSION, LEGACY_FORMAT_VERSION) or (version == FORMAT_VERSION and "weights" not in state):
        raise CheckpointError(f"{path}: not a d2v training checkpoint (format {FORMAT_VERSION} expected)")
    return state


def _read_model_state(path: Path, index: dict[str, Any]) -> dict[str, Any]:
    weights = path.parent / index["file"]
    if not weights.is_file():
        raise CheckpointError(f"{path}: its weights file {weights.name} is missing (it must sit beside the checkpoint)")
    if _sha256(weights) != index["sha256"]:
        raise CheckpointError(f"{weights}: sha256 does not match the one {path.name} recorded; the weights "
                              "file is corrupt or from another checkpoint")
    try:
        tensors = safetensors.torch.load_file(str(weights), device="cpu")
    except Exception as exc:  # noqa: BLE001 - a damaged file is the user's to replace
        raise CheckpointError(f"{weights}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    model: OrderedDict[str, Any] = OrderedDict()
    for key in index["keys"]:
        if key in index["extras"]:
            model[key] = index["extras"][key]
        else:
            model[key] = tensors[index["aliases"].get(key, key)]
    if index["metadata"]:
        model._metadata = index["metadata"]  # type: ignore[attr-defined] - module versions, as state_dict() keeps them
    return model


def data_position_of(payload: dict[str, Any]) -> DataPosition:
    return DataPosition(**payload["data_position"])
