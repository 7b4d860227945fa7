"""Every shipped profile resolves with the strict params loader and builds its model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from d2v.config import Params, from_mapping
from d2v.errors import ConfigError
from d2v.models import DataShape, build_model, model_spec
from d2v.profiles.apply import plan_profile
from d2v.profiles.catalog import find_profile, list_profiles, read_profile

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"
SHIPPED = sorted(p.stem for p in PROFILES.glob("*.yaml"))


def test_the_paper_runs_are_shipped() -> None:
    # Base for every modality, large where the paper has one (image, speech).
    assert {"image-base", "image-large", "speech-base", "speech-large", "text-base"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_resolves_strictly_and_builds_its_model(name: str) -> None:
    profile = find_profile(name, PROFILES)
    plan = plan_profile(profile, ROOT / "params.yaml")
    params = plan.params
    assert params == from_mapping(Params, yaml.safe_load(plan.text)), "the plan's params are its text's"
    choice = getattr(params.model, profile.modality)
    assert choice.preset in ("base", "large") and choice.overrides == {}, "a paper run uses the released model"
    data = params.data
    shape = {
        "image": DataShape(image_size=data.image.image_size, channels=data.image.channels),
        "text": DataShape(vocab_size=data.text.vocab_size),
        "speech": DataShape(),
    }[profile.modality]
    with torch.device("meta"):  # shapes and wiring only: a large model's weights are not needed
        model = build_model(model_spec(profile.modality, choice, shape))
    assert model.spec.encoder.dim >= 768
    recipe = getattr(params.pretrain, profile.modality)
    assert recipe.max_steps >= 100_000 and profile.deviations, "paper-scale updates, departures listed"


def test_profile_file_errors_name_the_file_and_field(tmp_path: Path) -> None:
    text = (PROFILES / "image-base.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "image-base.yaml"
    bad.write_text(text.replace("reference_gpus: 16", "reference_gpus: sixteen"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"image-base.yaml: reference_gpus: expected int, got str 'sixteen'"):
        read_profile(bad)
    renamed = tmp_path / "other.yaml"
    renamed.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"other.yaml: name: 'image-base' differs from the file name 'other'"):
        read_profile(renamed)
    bad.write_text(text.replace("modality: image", "modality: video"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"modality: 'video' \(expected one of: image, speech, text\)"):
        read_profile(bad)


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"profile 'image-huge': no .*image-huge.yaml \(known profiles: .*image-base"):
        find_profile("image-huge", PROFILES)


def test_list_is_sorted_by_name() -> None:
    assert [p.name for p in list_profiles(PROFILES)] == SHIPPED
