"""Which run a checkpoint belongs to, so `--resume` continues only the run it would reproduce.

`d2v pretrain --resume` (the pretrain@<modality> stage, and so a Prefect retry) continues from the
checkpoint only when it was written by the same run: the same model, recipe and seed, the same
prepared data and the same training code. Anything else starts from step 0: DVC re-runs the stage
precisely because one of those changed, and continuing the old weights would silently mix two runs.

The identity is a sha256 over
- the model fingerprint (every field of the resolved spec) and the recipe (`TrainConfig`) minus the
  fields that do not change the weights (how often to log or checkpoint);
- the seed, and the weights it starts from (a warm start's or `model.<m>.init_from`'s checkpoint,
  by its content-addressed weights file);
- the prepared data: `meta.json` and `manifest.csv` by content, every other file by name and size
  (hashing ImageNet's shards at every start would take minutes; the prepare stage already records
  their content, and a changed shard changes the manifest or its size);
- the code the stage depends on in dvc.yaml: d2v/core, d2v/modalities, d2v/models, d2v/train,
  d2v/data/datasets.py and d2v/data/packing.py, by content.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import d2v
from d2v.config import to_mapping

# Recipe fields that change how often the run reports or saves, not what it computes.
NOT_IN_IDENTITY = frozenset({"checkpoint_every", "keep_last", "log_every", "num_workers"})
CODE_PATHS = ("core", "modalities", "models", "train", "data/datasets.py", "data/packing.py")
CONTENT_FILES = frozenset({"meta.json", "manifest.csv"})


def run_identity(fingerprint: Any, cfg: Any, seed: int, data_root: Path, init: Path | None = None) -> str:
    """`init`: the checkpoint the run's weights start from (None: fresh weights from the seed)."""
    recipe = {k: v for k, v in to_mapping(cfg).items() if k not in NOT_IN_IDENTITY}
    parts = {
        "model": dataclasses.asdict(fingerprint),
        "recipe": recipe,
        "seed": seed,
        "init": None if init is None else initial_weights(init),
        "data": data_digest(data_root),
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode("utf-8")).hexdigest()


def initial_weights(path: Path) -> str:
    """A checkpoint's weights by content: the name of its safetensors file carries their sha256
    (d2v/train/checkpoint.py); a single-file (format 1) checkpoint is hashed whole."""
    from d2v.train.checkpoint import weights_file_of

    weights = weights_file_of(path)
    return weights.name if weights is not None else hashlib.sha256(Path(path).read_bytes()).hexdigest()


def data_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        digest.update(name.encode("utf-8") + b"\0")
        if path.name in CONTENT_FILES:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        else:
            digest.update(str(path.stat().st_size).encode("ascii"))
    return digest.hexdigest()


def code_digest() -> str:
    package = Path(d2v.__file__).parent
    digest = hashlib.sha256()
    for entry in CODE_PATHS:
        root = package / entry
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            digest.update(path.relative_to(package).as_posix().encode("utf-8") + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
