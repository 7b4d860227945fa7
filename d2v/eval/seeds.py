"""How much does the pretrained-vs-random delta move with the fine-tuning seed?

The paired bootstrap (d2v.eval.significance) covers only the test set's sampling noise. Small
fine-tuning budgets are also sensitive to the seed (head init, batch order, dropout), and on the
embedded default that noise is the larger one for text. `d2v evaluate <modality> --seeds 0,1,2`
runs the whole evaluation once per seed; `seed_spread` summarises the deltas per task, and
`<out>/<modality>_seeds.json` holds the summary:

    {task: {"metric", "higher_is_better", "seeds": [...], "deltas": [...], "verdicts": [...],
            "mean_delta", "std_delta" (sample std; 0 for one seed), "min_delta", "max_delta",
            "helps_every_seed", "input_baseline_deltas", "beats_input_baseline_every_seed"}}
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from d2v.atomic import atomic_write_json
from d2v.errors import D2VError

if TYPE_CHECKING:  # kept torch-free: the CLI checks --seeds before loading any model code
    from d2v.eval.record import BaselineRecord


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" -> [0, 1, 2]; a clear error for anything else (empty, negative, repeated, not integers)."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise D2VError(f"--seeds: expected comma-separated integers such as 0,1,2, got {text!r}") from None
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise D2VError(f"--seeds: seeds must be distinct and >= 0, got {text!r}")
    return seeds


def seed_spread(records_by_seed: Mapping[int, Sequence[BaselineRecord]]) -> dict[str, dict]:
    """Per task (in the first seed's order): every seed's delta and verdict, and their spread."""
    if not records_by_seed:
        raise D2VError("seed spread needs the records of at least one seed")
    seeds = list(records_by_seed)
    tasks = [r.task for r in records_by_seed[seeds[0]]]
    summary: dict[str, dict] = {}
    for task in tasks:
        runs = []
        for seed in seeds:
            match = [r for r in records_by_seed[seed] if r.task == task]
            if not match:
                raise D2VError(f"seed {seed} has no record for task {task!r}")
            runs.append(match[0])
        deltas = [r.delta for r in runs]
        summary[task] = {
            "metric": runs[0].metric,
            "higher_is_better": runs[0].higher_is_better,
            "seeds": seeds,
            "deltas": deltas,
            "verdicts": [r.verdict for r in runs],
            "mean_delta": statistics.fmean(deltas),
            "std_delta": statistics.stdev(deltas) if len(deltas) > 1 else 0.0,
            "min_delta": min(deltas),
            "max_delta": max(deltas),
            "helps_every_seed": all(r.pretraining_helps for r in runs),
            # pretrained - input baseline per seed (null where a run had none) and its verdict
            "input_baseline_deltas": [r.input_baseline_delta for r in runs],
            "beats_input_baseline_every_seed": all(r.beats_input_baseline for r in runs),
        }
    return summary


def write_seed_spread(path: str | Path, summary: Mapping[str, dict]) -> Path:
    """Written atomically; tasks keep their order (the main task first)."""
    return atomic_write_json(path, summary, sort_keys=False)
