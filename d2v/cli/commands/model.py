"""`d2v model show <modality> [--json]`: the fully resolved model spec that pretraining builds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from d2v import MODALITIES
from d2v.config import Params, load_params


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "model",
        help="show the resolved data2vec model spec of a modality",
        description="Print the spec `d2v pretrain <modality>` builds: the released base configuration, "
        "the size preset's changes, the prepared data's shape (image size and channels, text vocabulary) "
        "and params.yaml's model.<modality>.overrides, every field named with the layer that set it.",
    )
    parser.add_argument("action", choices=["show"])
    parser.add_argument("modality", choices=MODALITIES)
    parser.add_argument("--params", default="params.yaml", help="path to params.yaml")
    parser.add_argument("--json", action="store_true", help="print JSON (spec, set_by, parameter counts)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    from d2v.models.describe import describe_model, render_description  # torch only when run

    modality = args.modality
    shape, source = _data_shape(params, modality)
    description = describe_model(modality, getattr(params.model, modality), shape, source)
    print(json.dumps(description, indent=2) if args.json else render_description(description))
    return 0


def _data_shape(params: Params, modality: str) -> tuple["DataShape", str]:
    """The prepared data's shape; before the data are prepared, what params.yaml will prepare."""
    from d2v.models import DataShape
    from d2v.train.run import prepared_shape

    data_root = Path(params.data.prepared_dir) / modality
    if (data_root / "meta.json").is_file():
        return prepared_shape(modality, data_root), str(data_root / "meta.json")
    fallback = f"params.yaml data.{modality} ({data_root / 'meta.json'} not found: run the prepare stage)"
    if modality == "image":
        return DataShape(image_size=params.data.image.image_size, channels=params.data.image.channels), fallback
    if modality == "text":
        return DataShape(vocab_size=params.data.text.vocab_size), fallback
    return DataShape(), fallback
