import json
from dataclasses import replace

import pytest
import torch

from d2v.config import ModelChoice, load_params
from d2v.errors import ConfigError
from d2v.eval.stage import load_pretrained
from d2v.interop.equivalence import max_abs_difference, sample_batch
from d2v.interop.import_ import import_hf
from d2v.models import DataShape, fingerprint_preset, resolve_spec
from d2v.train import run as train_run
from interop_models import save_hf_model

pytest.importorskip("transformers")


@pytest.fixture()
def imported_image(tmp_path):
    hf = save_hf_model(tmp_path / "hf", "image")
    import_hf(tmp_path / "hf", tmp_path / "imported.pt")
    return tmp_path / "imported.pt", hf


def _prepared_image(tmp_path, size=16, channels=3):
    root = tmp_path / "prepared" / "image"
    root.mkdir(parents=True)
    (root / "meta.json").write_text(json.dumps({"height": size, "width": size, "channels": channels}))
    return root


def test_init_from_makes_the_imported_spec_the_base_and_overrides_still_apply(imported_image) -> None:
    path, _ = imported_image
    choice = ModelChoice(version=1, preset="tiny", overrides={"mask": {"ratio": 0.5}}, init_from=str(path))
    resolved = resolve_spec("image", choice, DataShape(image_size=16, channels=3))
    assert resolved.spec.encoder.dim == 32 and resolved.spec.encoder.norm_eps == 1e-6
    assert resolved.spec.mask.ratio == 0.5
    assert resolved.set_by["encoder.dim"] == "init_from" and resolved.set_by["mask.ratio"] == "params"
    assert fingerprint_preset(choice) == "imported"


def test_init_from_refuses_another_version_or_data_shape(imported_image) -> None:
    path, _ = imported_image
    with pytest.raises(ConfigError, match=r"model.image.version: 2, .*set version: 1"):
        resolve_spec("image", ModelChoice(version=2, preset="tiny", init_from=str(path)))
    with pytest.raises(ConfigError, match=r"image.image_size=16, the prepared data 28"):
        resolve_spec("image", ModelChoice(version=1, preset="tiny", init_from=str(path)), DataShape(image_size=28, channels=1))


def test_init_from_a_training_checkpoint_without_spec_is_refused(tmp_path) -> None:
    from interop_models import perturbed_model, small_choice, write_checkpoint

    choice = small_choice("text", 1)
    ckpt = write_checkpoint(tmp_path / "c.pt", perturbed_model(choice, "text"), choice)
    with pytest.raises(ConfigError, match="stores no model spec"):
        resolve_spec("text", ModelChoice(version=1, preset="tiny", init_from=str(ckpt)))


def test_evaluation_loads_the_imported_weights(tmp_path, imported_image) -> None:
    path, hf = imported_image
    choice = ModelChoice(version=1, preset="tiny", init_from=str(path))
    encoder = load_pretrained("image", choice, _prepared_image(tmp_path), path)
    spec = resolve_spec("image", choice, DataShape(image_size=16, channels=3)).spec
    diff, _ = max_abs_difference(encoder, hf, spec, sample_batch(spec, seed=9))
    assert diff < 1e-4


def test_pretraining_starts_from_the_imported_student_and_teacher(tmp_path, imported_image, monkeypatch) -> None:
    path, hf = imported_image
    seen = {}

    def fake_pretrain(model, dataset, cfg, **kwargs):
        seen["model"], seen["fingerprint"] = model, kwargs["fingerprint"]
        return {}

    monkeypatch.setattr(train_run, "pretraining_data", lambda *a, **k: train_run.PretrainData(None, None))
    monkeypatch.setattr(train_run, "pretrain", fake_pretrain)
    params = load_params("params.yaml")
    choice = ModelChoice(version=1, preset="tiny", init_from=str(path))
    train_run.run_pretraining("image", choice, replace(params.pretrain.image), data_root=_prepared_image(tmp_path),
                              checkpoint=tmp_path / "out.pt", metrics_dir=tmp_path / "m", seed=0)
    model = seen["model"]
    assert seen["fingerprint"].preset == "imported"
    diff, _ = max_abs_difference(model.student_encoder(), hf, model.spec, sample_batch(model.spec))
    assert diff < 1e-4
    teacher = model.teacher.module["encoder"].state_dict()
    for name, tensor in model.encoder.state_dict().items():
        assert torch.equal(teacher[name], tensor)


def test_params_yaml_declares_init_from_null_for_every_modality() -> None:
    params = load_params("params.yaml")
    assert [getattr(params.model, m).init_from for m in ("image", "speech", "text")] == [None, None, None]
