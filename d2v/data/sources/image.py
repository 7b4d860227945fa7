"""Image sources: IDX files (Fashion-MNIST, MNIST) and ImageFolder trees (ImageNet, your own folders)."""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from d2v.errors import D2VError

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}


def load_idx(path: str | Path) -> np.ndarray:
    """Read one (optionally gzipped) IDX file of unsigned bytes; shape from its header."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise D2VError(f"{path}: cannot read IDX file ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise D2VError(f"{path}: not an IDX file of unsigned bytes (magic {data[:4].hex()})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(data) != expected:
        raise D2VError(f"{path}: truncated IDX file ({len(data)} bytes, header says {expected})")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion_mnist(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) uint8) of the official 'train' or 'test' split."""
    prefix = {"train": "train", "test": "t10k"}[split]
    root = Path(root)
    images = load_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = load_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    if len(images) != len(labels):
        raise D2VError(f"{root}: {split} has {len(images)} images but {len(labels)} labels")
    return images, labels


def list_image_folder(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted folder names) and (file, class index) pairs of an ImageFolder tree."""
    root = Path(root)
    if not root.is_dir():
        raise D2VError(f"{root}: ImageFolder directory not found")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise D2VError(f"{root}: no class folders found (expected <root>/<class>/<image>)")
    items = [
        (path, index)
        for index, name in enumerate(classes)
        for path in sorted((root / name).rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    return classes, items


def load_image(path: Path, size: int, channels: int) -> np.ndarray:
    """Decode, resize the shorter side to `size`, centre-crop: uint8 (size, size, channels)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise D2VError(f"{path}: cannot read image ({exc})") from exc
    return decode_image(data, size, channels, str(path))


def decode_image(data: bytes, size: int, channels: int, name: str) -> np.ndarray:
    """`load_image` on bytes already read (the decode worker hashes the same bytes)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            scale = size / min(img.size)
            new = (max(size, round(img.width * scale)), max(size, round(img.height * scale)))
            img = img.resize(new, Image.BICUBIC)
            left, top = (img.width - size) // 2, (img.height - size) // 2
            img = img.crop((left, top, left + size, top + size))
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise D2VError(f"{name}: cannot decode image ({exc})") from exc
    return array.reshape(size, size, channels)


def listing_digest(root: Path, files: Iterable[Path]) -> str:
    """sha256 over the sorted (path relative to `root`, size) pairs: cheap (one stat per file), and it
    changes when a file is added, removed, renamed or rewritten with another size."""
    digest = hashlib.sha256()
    for relative, size in sorted((p.relative_to(root).as_posix(), p.stat().st_size) for p in files):
        digest.update(f"{relative}\t{size}\n".encode("utf-8"))
    return digest.hexdigest()
