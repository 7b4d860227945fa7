"""`d2v model show`: the resolved spec, every field named, with the layer that set it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from d2v.cli import main

REPO = Path(__file__).resolve().parents[2]


def _params(tmp_path: Path, overrides: dict | None = None) -> Path:
    tree = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    tree["data"]["prepared_dir"] = str(tmp_path / "prepared")
    tree["model"]["image"]["overrides"] = overrides or {}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def test_json_shows_the_ema_schedule_and_mask_ratio_actually_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = _params(tmp_path, {"mask": {"ratio": 0.7}})
    meta = tmp_path / "prepared" / "image" / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"height": 32, "width": 32, "channels": 3}), encoding="utf-8")

    assert main(["model", "show", "image", "--json", "--params", str(params)]) == 0
    shown = json.loads(capsys.readouterr().out)
    spec = shown["spec"]
    assert spec["ema"] == {"tau0": 0.99, "tau_end": 0.999, "anneal_steps": 1000,
                           "include_frontend": True, "share_local_features": False}
    assert spec["mask"]["ratio"] == 0.7 and shown["set_by"]["mask.ratio"] == "params"
    assert shown["set_by"]["ema.tau0"] == "preset tiny"
    assert (spec["image"]["image_size"], spec["image"]["in_chans"]) == (32, 3)
    assert shown["data_shape_from"] == str(meta)
    assert shown["parameters"]["student_encoder"] > 0


def test_text_lines_name_every_field_and_fall_back_to_params_before_prepare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["model", "show", "image", "--params", str(_params(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "not found: run the prepare stage" in out
    assert any(line.startswith("ema.anneal_steps") and line.rstrip().endswith("[preset tiny]") for line in out.splitlines())
    assert any(line.startswith("image.image_size") and "= 28" in line for line in out.splitlines())
