"""Image prepare: a source -> data/prepared/image (uint8 (N, H, W, C) .npy shards + manifest + meta).

Layout:
  <split>-<k>.npy   uint8 (N, H, W, C), one file per `shard_size` images of one split
  manifest.csv      id, split, label, height, width, shard, index   (index = row inside the shard)
  meta.json         num_classes, class_names, channels, height, width, mean, std (per channel, 0-1
                    scale, computed on the train split), splits {name: count}, source
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from d2v.data.config import ImageConfig
from d2v.atomic import atomic_dir, atomic_write_json
from d2v.data.io import write_csv, write_npy
from d2v.data.sources.image import (
    FASHION_MNIST_CLASSES,
    list_image_folder,
    load_fashion_mnist,
    load_image,
)
from d2v.errors import D2VError

MANIFEST_COLUMNS = ("id", "split", "label", "height", "width", "shard", "index")


@dataclass
class ImageSplit:
    ids: list[str]
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int


def prepare_image(cfg: ImageConfig, seed: int, out_dir: str | Path) -> dict[str, int]:
    """Build the prepared image directory atomically; return the split sizes."""
    if cfg.source == "embedded":
        splits, classes = _fashion_mnist_splits(cfg, seed)
    else:
        splits, classes = _imagenet_splits(cfg, seed)
    with atomic_dir(out_dir) as staging:
        rows = []
        for name, split in splits.items():
            rows += _write_shards(staging, name, split, cfg.shard_size)
        write_csv(staging / "manifest.csv", MANIFEST_COLUMNS, rows)
        train = splits["train"].images.astype(np.float64) / 255.0
        atomic_write_json(staging / "meta.json", {
            "source": cfg.source,
            "num_classes": len(classes),
            "class_names": list(classes),
            "channels": cfg.channels,
            "height": cfg.image_size,
            "width": cfg.image_size,
            "mean": train.mean(axis=(0, 1, 2)).round(6).tolist(),
            "std": train.std(axis=(0, 1, 2)).round(6).tolist(),
            "splits": {name: len(s.ids) for name, s in splits.items()},
        })  # fmt: skip
    return {name: len(s.ids) for name, s in splits.items()}


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


def _imagenet_splits(cfg: ImageConfig, seed: int) -> tuple[dict[str, ImageSplit], tuple]:
    """ImageNet train -> train/valid (valid_size held out), ImageNet val -> test."""
    root = Path(cfg.imagenet.root)
    if str(root).startswith("s3://"):
        raise D2VError(f"data.image.imagenet.root: {root}: s3:// ImageFolders are not supported yet "
                       "(sync it to a local directory first)")  # fmt: skip
    classes, train_items = list_image_folder(root / "train")
    test_classes, test_items = list_image_folder(root / "val")
    if test_classes != classes:
        raise D2VError(f"{root}: train/ and val/ have different class folders")
    train_items, test_items = _cap(train_items, cfg), _cap(test_items, cfg)
    order = np.random.default_rng(seed).permutation(len(train_items))
    n_valid = min(cfg.valid_size, len(order))
    picks = {"train": order[n_valid : n_valid + (cfg.train_size or len(order))], "valid": order[:n_valid]}
    splits = {name: _decode([train_items[i] for i in sorted(idx)], root, cfg) for name, idx in picks.items()}
    splits["test"] = _decode(test_items[: cfg.test_size or len(test_items)], root, cfg)
    return splits, tuple(classes)


def _cap(items: list[tuple[Path, int]], cfg: ImageConfig) -> list[tuple[Path, int]]:
    if not cfg.imagenet.max_per_class:
        return items
    seen: dict[int, int] = {}
    kept = []
    for path, label in items:
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= cfg.imagenet.max_per_class:
            kept.append((path, label))
    return kept


def _decode(items: list[tuple[Path, int]], root: Path, cfg: ImageConfig) -> ImageSplit:
    images = np.zeros((len(items), cfg.image_size, cfg.image_size, cfg.channels), np.uint8)  # (N, H, W, C)
    for row, (path, _) in enumerate(items):
        images[row] = load_image(path, cfg.image_size, cfg.channels)
    ids = [str(path.relative_to(root)) for path, _ in items]
    return ImageSplit(ids, images, np.array([label for _, label in items], np.int64))


def _write_shards(out: Path, name: str, split: ImageSplit, shard_size: int) -> list[tuple]:
    rows = []
    for k, start in enumerate(range(0, max(len(split.ids), 1), shard_size)):
        shard = f"{name}-{k:04d}.npy"
        write_npy(out / shard, split.images[start : start + shard_size])
        for index, row in enumerate(range(start, min(start + shard_size, len(split.ids)))):
            h, w = split.images.shape[1:3]
            rows.append((split.ids[row], name, int(split.labels[row]), h, w, shard, index))
    return rows
