"""d2v: data2vec (1.0 and 2.0) pretraining, evaluation and versioned benchmarks."""

__version__ = "0.1.0"

MODALITIES: tuple[str, ...] = ("image", "speech", "text")
