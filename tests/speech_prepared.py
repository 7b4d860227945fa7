"""A tiny prepared speech directory (manifest.csv + one int16 shard + meta.json), as the prepare
stage writes it, for tests of the readers that sit between prepared audio and the model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np


def write_prepared_speech(root: Path, splits: dict[str, list[np.ndarray]]) -> Path:
    """`splits`: split name -> float waveforms in [-1, 1); stored as int16 like the prepare stage."""
    root.mkdir(parents=True, exist_ok=True)
    rows, pieces, offset = [], [], 0
    for split, waves in splits.items():
        for i, wave in enumerate(waves):
            pcm = np.clip(np.round(np.asarray(wave) * 32768.0), -32768, 32767).astype(np.int16)
            rows.append({"id": f"{split}/{i}", "split": split, "speaker": "s", "n_samples": len(pcm),
                         "transcript": "a cab", "shard": "all-0000.npy", "offset": offset})
            pieces.append(pcm)
            offset += len(pcm)
    np.save(root / "all-0000.npy", np.concatenate(pieces))
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "meta.json").write_text(json.dumps({"dtype": "int16", "sample_rate": 16000}), encoding="utf-8")
    return root


def stored(wave: np.ndarray) -> np.ndarray:
    """What a reader gets back for `wave` before normalisation (int16 quantisation)."""
    pcm = np.clip(np.round(np.asarray(wave) * 32768.0), -32768, 32767).astype(np.int16)
    return pcm.astype(np.float32) / 32768.0
