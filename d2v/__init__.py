"""d2v: data2vec (1.0 and 2.0) pretraining, evaluation and versioned benchmarks."""

__version__ = "0.1.0"

from d2v.layout import MODALITIES  # noqa: E402  (defined in d2v/layout.py; re-exported)

__all__ = ["MODALITIES", "__version__"]
