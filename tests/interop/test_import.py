import pytest
import torch

from d2v.cli import main
from d2v.errors import D2VError
from d2v.interop.equivalence import max_abs_difference, sample_batch
from d2v.interop.hf_config import ImportRefused
from d2v.interop.import_ import import_hf
from d2v.interop.init_from import IMPORTED_PRESET, stored_spec
from d2v.models import build_model
from d2v.train.checkpoint import ModelFingerprint, load_checkpoint
from interop_models import save_hf_model

pytest.importorskip("transformers")

CASES = {
    "vision, shared relative bias + layer scale": ("image", {}),
    "vision, absolute positions, no layer scale": (
        "image", {"use_shared_relative_position_bias": False, "use_absolute_position_embeddings": True,
                  "layer_scale_init_value": 0.0},
    ),
    "vision with a mask token": ("image", {"use_mask_token": True}),
    "audio": ("speech", {}),
    "text, two token types": ("text", {}),
}


def _d2v_model_of(checkpoint):
    payload = load_checkpoint(checkpoint)
    model = build_model(stored_spec(checkpoint))
    model.load_state_dict(payload["model"])
    return model.eval(), payload


@pytest.mark.parametrize("case", list(CASES))
def test_imported_checkpoint_reproduces_the_transformers_model(tmp_path, case) -> None:
    modality, changes = CASES[case]
    hf = save_hf_model(tmp_path / "hf", modality, **changes)
    result = import_hf(tmp_path / "hf", tmp_path / "imported.pt")
    model, payload = _d2v_model_of(tmp_path / "imported.pt")
    assert payload["fingerprint"] == ModelFingerprint.of(modality, 1, IMPORTED_PRESET, model.spec).__dict__
    diff, scale = max_abs_difference(model.student_encoder(), hf, model.spec, sample_batch(model.spec, seed=4))
    assert scale > 0.5
    assert diff < 1e-4 and result.max_abs_difference < 1e-4
    # The teacher starts as a copy of the student.
    state = model.state_dict()
    for name, tensor in state.items():
        if name.startswith("teacher.module."):
            assert torch.equal(tensor, state[name.removeprefix("teacher.module.")])


def test_export_of_an_imported_checkpoint_gives_back_the_same_outputs(tmp_path) -> None:
    import transformers

    from d2v.interop.export import export_hf, open_checkpoint
    from d2v.interop.model_card import CardInfo

    save_hf_model(tmp_path / "hf", "image")
    import_hf(tmp_path / "hf", tmp_path / "imported.pt")
    loaded = open_checkpoint(tmp_path / "imported.pt", lambda m: pytest.fail("an imported checkpoint carries its spec"))
    card = CardInfo(spec=loaded.spec, checkpoint="x", step=0, fingerprint=loaded.fingerprint, export_format="hf",
                    data={}, recipe={}, git_commit=None, git_dirty=None, imported_from=loaded.imported_from)
    export_hf(loaded, tmp_path / "again", card)
    original = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    again = transformers.AutoModel.from_pretrained(tmp_path / "again").eval()
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert (original(pixel_values=pixels).last_hidden_state - again(pixel_values=pixels).last_hidden_state).abs().max() < 1e-4


@pytest.mark.parametrize(
    "modality,changes,field",
    [
        ("image", {"use_mean_pooling": True}, "use_mean_pooling=True"),
        ("image", {"use_relative_position_bias": True, "use_shared_relative_position_bias": False}, "use_relative_position_bias=True"),
        ("text", {"pad_token_id": 1}, "pad_token_id=1"),
        ("speech", {"conv_bias": True}, "conv_bias=True"),
        ("speech", {"hidden_act": "relu"}, "hidden_act='relu'"),
    ],
)
def test_configs_d2v_cannot_represent_are_refused_by_field(tmp_path, modality, changes, field) -> None:
    save_hf_model(tmp_path / "hf", modality, **changes)
    with pytest.raises(ImportRefused, match=field.replace("(", r"\(")):
        import_hf(tmp_path / "hf", tmp_path / "imported.pt")
    assert not (tmp_path / "imported.pt").exists()


def test_import_cli_prints_the_params_switch(tmp_path, capsys) -> None:
    save_hf_model(tmp_path / "hf", "text")
    assert main(["import", str(tmp_path / "hf"), "--out", str(tmp_path / "t.pt")]) == 0
    out = capsys.readouterr().out
    assert "model.text.init_from: " + str(tmp_path / "t.pt") in out


def test_a_directory_without_config_is_a_user_error(tmp_path) -> None:
    with pytest.raises(D2VError, match="config.json: not found"):
        import_hf(tmp_path, tmp_path / "x.pt")
