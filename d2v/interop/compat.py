"""Which d2v models have an EXACT transformers counterpart, and what blocks the others.

"Exact" means: the transformers model, loaded with `AutoModel.from_pretrained`, gives d2v's
student-encoder outputs for the same input (last hidden states within float rounding). A feature
that transformers' Data2Vec classes cannot express blocks the export; nothing is approximated.

At the registered presets (every size): image v1, speech v1 (CNN front end) and text v1/v2 export;
image v2 (post-LN) and speech v2 (ALiBi) do not, nor does any speech model with the log-mel front
end (the demo's default).
"""

from __future__ import annotations

from d2v.core.spec import Data2VecSpec
from d2v.errors import D2VError

HF_CLASS = {"image": "Data2VecVisionModel", "speech": "Data2VecAudioModel", "text": "Data2VecTextModel"}
# d2v's speech feature-projection LayerNorm uses torch's default eps; Data2VecAudio applies its
# single layer_norm_eps there too, so the encoder's eps must be the same value.
SPEECH_FEATURE_NORM_EPS = 1e-5


class ExportRefused(D2VError):
    """The model has no exact transformers counterpart."""


def hf_blockers(spec: Data2VecSpec) -> list[str]:
    """Every feature of `spec` that the matching transformers class cannot represent exactly."""
    enc = spec.encoder
    blockers: list[str] = []
    name = f"transformers' {HF_CLASS[spec.modality]}"
    if enc.alibi:
        blockers.append(f"ALiBi attention biases (encoder.alibi, data2vec 2.0 speech): {name} has no ALiBi")
    if spec.modality == "image":
        if not enc.norm_first:
            blockers.append(
                f"post-LN blocks (encoder.norm_first=false, data2vec 2.0 images: LayerNorm after each residual add "
                f"and on the input): {name} layers are pre-LN (BEiT)"
            )
    else:
        if enc.norm_first:
            blockers.append(f"pre-LN blocks (encoder.norm_first=true): {name} layers are post-LN")
        if enc.layer_scale_init is not None:
            blockers.append(f"layer scale (encoder.layer_scale_init={enc.layer_scale_init}): {name} has none")
    if spec.modality == "speech" and spec.speech is not None:
        if spec.speech.feature_extractor != "cnn":
            blockers.append(
                f"log-mel front end (speech.feature_extractor={spec.speech.feature_extractor}): {name} takes "
                "waveforms through the wav2vec 2.0 CNN"
            )
        if enc.norm_eps != SPEECH_FEATURE_NORM_EPS:
            blockers.append(
                f"encoder.norm_eps={enc.norm_eps}: {name} has one layer_norm_eps for the encoder and the feature "
                f"projection, whose d2v LayerNorm uses {SPEECH_FEATURE_NORM_EPS}"
            )
    if int(enc.dim * enc.mlp_ratio) != enc.dim * enc.mlp_ratio:
        blockers.append(f"encoder.mlp_ratio={enc.mlp_ratio} gives a fractional FFN width at dim {enc.dim}")
    return blockers


def check_hf_exportable(spec: Data2VecSpec) -> None:
    """Raise ExportRefused naming every blocking feature and the export that works instead."""
    blockers = hf_blockers(spec)
    if blockers:
        raise ExportRefused(
            f"{spec.modality} data2vec {spec.version}.0 has no exact transformers counterpart: "
            + "; ".join(blockers)
            + ". Export d2v's own weights instead: --format safetensors (encoder weights + the spec as JSON)"
        )
