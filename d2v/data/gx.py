"""Run code-defined Great Expectations 1.x checks on in-memory frames (ephemeral context).

A `Check` names the frame it runs on, the file that frame describes (for the failure message) and a
GX expectation built lazily: importing great_expectations costs ~5 s, so nothing here imports it at
module import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd


@dataclass(frozen=True)
class Check:
    frame: str  # key into the frames mapping
    file: str  # the file whose content the frame describes
    build: Callable[[Any], Any]  # gx.expectations module -> Expectation instance


def run_checks(suite_name: str, frames: dict[str, pd.DataFrame], checks: list[Check]) -> list[dict]:
    """One GX suite per frame; returns one plain record per expectation."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas(f"{suite_name}-frames")
    records = []
    for frame_name, frame in frames.items():
        mine = [c for c in checks if c.frame == frame_name]
        if not mine:
            continue
        batch_def = source.add_dataframe_asset(name=frame_name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{suite_name}.{frame_name}"))
        files = {}
        for check in mine:
            expectation = suite.add_expectation(check.build(gx.expectations))
            files[expectation.id] = check.file
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite_name}.{frame_name}", data=batch_def, suite=suite)
        )
        result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
        for item in result.results:
            config = item.expectation_config
            res = item.result or {}
            records.append({
                "expectation": config.type,
                "kwargs": {k: v for k, v in config.kwargs.items() if k != "batch_id"},
                "frame": frame_name,
                "file": files.get(config.id, ""),
                "success": bool(item.success),
                "unexpected_count": res.get("unexpected_count"),
                "observed_value": res.get("observed_value"),
                "examples": [_plain(v) for v in (res.get("partial_unexpected_list") or [])[:5]],
            })  # fmt: skip
    return records


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
