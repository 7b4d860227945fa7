"""Image prepare: a source -> data/prepared/image (uint8 (N, H, W, C) .npy shards + manifest + meta).

Layout:
  <split>-<k>.npy   uint8 (N, H, W, C), one file per `shard_size` images of one split
  manifest.csv      id, split, label, height, width, shard, index   (index = row inside the shard)
  meta.json         num_classes, class_names, channels, height, width, mean, std (per channel, 0-1
                    scale, computed on the train split), splits {name: count}, source; for the file
                    sources (imagenet, folder) also root, layout, content_sha256 {split: digest} and
                    skipped {split: [{item, reason}]}

The stage streams (d2v.data.shards): images are decoded in worker processes in a fixed order and
written a shard at a time, so memory holds one shard plus the images in flight; a killed run
continues from its last complete shard. Unreadable images are skipped and named; the stage fails
when more than `max_skipped_fraction` of a split is unreadable.

content_sha256 of a split: a sha256 chain over its (id, file sha256) pairs in id order,
h_0 = "", h_k = sha256(f"{h_(k-1)}\\t{id_k}\\t{sha256_k}\\n"), so it is resumed from one journalled hex string.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from d2v.atomic import atomic_write_json
from d2v.data.config import ImageConfig
from d2v.data.io import assign_split, first_repeat, write_csv
from d2v.data.shards import (
    ChannelMoments,
    RateProgress,
    ShardWriter,
    SkipLog,
    default_workers,
    fingerprint,
    parallel_map,
    resumable_dir,
    worker_pool,
)
from d2v.data.sources.image import (
    FASHION_MNIST_CLASSES,
    decode_image,
    list_image_folder,
    listing_digest,
    load_fashion_mnist,
)
from d2v.data.sources.imagenet import locate_imagenet
from d2v.errors import D2VError
from d2v.layout import DOWNLOAD_CACHE_DIR

MANIFEST_COLUMNS = ("id", "split", "label", "height", "width", "shard", "index")
SPLITS = ("train", "valid", "test")


@dataclass
class ImageSplit:
    """An embedded split, in memory (Fashion-MNIST is 47 MB)."""

    ids: list[str]
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int


@dataclass(frozen=True)
class FileItem:
    id: str  # path relative to the source root (posix)
    label: int
    path: str


@dataclass(frozen=True)
class Decoded:
    """One source item after decoding: `image` is None when it was unreadable (`reason` says why)."""

    id: str
    label: int
    image: np.ndarray | None
    sha256: str = ""  # of the file's bytes ('' for embedded images)
    reason: str = ""


Decoder = Callable[[int], Iterator[Decoded]]  # the split's items from a start index on, in order


@dataclass(frozen=True)
class FilePlan:
    """What a file source holds, split: the input of the streaming writer."""

    source: str
    root: Path
    layout: str
    classes: tuple[str, ...]
    splits: dict[str, list[FileItem]]


class SplitStats:
    """The running state of one split that a resumed run needs back: moments (train only), skips,
    and the content digest chain. JSON-able, journalled with every shard."""

    def __init__(self, split: str, cfg: ImageConfig, state: dict[str, Any]) -> None:
        self.moments = ChannelMoments(cfg.channels, state.get("moments")) if split == "train" else None
        self.skips = SkipLog(f"data.image: {split} split", cfg.max_skipped_fraction, state.get("skips"))
        self.content = str(state.get("content", ""))

    def count(self, item: Decoded) -> None:
        if item.sha256:
            self.content = hashlib.sha256(f"{self.content}\t{item.id}\t{item.sha256}\n".encode("utf-8")).hexdigest()
        if item.image is None:
            self.skips.skip(item.id, item.reason)
            return
        self.skips.ok()
        if self.moments is not None:
            self.moments.add(item.image)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"skips": self.skips.state(), "content": self.content}
        if self.moments is not None:
            state["moments"] = self.moments.state()
        return state


def prepare_image(
    cfg: ImageConfig, seed: int, out_dir: str | Path, cache_dir: str | Path = DOWNLOAD_CACHE_DIR
) -> dict[str, int]:
    """Build the prepared image directory (resumable, replaced atomically at the end); return the
    split sizes. `cache_dir`: where the ILSVRC2012 archives are extracted (once)."""
    if cfg.source == "embedded":
        splits, classes = _fashion_mnist_splits(cfg, seed)
        idx_dir = Path(cfg.fashion_mnist_dir)
        listing = listing_digest(idx_dir, idx_dir.glob("*-ubyte.gz"))
        decoders = {name: _array_decoder(split) for name, split in splits.items()}
        sizes = {name: len(split.ids) for name, split in splits.items()}
        return _prepare(cfg, seed, out_dir, listing, decoders, sizes, classes, extra=None)
    plan = _file_plan(cfg, seed, Path(cache_dir))
    print(f"[prepare image] {plan.source}: {plan.layout} at {plan.root}", file=sys.stderr)
    listing = _plan_listing(plan)
    sizes = {name: len(items) for name, items in plan.splits.items()}
    extra = {"root": str(plan.root), "layout": plan.layout}
    with worker_pool(cfg.workers or default_workers()) as pool:
        decoders = {name: _file_decoder(items, cfg, pool) for name, items in plan.splits.items()}
        return _prepare(cfg, seed, out_dir, listing, decoders, sizes, plan.classes, extra)


def _prepare(cfg: ImageConfig, seed: int, out_dir: str | Path, listing: str, decoders: dict[str, Decoder],
             sizes: dict[str, int], classes: tuple[str, ...], extra: dict[str, Any] | None) -> dict[str, int]:  # fmt: skip
    # The worker count does not change a byte of the output: a resumed run may use another.
    stage_print = fingerprint(replace(cfg, workers=0), seed, listing)
    with resumable_dir(out_dir, stage_print) as staging:
        rows: list[list[Any]] = []
        stats: dict[str, SplitStats] = {}
        for name, decode in decoders.items():
            split_rows, stats[name] = _write_split(staging, name, sizes[name], decode, cfg)
            rows += split_rows
        write_csv(staging / "manifest.csv", MANIFEST_COLUMNS, rows)
        meta = _meta(cfg, classes, stats, rows, extra)
        atomic_write_json(staging / "meta.json", meta)
    return meta["splits"]


def _write_split(staging: Path, split: str, total: int, decode: Decoder, cfg: ImageConfig) -> tuple[list, SplitStats]:
    writer = ShardWriter(staging, split, max_items=cfg.shard_size)
    stats = SplitStats(split, cfg, writer.resumed.stats)
    progress = RateProgress(f"prepare image {split}", total, unit="images", initial=writer.next_index)
    for index, item in enumerate(decode(writer.next_index), start=writer.next_index):
        stats.count(item)
        if item.image is not None:
            row = [item.id, split, item.label, cfg.image_size, cfg.image_size]
            writer.add(item.image, row, index, stats.state())
        progress.update(index + 1)
    writer.flush(stats.state(), next_index=total)
    progress.close()
    stats.skips.check()
    return writer.rows, stats


def _meta(cfg: ImageConfig, classes: tuple[str, ...], stats: dict[str, SplitStats], rows: list[list[Any]],
          extra: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    mean, std = stats["train"].moments.mean_std()  # type: ignore[union-attr]
    meta: dict[str, Any] = {
        "source": cfg.source,
        "num_classes": len(classes),
        "class_names": list(classes),
        "channels": cfg.channels,
        "height": cfg.image_size,
        "width": cfg.image_size,
        "mean": mean,
        "std": std,
        "splits": {name: sum(1 for r in rows if r[1] == name) for name in stats},
    }
    if extra is not None:  # file sources only: the embedded meta.json stays as it always was
        meta |= extra
        meta["content_sha256"] = {name: s.content for name, s in stats.items()}
        meta["skipped"] = {name: s.skips.skipped for name, s in stats.items()}
    return meta


# ------------------------------------------------------------------------------------ embedded


def _fashion_mnist_splits(cfg: ImageConfig, seed: int) -> tuple[dict[str, ImageSplit], tuple]:
    rng = np.random.default_rng(seed)
    train_x, train_y = load_fashion_mnist(cfg.fashion_mnist_dir, "train")
    test_x, test_y = load_fashion_mnist(cfg.fashion_mnist_dir, "test")
    if cfg.valid_size + cfg.train_size > len(train_x):
        raise D2VError(
            f"data.image: train_size + valid_size = {cfg.train_size + cfg.valid_size} "
            f"exceeds the {len(train_x)} official train images"
        )
    order = rng.permutation(len(train_x))
    # Valid first, so that changing train_size never moves an image between train and valid.
    picks = {"train": order[cfg.valid_size : cfg.valid_size + cfg.train_size],
             "valid": order[: cfg.valid_size]}  # fmt: skip
    test_order = rng.permutation(len(test_x))[: cfg.test_size or len(test_x)]
    splits = {
        name: _fmnist_split(train_x, train_y, np.sort(idx), "train", cfg)
        for name, idx in picks.items()
    }
    splits["test"] = _fmnist_split(test_x, test_y, np.sort(test_order), "test", cfg)
    return splits, FASHION_MNIST_CLASSES


def _fmnist_split(x: np.ndarray, y: np.ndarray, idx: np.ndarray, official: str, cfg: ImageConfig) -> ImageSplit:
    images = x[idx][..., None]  # (N, 28, 28, 1)
    if cfg.image_size != images.shape[1]:
        images = np.stack([_resize(img, cfg.image_size) for img in images])
    if cfg.channels == 3:
        images = np.repeat(images, 3, axis=-1)  # (N, H, W, 3)
    ids = [f"fmnist-{official}-{i:05d}" for i in idx]
    return ImageSplit(ids, np.ascontiguousarray(images), y[idx].astype(np.int64))


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img[..., 0]).resize((size, size), Image.BICUBIC))[..., None]


def _array_decoder(split: ImageSplit) -> Decoder:
    def decode(start: int) -> Iterator[Decoded]:
        for row in range(start, len(split.ids)):
            yield Decoded(split.ids[row], int(split.labels[row]), split.images[row])

    return decode


# ------------------------------------------------------------------------------- file sources


def _file_plan(cfg: ImageConfig, seed: int, cache_dir: Path) -> FilePlan:
    plan = _imagenet_plan(cfg, seed, cache_dir / "imagenet") if cfg.source == "imagenet" else _folder_plan(cfg, seed)
    _check_unique_ids(plan)
    for name, items in plan.splits.items():
        if not items:
            raise D2VError(f"data.image ({plan.source} at {plan.root}): the {name} split is empty; "
                           "add images or change the split sizes")  # fmt: skip
    return plan


def _imagenet_plan(cfg: ImageConfig, seed: int, extract_dir: Path) -> FilePlan:
    """ImageNet train -> train/valid (imagenet.valid_size held out), ImageNet val -> test."""
    inet = cfg.imagenet
    files = locate_imagenet(inet.root, inet.md5, extract_dir)
    train_items, test_items = _cap(files.train, inet.max_per_class), _cap(files.val, inet.max_per_class)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_items))
    n_valid = min(inet.valid_size, len(order))
    picks = {"train": order[n_valid : n_valid + (inet.train_size or len(order))], "valid": order[:n_valid]}
    # A seeded subset: the val listing is sorted by class (per-class layout), a prefix would drop classes.
    test_pick = rng.permutation(len(test_items))[: inet.test_size or len(test_items)]
    splits = {name: _items([train_items[i] for i in idx], files.root) for name, idx in picks.items()}
    splits["test"] = _items([test_items[i] for i in test_pick], files.root)
    return FilePlan("imagenet", files.root, files.layout, files.classes, splits)


def _folder_plan(cfg: ImageConfig, seed: int) -> FilePlan:
    """Your ImageFolder: train/<class>/ -> train + valid (+ test without val/); val/<class>/ -> test.
    Split by a seeded hash of each file's path, so adding images never moves the others."""
    folder = cfg.folder
    root = Path(folder.root)
    classes, train_items = list_image_folder(root / "train")
    has_val = (root / "val").is_dir()
    test_fraction = 0.0 if has_val else folder.test_fraction
    splits: dict[str, list[tuple[Path, int]]] = {name: [] for name in SPLITS}
    for path, label in train_items:
        key = path.relative_to(root).as_posix()
        splits[assign_split(key, seed, folder.valid_fraction, test_fraction)].append((path, label))
    if has_val:
        splits["test"] = _relabel(root / "val", classes)
    layout = "train/ + val/" if has_val else f"train/ only (test = {test_fraction:g} of it)"
    return FilePlan("folder", root, layout, tuple(classes), {name: _items(v, root) for name, v in splits.items()})


def _relabel(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """An ImageFolder's items labelled by the train classes; a class folder train lacks is an error."""
    own_classes, items = list_image_folder(folder)
    index = {name: i for i, name in enumerate(classes)}
    for name in own_classes:
        if name not in index:
            raise D2VError(f"{folder / name}: unknown label {name!r}: not a class folder of {folder.parent / 'train'}")
    return [(path, index[own_classes[label]]) for path, label in items]


def _cap(items: list[tuple[Path, int]], max_per_class: int) -> list[tuple[Path, int]]:
    if not max_per_class:
        return items
    seen: dict[int, int] = {}
    kept = []
    for path, label in items:
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= max_per_class:
            kept.append((path, label))
    return kept


def _items(pairs: list[tuple[Path, int]], root: Path) -> list[FileItem]:
    # Sorted by id: the content digest is defined over the id order, and shards follow it.
    items = [FileItem(path.relative_to(root).as_posix(), label, str(path)) for path, label in pairs]
    return sorted(items, key=lambda item: item.id)


def _check_unique_ids(plan: FilePlan) -> None:
    repeat = first_repeat((item.id, name) for name, items in plan.splits.items() for item in items)
    if repeat is not None:
        item_id, first, again = repeat
        raise D2VError(f"{plan.root}: duplicate id {item_id!r} (in {first} and {again})")


def _plan_listing(plan: FilePlan) -> str:
    """The digest of every planned file's (path, size): a changed source starts a fresh staging dir."""
    files = [Path(item.path) for items in plan.splits.values() for item in items]
    return listing_digest(plan.root, files)


def _file_decoder(items: list[FileItem], cfg: ImageConfig, pool: Any) -> Decoder:
    def decode(start: int) -> Iterator[Decoded]:
        tasks = [(item.path, cfg.image_size, cfg.channels) for item in items[start:]]
        for item, (image, sha, reason) in zip(items[start:], parallel_map(_decode_file, tasks, pool)):
            yield Decoded(item.id, item.label, image, sha, reason)

    return decode


def _decode_file(task: tuple[str, int, int]) -> tuple[np.ndarray | None, str, str]:
    """(image or None, sha256 of the file's bytes, why it was skipped): runs in a decode worker,
    which reads each file once for both the digest and the image."""
    path, size, channels = task
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, "", f"cannot read ({exc.strerror or exc})"
    sha = hashlib.sha256(data).hexdigest()
    try:
        return decode_image(data, size, channels, path), sha, ""
    except D2VError as exc:
        return None, sha, f"cannot decode image ({exc.__cause__ or exc})"
