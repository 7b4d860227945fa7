"""infra/docker/Dockerfile and .dockerignore. Docker cannot run here, so the file is parsed and its
promises are checked: CUDA runtime base, Python 3.11, install from constraints.txt, non-root user,
an exec-form ENTRYPOINT, and a build context without local state or secrets."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

Instruction = tuple[str, str]  # (INSTRUCTION, arguments)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, with line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        pending += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            pending = ""
    assert not pending, "Dockerfile ends inside a continued instruction"
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def _final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _ignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
               for pattern in patterns for prefix in prefixes)


def test_base_image_is_a_cuda_runtime(instructions: list[Instruction]) -> None:
    base = next(args for keyword, args in instructions if keyword == "ARG" and args.startswith("CUDA_IMAGE="))
    assert re.fullmatch(r"CUDA_IMAGE=nvidia/cuda:13\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d\d\.04", base)
    assert instructions[1] == ("FROM", "${CUDA_IMAGE} AS python-base")


def test_installs_python_311_and_the_project_from_constraints(instructions: list[Instruction]) -> None:
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert "python3.11" in runs and "python3.11 -m venv" in runs
    installs = [args for keyword, args in instructions if keyword == "RUN" and "pip install --constraint" in args]
    assert installs and all("--constraint constraints.txt" in args for args in installs)
    assert any(re.search(r"pip install --constraint constraints\.txt \.(\s|$)", args) for args in installs)


def test_runs_as_a_non_root_user(instructions: list[Instruction]) -> None:
    users = [args for keyword, args in _final_stage(instructions) if keyword == "USER"]
    assert users and users[-1] not in {"root", "0", "0:0"}
    keywords = [keyword for keyword, _ in _final_stage(instructions)]
    # Nothing after the last USER runs or copies as root.
    assert "RUN" not in keywords[keywords.index("USER"):]


def test_exec_form_entrypoint_and_explicit_healthcheck(instructions: list[Instruction]) -> None:
    final = dict(_final_stage(instructions))
    entrypoint = json.loads(final["ENTRYPOINT"])
    assert entrypoint[0].endswith("tini") and entrypoint[-1] == "--"
    assert isinstance(json.loads(final["CMD"]), list)
    assert "HEALTHCHECK" in final


def test_copied_sources_exist_and_are_not_ignored(instructions: list[Instruction]) -> None:
    patterns = _ignore_patterns()
    for keyword, args in instructions:
        if keyword != "COPY" or "--from=" in args:
            continue
        sources = [word for word in args.split() if not word.startswith("--")][:-1]
        for source in sources:
            if source == ".":
                continue
            assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
            assert not _ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


@pytest.mark.parametrize("path", [".venv", ".venv/bin/python", "data/raw/x.npy", "models/m.pt", ".git",
                                  ".dvc/cache/files/md5/ab", ".env", "infra/.env", "d2v/__pycache__/a.pyc"])
def test_dockerignore_excludes_local_state(path: str) -> None:
    assert _ignored(path, _ignore_patterns())


@pytest.mark.parametrize("path", ["d2v/config.py", "pipelines", "constraints.txt", "pyproject.toml",
                                  "params.yaml", "dvc.yaml", ".dvc/config"])
def test_dockerignore_keeps_what_the_image_needs(path: str) -> None:
    assert not _ignored(path, _ignore_patterns())
