"""Applying a profile: schema-aware merge, comments kept, checked before writing, GPUs rescaled."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from d2v.config import load_params
from d2v.errors import ConfigError
from d2v.profiles.apply import APPLIED_MARK, apply_profile, plan_profile
from d2v.profiles.catalog import find_profile, read_profile

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"


@pytest.fixture()
def params_copy(tmp_path: Path) -> Path:
    return Path(shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml"))


def test_apply_sets_every_key_keeps_comments_and_loads_strictly(params_copy: Path) -> None:
    before = params_copy.read_text(encoding="utf-8")
    plan = apply_profile(find_profile("speech-base", PROFILES), params_copy)
    after = params_copy.read_text(encoding="utf-8")
    params = load_params(params_copy)
    assert params.model.speech.preset == "base"
    # A free-form mapping is replaced, not merged: the demo's log-mel overrides are gone.
    assert params.model.speech.overrides == {}
    assert params.pretrain.speech.lr == pytest.approx(7.5e-4) and params.evaluate.speech.lr == pytest.approx(5e-5)
    assert params.data.speech.librispeech.asr_train == ("librilight-10h",)
    # Untouched sections and the file's comments stay as they were.
    assert params.pretrain.image == load_params(ROOT / "params.yaml").pretrain.image
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert all(line in after for line in comments)
    assert after.startswith(f"{APPLIED_MARK} speech-base on 8 GPU(s), {len(plan.changes)} keys")
    assert {c.key for c in plan.changes} >= {"model.speech.preset", "model.speech.overrides", "pretrain.speech.max_steps"}


def test_applying_twice_changes_nothing_and_keeps_one_mark(params_copy: Path) -> None:
    profile = find_profile("image-base", PROFILES)
    apply_profile(profile, params_copy)
    first = params_copy.read_text(encoding="utf-8")
    plan = apply_profile(profile, params_copy)
    assert plan.changes == ()
    assert params_copy.read_text(encoding="utf-8").count(APPLIED_MARK) == 1
    assert yaml.safe_load(params_copy.read_text(encoding="utf-8")) == yaml.safe_load(first)


def test_fewer_gpus_accumulate_to_the_released_batch(params_copy: Path) -> None:
    profile = find_profile("image-base", PROFILES)  # 16 GPUs x 16 images
    apply_profile(profile, params_copy, gpus=4)
    recipe = load_params(params_copy).pretrain.image
    assert recipe.batch_size * recipe.grad_accum * 4 == 16 * 16
    with pytest.raises(ConfigError, match=r"--gpus 3: .* stays exact on 1, 2, 4, 8, 16 GPU\(s\)"):
        plan_profile(profile, params_copy, gpus=3)


def test_a_bad_profile_names_the_key_and_writes_nothing(params_copy: Path, tmp_path: Path) -> None:
    text = (PROFILES / "image-base.yaml").read_text(encoding="utf-8")
    before = params_copy.read_bytes()
    cases = {
        "batch_size: 16": ("batch_sise: 16", r"params.pretrain.image.batch_sise: unknown key"),
        "max_steps: 375300": ("max_steps: many", r"pretrain.image.max_steps: expected int, got str 'many'"),
    }
    for good, (bad, message) in cases.items():
        path = tmp_path / "profiles" / "image-base.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text.replace(good, bad), encoding="utf-8")
        with pytest.raises(ConfigError, match=message) as info:
            apply_profile(read_profile(path), params_copy)
        assert str(path) in str(info.value)
        assert params_copy.read_bytes() == before
