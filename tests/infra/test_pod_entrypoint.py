"""d2v-pod (infra/docker/entrypoint.py), the training pod's bootstrap, run here without a cluster.

The pods are local processes (tests/infra/pod_support.py): the image's tree without .git or data,
the container's args and environment taken from the rendered manifests, S3 on moto.

- configuration errors name the variable to set;
- the code from a git clone at a ref (a local repository: no network);
- what a stage pulls: only the DVC-cached outputs it depends on;
- slow: one pod of the Prefect work pool's Job pulls pretrain@image's data that a developer pushed
  to the DVC remote on moto, runs the stage and pushes the model;
- slow: two pods of the multi-node Job pull, meet at the c10d rendezvous through the launcher's
  environment (D2V_NNODES, D2V_RDZV_ENDPOINT ...) and pretrain as one 2-process gloo group; pod 0
  records and pushes the outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import boto3
import pytest
import yaml

from moto_support import free_port
from pod_support import (ENTRYPOINT, LAUNCH, image_tree, load_entrypoint, local_pod, render_prefect_job, sh,
                         tiny_image_params, tool_env)

REMOTE_PREFIX = "dvc"


@pytest.fixture(scope="module")
def pod_module() -> ModuleType:
    return load_entrypoint()


def _main(pod_module: ModuleType, argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = pod_module.main(argv, env)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, env, message", [
    ([], {}, "no command: give the command to run"),
    (["true"], {"D2V_GIT_REF": "v1"}, "D2V_GIT_REF is set but D2V_GIT_URL is not"),
    (["true"], {}, "holds no dvc.yaml: set D2V_ROOT"),
    (["true"], {"D2V_PUSH": "maybe"}, "D2V_PUSH='maybe': expected 1/true/yes or 0/false/no"),
    (["true"], {"D2V_NODE_RANK": "-1"}, "D2V_NODE_RANK='-1': expected a non-negative integer"),
])
def test_configuration_errors_name_the_variable(pod_module: ModuleType, tmp_path: Path, argv: list[str],
                                                env: dict[str, str], message: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _main(pod_module, argv, {"D2V_ROOT": str(tmp_path), **env}, capsys)
    assert code == 2 and message in err, err


def test_repro_targets_are_the_positional_words(pod_module: ModuleType) -> None:
    targets = pod_module.repro_targets
    assert targets(["dvc", "repro", "--allow-missing", "pretrain@image"]) == ("pretrain@image",)
    assert targets(["/opt/venv/bin/dvc", "repro", "-s", "-f", "evaluate@text", "report"]) == ("evaluate@text", "report")
    assert targets(["dvc", "repro"]) == ()
    assert targets(["prefect", "flow-run", "execute"]) is None


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's /srv/d2v: tracked files minus .dockerignore; no .git, no data, no DVC cache."""
    tree = image_tree(tmp_path_factory.mktemp("image") / "srv")
    assert not (tree / ".git").exists() and not (tree / "data").exists() and (tree / "dvc.lock").is_file()
    # Git-tracked `cache: false` outputs are in it: DVC cannot pull them, pretrain depends on them.
    assert (tree / "reports" / "validation" / "image.json").is_file()
    return tree


def test_a_stage_pulls_only_the_cached_outputs_it_depends_on(pod_module: ModuleType, image: Path,
                                                             tmp_path: Path) -> None:
    sh(image, tool_env(tmp_path), "dvc", "config", "--local", "core.no_scm", "true")
    assert pod_module.stage_inputs(image, ["pretrain@image"]) == ["data/prepared/image"]
    assert pod_module.stage_inputs(image, ["evaluate@text"]) == ["models/text", "data/prepared/text"]
    # A dependency directory holding outputs (reports/validation/data_docs/<m>): those outputs.
    assert pod_module.stage_inputs(image, ["report"]) == [
        f"reports/validation/data_docs/{m}" for m in ("image", "speech", "text")]
    assert pod_module.stage_inputs(image, ["download@image"]) == []
    assert pod_module.stage_commands(image, ["pretrain@speech"]) == ["d2v pretrain speech --resume"]


def test_without_a_remote_the_pod_says_which_variable_to_set(pod_module: ModuleType, image: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    env = tool_env(tmp_path, {"D2V_ROOT": str(image)})
    code, err = _main(pod_module, ["dvc", "repro", "--allow-missing", "pretrain@image"], env, capsys)
    assert code == 2 and "no DVC remote: set D2V_DVC_REMOTE" in err, err
    code, err = _main(pod_module, ["true"], {**env, "D2V_PUSH": "1", "D2V_PULL_STAGES": "none"}, capsys)
    assert code == 2 and "D2V_PUSH=1 but no DVC remote to push to: set D2V_DVC_REMOTE" in err, err
    assert "core.no_scm" in err  # DVC was set up for a tree without .git before it looked for a remote


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_code_from_a_git_clone_at_a_ref(pod_module: ModuleType, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    upstream = tmp_path / "upstream"
    (upstream / ".dvc").mkdir(parents=True)
    (upstream / ".dvc" / "config").write_text("")
    (upstream / "dvc.yaml").write_text("stages: {}\n")
    (upstream / "version.txt").write_text("v1\n")
    _git(upstream, "init", "-q")
    _git(upstream, "add", "-A")
    _git(upstream, "commit", "-q", "-m", "v1")
    first = _git(upstream, "rev-parse", "HEAD")
    (upstream / "version.txt").write_text("v2\n")
    _git(upstream, "commit", "-q", "-am", "v2")

    clone = tmp_path / "home" / "d2v"
    env = tool_env(tmp_path, {"HOME": str(tmp_path / "home"), "D2V_ROOT": "/srv/d2v",  # the image's ENV
                              "D2V_GIT_URL": str(upstream), "D2V_GIT_REF": first})
    probe = [sys.executable, "-c", "import os; print(os.environ['D2V_ROOT'], os.getcwd(), open('version.txt').read())"]
    done = subprocess.run([sys.executable, str(ENTRYPOINT), *probe], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(clone), str(clone), "v1"]
    assert f"at {first} ({first})" in done.stderr
    assert "no_scm" not in done.stderr  # a clone has .git: DVC keeps using git

    code, err = _main(pod_module, ["true"], env, capsys)  # the clone is there now
    assert code == 2 and f"the clone directory {clone} is not empty: set D2V_CLONE_DIR" in err, err


# ---- end to end: the pods against moto ------------------------------------------------------------

@pytest.fixture(scope="module")
def developer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A developer's checkout (no .git: a copy) that ran the data stages of a tiny image dataset."""
    tmp = tmp_path_factory.mktemp("developer")
    tree = image_tree(tmp / "checkout")
    tiny_image_params(tree, tmp / "fmnist")
    env = tool_env(tmp)
    sh(tree, env, "dvc", "config", "--local", "core.no_scm", "true")
    sh(tree, env, "dvc", "repro", "validate@image")
    return tree


def _push_from(developer: Path, endpoint: str, bucket: str, tmp: Path) -> None:
    env = tool_env(tmp)
    sh(developer, env, "dvc", "remote", "add", "--local", "--force", "--default", "store",
       f"s3://{bucket}/{REMOTE_PREFIX}")
    sh(developer, env, "dvc", "remote", "modify", "--local", "store", "endpointurl", endpoint)
    sh(developer, env, "dvc", "push", "-q", timeout=120)


def _secret(endpoint: str) -> dict[str, str]:
    """What the d2v-s3-credentials Secret holds, for moto (the pod reads it through envFrom)."""
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1"}


def _pushed(bucket: str, endpoint: str, tree: Path, stage: str, path: str) -> bool:
    """Whether the DVC remote holds `path` as recorded for `stage` in `tree`'s dvc.lock."""
    outs = yaml.safe_load((tree / "dvc.lock").read_text())["stages"][stage]["outs"]
    md5 = next(out["md5"] for out in outs if out["path"] == path)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    key = f"{REMOTE_PREFIX}/files/md5/{md5[:2]}/{md5[2:]}"
    return s3.list_objects_v2(Bucket=bucket, Prefix=key)["KeyCount"] == 1


def _tail(text: str) -> str:
    return text[-4000:]


@pytest.mark.slow
def test_prefect_pool_pod_pulls_pretrains_and_pushes(developer: Path, moto_server: str, s3_bucket: str,
                                                     tmp_path: Path) -> None:
    _push_from(developer, moto_server, s3_bucket, tmp_path)
    tree = image_tree(tmp_path / "srv", source=developer)  # the image built after the developer's repro
    # `command` is the job variable Prefect fills with `prefect flow-run execute`; here the stage itself.
    job = render_prefect_job(f"dvc_remote=s3://{s3_bucket}/{REMOTE_PREFIX}",
                             "command=dvc repro --allow-missing pretrain@image")
    container = job["spec"]["template"]["spec"]["containers"][0]
    argv, env = local_pod(container, tree=tree, volume=tmp_path / "volume", index=0, secret=_secret(moto_server),
                          base_env=tool_env(tmp_path))
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, _tail(done.stdout + done.stderr)
    assert "d2v-pod: data for pretrain@image: data/prepared/image" in done.stderr
    assert not (tree / "data" / "raw").exists()  # upstream data stays on the remote
    assert "Stage 'prepare@image' didn't change, skipping" in done.stdout
    assert (tmp_path / "volume" / "dvc-cache" / "files" / "md5").is_dir()  # the cache is on the volume
    summary = json.loads((tree / "metrics" / "pretrain" / "image" / "metrics.json").read_text())
    assert (summary["steps"], summary["world_size"]) == (2, 1)
    assert _pushed(s3_bucket, moto_server, tree, "pretrain@image", "models/image")


@pytest.mark.slow
def test_two_pods_pretrain_as_one_gloo_group_over_c10d(developer: Path, moto_server: str, s3_bucket: str,
                                                       tmp_path: Path) -> None:
    _push_from(developer, moto_server, s3_bucket, tmp_path)
    port = free_port()
    rendered = subprocess.run(
        ["bash", str(LAUNCH)], capture_output=True, text=True, check=True,
        env={**os.environ, "RENDER_ONLY": "1", "JOB_NAME": "pt-local", "NNODES": "2", "GPUS_PER_NODE": "1",
             "RDZV_PORT": str(port), "MAX_RESTARTS": "0", "RDZV_JOIN_TIMEOUT_S": "120",
             "DVC_REMOTE": f"s3://{s3_bucket}/{REMOTE_PREFIX}"}).stdout
    _, job = yaml.safe_load_all(rendered)
    container = job["spec"]["template"]["spec"]["containers"][0]

    pods: list[tuple[Path, subprocess.Popen[str]]] = []
    for index in range(2):
        tree = image_tree(tmp_path / f"pod{index}" / "srv", source=developer)
        argv, env = local_pod(container, tree=tree, volume=tmp_path / f"pod{index}" / "volume", index=index,
                              secret=_secret(moto_server), base_env=tool_env(tmp_path))
        # The cluster's DNS gives pt-local-0.pt-local; here both pods are this machine.
        assert env["D2V_RDZV_ENDPOINT"] == f"pt-local-0.pt-local:{port}"
        env["D2V_RDZV_ENDPOINT"] = f"127.0.0.1:{port}"
        # c10d ranks nodes by address (pod host names in the cluster: pod 0 first); the two local
        # pods share one host name, so each gets its own loopback address, in the same order.
        env["PET_LOCAL_ADDR"] = f"127.0.0.{index + 1}"
        log = (tmp_path / f"pod{index}.log").open("w")
        pods.append((tree, subprocess.Popen(argv, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)))
    try:
        codes = [proc.wait(timeout=420) for _, proc in pods]
    finally:
        for _, proc in pods:
            if proc.poll() is None:
                proc.kill()
    logs = [(tmp_path / f"pod{index}.log").read_text() for index in range(2)]
    assert codes == [0, 0], "\n".join(f"--- pod {i}\n{_tail(log)}" for i, log in enumerate(logs))

    (tree0, _), (tree1, _) = pods
    assert "Running stage 'pretrain@image'" in logs[0]  # pod 0: through DVC
    assert "node 1: running pretrain@image's command outside DVC" in logs[1]
    for log in logs:  # each pod's `d2v pretrain` re-launched itself under torchrun with the rendezvous
        assert f"--nnodes=2 --rdzv_backend=c10d --rdzv_endpoint=127.0.0.1:{port} --rdzv_id=pt-local" in log
    summary = json.loads((tree0 / "metrics" / "pretrain" / "image" / "metrics.json").read_text())
    assert (summary["steps"], summary["world_size"]) == (2, 2)
    assert not (tree1 / "models" / "image").exists()  # global rank 0 (on pod 0) writes the outputs
    assert "d2v-pod: pushed the outputs of pretrain@image" in logs[0] and "pushed" not in logs[1]
    assert _pushed(s3_bucket, moto_server, tree0, "pretrain@image", "models/image")
