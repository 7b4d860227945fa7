"""`d2v pretrain <modality>`: the pretrain@<modality> stage, on one process or under torchrun.

With --nproc-per-node N > 1 (or multi-node rendezvous options) the command re-launches itself
under torchrun (d2v/train/launch.py); the options default to D2V_NPROC_PER_NODE, D2V_NNODES, ...
so that a Prefect flow can set them for `dvc repro`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from d2v.config import load_params
from d2v.layout import MODALITIES, MODELS_DIR, PARAMS_FILE, PRETRAIN_METRICS_DIR, Layout
from d2v.train.launch import (
    INIT_CHECKPOINT_ENV,
    NNODES_ENV,
    NODE_RANK_ENV,
    NPROC_ENV,
    RDZV_BACKEND_ENV,
    RDZV_ENDPOINT_ENV,
    RDZV_ID_ENV,
    Launch,
    Rendezvous,
    run_torchrun,
    under_torchrun,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain data2vec on one modality's prepared data",
        description="Pretrain one modality (model.<modality> preset, pretrain.<modality> recipe) on one "
        "process, or on several: with --nproc-per-node N > 1 (or --nnodes and a rendezvous) it runs itself "
        "under `torchrun --nproc_per_node=N -m d2v.cli pretrain <modality>`.",
    )
    parser.add_argument("modality", choices=MODALITIES)
    parser.add_argument("--params", default=str(PARAMS_FILE), help="path to params.yaml")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint if it exists")
    parser.add_argument(
        "--init-checkpoint",
        default=os.environ.get(INIT_CHECKPOINT_ENV) or None,
        help=f"warm start: initial weights from this checkpoint (default: ${INIT_CHECKPOINT_ENV})",
    )
    parser.add_argument("--models-dir", default=str(MODELS_DIR),
                        help="checkpoint goes to <dir>/<modality>/checkpoint.pt")
    parser.add_argument("--metrics-dir", default=str(PRETRAIN_METRICS_DIR),
                        help="gets <modality>/: DVCLive summary metrics.json + plots/metrics/*.tsv per step")
    launch = parser.add_argument_group("processes (defaults: the environment variables named)")
    launch.add_argument("--nproc-per-node", type=int, help=f"processes on this machine (${NPROC_ENV}, else 1)")
    launch.add_argument("--nnodes", help=f'machines, "N" or "MIN:MAX" (${NNODES_ENV}, else 1)')
    launch.add_argument("--node-rank", type=int, help=f"static rendezvous only (${NODE_RANK_ENV})")
    launch.add_argument("--rdzv-backend", help=f"(${RDZV_BACKEND_ENV}, else c10d)")
    launch.add_argument("--rdzv-endpoint", help=f"host:port of node 0 (${RDZV_ENDPOINT_ENV})")
    launch.add_argument("--rdzv-id", help=f"job id shared by every node (${RDZV_ID_ENV})")
    parser.set_defaults(func=run)


def requested_launch(args: argparse.Namespace) -> Launch:
    """The environment's launch settings, with the command-line options on top."""
    env = Launch.from_env()
    rdzv = Rendezvous(
        nnodes=args.nnodes or env.rdzv.nnodes,
        node_rank=args.node_rank if args.node_rank is not None else env.rdzv.node_rank,
        backend=args.rdzv_backend or env.rdzv.backend,
        endpoint=args.rdzv_endpoint or env.rdzv.endpoint,
        run_id=args.rdzv_id or env.rdzv.run_id,
    )
    nproc = args.nproc_per_node if args.nproc_per_node is not None else env.nproc_per_node
    return Launch(nproc, rdzv)


def rank_args(args: argparse.Namespace) -> list[str]:
    """The command every torchrun rank runs: this one, without the launch options."""
    cli = [*(["--debug"] if args.debug else []), "pretrain", args.modality, "--params", str(args.params),
           "--models-dir", str(args.models_dir), "--metrics-dir", str(args.metrics_dir)]
    if args.resume:
        cli.append("--resume")
    if args.init_checkpoint:
        cli += ["--init-checkpoint", str(Path(args.init_checkpoint).resolve())]
    return cli


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)  # bad params fail here, once, not in every rank
    launch = requested_launch(args)
    if launch.needs_torchrun and not under_torchrun():
        return run_torchrun(rank_args(args), launch)
    from d2v.train.checkpoint_store import resolve_checkpoint_store  # torch import only when it runs
    from d2v.train.run import run_pretraining

    modality = args.modality
    layout = dataclasses.replace(Layout.from_data(params.data), models_dir=Path(args.models_dir),
                                 pretrain_metrics_dir=Path(args.metrics_dir))
    summary = run_pretraining(
        modality,
        getattr(params.model, modality),
        params.pretrain.for_modality(modality),
        data_root=layout.prepared(modality),
        checkpoint=layout.checkpoint(modality),
        metrics_dir=layout.pretrain_metrics_dir,
        seed=params.pretrain.resolve_seed(params.seed),
        resume=args.resume,
        init_checkpoint=Path(args.init_checkpoint) if args.init_checkpoint else None,
        checkpoint_store=resolve_checkpoint_store(params.pretrain.checkpoint_store, params.artifacts),
    )
    if summary:
        print(json.dumps({k: summary[k] for k in sorted(summary) if not isinstance(summary[k], (dict, list))}, indent=1))
    return 0
