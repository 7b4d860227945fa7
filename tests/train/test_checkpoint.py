import random

import numpy as np
import pytest
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
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # no temporary file left


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
