import errno
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from d2v.train.checkpoint import (
    CheckpointError,
    DataPosition,
    ModelFingerprint,
    build_payload,
    load_checkpoint,
    save_checkpoint,
    weights_file_of,
)
from d2v.train.rng_state import capture_rng, restore_rng
from d2v.train._selftest import StandInModel

FP = ModelFingerprint("image", 2, "tiny", "abc")


def _draws(gen: torch.Generator) -> tuple:
    torch_draw, gen_draw = float(torch.rand(())), float(torch.rand((), generator=gen))
    return (random.random(), float(np.random.rand()), torch_draw, gen_draw)


def _payload(model: torch.nn.Module, rng: dict, fingerprint: ModelFingerprint = FP) -> dict:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    return build_payload(
        fingerprint=fingerprint, model_state=model.state_dict(), optimizer_state=opt.state_dict(),
        scheduler_state={"step_index": 7}, rng_per_rank=[rng], step=7,
        position=DataPosition(epoch=2, batches_consumed=3), progress={"first_loss": 1.5},
    )


def test_round_trip_restores_weights_position_and_every_rng(tmp_path) -> None:
    gen = torch.Generator().manual_seed(5)
    np.random.randn()  # leave numpy with a cached gaussian, the awkward part of its state
    model = StandInModel()
    model.ema_step()
    path = tmp_path / "sub" / "ckpt.pt"
    save_checkpoint(path, _payload(model, capture_rng(gen)))
    expected = _draws(gen)

    payload = load_checkpoint(path, expected=FP)
    restore_rng(payload["rng"][0], gen)
    assert _draws(gen) == expected
    fresh = StandInModel()
    fresh.load_state_dict(payload["model"])
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert int(fresh.num_updates) == 1  # teacher and update counter travel with the student
    assert payload["step"] == 7 and payload["data_position"] == {"epoch": 2, "batches_consumed": 3}
    # the torch file and its weights, nothing else (no temporary file left)
    assert {p.name for p in path.parent.iterdir()} == {"ckpt.pt", weights_file_of(path).name}
    assert weights_file_of(path).name.startswith("ckpt.") and weights_file_of(path).suffix == ".safetensors"


def test_another_model_is_refused_naming_both(tmp_path) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _payload(StandInModel(), capture_rng(torch.Generator())))
    other = ModelFingerprint("image", 2, "base", "def")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, expected=other)
    message = str(info.value)
    assert "preset 'tiny' (spec abc)" in message and "preset 'base' (spec def)" in message


def test_fingerprint_hash_covers_the_spec() -> None:
    a = ModelFingerprint.of("text", 1, "tiny", {"depth": 2, "dim": 64})
    assert a == ModelFingerprint.of("text", 1, "tiny", {"dim": 64, "depth": 2})
    assert a != ModelFingerprint.of("text", 1, "tiny", {"depth": 3, "dim": 64})


def test_corrupt_missing_and_foreign_files(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a d2v training checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def _weights(payload: dict) -> dict:
    return {k: v.clone() if torch.is_tensor(v) else v for k, v in payload["model"].items()}


def test_a_crash_between_the_two_writes_leaves_the_old_checkpoint(tmp_path, monkeypatch) -> None:
    path = tmp_path / "checkpoint.pt"
    old_model, new_model = StandInModel(), StandInModel()
    new_model.ema_step()
    save_checkpoint(path, _payload(old_model, capture_rng(torch.Generator())))
    before = _weights(load_checkpoint(path))

    def killed(*args, **kwargs):  # the process dies after the new weights are on disk
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(torch, "save", killed)
    new = _payload(new_model, capture_rng(torch.Generator()))
    new["step"] = 8
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, new)
    # the new weights, never committed, are removed on the way out; the old checkpoint is untouched
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint.pt", weights_file_of(path).name}
    after = load_checkpoint(path)
    assert after["step"] == 7 and int(after["model"]["num_updates"]) == 0
    assert all(torch.equal(before[k], after["model"][k]) for k in before)

    # a SIGKILL there leaves them behind: the next save commits and removes every unreferenced one
    (tmp_path / "checkpoint.0123456789abcdef.safetensors").write_bytes(b"killed save's weights")
    monkeypatch.undo()
    save_checkpoint(path, new)
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint.pt", weights_file_of(path).name}
    assert int(load_checkpoint(path)["model"]["num_updates"]) == 1


class Tied(torch.nn.Module):
    """Tied weights (an encoder shared by student and teacher) and a non-tensor extra state."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(3, 4, bias=False)
        self.head = torch.nn.Linear(3, 4, bias=False)
        self.head.weight = self.embed.weight
        self.updates = 5

    def get_extra_state(self) -> int:
        return self.updates

    def set_extra_state(self, state: int) -> None:
        self.updates = state


def test_tied_weights_and_non_tensor_state_round_trip(tmp_path) -> None:
    model = Tied()
    state = model.state_dict()
    assert isinstance(state["_extra_state"], int)
    assert state["head.weight"].data_ptr() == state["embed.weight"].data_ptr()  # one storage, two names
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _payload(model, capture_rng(torch.Generator())))
    # stored once: safetensors would refuse two names for one tensor
    assert set(safetensors.torch.load_file(str(weights_file_of(path)))) == {"embed.weight"}
    loaded = load_checkpoint(path)["model"]
    assert list(loaded) == list(state) and loaded["_extra_state"] == 5
    assert loaded["head.weight"] is loaded["embed.weight"]
    fresh = Tied()
    fresh.updates = 0
    fresh.load_state_dict(loaded)
    assert fresh.updates == 5 and torch.equal(fresh.head.weight, model.embed.weight)
    assert fresh.head.weight is fresh.embed.weight  # the module's own tie is untouched


def test_format_1_checkpoints_still_load_and_missing_or_swapped_weights_are_refused(tmp_path) -> None:
    payload = _payload(StandInModel(), capture_rng(torch.Generator()))
    legacy = dict(payload, format_version=1)
    torch.save(legacy, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt", expected=FP)["step"] == 7

    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, payload)
    weights = weights_file_of(path)
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    with pytest.raises(CheckpointError, match="sha256 does not match the one ckpt.pt recorded"):
        load_checkpoint(path)
    weights.unlink()
    with pytest.raises(CheckpointError, match=f"its weights file {weights.name} is missing"):
        load_checkpoint(path)


# --------------------------------------------------------------------------------------------------
# Stale temporaries and failed writes
# --------------------------------------------------------------------------------------------------


def test_a_save_removes_the_temporaries_a_killed_save_left_and_nothing_else(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _payload(StandInModel(), capture_rng(torch.Generator())))
    stale = [".checkpoint.d2v-tmp-0badf00d.safetensors", ".checkpoint.pt.d2v-tmp-12ab34cd"]
    others = [
        ".other.d2v-tmp-0badf00d.safetensors",  # another checkpoint's (or file's) temporary
        ".checkpoint.d2v-tmp-0badf00d.safetensors.bak",  # not d2v's pattern
        ".checkpoint.d2v-tmp-nothex00.safetensors",
        ".checkpoint.pt.d2v-tmp-12ab34cd-extra",
        "checkpoint.d2v-tmp-0badf00d.safetensors",  # no leading dot: not d2v's name
        "notes.txt",
    ]
    for name in stale + others:
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / ".checkpoint.pt.d2v-tmp-deadbeef").mkdir()  # a directory is never d2v's temporary file
    save_checkpoint(path, _payload(StandInModel(), capture_rng(torch.Generator())))
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"checkpoint.pt", weights_file_of(path).name, ".checkpoint.pt.d2v-tmp-deadbeef", *others}


def test_resume_removes_a_killed_saves_temporary(tmp_path) -> None:
    """The reproducer: a temporary beside the checkpoint of a run that is resumed is gone afterwards."""
    from d2v.train._selftest import FINGERPRINT, SyntheticDataset, tiny_config
    from d2v.train.distributed import DistEnv
    from d2v.train.loop import RunPaths, pretrain

    def run(steps: int, resume: bool) -> None:
        torch.manual_seed(0)
        paths = RunPaths(checkpoint=tmp_path / "ckpt.pt", metrics_dir=tmp_path / "metrics")
        pretrain(StandInModel(), SyntheticDataset(64), tiny_config(max_steps=steps, checkpoint_every=4),
                 modality="image", fingerprint=FINGERPRINT, seed=0, paths=paths, env=DistEnv(0, 1, 0, torch.device("cpu")),
                 resume=resume)

    run(4, resume=False)
    (tmp_path / ".ckpt.d2v-tmp-0badf00d.safetensors").write_bytes(b"half")
    run(8, resume=True)
    assert not [p.name for p in tmp_path.iterdir() if ".d2v-tmp-" in p.name]
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 8


_FULL_DISK_CHILD = """
import json, resource, sys, torch
from pathlib import Path
from d2v.train.checkpoint import CheckpointError, save_checkpoint
from d2v.train.rng_state import capture_rng
from d2v.train._selftest import StandInModel
sys.path.insert(0, sys.argv[1])
from test_checkpoint import _payload
path, limits = Path(sys.argv[2]), json.loads(sys.argv[3])
model = StandInModel()
model.ema_step()
payload = _payload(model, capture_rng(torch.Generator()))
payload["step"] = 8
results = {}
for which, limit in limits.items():
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))  # Python ignores SIGXFSZ
    try:
        save_checkpoint(path, payload)
        results[which] = {"error": None}
    except CheckpointError as exc:
        results[which] = {"error": str(exc), "files": sorted(p.name for p in path.parent.iterdir())}
print(json.dumps(results))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE makes writes fail with EFBIG on Linux")
def test_a_full_disk_raises_a_checkpoint_error_naming_the_file_and_leaves_the_old_checkpoint(tmp_path) -> None:
    """A real failed write: RLIMIT_FSIZE (EFBIG, where ENOSPC would strike) in a child process, inside the
    weights file, then inside checkpoint.pt (torch's zip writer masks the OSError)."""
    path = tmp_path / "checkpoint.pt"
    payload = _payload(StandInModel(), capture_rng(torch.Generator()))
    payload["progress"]["padding"] = "x" * 20000  # checkpoint.pt larger than the weights
    save_checkpoint(path, payload)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    weights = weights_file_of(path).stat().st_size
    assert path.stat().st_size > weights + 4000
    limits = {"weights": weights // 2, "checkpoint": weights + 2000}
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD, str(Path(__file__).parent), str(path), json.dumps(limits)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for which in limits:
        message = results[which]["error"]
        assert message is not None, which
        assert message.startswith(f"{path}: cannot write ") and "[Errno 27] File too large" in message, message
        assert "the previous checkpoint is intact" in message and "\n" not in message
        assert results[which]["files"] == sorted(before), results  # no temporary, no new weights
    assert "weights file" in results["weights"]["error"]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert load_checkpoint(path)["step"] == 7


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_commit_removes_the_new_weights_but_never_the_committed_ones(tmp_path, monkeypatch) -> None:
    path = tmp_path / "checkpoint.pt"
    model = StandInModel()
    save_checkpoint(path, _payload(model, capture_rng(torch.Generator())))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full_disk_in_zip_writer(obj, fh, *args, **kwargs):  # what torch.save raises on a full disk
        fh.write(b"PK partial")
        try:
            _enospc()
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk_in_zip_writer)
    for weights_of in (model, StandInModel()):  # the same weights (file already there) and new ones
        with pytest.raises(CheckpointError) as info:
            save_checkpoint(path, _payload(weights_of, capture_rng(torch.Generator())))
        message = str(info.value)
        assert f"{path}: cannot write the checkpoint: [Errno 28] No space left on device" in message
        assert "the previous checkpoint is intact" in message
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 7


def test_a_failed_weights_write_names_the_os_error_and_leaves_no_temporary(tmp_path, monkeypatch) -> None:
    path = tmp_path / "checkpoint.pt"

    def rust_error(tensors, filename, metadata=None):  # safetensors reports the errno only in its text
        Path(filename).write_bytes(b"half")
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", rust_error)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, _payload(StandInModel(), capture_rng(torch.Generator())))
    message = str(info.value)
    assert message.startswith(f"{path}: cannot write its weights file") and "[Errno 28] No space left" in message
    assert "no checkpoint was written" in message
    assert list(tmp_path.iterdir()) == []


def _save_at(path: Path, step: int, keep_last: int) -> None:
    torch.manual_seed(step)  # other weights at every step
    payload = _payload(StandInModel(), capture_rng(torch.Generator()))
    save_checkpoint(path, {**payload, "step": step}, keep_last=keep_last)


def _weights_files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.safetensors")}


def test_keep_last_keeps_the_last_k_saves_loadable_and_nothing_else(tmp_path) -> None:
    from d2v.train.checkpoint import step_copies

    path = tmp_path / "checkpoint.pt"
    for step in (10, 20, 30, 40):
        _save_at(path, step, keep_last=3)
    copies = step_copies(path)
    assert [p.name for p in copies] == [f"checkpoint-step{s:08d}.pt" for s in (20, 30, 40)]
    assert [load_checkpoint(p)["step"] for p in copies] == [20, 30, 40]  # each with its own weights
    assert load_checkpoint(path)["step"] == 40 and weights_file_of(path) == weights_file_of(copies[-1])
    assert _weights_files(tmp_path) == {weights_file_of(p).name for p in copies}  # step 10's removed

    # A run replaced from step 0 (another run identity): the old run's later copies are not "the last".
    _save_at(path, 5, keep_last=3)
    assert [p.name for p in step_copies(path)] == ["checkpoint-step00000005.pt"]
    assert _weights_files(tmp_path) == {weights_file_of(path).name}


def test_keep_last_1_keeps_only_the_latest(tmp_path) -> None:
    from d2v.train.checkpoint import step_copies

    path = tmp_path / "checkpoint.pt"
    _save_at(path, 10, keep_last=2)
    _save_at(path, 20, keep_last=1)  # lowered: the copies go
    assert step_copies(path) == [] and _weights_files(tmp_path) == {weights_file_of(path).name}
