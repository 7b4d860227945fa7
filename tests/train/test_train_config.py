from pathlib import Path

import pytest
import yaml

from d2v.config import load_params
from d2v.errors import ConfigError
from d2v.train.config import SpeechTrainConfig

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, edit) -> Path:
    tree = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(tree["pretrain"])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_repo_params_load_with_a_recipe_per_modality() -> None:
    params = load_params(REPO / "params.yaml")
    for modality in ("image", "speech", "text"):
        cfg = params.pretrain.for_modality(modality)
        assert cfg.max_steps >= 1 and isinstance(cfg.betas, tuple)
    assert params.pretrain.resolve_seed(7) == (7 if params.pretrain.seed is None else params.pretrain.seed)


def test_range_errors_name_the_dotted_key(tmp_path) -> None:
    path = _write(tmp_path, lambda p: p["speech"].update(grad_accum=0))
    with pytest.raises(ConfigError, match=r"pretrain\.speech\.grad_accum: expected an integer >= 1, got 0"):
        load_params(path)


def test_tri_stage_fractions_must_sum_to_one(tmp_path) -> None:
    path = _write(tmp_path, lambda p: p["text"].update(tri_stage=[0.1, 0.1, 0.1]))
    with pytest.raises(ConfigError, match=r"pretrain\.text\.tri_stage"):
        load_params(path)


def test_unknown_schedule_is_rejected(tmp_path) -> None:
    path = _write(tmp_path, lambda p: p["image"].update(schedule="linear"))
    expected = r"pretrain\.image\.schedule: expected one of \['cosine', 'tri_stage'\]"
    with pytest.raises(ConfigError, match=expected):
        load_params(path)


def test_speech_recipe_has_a_typed_crop_length_and_the_others_do_not(tmp_path) -> None:
    speech = load_params(REPO / "params.yaml").pretrain.speech
    assert isinstance(speech, SpeechTrainConfig) and speech.crop_seconds >= 2.0  # seconds of context
    assert speech.crop_samples(16_000) == round(speech.crop_seconds * 16_000)
    path = _write(tmp_path, lambda p: p["speech"].update(crop_seconds="long"))
    with pytest.raises(ConfigError, match=r"pretrain\.speech\.crop_seconds"):
        load_params(path)
    path = _write(tmp_path, lambda p: p["image"].update(crop_seconds=4.0))
    with pytest.raises(ConfigError, match=r"pretrain\.image\.crop_seconds: unknown key"):
        load_params(path)


def test_speech_crop_shorter_than_one_frame_is_rejected(tmp_path) -> None:
    path = _write(tmp_path, lambda p: p["speech"].update(crop_seconds=0.01))
    with pytest.raises(ConfigError, match=r"pretrain\.speech\.crop_seconds: expected >= 0\.025.*got 0\.01"):
        load_params(path)
