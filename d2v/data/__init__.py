"""Data sources, prepare, tokenizer, readers and validation for image, speech and text."""
