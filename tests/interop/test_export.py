import json
import sys

import pytest
import torch

from d2v.cli import main
from d2v.errors import D2VError
from d2v.interop.equivalence import max_abs_difference, sample_batch
from d2v.interop.export import export_hf, export_safetensors, load_safetensors_export, open_checkpoint
from d2v.interop.model_card import CardInfo
from interop_models import EXPORTABLE, NOT_EXPORTABLE, perturbed_model, resolver, small_choice, write_checkpoint

transformers = pytest.importorskip("transformers")


def _card(loaded, fmt="hf", records=None) -> CardInfo:
    return CardInfo(spec=loaded.spec, checkpoint=str(loaded.path), step=loaded.step, fingerprint=loaded.fingerprint,
                    export_format=fmt, data={"source": "test"}, recipe={"model": "test"}, git_commit="abc123",
                    git_dirty=False, eval_records=records, eval_source="metrics/eval/x.json")


@pytest.mark.parametrize("modality,version", EXPORTABLE)
def test_hf_export_loads_with_automodel_and_matches_d2v(tmp_path, modality, version) -> None:
    choice = small_choice(modality, version)
    ckpt = write_checkpoint(tmp_path / "ckpt.pt", perturbed_model(choice, modality), choice)
    loaded = open_checkpoint(ckpt, resolver(choice))
    result = export_hf(loaded, tmp_path / "hf", _card(loaded))
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in (tmp_path / "hf").iterdir()}
    hf = transformers.AutoModel.from_pretrained(tmp_path / "hf")
    # A batch the export's own check did not see.
    diff, scale = max_abs_difference(loaded.model.student_encoder(), hf, loaded.spec, sample_batch(loaded.spec, seed=11))
    assert scale > 0.5  # real activations, not a degenerate all-zero comparison
    assert diff < 1e-4
    assert result.max_abs_difference is not None and result.max_abs_difference < 1e-4


def test_image_v1_sincos_and_learned_positions_export_too(tmp_path) -> None:
    for positions in ("learned", "sincos"):
        choice = small_choice("image", 1, image={"positions": positions})
        ckpt = write_checkpoint(tmp_path / f"{positions}.pt", perturbed_model(choice, "image"), choice)
        loaded = open_checkpoint(ckpt, resolver(choice))
        export_hf(loaded, tmp_path / positions, _card(loaded))
        hf = transformers.AutoModel.from_pretrained(tmp_path / positions)
        diff, _ = max_abs_difference(loaded.model.student_encoder(), hf, loaded.spec, sample_batch(loaded.spec, seed=2))
        assert diff < 1e-4


@pytest.mark.parametrize("modality,version", NOT_EXPORTABLE)
def test_hf_export_refusal_through_the_cli_names_the_feature_and_writes_nothing(tmp_path, modality, version, capsys) -> None:
    choice = small_choice(modality, version)
    ckpt = write_checkpoint(tmp_path / "ckpt.pt", perturbed_model(choice, modality), choice)
    params = tmp_path / "params.yaml"
    _params_with(params, modality, choice)
    code = main(["export", str(ckpt), "--format", "hf", "--out", str(tmp_path / "hf"), "--params", str(params)])
    err = capsys.readouterr().err
    assert code == 2
    assert ("post-LN" if modality == "image" else "ALiBi") in err
    assert "--format safetensors" in err
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("modality,version", NOT_EXPORTABLE + EXPORTABLE[:1])
def test_safetensors_export_round_trips_every_model(tmp_path, modality, version) -> None:
    choice = small_choice(modality, version)
    model = perturbed_model(choice, modality)
    loaded = open_checkpoint(write_checkpoint(tmp_path / "ckpt.pt", model, choice), resolver(choice))
    export_safetensors(loaded, tmp_path / "st", _card(loaded, "safetensors"))
    spec_doc = json.loads((tmp_path / "st" / "d2v_spec.json").read_text())
    assert spec_doc["fingerprint"] == loaded.fingerprint
    rebuilt = load_safetensors_export(tmp_path / "st")
    batch = sample_batch(loaded.spec)
    with torch.no_grad():
        expected, got = model.student_encoder()(batch).x, rebuilt.student_encoder()(batch).x
    assert torch.equal(expected, got)


def test_checkpoint_of_another_spec_is_refused_naming_both(tmp_path) -> None:
    choice = small_choice("text", 2)
    ckpt = write_checkpoint(tmp_path / "ckpt.pt", perturbed_model(choice, "text"), choice)
    other = small_choice("text", 2, encoder={"depth": 3})
    with pytest.raises(D2VError, match="params.yaml resolves"):
        open_checkpoint(ckpt, resolver(other))


def test_model_card_names_recipe_commit_and_eval_table(tmp_path) -> None:
    choice = small_choice("text", 1)
    loaded = open_checkpoint(write_checkpoint(tmp_path / "c.pt", perturbed_model(choice, "text"), choice), resolver(choice))
    records = {"sentiment": {"metric": "score", "pretrained": 0.69, "random_init": 0.68, "delta": 0.01,
                             "delta_ci95_low": -0.01, "delta_ci95_high": 0.03, "input_baseline": 0.66}}
    export_hf(loaded, tmp_path / "hf", _card(loaded, records=records))
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "| sentiment | score | 0.6900 | 0.6800 | 0.6600 | +0.0100 (-0.0100 … +0.0300) |" in card
    assert "abc123" in card and '"max_positions": 32' in card and "max |d2v - transformers|" in card


def test_missing_transformers_says_how_to_install(tmp_path, monkeypatch) -> None:
    choice = small_choice("text", 1)
    loaded = open_checkpoint(write_checkpoint(tmp_path / "c.pt", perturbed_model(choice, "text"), choice), resolver(choice))
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(D2VError, match=r"pip install 'd2v\[hf\]'"):
        export_hf(loaded, tmp_path / "hf", _card(loaded))


def _params_with(path, modality, choice) -> None:
    import yaml

    tree = yaml.safe_load(open("params.yaml"))
    tree["model"][modality] = {"version": choice.version, "preset": choice.preset, "overrides": choice.overrides,
                               "init_from": None}
    tree["data"]["prepared_dir"] = str(path.parent / "prepared")  # no meta.json: params' own shapes
    path.write_text(yaml.safe_dump(tree))


def test_checkpoint_written_by_the_trainer_exports(tmp_path) -> None:
    """A real (if short) d2v pretraining run of a text v2 model, then export and compare."""
    from d2v.models import build_model, model_spec
    from d2v.train._selftest import tiny_config
    from d2v.train.checkpoint import ModelFingerprint
    from d2v.train.distributed import DistEnv
    from d2v.train.loop import RunPaths, pretrain
    from d2v.train.run import stack_text_blocks

    choice = small_choice("text", 2)
    torch.manual_seed(0)
    model = build_model(model_spec("text", choice))
    blocks = [torch.randint(5, 64, (32,), generator=torch.Generator().manual_seed(i)) for i in range(16)]
    fingerprint = ModelFingerprint.of("text", 2, choice.preset, model.spec)
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    pretrain(model, blocks, tiny_config(max_steps=3, batch_size=4, grad_accum=1, checkpoint_every=3),
             modality="text", fingerprint=fingerprint, seed=0, paths=RunPaths(tmp_path / "ckpt.pt", tmp_path / "m"),
             env=env, collate_fn=stack_text_blocks)
    loaded = open_checkpoint(tmp_path / "ckpt.pt", resolver(choice))
    assert loaded.step == 3
    export_hf(loaded, tmp_path / "hf", _card(loaded))
    hf = transformers.AutoModel.from_pretrained(tmp_path / "hf")
    diff, _ = max_abs_difference(loaded.model.student_encoder(), hf, loaded.spec, sample_batch(loaded.spec, seed=3))
    assert diff < 1e-4
