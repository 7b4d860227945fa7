"""ImageNet in each official layout, your own ImageFolder, skipped images, resume after a kill.

Every fixture is generated here: tiny random JPEGs in the real folder layouts, a Kaggle
LOC_val_solution.csv, a devkit (meta.mat written with scipy in the real struct layout + ground truth)
and the three ILSVRC2012 tar archives.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from d2v.config import load_params
from d2v.data import prepare_image as prepare_module
from d2v.data.config import FolderSource, ImageConfig
from d2v.data.prepare_image import prepare_image
from d2v.data.sources.imagenet import describe_local_source
from d2v.data.validate import validate
from d2v.errors import D2VError

REPO = Path(__file__).resolve().parents[2]
WNIDS = ("n01440764", "n01443537", "n01484850")
TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 2
# The devkit numbers classes in its own order (not sorted by wnid): the mapping must go through meta.mat.
DEVKIT_IDS = {"n01484850": 1, "n01440764": 2, "n01443537": 3}


def _jpeg_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def _write_train(data: Path) -> None:
    for c, wnid in enumerate(WNIDS):
        (data / "train" / wnid).mkdir(parents=True)
        for k in range(TRAIN_PER_CLASS):
            (data / "train" / wnid / f"{wnid}_{k}.JPEG").write_bytes(_jpeg_bytes(100 * c + k))


def _val_labels() -> list[str]:
    """The wnid of ILSVRC2012_val_00000001.JPEG, ..._02, ...: classes interleaved, as in the real set."""
    return [WNIDS[k % len(WNIDS)] for k in range(VAL_PER_CLASS * len(WNIDS))]


def _val_name(k: int) -> str:
    return f"ILSVRC2012_val_{k + 1:08d}"


def per_class_tree(root: Path) -> Path:
    _write_train(root)
    for k, wnid in enumerate(_val_labels()):
        (root / "val" / wnid).mkdir(parents=True, exist_ok=True)
        (root / "val" / wnid / f"{_val_name(k)}.JPEG").write_bytes(_jpeg_bytes(1000 + k))
    return root


def _flat_val(folder: Path) -> None:
    folder.mkdir(parents=True)
    for k in range(len(_val_labels())):
        (folder / f"{_val_name(k)}.JPEG").write_bytes(_jpeg_bytes(1000 + k))


def kaggle_tree(root: Path, rows: list[tuple[str, str]] | None = None) -> Path:
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    _write_train(data)
    _flat_val(data / "val")
    rows = rows if rows is not None else [(_val_name(k), f"{w} 1 2 30 40 {w} 5 6 7 8") for k, w in enumerate(_val_labels())]
    with open(root / "LOC_val_solution.csv", "w", newline="") as f:
        csv.writer(f).writerows([("ImageId", "PredictionString"), *rows])
    return root


def write_devkit(root: Path) -> None:
    from scipy.io import savemat

    data = root / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"]
    synsets = np.zeros(len(WNIDS) + 1, dtype=[(name, object) for name in fields])
    for row, (wnid, ilsvrc_id) in enumerate(DEVKIT_IDS.items()):
        synsets[row] = (ilsvrc_id, wnid, wnid, "a leaf", 0, np.zeros(0), 0, TRAIN_PER_CLASS)
    synsets[-1] = (len(WNIDS) + 1, "n00001740", "entity", "the root", 3, np.array([1.0, 2.0, 3.0]), 5, 0)
    savemat(data / "meta.mat", {"synsets": synsets})
    truth = "\n".join(str(DEVKIT_IDS[w]) for w in _val_labels()) + "\n"
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text(truth)


def devkit_tree(root: Path) -> Path:
    _write_train(root)
    _flat_val(root / "val")
    write_devkit(root)
    return root


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def archive_tree(root: Path) -> dict[str, str]:
    """The three ILSVRC2012 archives in `root`; returns their md5 (the test's pinned values)."""
    loose = root.parent / "loose"
    devkit_tree(loose)
    root.mkdir()
    class_tars = {}
    for wnid in WNIDS:
        inner = loose / f"{wnid}.tar"
        _tar(inner, {p.name: p.read_bytes() for p in sorted((loose / "train" / wnid).iterdir())})
        class_tars[inner.name] = inner.read_bytes()
    _tar(root / "ILSVRC2012_img_train.tar", class_tars)
    _tar(root / "ILSVRC2012_img_val.tar", {p.name: p.read_bytes() for p in sorted((loose / "val").iterdir())})
    devkit = {str(p.relative_to(loose)): p.read_bytes() for p in sorted((loose / "ILSVRC2012_devkit_t12").rglob("*")) if p.is_file()}
    _tar(root / "ILSVRC2012_devkit_t12.tar.gz", devkit)
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in root.iterdir()}


def image_cfg(root: Path, **changes) -> ImageConfig:
    cfg = load_params(REPO / "params.yaml").data.image
    imagenet = replace(cfg.imagenet, **{"root": str(root), "valid_size": 2, **changes.pop("imagenet", {})})
    fields = {"source": "imagenet", "image_size": 8, "channels": 3, "shard_size": 3, "workers": 1, **changes}
    return replace(cfg, imagenet=imagenet, **fields)


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def _test_labels(out: Path) -> dict[str, str]:
    """The test rows' class names, by val image name."""
    meta = json.loads((out / "meta.json").read_text())
    return {Path(r["id"]).stem: meta["class_names"][int(r["label"])] for r in _rows(out) if r["split"] == "test"}


def _expected_test_labels() -> dict[str, str]:
    return {_val_name(k): wnid for k, wnid in enumerate(_val_labels())}


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


# ----------------------------------------------------------------------------------------- layouts


def test_per_class_layout_takes_every_image_and_records_digests(tmp_path: Path) -> None:
    root = per_class_tree(tmp_path / "imagenet")
    sizes = prepare_image(image_cfg(root), 0, tmp_path / "out", tmp_path / "cache")
    assert sizes == {"train": 3 * TRAIN_PER_CLASS - 2, "valid": 2, "test": 3 * VAL_PER_CLASS}  # nothing capped
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert (meta["layout"], meta["class_names"], meta["skipped"]) == ("per-class val", list(WNIDS), {"train": [], "valid": [], "test": []})
    assert all(len(digest) == 64 for digest in meta["content_sha256"].values())
    assert _test_labels(tmp_path / "out") == _expected_test_labels()
    shard = np.load(tmp_path / "out" / "train-0000.npy")
    assert shard.shape == (3, 8, 8, 3) and shard.dtype == np.uint8


def test_kaggle_layout_reads_labels_from_loc_val_solution(tmp_path: Path) -> None:
    root = kaggle_tree(tmp_path / "kaggle")
    prepare_image(image_cfg(root), 0, tmp_path / "out", tmp_path / "cache")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["layout"] == "flat val + Kaggle labels"
    assert _test_labels(tmp_path / "out") == _expected_test_labels()


def test_devkit_layout_maps_ground_truth_ids_through_meta_mat(tmp_path: Path) -> None:
    root = devkit_tree(tmp_path / "devkit")
    prepare_image(image_cfg(root), 0, tmp_path / "out", tmp_path / "cache")
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["layout"] == "flat val + devkit labels"
    assert _test_labels(tmp_path / "out") == _expected_test_labels()


def test_archives_are_verified_extracted_and_give_the_devkit_layout(tmp_path: Path) -> None:
    md5 = archive_tree(tmp_path / "archives")
    cfg = image_cfg(tmp_path / "archives", imagenet={"md5": md5})
    prepare_image(cfg, 0, tmp_path / "out", tmp_path / "cache")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["layout"] == "ILSVRC2012 archives + devkit labels"
    assert _test_labels(tmp_path / "out") == _expected_test_labels()
    # The same images as the extracted devkit layout: same digests, same pixels.
    devkit = devkit_tree(tmp_path / "devkit")
    prepare_image(image_cfg(devkit), 0, tmp_path / "out2", tmp_path / "cache2")
    assert json.loads((tmp_path / "out2" / "meta.json").read_text())["content_sha256"] == meta["content_sha256"]


def test_an_archive_with_the_wrong_md5_is_refused(tmp_path: Path) -> None:
    md5 = archive_tree(tmp_path / "archives")
    md5["ILSVRC2012_img_val.tar"] = "0" * 32
    with pytest.raises(D2VError, match=r"ILSVRC2012_img_val.tar: md5 mismatch: expected 0{32}"):
        prepare_image(image_cfg(tmp_path / "archives", imagenet={"md5": md5}), 0, tmp_path / "out", tmp_path / "cache")


def test_the_pinned_md5_are_the_official_ones() -> None:
    md5 = load_params(REPO / "params.yaml").data.image.imagenet.md5
    assert md5 == {"ILSVRC2012_img_train.tar": "1d675b47d978889d74fa0da5fadfb00e",
                   "ILSVRC2012_img_val.tar": "29b22e2961454d5413ddabcf34fc5622",
                   "ILSVRC2012_devkit_t12.tar.gz": "fa75699e90414af021442c21a62c3abf"}  # fmt: skip


# ------------------------------------------------------------------------------------------ errors


def test_an_unknown_label_names_the_file_and_the_wnid(tmp_path: Path) -> None:
    rows = [(_val_name(k), f"{'n99999999' if k == 3 else w} 1 2 3 4") for k, w in enumerate(_val_labels())]
    root = kaggle_tree(tmp_path / "kaggle", rows)
    with pytest.raises(D2VError, match=rf"{_val_name(3)}.JPEG: unknown label 'n99999999'"):
        prepare_image(image_cfg(root), 0, tmp_path / "out", tmp_path / "cache")


def test_a_duplicate_id_is_an_error(tmp_path: Path) -> None:
    rows = [(_val_name(k), f"{w} 1 2 3 4") for k, w in enumerate(_val_labels())]
    root = kaggle_tree(tmp_path / "kaggle", [*rows, rows[1]])
    with pytest.raises(D2VError, match=rf"LOC_val_solution.csv:{len(rows) + 2}: duplicate id '{_val_name(1)}'"):
        prepare_image(image_cfg(root), 0, tmp_path / "out", tmp_path / "cache")


def test_a_corrupt_jpeg_is_skipped_named_and_reported_by_validation(tmp_path: Path) -> None:
    root = per_class_tree(tmp_path / "imagenet")
    bad = root / "train" / WNIDS[1] / f"{WNIDS[1]}_2.JPEG"
    bad.write_bytes(bad.read_bytes()[:40])  # a truncated download
    cfg = image_cfg(root, max_skipped_fraction=0.5)
    sizes = prepare_image(cfg, 0, tmp_path / "out", tmp_path / "cache")
    assert sizes["train"] + sizes["valid"] == 3 * TRAIN_PER_CLASS - 1
    by_split = json.loads((tmp_path / "out" / "meta.json").read_text())["skipped"]
    skipped = [s for split in ("train", "valid", "test") for s in by_split[split]]
    assert [s["item"] for s in skipped] == [f"train/{WNIDS[1]}/{WNIDS[1]}_2.JPEG"]
    assert "cannot decode image" in skipped[0]["reason"]
    report = validate("image", tmp_path / "out", tmp_path / "reports" / "image.json")
    assert report["success"]
    assert report["dataset"]["splits"] == sizes
    assert report["dataset"]["skipped"] == by_split
    written = json.loads((tmp_path / "reports" / "image.json").read_text())
    assert written["dataset"]["layout"] == "per-class val" and set(written["dataset"]["content_sha256"]) == {"train", "valid", "test"}


def test_too_many_unreadable_images_fail_the_stage_naming_the_first(tmp_path: Path) -> None:
    root = per_class_tree(tmp_path / "imagenet")
    (root / "train" / WNIDS[0] / f"{WNIDS[0]}_1.JPEG").write_bytes(b"not a jpeg")
    cfg = image_cfg(root, max_skipped_fraction=0.001)
    with pytest.raises(D2VError, match=rf"(train|valid) split: 1 of \d+ items unreadable.*train/{WNIDS[0]}/{WNIDS[0]}_1.JPEG: cannot decode"):
        prepare_image(cfg, 0, tmp_path / "out", tmp_path / "cache")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ resume


def test_a_killed_prepare_resumes_from_the_last_complete_shard_and_ends_identical(tmp_path, monkeypatch) -> None:
    root = per_class_tree(tmp_path / "imagenet")
    cfg = image_cfg(root)
    prepare_image(cfg, 0, tmp_path / "whole", tmp_path / "cache")
    real = prepare_module._decode_file
    calls: list[str] = []

    def killed_at_item_7(task):
        calls.append(task[0])
        if len(calls) == 8:
            raise KeyboardInterrupt  # a kill while train shard 2 fills (shards 0 and 1 are complete)
        return real(task)

    monkeypatch.setattr(prepare_module, "_decode_file", killed_at_item_7)
    with pytest.raises(KeyboardInterrupt):
        prepare_image(cfg, 0, tmp_path / "killed", tmp_path / "cache")
    calls.clear()
    monkeypatch.setattr(prepare_module, "_decode_file", lambda task: calls.append(task[0]) or real(task))
    prepare_image(cfg, 0, tmp_path / "killed", tmp_path / "cache")
    total = (3 * TRAIN_PER_CLASS) + (3 * VAL_PER_CLASS)
    assert len(calls) == total - 6  # the 6 images of the two complete shards were not decoded again
    assert _files(tmp_path / "killed") == _files(tmp_path / "whole")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left


def test_the_worker_count_does_not_change_a_byte(tmp_path: Path) -> None:
    root = per_class_tree(tmp_path / "imagenet")
    prepare_image(image_cfg(root, workers=1), 0, tmp_path / "one", tmp_path / "cache")
    prepare_image(image_cfg(root, workers=2), 0, tmp_path / "two", tmp_path / "cache")
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


# -------------------------------------------------------------------------------- your own images


def _own_folder(root: Path, with_val: bool) -> Path:
    for c, name in enumerate(("cats", "dogs")):
        (root / "train" / name).mkdir(parents=True)
        for k in range(10):
            (root / "train" / name / f"{k}.png").write_bytes(_jpeg_bytes(10 * c + k))
        if with_val:
            (root / "val" / name).mkdir(parents=True)
            (root / "val" / name / "v.jpg").write_bytes(_jpeg_bytes(99 + c))
    return root


def _folder_cfg(root: Path, **folder) -> ImageConfig:
    return replace(image_cfg(root), source="folder", folder=FolderSource(root=str(root), **folder))


def test_your_own_folder_without_val_holds_out_a_seeded_test_fraction(tmp_path: Path) -> None:
    root = _own_folder(tmp_path / "pets", with_val=False)
    cfg = _folder_cfg(root, valid_fraction=0.2, test_fraction=0.3)
    sizes = prepare_image(cfg, 0, tmp_path / "out", tmp_path / "cache")
    assert sum(sizes.values()) == 20 and min(sizes.values()) > 0
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert (meta["source"], meta["class_names"], meta["layout"]) == ("folder", ["cats", "dogs"], "train/ only (test = 0.3 of it)")
    prepare_image(cfg, 0, tmp_path / "again", tmp_path / "cache")
    assert _files(tmp_path / "again") == _files(tmp_path / "out")


def test_your_own_folder_with_val_uses_it_as_test(tmp_path: Path) -> None:
    root = _own_folder(tmp_path / "pets", with_val=True)
    prepare_image(_folder_cfg(root, valid_fraction=0.2), 0, tmp_path / "out", tmp_path / "cache")
    test_ids = sorted(r["id"] for r in _rows(tmp_path / "out") if r["split"] == "test")
    assert test_ids == ["val/cats/v.jpg", "val/dogs/v.jpg"]


def test_a_val_class_that_train_lacks_is_an_unknown_label(tmp_path: Path) -> None:
    root = _own_folder(tmp_path / "pets", with_val=True)
    (root / "val" / "birds").mkdir()
    (root / "val" / "birds" / "b.jpg").write_bytes(_jpeg_bytes(7))
    with pytest.raises(D2VError, match=r"val/birds: unknown label 'birds'"):
        prepare_image(_folder_cfg(root), 0, tmp_path / "out", tmp_path / "cache")


def test_the_download_record_changes_when_a_file_changes(tmp_path: Path) -> None:
    root = _own_folder(tmp_path / "pets", with_val=False)
    before = describe_local_source(root)
    assert before["files"] == 20 and len(before["listing_sha256"]) == 64
    (root / "train" / "cats" / "0.png").write_bytes(_jpeg_bytes(12345) + b"\0")
    assert describe_local_source(root)["listing_sha256"] != before["listing_sha256"]


def test_the_download_stage_records_the_listing_digest_of_a_local_source(tmp_path: Path) -> None:
    from d2v.data.stages import run_download

    root = _own_folder(tmp_path / "pets", with_val=False)
    data = load_params(REPO / "params.yaml").data
    data = replace(data, raw_dir=str(tmp_path / "raw"), image=_folder_cfg(root))
    record = run_download(data, "image")
    written = json.loads((tmp_path / "raw" / "image" / "sources.json").read_text())
    assert written == record == {"source": "folder", **describe_local_source(root)}
