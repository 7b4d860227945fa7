"""Downstream evaluation: linear probe, fine-tuning (image / GLUE-style), CTC speech recognition,
metrics, and the pretrained-vs-random-init baseline record."""
