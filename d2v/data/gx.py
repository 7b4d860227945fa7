"""Run the saved Great Expectations suites (d2v/data/expectations/*.json) through one GX Checkpoint.

The suites are the rules: plain GX 1.x ExpectationSuite JSON, versioned with the code. A `Check` pairs
one suite with one CSV table (a prepared manifest as written, or a table of facts d2v computed) and
the values of the suite's `{"$PARAMETER": name}` placeholders. `run_checkpoint` registers every check
as a GX ValidationDefinition, runs them all in one Checkpoint, builds the Data Docs site and returns
one plain record per expectation.

Importing great_expectations costs ~5 s, so nothing here imports it at module import time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from d2v.errors import D2VError

SUITES_DIR = Path(__file__).with_name("expectations")
DOCS_SITE = "d2v"
ID_COLUMN = "id"  # every checked table names its rows in this column; failures quote it
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Check:
    """One validation definition: `suite` (a file stem in SUITES_DIR) run on the table `csv`."""

    table: str  # GX data asset name; unique per CSV within one checkpoint
    csv: Path
    file: str  # the file whose content the table describes (named in failure messages)
    suite: str  # e.g. "image.manifest" -> d2v/data/expectations/image.manifest.json
    parameters: Mapping[str, Any] = field(default_factory=dict)
    read_options: Mapping[str, Any] = field(default_factory=dict)  # pandas.read_csv keyword arguments
    instance: str = ""  # the suite's name in this run when one suite checks several tables, e.g. "text.task.sentiment"

    @property
    def name(self) -> str:
        return self.instance or self.suite


def suite_path(suite: str) -> Path:
    return SUITES_DIR / f"{suite}.json"


def load_suite(suite: str, parameters: Mapping[str, Any]) -> dict:
    """The suite file as a dict, every `{"$PARAMETER": name}` replaced by parameters[name].

    GX 1.x takes run-time parameters once per Checkpoint run, shared by every validation definition;
    the text tasks each need their own label range, so the values are filled in per check here.
    """
    path = suite_path(suite)
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise D2VError(f"{path}: cannot read the expectation suite ({exc})") from exc
    if not isinstance(tree, dict) or not isinstance(tree.get("expectations"), list):
        raise D2VError(f"{path}: expected a GX ExpectationSuite with an 'expectations' list")
    return _fill(tree, parameters, path)


def _fill(node: Any, parameters: Mapping[str, Any], path: Path) -> Any:
    if isinstance(node, dict):
        if set(node) == {"$PARAMETER"}:
            name = node["$PARAMETER"]
            if name not in parameters:
                raise D2VError(f"{path}: suite parameter {name!r} has no value (given: {sorted(parameters)})")
            return parameters[name]
        return {key: _fill(value, parameters, path) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(value, parameters, path) for value in node]
    return node


def run_checkpoint(name: str, checks: Sequence[Check], docs_dir: Path) -> list[dict]:
    """Validate every check in one Checkpoint; the Data Docs site is written to `docs_dir`."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    names = [c.name for c in checks]
    if len(set(names)) != len(names):
        raise D2VError(f"checkpoint {name}: two checks share a suite name ({names}); give each an instance name")
    context = gx.get_context(mode="ephemeral")
    # GX draws a tqdm bar per validation; under DVC (no terminal) each one is left as a
    # "Calculating Metrics: 0%" line, 50-odd in a demo. The stage prints its own summary.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.add_data_docs_site(site_name=DOCS_SITE, site_config={
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(Path(docs_dir).resolve())},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "show_how_to_buttons": False},
    })  # fmt: skip
    batches = _batch_definitions(context, name, checks)
    definitions = []
    for check in checks:
        suite = load_suite(check.suite, check.parameters) | {"name": check.name}
        suite["meta"] = {**suite.get("meta", {}), "file": str(suite_path(check.suite).relative_to(SUITES_DIR.parents[2]))}
        registered = context.suites.add(gx.ExpectationSuite(**suite))
        definitions.append(context.validation_definitions.add(
            gx.ValidationDefinition(name=check.name, data=batches[check.table], suite=registered)))  # fmt: skip
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=name, validation_definitions=definitions, actions=[],
        result_format={"result_format": "SUMMARY", "unexpected_index_column_names": [ID_COLUMN]}))  # fmt: skip
    result = checkpoint.run(run_id=gx.core.run_identifier.RunIdentifier(run_name=name))
    # One build of the whole site after the run: GX's UpdateDataDocsAction rebuilds the site (static
    # files, index) once per validation result, 13 times for text, which took ~7 s of a ~10 s stage.
    context.build_data_docs(site_names=[DOCS_SITE])
    by_name = {c.name: c for c in checks}
    return [_record(item, by_name[suite_result.suite_name], suite_result.suite_name)
            for suite_result in result.run_results.values() for item in suite_result.results]  # fmt: skip


def _batch_definitions(context: Any, name: str, checks: Sequence[Check]) -> dict[str, Any]:
    """One GX CSV asset per table, in one pandas filesystem data source per folder."""
    sources: dict[Path, Any] = {}
    batches: dict[str, Any] = {}
    for check in checks:
        folder = check.csv.parent  # relative paths stay relative: the pages then name repo paths
        if folder not in sources:
            sources[folder] = context.data_sources.add_pandas_filesystem(f"{name}-{len(sources)}", base_directory=folder)
        if check.table not in batches:
            asset = sources[folder].add_csv_asset(check.table, **dict(check.read_options))
            batches[check.table] = asset.add_batch_definition_path(check.table, path=check.csv.name)
    return batches


def _record(item: Any, check: Check, suite_name: str) -> dict:
    config = item.expectation_config.to_json_dict()
    res = item.result or {}
    error = (item.exception_info or {}).get("exception_message") if not item.success else None
    index = res.get("partial_unexpected_index_list") or []
    return {
        "expectation": config["type"],
        "kwargs": {k: v for k, v in config["kwargs"].items() if k != "batch_id"},
        "suite": suite_name,
        "frame": check.table,
        "file": check.file,
        "success": bool(item.success),
        "unexpected_count": res.get("unexpected_count"),
        "observed_value": _plain(res.get("observed_value")),
        "examples": [_plain(v) for v in (res.get("partial_unexpected_list") or [])[:MAX_EXAMPLES]],
        "ids": [_plain(row.get(ID_COLUMN)) for row in index[:MAX_EXAMPLES] if isinstance(row, dict)],
        "error": error,
    }  # fmt: skip


def _plain(value: Any) -> Any:
    """numpy scalars and tuples (pair expectations) to JSON values."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value.item() if hasattr(value, "item") else value
