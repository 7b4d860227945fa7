"""A tiny image project for the process faults, and its undisturbed runs (built once per process).

`write_project(root)` lays out what `dvc repro` would run in: a params.yaml (the repository's own,
with the image sizes, the pretraining recipe and the evaluation shrunk) whose data directories are
the layout's relative defaults, so every `d2v` command runs with `cwd=root` exactly as the DVC stage
does. The image source is the embedded Fashion-MNIST (/usr/share/datasets/fashion-mnist); where that
Debian package is missing, deterministic random IDX files of the same format stand in.

`reference()` runs the undisturbed pipeline once per process (`d2v data prepare image`, `d2v
pretrain image`, `d2v evaluate image`, each a real subprocess) and keeps the directory: every
pretraining and evaluation scenario compares against it and starts from copies of its inputs.
`start_reference()` starts it in the background, so that the first scenario's victim runs meanwhile.
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import gzip
import json
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from process_control import run, sha256_file

REPO = Path(__file__).resolve().parents[2]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MODALITY = "image"
STEPS, EVERY = 12, 4  # pretraining updates, checkpoint every EVERY (a checkpoint at 4, 8 and 12)
TIMING_KEYS = frozenset({"wall_time_s", "train_time_s", "samples_per_s"})

# Seconds here: prepare 0.5, pretrain 6 (imports; 12 updates of the tiny preset take 1.5), evaluate 8.
PROJECT_DATA = {"train_size": 400, "valid_size": 100, "test_size": 200, "shard_size": 50}
PROJECT_PRETRAIN = {"batch_size": 16, "max_steps": STEPS, "warmup_steps": 1, "checkpoint_every": EVERY,
                    "log_every": 1}
PROJECT_EVAL = {"n_test": 100, "linear_probe": {"epochs": 5, "n_train": 150, "n_valid": 50},
                "finetune": {"epochs": 1, "n_train": 64, "batch_size": 32}}


def _merge(tree: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict):
            _merge(tree[key], value)
        else:
            tree[key] = value


_SOURCE_LOCK = threading.Lock()
_SOURCE: Path | None = None
_SCRATCH: Path | None = None


def scratch() -> Path:
    """A directory for this process's shared state (removed at exit)."""
    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = Path(tempfile.mkdtemp(prefix="d2v-process-faults-"))
        atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
    return _SCRATCH


def image_source() -> Path:
    """The Fashion-MNIST directory: the Debian package's, or random IDX files of its format."""
    global _SOURCE
    with _SOURCE_LOCK:
        if _SOURCE is None:
            names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
            if all((FASHION_MNIST / n).is_file() for n in names):
                _SOURCE = FASHION_MNIST
            else:
                _SOURCE = scratch() / "fashion-mnist-standin"
                _SOURCE.mkdir()
                rng = np.random.default_rng(0)
                for prefix, n in (("train", 4000), ("t10k", 600)):
                    _write_idx(_SOURCE / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
                    _write_idx(_SOURCE / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
        return _SOURCE


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def write_project(root: Path, *, seed: int = 0, image: dict[str, Any] | None = None) -> Path:
    """params.yaml for the tiny image project under `root` (created); returns `root`."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    _merge(params, {"seed": seed,
                    "data": {"image": {"fashion_mnist_dir": str(image_source()), **PROJECT_DATA, **(image or {})}},
                    "pretrain": {MODALITY: PROJECT_PRETRAIN}, "evaluate": {MODALITY: copy.deepcopy(PROJECT_EVAL)}})
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


# ------------------------------------------------------------------------------ relative paths


PREPARED = Path("data/prepared") / MODALITY
MODELS = Path("models") / MODALITY
CHECKPOINT = MODELS / "checkpoint.pt"
PRETRAIN_LOG = Path("metrics/pretrain") / MODALITY
STEP_COUNTER = PRETRAIN_LOG / "plots" / "metrics" / "samples_per_s.tsv"  # the last metric of each update
EVAL_DIR = Path("metrics/eval")
EVAL_OUTPUTS = (EVAL_DIR / f"{MODALITY}.json", EVAL_DIR / f"{MODALITY}_confusion.csv",
                EVAL_DIR / MODALITY / "metrics.json")


def steps_logged(root: Path) -> int:
    """Updates the pretraining log holds (complete lines of its last metric's file, header excluded)."""
    try:
        text = (root / STEP_COUNTER).read_text()
    except FileNotFoundError:
        return 0
    return max(text.count("\n") - 1, 0)


def checkpoint_files(root: Path) -> dict[str, str] | None:
    """checkpoint.pt and the weights file it names -> sha256; None if there is no checkpoint.pt."""
    from d2v.train.checkpoint import weights_file_of

    path = root / CHECKPOINT
    if not path.is_file():
        return None
    weights = weights_file_of(path)
    files = {path.name: sha256_file(path)}
    if weights is not None:
        files[weights.name] = sha256_file(weights) if weights.is_file() else "missing"
    return files


def load_checkpoint(root: Path) -> dict[str, Any]:
    from d2v.train.checkpoint import load_checkpoint as load

    return load(root / CHECKPOINT)


def same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two loaded checkpoints hold exactly the same state dict (every tensor bit-equal) and step."""
    import torch

    ma, mb = a["model"], b["model"]
    if a["step"] != b["step"] or list(ma) != list(mb):
        return False
    return all(torch.equal(ma[k], mb[k]) if torch.is_tensor(ma[k]) else ma[k] == mb[k] for k in ma)


def pretrain_record(root: Path) -> dict[str, Any]:
    """What must equal between two complete pretraining runs: the summary and every per-step row
    (timings left out), and the name of the weights file (its sha256 prefix: the weights' bytes)."""
    from step_log import step_rows

    summary = json.loads((root / PRETRAIN_LOG / "metrics.json").read_text())
    rows = [row[:-1] for row in step_rows(root / PRETRAIN_LOG)]  # every column but samples_per_s
    files = checkpoint_files(root) or {}
    return {"summary": {k: v for k, v in summary.items() if k not in TIMING_KEYS}, "steps": rows,
            "weights_file": sorted(n for n in files if n.endswith(".safetensors"))}


def _strip_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    return value


def parse_eval_output(rel: Path, text: str) -> Any:
    """One evaluation output as compared between runs: JSON parsed, wall-clock fields left out."""
    return _strip_timings(json.loads(text)) if rel.suffix == ".json" else text


def eval_record(root: Path) -> dict[str, Any]:
    """What must equal between two complete evaluations: every output, wall-clock fields left out."""
    return {str(rel): parse_eval_output(rel, (root / rel).read_text()) for rel in EVAL_OUTPUTS}


# ------------------------------------------------------------------------------ the reference


@dataclass(frozen=True)
class Reference:
    root: Path  # prepared data, the final checkpoint, the pretraining log and the evaluation outputs
    pretrain: dict[str, Any]  # pretrain_record
    evaluation: dict[str, Any] | None  # eval_record (None in the pretraining-only reference)
    pretrain_seconds: float
    eval_seconds: float | None


_LOCK = threading.Lock()
_PREPARED: Path | None = None
_EXECUTOR: ThreadPoolExecutor | None = None
_PRETRAINED: Future[Reference] | None = None
_EVALUATED: Future[Reference] | None = None
WAITED = [0.0]  # seconds callers spent blocked on the reference; scenarios leave them out of their time


def _prepared_reference() -> Path:
    global _PREPARED
    if _PREPARED is None:
        root = write_project(scratch() / "reference")
        run(["data", "prepare", MODALITY], root)
        _PREPARED = root
    return _PREPARED


def _pretrain_reference(root: Path) -> Reference:
    began = time.perf_counter()
    run(["pretrain", MODALITY], root)
    return Reference(root, pretrain_record(root), None, time.perf_counter() - began, None)


def _evaluate_reference(root: Path, pretrained: Future[Reference]) -> Reference:
    ref = pretrained.result()
    began = time.perf_counter()
    run(["evaluate", MODALITY], root)
    return dataclasses.replace(ref, evaluation=eval_record(root), eval_seconds=time.perf_counter() - began)


def start_reference(*, evaluated: bool = False) -> Future[Reference]:
    """Prepare the reference's data (now), start its pretraining (and evaluation) in the background
    unless already started, and return the future of the reference: a scenario runs its victim
    meanwhile (two single-threaded processes on the machine's cores) and waits only to compare."""
    global _EXECUTOR, _PRETRAINED, _EVALUATED
    with _LOCK:
        root = _prepared_reference()
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="d2v-fault-reference")
        if _PRETRAINED is None:
            _PRETRAINED = _EXECUTOR.submit(_pretrain_reference, root)
        if evaluated and _EVALUATED is None:
            _EVALUATED = _EXECUTOR.submit(_evaluate_reference, root, _PRETRAINED)  # runs after pretraining
        return _EVALUATED if evaluated else _PRETRAINED


def reference(*, evaluated: bool = False) -> Reference:
    """The undisturbed runs (prepare + pretrain, and the evaluation with `evaluated`), built once."""
    future = start_reference(evaluated=evaluated)
    began = time.perf_counter()
    try:
        return future.result()
    finally:
        WAITED[0] += time.perf_counter() - began


def project_from_reference(root: Path, *, checkpoint: bool = False) -> Path:
    """A project under `root` with the reference's prepared data (and its final checkpoint)."""
    write_project(root)
    ref_root = _prepared_reference() if not checkpoint else reference().root
    shutil.copytree(ref_root / PREPARED, root / PREPARED)
    if checkpoint:
        shutil.copytree(ref_root / MODELS, root / MODELS)
    return root


__all__ = ["CHECKPOINT", "EVAL_DIR", "EVAL_OUTPUTS", "EVERY", "parse_eval_output", "MODALITY", "MODELS", "PREPARED", "PRETRAIN_LOG",
           "REPO", "Reference", "STEPS", "checkpoint_files", "eval_record", "image_source", "load_checkpoint",
           "pretrain_record", "project_from_reference", "reference", "same_model", "scratch", "start_reference",
           "steps_logged", "write_project", "WAITED"]
