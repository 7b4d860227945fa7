#!/usr/bin/env python3
"""d2v-pod: make a container a working d2v checkout, fetch the data one stage needs, run a command.

The training image runs this at container start when a Kubernetes Job (infra/prefect/) or
`docker run` asks for it; it is installed as /usr/local/bin/d2v-pod:

    d2v-pod dvc repro --allow-missing pretrain@image
    d2v-pod prefect flow-run execute            # the Prefect Kubernetes worker's command

Steps, all driven by the container's environment at run time (nothing from build or deploy time):

1. The code: the project tree baked into the image at D2V_ROOT (default: the working directory;
   the image sets /srv/d2v), or `git clone $D2V_GIT_URL` into D2V_CLONE_DIR (default $HOME/d2v)
   checked out at D2V_GIT_REF (a branch, tag or commit; default the remote's HEAD). The tree used
   is exported to the command as D2V_ROOT (Prefect's pull step `set_working_directory:
   {{ $D2V_ROOT }}` resolves it when the flow run starts) and put first on PYTHONPATH, so the d2v
   code that runs is the code DVC hashes as dependencies. A clone must fit the image's
   environment (the same constraints.txt); d2v-pod warns when it does not.
2. DVC without git: the image holds no .git (.dockerignore), and DVC refuses a repository outside
   git unless `core.no_scm` is set; it is set in .dvc/config.local, which git and Docker ignore.
3. The DVC remote: D2V_DVC_REMOTE, an s3:// URL (credentials from AWS_* variables or the pod's IAM
   role; endpoint from D2V_DVC_ENDPOINT_URL, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL) or a path on a
   mounted volume (a PersistentVolumeClaim holding a DVC remote). Unset: the repository's default
   remote. D2V_DVC_CACHE_DIR moves the DVC cache (e.g. onto a volume shared by runs).
4. Pull: only the cached outputs that the stages in D2V_PULL_STAGES depend on (empty or unset: the
   targets of a `dvc repro` command; "none": nothing); e.g. pretrain@image pulls
   data/prepared/image, not the raw downloads.
   Use `dvc repro --allow-missing` then, so that upstream stages whose data was not pulled, but
   which did not change, are skipped instead of re-run.
5. Run the command. On a multi-node run's other nodes (D2V_NODE_RANK > 0), `dvc repro <stage>`
   becomes the stage's own command, outside DVC, as the Prefect pretrain flow does: only node 0
   records outputs (rank 0 writes them) and pushes.
6. D2V_PUSH=1: after the command succeeds, `dvc push` the outputs of those stages.

Only the standard library and DVC (installed beside d2v in the image) are imported: this must run
before the d2v code it sets up is known to be importable.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

PROG = "d2v-pod"
REMOTE_NAME = "pod"  # the remote this script configures in .dvc/config.local
ENDPOINT_VARS = ("D2V_DVC_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
TRUE = {"1", "true", "yes", "on"}
FALSE = {"", "0", "false", "no", "off"}


class PodError(Exception):
    """A configuration error: the message says which environment variable to set or fix."""


@dataclass(frozen=True)
class PodConfig:
    """What the container's environment asks for (read once, validated before anything runs)."""

    root: Path
    git_url: str | None
    git_ref: str | None
    dvc_remote: str | None
    endpoint_url: str | None
    cache_dir: str | None
    pull_stages: tuple[str, ...] | None  # None: infer from the command
    push: bool
    node_rank: int

    @classmethod
    def from_env(cls, env: Mapping[str, str], cwd: Path) -> PodConfig:
        git_url = env.get("D2V_GIT_URL") or None
        git_ref = env.get("D2V_GIT_REF") or None
        if git_ref and not git_url:
            raise PodError("D2V_GIT_REF is set but D2V_GIT_URL is not: set D2V_GIT_URL to the repository "
                           "to clone, or unset D2V_GIT_REF to run the code baked into the image")
        if git_url:
            # A clone needs a writable, empty place: not D2V_ROOT, which names the image's tree.
            root = Path(env.get("D2V_CLONE_DIR") or Path(env.get("HOME") or "/tmp") / "d2v")
        else:
            root = Path(env.get("D2V_ROOT") or cwd)
        # Empty (a template's default) infers the stages from the command; "none" pulls nothing.
        stages = (env.get("D2V_PULL_STAGES") or "").replace(",", " ").split()
        pull_stages = tuple(s for s in stages if s != "none") if stages else None
        endpoint = next((env[name] for name in ENDPOINT_VARS if env.get(name)), None)
        return cls(root=root.absolute(), git_url=git_url, git_ref=git_ref,
                   dvc_remote=env.get("D2V_DVC_REMOTE") or None, endpoint_url=endpoint,
                   cache_dir=env.get("D2V_DVC_CACHE_DIR") or None, pull_stages=pull_stages,
                   push=_flag(env, "D2V_PUSH"), node_rank=_int(env, "D2V_NODE_RANK", 0))


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in TRUE | FALSE:
        return value in TRUE
    raise PodError(f"{name}={env[name]!r}: expected 1/true/yes or 0/false/no")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or ""
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise PodError(f"{name}={raw!r}: expected a non-negative integer") from None
    if value < 0:
        raise PodError(f"{name}={raw!r}: expected a non-negative integer")
    return value


def log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], cwd: Path, env: Mapping[str, str], *, show: bool = False) -> str:
    """Run a setup command. Its output is shown when it fails, or as it goes with `show` (a pull or
    push of many gigabytes should not be silent in the pod's log)."""
    log("$ " + shlex.join(cmd))
    try:
        done = subprocess.run(list(cmd), cwd=cwd, env=dict(env), capture_output=not show, text=True, check=False)
    except OSError as exc:
        raise PodError(f"{cmd[0]}: cannot run it ({exc}); is it installed in the image?") from exc
    if done.returncode != 0:
        output = "" if show else f":\n{done.stdout}{done.stderr}".rstrip()
        raise PodError(f"`{shlex.join(cmd)}` failed (exit {done.returncode}) in {cwd}{output}")
    return done.stdout or ""


# ---- 1. the code ---------------------------------------------------------------------------------

def get_code(config: PodConfig, env: Mapping[str, str]) -> None:
    if config.git_url:
        clone(config, env)
    if not (config.root / "dvc.yaml").is_file():
        raise PodError(f"D2V_ROOT={config.root} holds no dvc.yaml: set D2V_ROOT to the project tree "
                       "(the image's is /srv/d2v) or D2V_GIT_URL to a repository to clone")
    if not (config.root / ".dvc").is_dir():
        raise PodError(f"{config.root} has dvc.yaml but no .dvc/ directory: the image or clone is incomplete")


def clone(config: PodConfig, env: Mapping[str, str]) -> None:
    assert config.git_url is not None
    if shutil.which("git", path=env.get("PATH")) is None:
        raise PodError("D2V_GIT_URL is set but there is no `git` in the image")
    root = config.root
    if root.exists() and any(root.iterdir()):
        raise PodError(f"D2V_GIT_URL is set but the clone directory {root} is not empty: set D2V_CLONE_DIR "
                       "to a new directory (default $HOME/d2v)")
    root.parent.mkdir(parents=True, exist_ok=True)
    # --no-checkout + checkout: D2V_GIT_REF may be a commit, which `clone --branch` does not accept.
    run(["git", "clone", "--quiet", "--no-checkout", config.git_url, str(root)], root.parent, env)
    ref = config.git_ref or "HEAD"
    run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", ref], root, env)
    head = run(["git", "rev-parse", "HEAD"], root, env).strip()
    log(f"code: {config.git_url} at {ref} ({head})")
    image_constraints = Path(env.get("D2V_ROOT") or "/srv/d2v") / "constraints.txt"
    cloned = root / "constraints.txt"
    if image_constraints.is_file() and cloned.is_file() and image_constraints.read_bytes() != cloned.read_bytes():
        # The packages are the image's: a clone pinning others may not import or may behave differently.
        log(f"warning: {cloned} differs from the image's {image_constraints}; build an image for this "
            "ref if its dependencies changed")


# ---- 2-3. DVC without git, remote, cache ------------------------------------------------------------

def configure_dvc(config: PodConfig, env: Mapping[str, str], needs_remote: bool) -> bool:
    """Set up DVC for this checkout; returns whether a remote is configured."""
    root = config.root
    dvc = ["dvc"]
    if not (root / ".git").exists():
        # Without it every DVC command stops with "... is not a git repository".
        run([*dvc, "config", "--local", "core.no_scm", "true"], root, env)
    if config.cache_dir:
        Path(config.cache_dir).mkdir(parents=True, exist_ok=True)
        run([*dvc, "cache", "dir", "--local", config.cache_dir], root, env)
    if config.dvc_remote:
        run([*dvc, "remote", "add", "--local", "--force", "--default", REMOTE_NAME, config.dvc_remote], root, env)
        if config.dvc_remote.startswith("s3://") and config.endpoint_url:
            run([*dvc, "remote", "modify", "--local", REMOTE_NAME, "endpointurl", config.endpoint_url], root, env)
        return True
    # `dvc remote default` prints the name, or "No default remote set" and exits 1.
    found = subprocess.run(["dvc", "remote", "default"], cwd=root, env=dict(env), capture_output=True,
                           text=True, check=False)
    default = found.stdout.strip() if found.returncode == 0 else ""
    if default:
        log(f"DVC remote: the repository's default, '{default}'")
        return True
    if needs_remote:
        raise PodError("no DVC remote: set D2V_DVC_REMOTE to s3://<bucket>/<prefix> (credentials from "
                       "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the pod's IAM role; endpoint from "
                       "D2V_DVC_ENDPOINT_URL or AWS_ENDPOINT_URL) or to the path of a DVC remote on a "
                       "mounted volume; or set D2V_DVC_CACHE_DIR to a volume whose cache already holds "
                       "the data")
    return False


# ---- 4. what to pull -------------------------------------------------------------------------------

def repro_targets(command: Sequence[str]) -> tuple[str, ...] | None:
    """The stage targets of a `dvc repro ...` command (positional words), else None."""
    if len(command) < 2 or Path(command[0]).name != "dvc" or command[1] != "repro":
        return None
    return tuple(word for word in command[2:] if not word.startswith("-"))


def stage_inputs(root: Path, stages: Sequence[str]) -> list[str]:
    """Paths to pull for `stages`: the DVC-cached outputs of other stages that they depend on.

    A dependency may be an output (data/prepared/image), contain outputs (reports/validation holds
    each validate stage's data_docs), or lie inside one (a file of an output directory). Source
    files and params are in the image; non-cached outputs (metrics) are in git, so in the image.
    """
    from dvc.repo import Repo  # lazily: only when there is something to pull (~1 s)

    def rel(path: str) -> Path:
        return Path(os.path.relpath(path, root))

    # DVC resolves a stage name against the working directory's dvc.yaml.
    with contextlib.chdir(root), Repo(str(root)) as repo:
        cached = [rel(out.fs_path) for out in repo.index.outs if out.use_cache]
        targets: list[str] = []
        for name in stages:
            for stage in repo.stage.collect(name):
                for dep in stage.deps:
                    path = rel(dep.fs_path)
                    for out in cached:
                        if out == path or path in out.parents:
                            found = str(out)
                        elif out in path.parents:
                            found = str(path)
                        else:
                            continue
                        if found not in targets:
                            targets.append(found)
    return targets


def stage_commands(root: Path, stages: Sequence[str]) -> list[str]:
    """The shell commands of `stages` as dvc.yaml defines them (params interpolated)."""
    from dvc.repo import Repo

    commands: list[str] = []
    with contextlib.chdir(root), Repo(str(root)) as repo:
        for name in stages:
            for stage in repo.stage.collect(name):
                cmd = stage.cmd
                commands.extend(cmd if isinstance(cmd, list) else [cmd])
    return commands


# ---- 5-6. run, push ---------------------------------------------------------------------------------

def run_command(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> int:
    """Run the command as a child and wait, passing SIGTERM/SIGINT on (a preempted pod, a cancel).

    Under `tini -g` the whole process group gets the signal already; passing it again is harmless
    (d2v pretrain saves after the current step either way) and covers a container started without
    tini.
    """
    log("$ " + shlex.join(command))
    try:
        child = subprocess.Popen(list(command), cwd=cwd, env=dict(env))
    except OSError as exc:
        raise PodError(f"{command[0]}: cannot run it ({exc})") from exc

    def forward(signum: int, frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if command[:1] == ["--"]:
        command = command[1:]
    base_env = dict(os.environ if environ is None else environ)
    try:
        if not command:
            raise PodError("no command: give the command to run, e.g. "
                           f"`{PROG} dvc repro --allow-missing pretrain@image`")
        config = PodConfig.from_env(base_env, Path.cwd())
        get_code(config, base_env)
        root = config.root
        env = {**base_env, "D2V_ROOT": str(root),
               "PYTHONPATH": os.pathsep.join(p for p in (str(root), base_env.get("PYTHONPATH", "")) if p),
               "DVC_NO_ANALYTICS": base_env.get("DVC_NO_ANALYTICS", "1")}

        inferred = repro_targets(command)
        stages = config.pull_stages if config.pull_stages is not None else (inferred or ())
        worker = config.node_rank > 0
        push = config.push and not worker
        has_remote = configure_dvc(config, env, needs_remote=bool(stages) and not config.cache_dir)
        if push and not has_remote:
            raise PodError("D2V_PUSH=1 but no DVC remote to push to: set D2V_DVC_REMOTE")

        if stages:
            paths = stage_inputs(root, stages)
            if paths:
                log(f"data for {', '.join(stages)}: {', '.join(paths)}")
                verb = "pull" if has_remote else "checkout"  # no remote: from D2V_DVC_CACHE_DIR
                run(["dvc", verb, *paths], root, env, show=True)
            else:
                log(f"data for {', '.join(stages)}: none cached by DVC")

        if worker and inferred is not None:
            if len(inferred) != 1:
                raise PodError(f"D2V_NODE_RANK={config.node_rank}: a worker node runs the command of one "
                               f"stage, but `{shlex.join(command)}` names {len(inferred)}")
            cmd = " && ".join(stage_commands(root, inferred))
            log(f"node {config.node_rank}: running {inferred[0]}'s command outside DVC "
                "(node 0 records and pushes the outputs)")
            command = ["bash", "-c", cmd]

        code = run_command(command, root, env)
        if code != 0:
            log(f"command exited with {code}; nothing pushed")
            return code
        if push:
            run(["dvc", "push", *stages], root, env, show=True)
            log(f"pushed the outputs of {', '.join(stages) or 'every stage'}")
        return 0
    except PodError as exc:
        log(f"error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
