"""End to end: the real data stages through real `dvc repro` in a temporary git repo (tiny profile)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DATA_STAGES = ("download", "prepare", "tokenize", "validate")
TINY = {
    "image": {"train_size": 200, "valid_size": 50, "test_size": 100},
    "text": {"corpus_max_lines": 3000, "task_size": 300, "vocab_size": 500, "tokenizer_sentences": 2000},
    "speech": {"pretrain_languages": ["es"], "pretrain_seconds": 40, "valid_fraction": 0.3,
               "asr_sentences": 4, "real_transcripts": "absent.txt"},
}


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.slow
def test_dvc_repro_data_stages(tmp_path):
    work = tmp_path / "repo"
    shutil.copytree(REPO / "d2v", work / "d2v", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "pipelines", work / "pipelines", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for modality, overrides in TINY.items():
        params["data"][modality].update(overrides)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    (work / "dvc.yaml").write_text(yaml.safe_dump({"stages": {k: v for k, v in stages.items() if k in DATA_STAGES}}))
    (work / ".gitignore").write_text("/data/\n__pycache__/\n")
    cached_sdist = REPO / "data" / "cache" / "pypi"
    if cached_sdist.is_dir():  # reuse the hash-verified sdist instead of asking PyPI again
        shutil.copytree(cached_sdist, work / "data" / "cache" / "pypi")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false"}
    _run(["git", "init", "-q", "-b", "main"], work, env)
    _run(["dvc", "init", "-q"], work, env)
    _run(["git", "add", "-A"], work, env)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], work, env)

    _run(["dvc", "repro"], work, env)
    assert "up to date" in _run(["dvc", "status"], work, env)
    second = _run(["dvc", "repro"], work, env)
    assert "Running stage" not in second
    for modality in ("image", "speech", "text"):
        report = json.loads((work / "reports" / "validation" / f"{modality}.json").read_text())
        assert report["success"] and report["n_expectations"] > 5
    meta = json.loads((work / "data" / "prepared" / "text" / "meta.json").read_text())
    assert meta["special_ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3, "mask": 4}
