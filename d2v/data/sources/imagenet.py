"""ImageNet (ILSVRC2012) in its official layouts, found automatically under `data.image.imagenet.root`:

- `per-class val`: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (an ImageFolder on both sides);
- `flat val + Kaggle labels`: train/<wnid>/ and a flat val/, labels in LOC_val_solution.csv (ImageId,
  PredictionString; the first token of PredictionString is the wnid). The Kaggle download nests the
  folders under ILSVRC/Data/CLS-LOC/ beside the csv; both that root and CLS-LOC itself are accepted;
- `flat val + devkit labels`: train/<wnid>/ and a flat val/, labels from the devkit
  (ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt: one ILSVRC2012_ID per line, in
  val file order, mapped to wnids by data/meta.mat);
- `ILSVRC2012 archives`: ILSVRC2012_img_train.tar (a tar of per-class tars), ILSVRC2012_img_val.tar
  (flat JPEGs) and ILSVRC2012_devkit_t12.tar.gz, md5-verified, then extracted safely (once) into a
  cache directory, which then holds the devkit layout.

Ids are file paths relative to the folder holding train/ and val/; labels index the sorted train wnids.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from d2v.data.download import extract, file_digest
from d2v.data.shards import RateProgress
from d2v.data.sources.image import IMAGE_SUFFIXES, list_image_folder, listing_digest
from d2v.errors import D2VError

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT_TAR = "ILSVRC2012_devkit_t12.tar.gz"
ARCHIVES = (TRAIN_TAR, VAL_TAR, DEVKIT_TAR)
KAGGLE_LABELS = "LOC_val_solution.csv"
KAGGLE_DATA = Path("ILSVRC/Data/CLS-LOC")
DEVKIT_DATA = Path("ILSVRC2012_devkit_t12/data")
DEVKIT_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "meta.mat"

Items = list[tuple[Path, int]]


@dataclass(frozen=True)
class ImageNetFiles:
    layout: str  # which official layout was found (logged, and recorded in meta.json)
    root: Path  # the folder holding train/ and val/: ids are relative to it
    classes: tuple[str, ...]  # train wnids, sorted; a label is an index into them
    train: Items
    val: Items


def locate_imagenet(root: str | Path, md5: dict[str, str], cache_dir: str | Path) -> ImageNetFiles:
    """Find which official layout `root` holds and list its train and val images with labels."""
    root = Path(root)
    if str(root).startswith("s3://"):
        raise D2VError(f"data.image.imagenet.root: {root}: s3:// ImageFolders are not supported yet "
                       "(sync it to a local directory first)")  # fmt: skip
    if not root.is_dir():
        raise D2VError(f"data.image.imagenet.root: {root}: directory not found")
    if any((root / name).is_file() for name in ARCHIVES):
        data = extract_archives(root, md5, Path(cache_dir))
        return _with_flat_val(data, "ILSVRC2012 archives", labels_root=data)
    data = root / KAGGLE_DATA if (root / KAGGLE_DATA).is_dir() else root
    if not (data / "train").is_dir() or not (data / "val").is_dir():
        raise D2VError(f"data.image.imagenet.root: {root}: no ImageNet layout found (expected train/ and val/, "
                       f"{KAGGLE_DATA}/, or the archives {', '.join(ARCHIVES)})")  # fmt: skip
    if any(p.is_dir() for p in (data / "val").iterdir()):
        classes, train = list_image_folder(data / "train")
        return ImageNetFiles("per-class val", data, tuple(classes), train, _per_class_val(data, classes))
    return _with_flat_val(data, "flat val", labels_root=root)


def _per_class_val(data: Path, classes: list[str]) -> Items:
    val_classes, items = list_image_folder(data / "val")
    index = {wnid: i for i, wnid in enumerate(classes)}
    for wnid in val_classes:
        if wnid not in index:
            raise D2VError(f"{data / 'val' / wnid}: unknown label {wnid!r}: not a class folder of {data / 'train'}")
    return [(path, index[val_classes[label]]) for path, label in items]


def _with_flat_val(data: Path, layout: str, labels_root: Path) -> ImageNetFiles:
    classes, train = list_image_folder(data / "train")
    files = sorted(p for p in (data / "val").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    kaggle = labels_root / KAGGLE_LABELS
    devkit = labels_root / DEVKIT_DATA
    if kaggle.is_file():
        wnids, layout = read_kaggle_labels(kaggle), f"{layout} + Kaggle labels"
    elif (devkit / DEVKIT_TRUTH).is_file():
        wnids, layout = read_devkit_labels(devkit), f"{layout} + devkit labels"
    else:
        raise D2VError(f"{data / 'val'}: a flat val folder needs labels: {kaggle} or {devkit / DEVKIT_TRUTH}")
    return ImageNetFiles(layout, data, tuple(classes), train, _label_flat_val(files, wnids, classes))


def _label_flat_val(files: list[Path], wnids: dict[str, str], classes: list[str]) -> Items:
    index = {wnid: i for i, wnid in enumerate(classes)}
    items = []
    for path in files:
        wnid = wnids.get(path.stem)
        if wnid is None:
            raise D2VError(f"{path}: no label for this validation image (image id {path.stem!r})")
        if wnid not in index:
            raise D2VError(f"{path}: unknown label {wnid!r}: not one of the {len(classes)} train classes")
        items.append((path, index[wnid]))
    if len(wnids) != len(files):
        # A partial copy of val is usable; say so rather than shrink the test split silently.
        print(f"[prepare image] note: {len(wnids)} validation labels, {len(files)} validation images", file=sys.stderr)
    return items


def read_kaggle_labels(path: Path) -> dict[str, str]:
    """LOC_val_solution.csv -> {image id: wnid} (the first token of PredictionString)."""
    labels: dict[str, str] = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"ImageId", "PredictionString"} - set(reader.fieldnames or ())
        if missing:
            raise D2VError(f"{path}: missing columns {sorted(missing)} (expected ImageId,PredictionString)")
        for line, row in enumerate(reader, start=2):
            image_id, tokens = row["ImageId"], (row["PredictionString"] or "").split()
            if not tokens:
                raise D2VError(f"{path}:{line}: empty PredictionString for {image_id!r} (expected a wnid first)")
            if image_id in labels:
                raise D2VError(f"{path}:{line}: duplicate id {image_id!r}")
            labels[image_id] = tokens[0]
    return labels


def read_devkit_labels(devkit_data: Path) -> dict[str, str]:
    """The devkit ground truth -> {ILSVRC2012_val_0000000k: wnid}, through meta.mat's leaf synsets."""
    wnid_of = read_devkit_synsets(devkit_data / DEVKIT_META)
    truth = devkit_data / DEVKIT_TRUTH
    labels = {}
    for line, text in enumerate(truth.read_text(encoding="utf-8").split(), start=1):
        if int(text) not in wnid_of:
            raise D2VError(f"{truth}:{line}: ILSVRC2012_ID {text} is not a leaf class of {devkit_data / DEVKIT_META}")
        labels[f"ILSVRC2012_val_{line:08d}"] = wnid_of[int(text)]
    return labels


def read_devkit_synsets(meta_mat: Path) -> dict[int, str]:
    """meta.mat's `synsets` struct array -> {ILSVRC2012_ID: WNID} of the leaf classes (num_children 0)."""
    from scipy.io import loadmat

    try:
        synsets = loadmat(str(meta_mat), squeeze_me=True)["synsets"]
    except (OSError, ValueError, KeyError) as exc:
        raise D2VError(f"{meta_mat}: cannot read the devkit synsets ({exc})") from exc
    leaves = {}
    for row in np.atleast_1d(synsets):
        if int(np.asarray(row["num_children"]).squeeze()) == 0:
            leaves[int(np.asarray(row["ILSVRC2012_ID"]).squeeze())] = str(np.asarray(row["WNID"]).squeeze())
    return leaves


def extract_archives(root: Path, md5: dict[str, str], target: Path) -> Path:
    """Verify the three archives against their pinned md5 and extract them once into `target`:
    train/<wnid>/, val/ (flat) and the devkit. Returns `target`."""
    missing = [name for name in ARCHIVES if not (root / name).is_file()]
    if missing:
        raise D2VError(f"{root}: ILSVRC2012 archives incomplete: missing {', '.join(missing)}")
    where = {DEVKIT_TAR: target, VAL_TAR: target / "val", TRAIN_TAR: target / "train-tars"}
    for name, folder in where.items():
        if not (folder / f".extracted-{name}").exists():  # extract()'s stamp: verified before, once
            _verify_md5(root / name, md5.get(name, ""))
        extract(root / name, folder)
    tars = where[TRAIN_TAR]
    class_tars = sorted(p for p in tars.glob("*.tar") if not p.name.startswith("."))  # not extract()'s stamp
    progress = RateProgress("extract ImageNet train", len(class_tars), unit="classes")
    for done, class_tar in enumerate(class_tars, start=1):
        extract(class_tar, target / "train" / class_tar.stem)
        class_tar.unlink()  # extracted (stamped): the copy would double the disk ImageNet takes
        progress.update(done)
    progress.close()
    return target


def _verify_md5(path: Path, expected: str) -> None:
    if not expected:
        return  # no pinned checksum for this file (a custom archive): nothing to compare with
    print(f"[prepare image] verifying md5 of {path}", file=sys.stderr)
    actual = file_digest(path, "md5")
    if actual != expected:
        raise D2VError(f"{path}: md5 mismatch: expected {expected} (data.image.imagenet.md5), got {actual}")


def describe_local_source(root: str | Path) -> dict:
    """What the download stage records for a local image source: the digest of its listing (relative
    path, size), so that DVC sees a changed dataset, and the number of files it covers."""
    root = Path(root)
    if not root.is_dir():
        raise D2VError(f"{root}: image source directory not found")
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".extracted-")]
    return {"root": str(root), "files": len(files), "listing_sha256": listing_digest(root, files)}
