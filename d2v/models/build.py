"""Build a `Data2Vec` model (front end + core) from a resolved spec."""

from __future__ import annotations

from d2v.core.data2vec import Data2Vec
from d2v.core.spec import Data2VecSpec
from d2v.errors import ConfigError
from d2v.modalities.base import Frontend
from d2v.modalities.image import ImageFrontend
from d2v.modalities.speech import SpeechFrontend
from d2v.modalities.text import TextFrontend


def build_frontend(spec: Data2VecSpec) -> Frontend:
    if spec.modality == "image" and spec.image is not None:
        return ImageFrontend(spec.image, spec.encoder.dim, spec.encoder.heads, spec.version)
    if spec.modality == "speech" and spec.speech is not None:
        return SpeechFrontend(spec.speech, spec.encoder.dim, learned_mask=spec.version == 1)
    if spec.modality == "text" and spec.text is not None:
        return TextFrontend(spec.text, spec.encoder.dim, spec.mask)
    raise ConfigError(f"model spec for {spec.modality!r} has no `{spec.modality}` front-end section")


def build_model(spec: Data2VecSpec) -> Data2Vec:
    return Data2Vec(spec, build_frontend(spec))
