"""Modality-agnostic data2vec core: encoder, masking, targets, EMA teacher, decoders, the model."""
