import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from d2v.config import load_params
from d2v.data.datasets import ImageCollate, ImageDataset
from d2v.data.io import assign_split, read_csv
from d2v.data.prepare_image import prepare_image
from d2v.data.sources.image import load_idx
from d2v.data.validate import ValidationFailed, validate
from d2v.errors import D2VError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def image_cfg(fashion_dir):
    cfg = load_params(REPO / "params.yaml").data.image
    return dataclasses.replace(cfg, fashion_mnist_dir=str(fashion_dir), train_size=40, valid_size=10,
                               test_size=0, shard_size=16)


def test_prepare_image_is_deterministic_and_disjoint(image_cfg, tmp_path):
    sizes = prepare_image(image_cfg, 0, tmp_path / "a")
    prepare_image(image_cfg, 0, tmp_path / "b")
    assert sizes == {"train": 40, "valid": 10, "test": 20}
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (tmp_path / "b" / "manifest.csv").read_bytes()
    rows = read_csv(tmp_path / "a" / "manifest.csv")
    by_split = {s: {r["id"] for r in rows if r["split"] == s} for s in ("train", "valid", "test")}
    assert not by_split["train"] & by_split["valid"]
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    batch = ImageCollate(meta["mean"], meta["std"])([ImageDataset(tmp_path / "a", "train")[i] for i in range(4)])
    assert batch["image"].shape == (4, 1, 28, 28) and batch["label"].tolist() == [int(rows[i]["label"]) for i in range(4)]


def test_truncated_idx_is_named(tmp_path, fashion_dir):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 100)
    with pytest.raises(D2VError, match="truncated IDX"):
        load_idx(bad)


def test_validation_passes_then_names_a_corrupted_shard(image_cfg, tmp_path):
    root = tmp_path / "image"
    prepare_image(image_cfg, 0, root)
    report = validate("image", root, tmp_path / "reports" / "image.json")
    assert report["success"] and report["n_failed"] == 0
    np.save(root / "train-0001.npy", np.zeros((3, 28, 28, 1), np.uint8))  # wrong row count
    labels = (root / "manifest.csv").read_text().replace(",train,3,", ",train,42,", 1)  # label out of range
    (root / "manifest.csv").write_text(labels)
    with pytest.raises(ValidationFailed, match="train-0001.npy") as info:
        validate("image", root, tmp_path / "reports" / "image.json")
    assert "expect_column_values_to_be_between(label)" in str(info.value)
    written = json.loads((tmp_path / "reports" / "image.json").read_text())
    assert written["success"] is False and written["n_failed"] == 2


def test_split_assignment_is_stable():
    keys = [f"k{i}" for i in range(2000)]
    a = [assign_split(k, 0, 0.1, 0.2) for k in keys]
    assert a == [assign_split(k, 0, 0.1, 0.2) for k in reversed(keys)][::-1]
    assert 0.15 < a.count("test") / len(a) < 0.25 and a != [assign_split(k, 1, 0.1, 0.2) for k in keys]
