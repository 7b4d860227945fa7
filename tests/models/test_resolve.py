"""Spec resolution: released base -> preset -> prepared data -> params overrides, with provenance."""

from __future__ import annotations

import pytest

from d2v.config import ModelChoice
from d2v.errors import ConfigError
from d2v.models import DataShape, preset_changes, registered_presets, released_spec, resolve_spec


def test_base_preset_is_the_released_configuration_unchanged() -> None:
    for modality, version, preset in registered_presets():
        if preset == "base":
            resolved = resolve_spec(modality, ModelChoice(version=version, preset="base"))
            assert resolved.spec == released_spec(modality, version)
            assert set(resolved.set_by.values()) == {"released"}


def test_tiny_preset_changes_are_named_and_params_overrides_win() -> None:
    choice = ModelChoice(version=2, preset="tiny", overrides={"ema": {"tau_end": 0.9995}, "mask": {"ratio": 0.7}})
    resolved = resolve_spec("image", choice)
    spec = resolved.spec
    assert (spec.ema.tau0, spec.ema.tau_end, spec.ema.anneal_steps) == (0.99, 0.9995, 1000)
    assert spec.mask.ratio == 0.7 and spec.encoder.dim == 128
    assert resolved.set_by["ema.tau0"] == "preset tiny"
    assert resolved.set_by["ema.tau_end"] == "params"
    assert resolved.set_by["mask.ratio"] == "params"
    assert resolved.set_by["mask.kind"] == "released"
    assert resolved.set_by["encoder.dim"] == "preset tiny"


def test_prepared_data_sets_image_size_channels_and_vocabulary() -> None:
    shape = DataShape.from_meta({"height": 32, "width": 32, "channels": 3, "num_classes": 10})
    resolved = resolve_spec("image", ModelChoice(version=2, preset="tiny"), shape)
    assert resolved.spec.image is not None
    assert (resolved.spec.image.image_size, resolved.spec.image.in_chans, resolved.spec.image.patch_size) == (32, 3, 4)
    assert resolved.set_by["image.image_size"] == "data" and resolved.set_by["image.patch_size"] == "preset tiny"
    text = resolve_spec("text", ModelChoice(version=1, preset="base"), DataShape.from_meta({"vocab_size": 1234}))
    assert text.spec.text is not None and text.spec.text.vocab_size == 1234
    assert text.set_by["text.vocab_size"] == "data"


def test_data_shape_does_not_touch_other_modalities() -> None:
    shape = DataShape(image_size=32, channels=3, vocab_size=99)
    speech = resolve_spec("speech", ModelChoice(version=2, preset="tiny"), shape)
    assert speech.spec == resolve_spec("speech", ModelChoice(version=2, preset="tiny")).spec


def test_non_square_images_and_bad_choices_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"meta\.json: images are 32 x 48"):
        DataShape.from_meta({"height": 32, "width": 48, "channels": 3})
    with pytest.raises(ConfigError, match=r"model\.text\.preset: unknown preset 'huge'"):
        preset_changes("text", 2, "huge")
    with pytest.raises(ConfigError, match=r"model\.image\.version: 3 is not a data2vec version"):
        released_spec("image", 3)
    with pytest.raises(ConfigError, match="unknown modality 'video'"):
        released_spec("video", 2)


@pytest.mark.parametrize(("modality", "version", "preset"), registered_presets())
def test_every_preset_change_names_existing_fields(modality: str, version: int, preset: str) -> None:
    # with_overrides rejects unknown keys; resolving proves every preset change is a real field.
    resolved = resolve_spec(modality, ModelChoice(version=version, preset=preset))
    assert resolved.spec.modality == modality and resolved.spec.version == version
