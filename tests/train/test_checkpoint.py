import random
from collections import OrderedDict

import numpy as np
import pytest
import safetensors.torch
import torch

from d2v.train.checkpoint import (
    CheckpointError,
    DataPosition,
    ModelFingerprint,
    build_payload,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    weights_file_of,
)
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
    assert len(list(tmp_path.glob("checkpoint.*.safetensors"))) == 2  # new weights, not committed
    after = load_checkpoint(path)
    assert after["step"] == 7 and int(after["model"]["num_updates"]) == 0
    assert all(torch.equal(before[k], after["model"][k]) for k in before)

    monkeypatch.undo()  # the next save commits and removes every unreferenced weights file
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
