"""Streaming shard writer: resume after a kill, exact moments, skip threshold, ordered workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from d2v.data.shards import (
    JOURNAL,
    ChannelMoments,
    ShardWriter,
    SkipLog,
    fingerprint,
    parallel_map,
    read_journal,
    resumable_dir,
    staging_path,
    worker_pool,
)
from d2v.errors import D2VError


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (4, 4, 3), dtype=np.uint8) for _ in range(n)]


def _write(staging: Path, images: list[np.ndarray], stop_after: int | None = None) -> ShardWriter:
    writer = ShardWriter(staging, "train", max_items=3)
    moments = ChannelMoments(3, writer.resumed.stats.get("moments"))
    for index in range(writer.next_index, len(images)):
        if stop_after is not None and index == stop_after:
            raise KeyboardInterrupt  # a kill between shards
        moments.add(images[index])
        writer.add(images[index], [f"img{index}"], index, {"moments": moments.state()})
    writer.flush({"moments": moments.state()}, next_index=len(images))
    return writer


def test_a_killed_split_resumes_from_its_last_complete_shard_and_ends_identical(tmp_path: Path) -> None:
    images = _images(10)
    (tmp_path / "whole").mkdir()
    whole = _write(tmp_path / "whole", images)
    (tmp_path / "killed").mkdir()
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path / "killed", images, stop_after=7)
    assert read_journal(tmp_path / "killed", "train").next_index == 6  # shards 0 and 1; item 6 was buffered
    resumed = _write(tmp_path / "killed", images)
    assert resumed.rows == whole.rows
    for k in range(4):
        name = f"train-{k:04d}.npy"
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    last = json.loads((tmp_path / "killed" / JOURNAL).read_text().splitlines()[-1])
    assert last["stats"] == json.loads((tmp_path / "whole" / JOURNAL).read_text().splitlines()[-1])["stats"]


def test_a_torn_journal_line_is_ignored(tmp_path: Path) -> None:
    _write(tmp_path, _images(7))
    with open(tmp_path / JOURNAL, "a") as journal:
        journal.write('{"split": "train", "shard": 3, "ro')
    assert read_journal(tmp_path, "train").shards == 3


def test_concatenated_shards_respect_the_length_limit_and_record_offsets(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, "asr", max_length=10, concatenate=True)
    for index, length in enumerate([4, 4, 4, 12, 1]):
        writer.add(np.full(length, index, np.int16), [f"u{index}"], index)
    writer.flush(next_index=5)
    assert [(r[-2], r[-1]) for r in writer.rows] == [
        ("asr-0000.npy", 0), ("asr-0000.npy", 4), ("asr-0001.npy", 0), ("asr-0002.npy", 0), ("asr-0003.npy", 0)]
    assert len(np.load(tmp_path / "asr-0002.npy")) == 12  # one item longer than a shard gets a shard of its own


def test_moments_equal_numpy_on_the_whole_split() -> None:
    images = _images(20)
    moments = ChannelMoments(3)
    for image in images:
        moments.add(image)
    stacked = np.stack(images).astype(np.float64) / 255.0
    mean, std = moments.mean_std()
    assert mean == stacked.mean(axis=(0, 1, 2)).round(6).tolist()
    assert std == stacked.std(axis=(0, 1, 2)).round(6).tolist()


def test_skips_fail_the_stage_only_above_the_threshold() -> None:
    log = SkipLog("data.image: ImageNet train", max_fraction=0.2)
    for k in range(9):
        log.ok()
    log.skip("train/n01/bad.JPEG", "cannot decode image")
    log.check()
    log.skip("train/n01/worse.JPEG", "truncated")
    log.skip("train/n02/x.JPEG", "truncated")
    with pytest.raises(D2VError, match=r"3 of 12 items unreadable.*train/n01/bad.JPEG: cannot decode"):
        log.check()


def _square(x: int) -> int:
    return x * x


def test_parallel_map_keeps_the_order() -> None:
    with worker_pool(2) as pool:
        assert list(parallel_map(_square, range(40), pool, chunksize=3)) == [x * x for x in range(40)]
    assert list(parallel_map(_square, range(5), None)) == [0, 1, 4, 9, 16]  # no pool: in this process


def test_a_staging_dir_of_another_fingerprint_is_discarded(tmp_path: Path) -> None:
    out = tmp_path / "prepared" / "image"
    old = staging_path(out, fingerprint({"size": 1}))
    old.mkdir(parents=True)
    (old / "train-0000.npy").write_bytes(b"stale")
    with resumable_dir(out, fingerprint({"size": 2})) as staging:
        (staging / "meta.json").write_text("{}")
    assert not old.exists()
    assert sorted(p.name for p in out.iterdir()) == ["meta.json"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["image"]


def test_parallel_map_reads_its_input_only_a_window_ahead() -> None:
    pulled = []

    def source():
        for x in range(1000):
            pulled.append(x)
            yield x

    with worker_pool(2) as pool:
        results = parallel_map(_square, source(), pool, chunksize=4)
        assert next(results) == 0
        assert len(pulled) <= 2 * 2 * 4  # four chunks in flight, not the whole input
        assert list(results) == [x * x for x in range(1, 1000)]
