"""data2vec models: the released configurations, size presets, spec resolution and the builder.

`resolve_spec(modality, ModelChoice(...), DataShape(...))` gives the exact spec pretraining builds
(`d2v model show <modality>` prints it); `build_model(spec)` builds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from d2v.models.presets import PRESETS, preset_changes
from d2v.models.released import released_spec
from d2v.models.resolve import DataShape, ResolvedSpec, fingerprint_preset, model_spec, resolve_spec

if TYPE_CHECKING:
    from d2v.models.build import build_frontend, build_model

__all__ = [
    "PRESETS",
    "DataShape",
    "ResolvedSpec",
    "build_frontend",
    "build_model",
    "fingerprint_preset",
    "model_spec",
    "preset_changes",
    "registered_presets",
    "released_spec",
    "resolve_spec",
]


def registered_presets() -> list[tuple[str, int, str]]:
    """Every (modality, version, preset) d2v can build."""
    return [(m, v, p) for m in ("image", "speech", "text") for v in (1, 2) for p in PRESETS]


def __getattr__(name: str) -> Any:
    # The builders import torch; specs and presets do not. Loading the builders on first use lets
    # torch-free callers (the report stage reads an encoder width) skip torch's start-up.
    if name in ("build_frontend", "build_model"):
        from d2v.models import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
