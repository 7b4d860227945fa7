"""`d2v artifacts ...` end to end, on both backends, through the real argument parser."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from d2v.artifacts.config import ArtifactsConfig
from d2v.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def d2v(artifacts_config: ArtifactsConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `d2v artifacts <action> ...` against the test store; (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)  # no ./params.yaml: built-in defaults plus the flags below
    store_flags = ["--uri", artifacts_config.uri]
    if artifacts_config.endpoint_url:
        store_flags += ["--endpoint-url", artifacts_config.endpoint_url]

    def run(action: str, *args: str) -> tuple[int, str, str]:
        code = main(["artifacts", action, *store_flags, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_publish_ls_promote_pointers_get_round_trip(
    d2v: Callable[..., tuple[int, str, str]], tmp_path: Path,
    make_files: Callable[..., dict[str, Path]],
) -> None:
    make_files(tmp_path / "outputs", {"metrics.json": b'{"top1": 0.8}', "ckpt/model.pt": b"w" * 4096})
    code, out, err = d2v("publish", str(tmp_path / "outputs"), "--run-id", "cli-run",
                         "--modality", "image", "--extra", 'decision={"promoted": true}',
                         "--params", str(REPO / "params.yaml"))
    assert code == 0 and "published cli-run: 2 files" in out
    assert "upload ckpt/model.pt (4.0 KiB)" in err  # per-file progress lines

    code, out, _ = d2v("ls", "--json")
    (row,) = json.loads(out)
    assert row == {"run_id": "cli-run", "n_files": 2, "size": 4096 + 13, "tags": ["latest:image"]}

    code, out, _ = d2v("promote", "latest:image", "--modality", "image", "--metric", "top1=0.8")
    assert code == 0 and "champion:image -> cli-run (top1=0.8)" in out
    code, out, _ = d2v("ls")
    assert "champion:image" in out and "4.0 KiB" in out
    code, out, _ = d2v("pointers", "--json")
    assert {(p["kind"], p["run_id"]) for p in json.loads(out)} == {("latest", "cli-run"),
                                                                   ("champion", "cli-run")}

    code, out, _ = d2v("get", "champion:image", str(tmp_path / "fetched"))
    assert code == 0 and "2 files verified" in out
    assert (tmp_path / "fetched" / "ckpt" / "model.pt").read_bytes() == b"w" * 4096
    fetched = sorted(p.relative_to(tmp_path / "fetched").as_posix()
                     for p in (tmp_path / "fetched").rglob("*") if p.is_file())
    assert fetched == ["ckpt/model.pt", "metrics.json"]  # exactly the run's files

    code, _, _ = d2v("get", "cli-run", str(tmp_path / "one"), "--file", "metrics.json")
    assert code == 0 and [p.name for p in (tmp_path / "one").iterdir()] == ["metrics.json"]


def test_publish_records_params_and_extra_in_the_manifest(
    d2v: Callable[..., tuple[int, str, str]], tmp_path: Path, artifacts_config: ArtifactsConfig,
) -> None:
    (tmp_path / "report.md").write_text("# report\n")
    d2v("publish", str(tmp_path / "report.md"), "--run-id", "with-params", "--extra", "note=hi",
        "--params", str(REPO / "params.yaml"))
    from d2v.artifacts.store import ArtifactStore

    manifest = ArtifactStore.from_config(artifacts_config).manifest("with-params")
    assert manifest.extra == {"note": "hi"}
    assert manifest.provenance.params["artifacts"]["uri"] == "file://artifacts"
    assert "seed" in manifest.provenance.params


def test_user_errors_exit_2_with_one_line(
    d2v: Callable[..., tuple[int, str, str]], tmp_path: Path,
) -> None:
    (tmp_path / "a.txt").write_text("a")
    assert d2v("publish", str(tmp_path / "a.txt"), "--run-id", "once")[0] == 0
    code, _, err = d2v("publish", str(tmp_path / "a.txt"), "--run-id", "once")
    assert code == 2 and "run once already exists" in err and len(err.strip().splitlines()) == 1
    code, _, err = d2v("get", "never-published")
    assert code == 2 and "run never-published: not found" in err
    code, _, err = d2v("promote", "once", "--modality", "text", "--metric", "top1")
    assert code == 2 and "expected NAME=NUMBER" in err
    code, _, err = d2v("get", "champion:speech")
    assert code == 2 and "no champion run for speech" in err
