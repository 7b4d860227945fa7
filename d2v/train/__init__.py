"""Pretraining engine: config, AdamW + schedules, checkpoints, the loop, DDP helpers."""
