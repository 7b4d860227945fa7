"""`d2v artifacts publish|ls|get|promote|pointers|init`: the artifact store from the shell.

The store location comes from the `artifacts` section of params.yaml (--params), overridable with
--uri / --endpoint-url; credentials and the rest from the standard AWS environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from d2v import MODALITIES
from d2v.artifacts.config import ArtifactsConfig, promoter_config
from d2v.artifacts.errors import ArtifactError
from d2v.artifacts.store import ArtifactStore, Metric, collect_files
from d2v.config import DEFAULT_PARAMS_PATH, load_params, to_mapping
from d2v.progress import TransferLog, human_size


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("artifacts", help="publish, list, fetch and promote runs")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default=None,
                        help="params.yaml to read the artifacts section from (default: ./params.yaml "
                             "when present, else built-in defaults)")
    common.add_argument("--uri", help="override artifacts.uri (file://DIR or s3://BUCKET/PREFIX)")
    common.add_argument("--endpoint-url", help="override artifacts.endpoint_url (MinIO, moto)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    publish = actions.add_parser("publish", parents=[common], help="publish files as a new run")
    publish.add_argument("paths", nargs="+", type=Path,
                         help="one directory (its contents become the run) or files/directories")
    publish.add_argument("--run-id", help="default: UTC time + random suffix")
    publish.add_argument("--modality", choices=MODALITIES, help="also move latest:<modality>")
    publish.add_argument("--extra", action="append", default=[], metavar="KEY=VALUE",
                         help="free-form manifest field (VALUE parsed as JSON when it is JSON)")
    publish.set_defaults(func=run_publish)

    ls = actions.add_parser("ls", parents=[common], help="list complete runs with sizes")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_ls)

    get = actions.add_parser("get", parents=[common], help="download a run, checksums verified")
    get.add_argument("run", help="run id, latest:<modality> or champion:<modality>")
    get.add_argument("dest", type=Path, nargs="?", default=None, help="default: ./<run id>")
    get.add_argument("--file", help="only this file of the run (its path in the manifest)")
    get.set_defaults(func=run_get)

    promote = actions.add_parser("promote", parents=[common], help="make a run the champion")
    promote.add_argument("run", help="run id (or latest:<modality>)")
    promote.add_argument("--modality", choices=MODALITIES, required=True)
    promote.add_argument("--metric", required=True, metavar="NAME=VALUE",
                         help="the metric that justifies the promotion, e.g. top1=0.84")
    promote.set_defaults(func=run_promote)

    pointers = actions.add_parser("pointers", parents=[common], help="show latest/champion runs")
    pointers.add_argument("--json", action="store_true", help="print JSON")
    pointers.set_defaults(func=run_pointers)

    init = actions.add_parser("init", parents=[common], help="create the S3 bucket if missing and enable "
                              "versioning, default encryption and the public-access block")
    init.add_argument("--no-harden", action="store_true",
                      help="only create the bucket (for an endpoint that cannot enable those settings)")
    init.set_defaults(func=run_init)


def artifacts_config(args: argparse.Namespace) -> ArtifactsConfig:
    params_path = Path(args.params) if args.params else DEFAULT_PARAMS_PATH
    if args.params or params_path.is_file():
        cfg = load_params(params_path).artifacts
    else:
        cfg = ArtifactsConfig()
    overrides = {"uri": args.uri, "endpoint_url": args.endpoint_url}
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def recorded_params(args: argparse.Namespace) -> dict[str, Any]:
    params_path = Path(args.params) if args.params else DEFAULT_PARAMS_PATH
    return to_mapping(load_params(params_path)) if params_path.is_file() else {}


def run_publish(args: argparse.Namespace) -> int:
    store = ArtifactStore.from_config(artifacts_config(args))
    files = collect_files(args.paths)
    manifest = store.publish(files, run_id=args.run_id, modality=args.modality,
                             params=recorded_params(args), extra=parse_extra(args.extra),
                             progress=TransferLog())
    print(f"published {manifest.run_id}: {len(manifest.files)} files, "
          f"{human_size(manifest.total_size)} -> {store.backend.uri}/runs/{manifest.run_id}/")
    return 0


def run_ls(args: argparse.Namespace) -> int:
    store = ArtifactStore.from_config(artifacts_config(args))
    runs = store.list_runs()
    tags: dict[str, list[str]] = {}
    for pointer in store.pointers():
        tags.setdefault(pointer.run_id, []).append(f"{pointer.kind}:{pointer.modality}")
    if args.json:
        rows = [{**dataclasses.asdict(r), "tags": tags.get(r.run_id, [])} for r in runs]
        print(json.dumps(rows, indent=2))
        return 0
    if not runs:
        print(f"no complete runs in {store.backend.uri}")
        return 0
    width = max(len(r.run_id) for r in runs)
    print(f"{'RUN':<{width}}  {'FILES':>5}  {'SIZE':>10}  POINTERS")
    for r in runs:
        print(f"{r.run_id:<{width}}  {r.n_files:>5}  {human_size(r.size):>10}  "
              f"{' '.join(tags.get(r.run_id, []))}")
    return 0


def run_get(args: argparse.Namespace) -> int:
    store = ArtifactStore.from_config(artifacts_config(args))
    run_id = store.resolve(args.run)
    dest = args.dest if args.dest is not None else Path(run_id)
    written = store.download(run_id, dest, path=args.file, progress=TransferLog())
    print(f"got {run_id}: {len(written)} files verified -> {dest}")
    return 0


def run_promote(args: argparse.Namespace) -> int:
    store = ArtifactStore.from_config(promoter_config(artifacts_config(args)))
    name, value = parse_metric(args.metric)
    pointer = store.promote(store.resolve(args.run), args.modality, Metric(name, value))
    print(f"champion:{pointer.modality} -> {pointer.run_id} ({name}={value:g})")
    return 0


def run_pointers(args: argparse.Namespace) -> int:
    store = ArtifactStore.from_config(artifacts_config(args))
    pointers = store.pointers()
    if args.json:
        print(json.dumps([to_mapping(p) for p in pointers], indent=2))
        return 0
    if not pointers:
        print(f"no pointers in {store.backend.uri}")
    for p in pointers:
        metric = f"  {p.metric.name}={p.metric.value:g}" if p.metric else ""
        print(f"{p.kind}:{p.modality}  {p.run_id}  {p.updated_at}{metric}")
    return 0


def run_init(args: argparse.Namespace) -> int:
    cfg = artifacts_config(args)
    if not cfg.uri.startswith("s3://"):
        ArtifactStore.from_config(cfg)  # validates the URI
        print(f"{cfg.uri}: local store, nothing to create")
        return 0
    from d2v.artifacts.s3 import S3Backend, bucket_protection, ensure_bucket

    created = ensure_bucket(cfg, harden=not args.no_harden)
    print(f"{cfg.uri}: bucket {'created' if created else 'already exists'}")
    for name, enabled in bucket_protection(S3Backend(cfg)).items():
        print(f"  {name}: {'on' if enabled else 'OFF'}")
    return 0


def parse_metric(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise ArtifactError(f"--metric {text!r}: expected NAME=NUMBER, e.g. top1=0.84") from None


def parse_extra(items: list[str]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ArtifactError(f"--extra {item!r}: expected KEY=VALUE")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    return extra


