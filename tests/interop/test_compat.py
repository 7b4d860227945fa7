import pytest

from d2v.config import ModelChoice
from d2v.interop.compat import ExportRefused, check_hf_exportable, hf_blockers
from d2v.models import model_spec
from interop_models import EXPORTABLE, NOT_EXPORTABLE


@pytest.mark.parametrize("preset", ["tiny", "base", "large"])
@pytest.mark.parametrize("modality,version", EXPORTABLE)
def test_exportable_pairs_have_no_blockers_at_every_preset(modality, version, preset) -> None:
    assert hf_blockers(model_spec(modality, ModelChoice(version=version, preset=preset))) == []


@pytest.mark.parametrize("preset", ["tiny", "base", "large"])
@pytest.mark.parametrize(
    "modality,version,feature",
    [("image", 2, "post-LN blocks"), ("speech", 2, "ALiBi attention biases")],
)
def test_non_exportable_pairs_name_the_blocking_feature(modality, version, preset, feature) -> None:
    with pytest.raises(ExportRefused) as err:
        check_hf_exportable(model_spec(modality, ModelChoice(version=version, preset=preset)))
    message = str(err.value)
    assert feature in message
    assert "--format safetensors" in message


def test_log_mel_front_end_is_refused_with_its_reason() -> None:
    spec = model_spec("speech", ModelChoice(version=1, preset="tiny", overrides={"speech": {"feature_extractor": "log_mel"}}))
    with pytest.raises(ExportRefused, match="log-mel front end .*wav2vec 2.0 CNN"):
        check_hf_exportable(spec)


def test_demo_speech_default_lists_every_blocker() -> None:
    # params.yaml's speech model: v2 with the log-mel front end: both features are named.
    spec = model_spec("speech", ModelChoice(version=2, preset="tiny", overrides={"speech": {"feature_extractor": "log_mel"}}))
    blockers = hf_blockers(spec)
    assert len(blockers) == 2
    assert any("ALiBi" in b for b in blockers) and any("log-mel" in b for b in blockers)


def test_layer_scale_blocks_text_export() -> None:
    spec = model_spec("text", ModelChoice(version=1, preset="tiny", overrides={"encoder": {"layer_scale_init": 0.1}}))
    assert any("layer scale" in b for b in hf_blockers(spec))
