"""`d2v export` and `d2v import`: d2v checkpoints <-> Hugging Face transformers model directories."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from d2v.config import Params, load_params, to_mapping
from d2v.layout import PARAMS_FILE, Layout

if TYPE_CHECKING:  # torch is imported only when a command runs
    from d2v.interop.export import LoadedCheckpoint
    from d2v.interop.model_card import CardInfo
    from d2v.models import DataShape


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export",
        help="export a checkpoint's student encoder (transformers model or d2v safetensors)",
        description="--format hf: a transformers Data2Vec{Vision,Audio,Text}Model directory (config.json, "
        "model.safetensors, README.md model card), written only when the model has an exact transformers "
        "counterpart and the reloaded model reproduces d2v's outputs. --format safetensors: d2v's own "
        "weights-only format (model.safetensors + d2v_spec.json), for every model.",
    )
    export.add_argument("checkpoint", type=Path, help="a d2v checkpoint, e.g. models/text/checkpoint.pt")
    export.add_argument("--format", choices=("hf", "safetensors"), required=True)
    export.add_argument("--out", type=Path, required=True, help="output directory (replaced if it exists)")
    export.add_argument("--params", default=str(PARAMS_FILE), help="the params.yaml that trained the checkpoint")
    export.set_defaults(func=run_export)

    imp = subparsers.add_parser(
        "import",
        help="turn a transformers Data2Vec model directory into a d2v checkpoint",
        description="Reads config.json + weights (e.g. a `huggingface-cli download` of "
        "facebook/data2vec-vision-base), refuses what d2v cannot represent, checks that d2v reproduces "
        "the model's outputs, and writes a checkpoint for model.<modality>.init_from.",
    )
    imp.add_argument("hf_dir", type=Path, help="a local transformers model directory")
    imp.add_argument("--out", type=Path, required=True, help="the d2v checkpoint to write, e.g. imported/image.pt")
    imp.add_argument("--version", type=int, choices=(1, 2), default=1,
                     help="data2vec version of the recipe around the imported encoder (default 1)")
    imp.set_defaults(func=run_import)


def run_export(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    from d2v.interop.export import export_hf, export_safetensors, open_checkpoint

    layout = Layout.from_data(params.data)
    loaded = open_checkpoint(args.checkpoint, lambda modality: (getattr(params.model, modality), _shape(params, layout, modality)))
    card = _card(params, layout, loaded, args.format)
    export = export_hf if args.format == "hf" else export_safetensors
    result = export(loaded, args.out, card)
    diff = "" if result.max_abs_difference is None else f"; max |d2v - transformers| = {result.max_abs_difference:.3g}"
    print(f"wrote {result.out_dir} ({args.format}, {loaded.spec.modality} v{loaded.spec.version}) "
          f"in {result.seconds:.2f} s{diff}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from d2v.interop.import_ import import_hf

    result = import_hf(args.hf_dir, args.out, version=args.version)
    spec = result.spec
    print(f"wrote {result.checkpoint} ({spec.modality} v{spec.version}, {spec.encoder.depth} x {spec.encoder.dim}) "
          f"in {result.seconds:.2f} s; max |d2v - transformers| = {result.max_abs_difference:.3g}")
    print(f"use it: model.{spec.modality}.init_from: {result.checkpoint} (and model.{spec.modality}.version: {spec.version})")
    return 0


def _shape(params: Params, layout: Layout, modality: str) -> DataShape:
    """The prepared data's shape (as pretraining saw it); before preparation, params.yaml's."""
    from d2v.models import DataShape
    from d2v.train.run import prepared_shape

    root = layout.prepared(modality)
    if (root / "meta.json").is_file():
        return prepared_shape(modality, root)
    if modality == "image":
        return DataShape(image_size=params.data.image.image_size, channels=params.data.image.channels)
    if modality == "text":
        return DataShape(vocab_size=params.data.text.vocab_size)
    return DataShape()


def _card(params: Params, layout: Layout, loaded: LoadedCheckpoint, export_format: str) -> CardInfo:
    from d2v.artifacts.provenance import git_state
    from d2v.interop.model_card import CardInfo, read_eval_records

    modality = loaded.spec.modality
    commit, dirty = git_state(Path.cwd())
    data: dict[str, Any] = {"params data." + modality: to_mapping(getattr(params.data, modality))}
    meta = layout.prepared(modality) / "meta.json"
    if meta.is_file():
        data["prepared"] = str(meta)
    eval_path = layout.eval_metrics(modality)
    return CardInfo(
        spec=loaded.spec, checkpoint=str(loaded.path), step=loaded.step, fingerprint=loaded.fingerprint,
        export_format=export_format, data=data,
        recipe={"model." + modality: to_mapping(getattr(params.model, modality)),
                "pretrain." + modality: to_mapping(params.pretrain.for_modality(modality))},
        git_commit=commit, git_dirty=dirty, eval_records=read_eval_records(eval_path), eval_source=str(eval_path),
        imported_from=loaded.imported_from,
    )
