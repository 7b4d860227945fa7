#!/usr/bin/env python3
"""Render the Kubernetes Job that the Prefect worker would create from k8s-gpu-job-template.json.

    python infra/prefect/render_job.py --set gpus_per_node=8 --set pull_stages=pretrain@image \
        --set dvc_remote=s3://my-d2v-dvc/d2v > job.json
    kubectl apply --dry-run=server -f job.json      # let a cluster check it, without running it

Values of string variables are taken as they are, others are JSON (8, {"name": ...}); all are
checked against the template's variable schema, as Prefect does. The rendering is
Prefect's own templating (variable defaults, then the values) followed by what the
prefect-kubernetes worker does before it submits the Job: the `env` variable (a mapping) becomes
the container's list of variables, ahead of the template's own, and the command string becomes
`args`. The worker also adds its Prefect settings (PREFECT_API_URL, the flow run id ...) to `env`;
pass them with --set env='{...}' to see them. tests/infra/test_k8s_manifests.py validates the
result against the Kubernetes schema.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
from prefect.utilities.templating import apply_values

TEMPLATE = Path(__file__).resolve().with_name("k8s-gpu-job-template.json")
FLOW_RUN_COMMAND = "prefect flow-run execute"


def variable_defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    properties = template["variables"]["properties"]
    return {name: spec["default"] for name, spec in properties.items() if "default" in spec}


def render_job(values: Mapping[str, Any], template: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Job manifest for one flow run with these job variables."""
    template = json.loads(TEMPLATE.read_text()) if template is None else template
    merged = {"name": "d2v-flow-run", "command": FLOW_RUN_COMMAND, **variable_defaults(template), **values}
    # Prefect checks a deployment's job variables against this schema too (e.g. "1", not 1).
    jsonschema.validate(merged, template["variables"])
    configuration = apply_values(template["job_configuration"], merged)
    manifest: dict[str, Any] = configuration["job_manifest"]
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    # prefect-kubernetes' _populate_env_in_manifest: the `env` job variable first, then the
    # template's entries that it does not override.
    extra = configuration.get("env") or {}
    if not isinstance(extra, Mapping):
        raise ValueError(f"env must be a mapping of names to values, got {extra!r}")
    first = [{"name": name, "value": value} for name, value in extra.items()]
    own = container.get("env") or []
    container["env"] = first + [item for item in own if item["name"] not in extra]
    # _populate_command_if_not_present: a command string becomes a list of arguments.
    if isinstance(container.get("args"), str):
        container["args"] = shlex.split(container["args"])
    return manifest


def parse_value(raw: str, spec: Mapping[str, Any]) -> Any:
    """A string variable takes VALUE as it is; any other parses it as JSON (8, {...}, true)."""
    if spec.get("type") == "string":
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a job variable (repeatable); VALUE is JSON or a plain string")
    args = parser.parse_args(argv)
    template = json.loads(TEMPLATE.read_text())
    properties = template["variables"]["properties"]
    values: dict[str, Any] = {}
    for item in args.set:
        name, sep, raw = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected NAME=VALUE")
        if name not in properties:
            parser.error(f"unknown job variables {[name]}; the template declares {sorted(properties)}")
        values[name] = parse_value(raw, properties[name])
    try:
        manifest = render_job(values, template)
    except jsonschema.ValidationError as exc:
        parser.error(f"job variable {'.'.join(map(str, exc.absolute_path))}: {exc.message}")
    json.dump(manifest, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
