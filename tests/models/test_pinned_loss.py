"""Pinned losses: every preset, fixed initial weights, a fixed batch, fixed masks -> the loss to 1e-4.

A change to any default behaviour of the core (masking, targets, loss, decoder, front ends, init)
moves one of these numbers. When a change is meant to, re-pin with
`PYTHONPATH=tests python tests/models/test_pinned_loss.py` (prints the table) and say why in the commit message.
"""

from __future__ import annotations

import pytest
import torch

from d2v.config import ModelChoice
from d2v.core.data2vec import Data2Vec
from d2v.models import build_model, model_spec, registered_presets

from tiny_models import batch_for, tiny_model

# (modality, version, preset) at the tiny test width of tests/tiny_models.py
PINNED_SHRUNK: dict[tuple[str, int, str], float] = {
    ('image', 1, 'tiny'): 0.307374,
    ('image', 1, 'base'): 0.331301,
    ('image', 1, 'large'): 0.331304,
    ('image', 2, 'tiny'): 9.021195,
    ('image', 2, 'base'): 16.165634,
    ('image', 2, 'large'): 9.331079,
    ('speech', 1, 'tiny'): 4.420746,
    ('speech', 1, 'base'): 4.462339,
    ('speech', 1, 'large'): 4.462339,
    ('speech', 2, 'tiny'): 4.486682,
    ('speech', 2, 'base'): 7.896364,
    ('speech', 2, 'large'): 7.709611,
    ('text', 1, 'tiny'): 2.291895,
    ('text', 1, 'base'): 2.276315,
    ('text', 1, 'large'): 2.276315,
    ('text', 2, 'tiny'): 16.067184,
    ('text', 2, 'base'): 16.006302,
    ('text', 2, 'large'): 16.006302,
}
# (modality, version) of the demo's actual `tiny` preset, unshrunk
PINNED_TINY: dict[tuple[str, int], float] = {
    ('image', 1): 0.321254,
    ('image', 2): 18.485916,
    ('speech', 1): 7.481800,
    ('speech', 2): 7.882906,
    ('text', 1): 5.758672,
    ('text', 2): 32.672676,
}


def demo_tiny_model(modality: str, version: int) -> Data2Vec:
    torch.manual_seed(0)
    return build_model(model_spec(modality, ModelChoice(version=version, preset="tiny")))


def demo_batch(modality: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    if modality == "image":
        return {"image": torch.randn(2, 1, 28, 28, generator=g)}
    if modality == "speech":
        return {"waveform": torch.randn(2, 16_000, generator=g)}
    tokens = torch.randint(5, 8000, (2, 32), generator=g)
    return {"tokens": tokens, "padding_mask": torch.zeros_like(tokens, dtype=torch.bool)}


def loss_of(model: Data2Vec, batch: dict[str, torch.Tensor]) -> float:
    model.train()
    torch.manual_seed(3)  # dropout and the v2 decoder's noise
    return float(model(batch, generator=torch.Generator().manual_seed(0)).loss.detach())


@pytest.mark.parametrize(("modality", "version", "preset"), registered_presets())
def test_shrunk_preset_loss_is_pinned(modality: str, version: int, preset: str) -> None:
    model = tiny_model(modality, version, preset)
    assert loss_of(model, batch_for(model)) == pytest.approx(PINNED_SHRUNK[(modality, version, preset)], rel=1e-4, abs=1e-4)


@pytest.mark.parametrize(("modality", "version"), sorted(PINNED_TINY))
def test_demo_tiny_preset_loss_is_pinned(modality: str, version: int) -> None:
    loss = loss_of(demo_tiny_model(modality, version), demo_batch(modality))
    assert loss == pytest.approx(PINNED_TINY[(modality, version)], rel=1e-4, abs=1e-4)


def test_pins_cover_every_registered_preset() -> None:
    assert set(PINNED_SHRUNK) == set(registered_presets())
    assert set(PINNED_TINY) == {(m, v) for m, v, p in registered_presets() if p == "tiny"}


if __name__ == "__main__":  # re-pin: print both tables in the form above
    print("PINNED_SHRUNK = {")
    for key in registered_presets():
        model = tiny_model(*key)
        print(f"    {key!r}: {loss_of(model, batch_for(model)):.6f},")
    print("}\nPINNED_TINY = {")
    for modality, version, preset in registered_presets():
        if preset == "tiny":
            print(f"    {(modality, version)!r}: {loss_of(demo_tiny_model(modality, version), demo_batch(modality)):.6f},")
    print("}")
