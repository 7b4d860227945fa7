from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest
import yaml

from d2v.config import (
    ConfigError,
    Params,
    from_mapping,
    load_params,
    to_mapping,
    with_overrides,
)

REPO = Path(__file__).resolve().parents[1]


def write_params(tmp_path: Path, tree: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


@pytest.fixture
def params_tree() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def test_repository_params_load_into_frozen_dataclasses() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.model.image.version in (1, 2)
    with pytest.raises(Exception):
        params.seed = 1  # type: ignore[misc]


def test_misspelt_nested_key_is_named_by_dotted_path(tmp_path: Path, params_tree: dict) -> None:
    params_tree["model"]["image"]["prset"] = params_tree["model"]["image"].pop("preset")
    with pytest.raises(ConfigError, match=r"model\.image\.prset: unknown key"):
        load_params(write_params(tmp_path, params_tree))


def test_missing_key_is_named(tmp_path: Path, params_tree: dict) -> None:
    del params_tree["model"]["speech"]["version"]
    with pytest.raises(ConfigError, match=r"model\.speech\.version: missing key"):
        load_params(write_params(tmp_path, params_tree))


def test_wrong_type_names_key_expected_and_actual(tmp_path: Path, params_tree: dict) -> None:
    params_tree["seed"] = "zero"
    with pytest.raises(ConfigError, match=r"seed: expected int, got str 'zero'"):
        load_params(write_params(tmp_path, params_tree))


def test_literal_rejects_bool_masquerading_as_int(tmp_path: Path, params_tree: dict) -> None:
    params_tree["model"]["text"]["version"] = True
    with pytest.raises(ConfigError, match=r"model\.text\.version: expected one of \[1, 2\]"):
        load_params(write_params(tmp_path, params_tree))


def test_missing_and_malformed_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_params(bad)


@dataclass(frozen=True)
class Inner:
    depth: int
    ratio: float = 0.5


@dataclass(frozen=True)
class Outer:
    inner: Inner
    kernels: tuple[int, ...]
    pair: tuple[int, str]
    mode: Literal["a", "b"] = "a"
    note: Optional[str] = None
    names: list[str] = field(default_factory=list)


def test_from_mapping_converts_sequences_defaults_and_ints_to_floats() -> None:
    obj = from_mapping(Outer, {"inner": {"depth": 2, "ratio": 1}, "kernels": [3, 5], "pair": [1, "x"]})
    assert obj == Outer(inner=Inner(depth=2, ratio=1.0), kernels=(3, 5), pair=(1, "x"))
    assert isinstance(obj.inner.ratio, float)
    assert to_mapping(obj)["kernels"] == [3, 5]


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"inner": {"depth": 2}, "kernels": [3, "5"], "pair": [1, "x"]}, r"kernels\[1\]: expected int"),
        ({"inner": {"depth": 2}, "kernels": [], "pair": [1]}, r"pair: expected 2 items, got 1"),
        ({"inner": {"depth": 2}, "kernels": [], "pair": [1, "x"], "mode": "c"}, r"mode: expected one of"),
        ({"inner": 3, "kernels": [], "pair": [1, "x"]}, r"inner: expected a mapping, got int 3"),
        ({"inner": {"depth": 2}, "kernels": [], "pair": [1, "x"], "note": 4}, r"note: expected"),
    ],
)
def test_from_mapping_errors(tree: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(Outer, tree)


def test_with_overrides_merges_nested_and_validates() -> None:
    base = Outer(inner=Inner(depth=2), kernels=(3,), pair=(1, "x"))
    changed = with_overrides(base, {"inner": {"ratio": 0.25}, "mode": "b"})
    assert changed.inner == Inner(depth=2, ratio=0.25) and changed.mode == "b"
    assert base.inner.ratio == 0.5  # the original is untouched
    with pytest.raises(ConfigError, match=r"overrides\.inner\.dpeth: unknown key"):
        with_overrides(base, {"inner": {"dpeth": 3}})
    with pytest.raises(ConfigError, match=r"overrides\.inner\.depth: expected int"):
        with_overrides(base, {"inner": {"depth": "3"}})
