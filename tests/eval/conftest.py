"""Small stand-in encoders honouring the FeatureEncoder contract, and synthetic labelled data."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch.utils.data import Dataset

from eval_standins import PatchEmbed, TokenEmbed, FrameEmbed, StandInEncoder, make_image_splits


@pytest.fixture
def image_encoder_factory() -> Callable[[int], StandInEncoder]:
    def build(seed: int = 0) -> StandInEncoder:
        torch.manual_seed(seed)
        return StandInEncoder(PatchEmbed(1, 16, 4), dim=16, depth=2)

    return build


@pytest.fixture
def text_encoder_factory() -> Callable[[int], StandInEncoder]:
    def build(seed: int = 0) -> StandInEncoder:
        torch.manual_seed(seed)
        return StandInEncoder(TokenEmbed(32, 16), dim=16, depth=2, with_cls=False)

    return build


@pytest.fixture
def speech_encoder_factory() -> Callable[..., StandInEncoder]:
    def build(seed: int = 0, frame: int = 8) -> StandInEncoder:
        torch.manual_seed(seed)
        return StandInEncoder(FrameEmbed(32, frame), dim=32, depth=2, with_cls=False)

    return build


@pytest.fixture
def image_splits() -> dict[str, Dataset]:
    return make_image_splits(256, 128)
