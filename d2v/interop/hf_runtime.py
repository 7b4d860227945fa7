"""The optional transformers dependency, imported only when an export or import needs it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from d2v.errors import D2VError

INSTALL_HINT = "pip install 'd2v[hf]'"


class TransformersMissing(D2VError):
    """transformers is not installed."""


def require_transformers() -> ModuleType:
    """The transformers module, or a D2VError that says how to install it."""
    try:
        import transformers
    except ImportError as exc:
        raise TransformersMissing(
            f"Hugging Face export/import needs the transformers package ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return transformers


@contextmanager
def quiet_transformers() -> Iterator[ModuleType]:
    """transformers with its loading reports silenced (d2v prints its own one-line summary)."""
    transformers = require_transformers()
    logging = transformers.utils.logging
    before, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield transformers
    finally:
        logging.set_verbosity(before)
        if bars:
            logging.enable_progress_bar()
