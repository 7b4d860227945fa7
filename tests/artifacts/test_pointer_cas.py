"""Pointers move by compare-and-swap (S3 If-Match / If-None-Match; a locked compare on file://):
of two racing promotions exactly one wins, and the loser is told who won. Both backends, S3 over
HTTP against moto's server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from d2v.artifacts.errors import ConditionFailedError, PointerConflictError
from d2v.artifacts.store import ArtifactStore, Metric, pointer_key

METRIC = Metric("linear_probe/top1", 0.8)


@pytest.fixture
def runs(store: ArtifactStore, tmp_path: Path, make_files: Callable[..., dict[str, Path]]) -> list[str]:
    for run_id in ("old", "a", "b"):
        store.publish(make_files(tmp_path / run_id, {"m.json": run_id.encode()}), run_id=run_id)
    return ["old", "a", "b"]


def test_a_conditional_write_refuses_a_stale_tag_and_changes_nothing(store: ArtifactStore) -> None:
    key = "pointers/image/test.json"
    store.backend.put_bytes_if(key, b"first", expected_tag=None)
    with pytest.raises(ConditionFailedError, match="changed since it was read"):
        store.backend.put_bytes_if(key, b"again", expected_tag=None)  # create-if-absent lost
    data, tag = store.backend.get_bytes_tagged(key)  # type: ignore[misc]
    store.backend.put_bytes_if(key, b"second", expected_tag=tag)
    with pytest.raises(ConditionFailedError):
        store.backend.put_bytes_if(key, b"third", expected_tag=tag)  # the tag is stale now
    assert data == b"first" and store.backend.get_bytes(key) == b"second"


def test_two_racing_promotions_from_the_same_champion_one_wins(store: ArtifactStore, runs: list[str]) -> None:
    store.promote("old", "image", METRIC)
    start = threading.Barrier(2)
    outcomes: dict[str, BaseException | None] = {}

    def promote(run_id: str) -> None:
        start.wait()
        try:
            ArtifactStore(store.backend).promote(run_id, "image", METRIC, replacing="old")
            outcomes[run_id] = None
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcomes[run_id] = exc

    threads = [threading.Thread(target=promote, args=(r,)) for r in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r for r, exc in outcomes.items() if exc is None]
    losers = [exc for exc in outcomes.values() if exc is not None]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert isinstance(losers[0], PointerConflictError) and winners[0] in str(losers[0])
    assert store.pointer("image", "champion").run_id == winners[0]  # type: ignore[union-attr]


def test_a_write_that_loses_between_read_and_write_is_refused(
    store: ArtifactStore, runs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deterministic interleaving: another writer moves the pointer right after this one read it.
    store.promote("old", "image", METRIC)
    real_read = store.backend.get_bytes_tagged

    def read_then_lose(key: str):  # type: ignore[no-untyped-def]
        seen = real_read(key)
        monkeypatch.setattr(store.backend, "get_bytes_tagged", real_read)
        ArtifactStore(store.backend).promote("b", "image", METRIC, replacing="old")
        return seen

    monkeypatch.setattr(store.backend, "get_bytes_tagged", read_then_lose)
    with pytest.raises(PointerConflictError, match="champion:image moved to b while a was being written"):
        store.promote("a", "image", METRIC, replacing="old")
    assert store.pointer("image", "champion").run_id == "b"  # type: ignore[union-attr]


def test_a_decision_against_a_champion_that_is_gone_is_refused(store: ArtifactStore, runs: list[str]) -> None:
    store.promote("b", "image", METRIC)
    with pytest.raises(PointerConflictError, match="champion:image is b, not old as the promotion of a assumed"):
        store.promote("a", "image", METRIC, replacing="old")
    with pytest.raises(PointerConflictError, match="is b, not unset"):
        store.promote("a", "image", METRIC, replacing=None)
    assert store.pointer("image", "champion").run_id == "b"  # type: ignore[union-attr]
    assert store.backend.get_bytes_tagged(pointer_key("speech", "champion")) is None


def test_latest_still_follows_the_last_publish(store: ArtifactStore, runs: list[str], tmp_path: Path,
                                               make_files: Callable[..., dict[str, Path]]) -> None:
    for run_id in ("p1", "p2"):
        store.publish(make_files(tmp_path / run_id, {"x": b"1"}), run_id=run_id, modality="text")
    assert store.pointer("text", "latest").run_id == "p2"  # type: ignore[union-attr]
