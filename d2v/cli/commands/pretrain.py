"""`d2v pretrain <modality>`: the pretrain@<modality> stage; also runs under torchrun."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from d2v import MODALITIES
from d2v.config import load_params

INIT_CHECKPOINT_ENV = "D2V_INIT_CHECKPOINT"  # set by the Prefect retrain flow's warm start


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain data2vec on one modality's prepared data",
        description="Pretrain one modality (model.<modality> preset, pretrain.<modality> recipe). "
        "Runs on 1 process or under `torchrun --nproc_per_node=N -m d2v.cli pretrain <modality>`.",
    )
    parser.add_argument("modality", choices=MODALITIES)
    parser.add_argument("--params", default="params.yaml", help="path to params.yaml")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint if it exists")
    parser.add_argument(
        "--init-checkpoint",
        default=os.environ.get(INIT_CHECKPOINT_ENV) or None,
        help=f"warm start: initial weights from this checkpoint (default: ${INIT_CHECKPOINT_ENV})",
    )
    parser.add_argument("--models-dir", default="models", help="checkpoint goes to <dir>/<modality>/checkpoint.pt")
    parser.add_argument("--metrics-dir", default="metrics/pretrain", help="<modality>.json summary + .tsv per step")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    from d2v.train.run import run_pretraining  # torch import only when the command runs

    modality = args.modality
    summary = run_pretraining(
        modality,
        getattr(params.model, modality),
        params.pretrain.for_modality(modality),
        data_root=Path(params.data.prepared_dir) / modality,
        checkpoint=Path(args.models_dir) / modality / "checkpoint.pt",
        metrics_dir=Path(args.metrics_dir),
        seed=params.pretrain.resolve_seed(params.seed),
        max_speech_seconds=params.data.speech.max_seconds,
        resume=args.resume,
        init_checkpoint=Path(args.init_checkpoint) if args.init_checkpoint else None,
    )
    if summary:
        print(json.dumps({k: summary[k] for k in sorted(summary) if not isinstance(summary[k], (dict, list))}, indent=1))
    return 0
