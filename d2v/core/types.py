"""Shared contracts between the core, data, training and evaluation packages.

Batches are plain dicts of tensors. Keys by modality (True in a padding mask = padding):
- image:  "image" float (B, C, H, W), normalised;       "label" long (B,) for classification
- speech: "waveform" float (B, S) at 16 kHz;             "padding_mask" bool (B, S), optional
- text:   "tokens" long (B, T) sentencepiece ids;        "padding_mask" bool (B, T), optional;
          "label" long (B,) or float (B,) for regression tasks
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol

from torch import Tensor, nn

Batch = Mapping[str, Tensor]

# Re-exported: models and evaluation read the token ids and the sample rate here; each is defined
# in a torch-free module so that data stages can import it without torch.
from d2v.audio import SPEECH_SAMPLE_RATE  # noqa: E402,F401
from d2v.token_ids import BOS_ID, EOS_ID, MASK_ID, PAD_ID, UNK_ID  # noqa: E402,F401


@dataclass
class EncoderOutput:
    """What a student encoder returns for downstream use."""

    x: Tensor  # (B, T, D) last-layer features
    padding_mask: Tensor | None = None  # (B, T) True = padding (speech: at frame rate)
    cls: Tensor | None = None  # (B, D) CLS token output, when the modality has one


@dataclass
class Data2VecOutput:
    """A pretraining forward: the loss to backpropagate plus detached values worth logging."""

    loss: Tensor  # scalar
    logs: dict[str, float] = field(default_factory=dict)  # target_var, pred_var, tau, masked_fraction, ...


class FeatureEncoder(Protocol):
    """A (student) encoder usable by evaluation: batch -> features, with its parts exposed."""

    feature_extractor: nn.Module  # modality front end: patch embedding / CNN / token embedding
    blocks: nn.ModuleList  # Transformer blocks, input to output (for layer-wise lr decay)
    embed_dim: int

    def __call__(self, batch: Batch) -> EncoderOutput: ...
