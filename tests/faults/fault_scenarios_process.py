"""Faults that strike a d2v process itself: SIGKILL at a chosen point, a full disk under a checkpoint.

Each scenario runs the real command as a subprocess (`python -m d2v.cli ...`, in a tiny image project
whose params.yaml is the repository's with smaller sizes: process_project.py), injects its fault,
re-runs the command as a user (or `dvc repro`) would, and measures:

    partial_visible    a reader could see a half-written product: a checkpoint, JSON or data directory
                       that exists but does not load / parse / equal a complete version, a run listed
                       in the store that is not complete, or a temporary file inside an output
                       *directory* after the re-run (models/<m>/, data/prepared/<m>/, metrics/eval/<m>/,
                       a published run: DVC caches and `d2v artifacts publish` ships such a directory
                       whole). Temporaries *beside* an output are litter: reported in LAST, not counted.
    published_changed  something that existed complete before the fault changed: the last committed
                       checkpoint, the command's inputs (prepared data, checkpoint), a published run or
                       pointer, or a previous version of the output other than by a whole replacement
    rerun_completed    the re-run exited 0
    equals_undisturbed the re-run's result equals an undisturbed run's: checkpoint state dicts bit-equal
                       (and the weights file's sha256), every pretraining log row and the summary, every
                       evaluation output, every prepared file's sha256, the published manifest's files
    data_lost          "none", or what is gone for good

Kill points come from `random.Random(f"{SEED}:{name}")`, so the table is the same on every run; the
victim is driven there by process_control.kill_when (frozen in slices, killed in the state the kill
condition saw). A full disk is RLIMIT_FSIZE, the documented stand-in for ENOSPC without root: a write
past the limit fails with EFBIG, mid-file, exactly where ENOSPC would (the child ignores SIGXFSZ, as
Python does by default). The limit is applied with prlimit(2) to the running victim right after its
first checkpoint, so the first save succeeds and the second fails.

The undisturbed pretraining and evaluation are process_project.reference(), built once per process
(in the background, while the first scenario's victim runs) and shared; `seconds` counts the fault
and the re-run (and a scenario's own undisturbed run), not time spent waiting for the reference.
`LAST[name]` holds the details of a scenario's last run: the victim's exit status (-9 for SIGKILL),
the error it printed, what it left behind. Importable from pytest and from a plain script
(benchmarks/bench_faults.py) once tests/ and tests/faults/ are on sys.path.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from d2v.atomic import is_temporary
from fault_outcome import FaultOutcome, Scenario
from process_control import (
    alive,
    children_of,
    finish,
    ignores_sigxfsz,
    kill_when,
    mib,
    reap,
    run,
    sha256_file,
    start,
    stop_when,
    temporaries,
    tree_digest,
    tree_size,
)
from process_project import (
    CHECKPOINT,
    EVAL_DIR,
    EVAL_OUTPUTS,
    EVERY,
    MODALITY,
    MODELS,
    PREPARED,
    STEPS,
    checkpoint_files,
    parse_eval_output,
    eval_record,
    load_checkpoint,
    pretrain_record,
    project_from_reference,
    WAITED,
    reference,
    same_model,
    start_reference,
    steps_logged,
    write_project,
)

SEED = 26
LAST: dict[str, dict[str, Any]] = {}  # scenario name -> details of its last run
_START_STEP = re.compile(r"start_step=(\d+)")


def _rng(name: str) -> random.Random:
    return random.Random(f"{SEED}:{name}")


class _Clock:
    """A scenario's wall time, less the time it waited for the shared reference runs."""

    def __init__(self) -> None:
        self.began, self.waited = time.monotonic(), WAITED[0]

    def seconds(self) -> float:
        return round(time.monotonic() - self.began - (WAITED[0] - self.waited), 2)


def _loads(root: Path) -> tuple[bool, int | None, str]:
    """(checkpoint.pt loads with its verified weights, its step, the error) - (True, None, '') if absent."""
    if not (root / CHECKPOINT).is_file():
        return True, None, ""
    try:
        return True, int(load_checkpoint(root)["step"]), ""
    except Exception as exc:  # noqa: BLE001 - the measurement is whether a reader can load it
        return False, None, f"{type(exc).__name__}: {exc}"


def _inputs(root: Path, *paths: Path) -> dict[str, Any]:
    return {str(p): tree_digest(root / p) for p in paths}


def _equals_reference(root: Path) -> tuple[bool, str]:
    """The finished run in `root` against the undisturbed one: (equal, what differs)."""
    ref = reference()
    ok, _, error = _loads(root)
    if not ok or not (root / CHECKPOINT).is_file():
        return False, f"final checkpoint unreadable ({error or 'missing'})"
    if not same_model(load_checkpoint(root), load_checkpoint(ref.root)):
        return False, "final weights differ from the undisturbed run"
    record = pretrain_record(root)
    for key in ("weights_file", "summary", "steps"):
        if record[key] != ref.pretrain[key]:
            return False, f"pretraining {key} differs from the undisturbed run"
    return True, ""


def _resume(root: Path, details: dict[str, Any]) -> bool:
    """`d2v pretrain image --resume`; records where it started; True if it exited 0."""
    rerun = start(["pretrain", MODALITY, "--resume"], root)
    try:
        output = finish(rerun)
    finally:
        reap(rerun)
    found = _START_STEP.search(output)
    details.update(rerun_rc=rerun.returncode, resumed_from=int(found.group(1)) if found else None,
                   rerun_tail=output[-1500:] if rerun.returncode else "")
    return rerun.returncode == 0


@dataclass(frozen=True)
class _AfterKill:
    """What a killed pretraining left, and what its `--resume` made of it."""

    intact: bool  # the committed checkpoint files are exactly those at the kill
    loads_after_kill: bool
    rerun_ok: bool
    loads_final: bool
    left: list[str]  # temporaries in the model directory after the re-run
    equal: bool  # final weights equal the undisturbed reference
    why: str

    @property
    def partial_visible(self) -> bool:
        return not self.loads_after_kill or not self.loads_final or bool(self.left)

    @property
    def data_lost(self) -> str:
        return "none" if self.intact and self.loads_after_kill and self.equal else (self.why or "the committed checkpoint")


def _resume_after_kill(root: Path, seen: dict[str, Any] | None, details: dict[str, Any]) -> _AfterKill:
    committed = seen["checkpoint"] if seen else None
    loads_after_kill, step_after_kill, error = _loads(root)
    intact = checkpoint_files(root) == committed
    details.update(checkpoint_step_at_kill=step_after_kill, load_error=error,
                   temporaries_after_kill=temporaries(root / MODELS))
    rerun_ok = _resume(root, details)
    loads_final, _, _ = _loads(root)
    left = temporaries(root / MODELS)
    details["temporaries_after_rerun"] = left
    equal, why = _equals_reference(root) if rerun_ok else (False, "re-run failed")
    return _AfterKill(intact, loads_after_kill, rerun_ok, loads_final, left, equal, why)


# ------------------------------------------------------------------------------ pretraining


def sigkill_mid_pretraining(tmp: Path) -> FaultOutcome:
    """SIGKILL after a seeded-random number of updates (between checkpoints), then `--resume`."""
    name = "sigkill-mid-pretraining"
    clock = _Clock()
    start_reference()  # built meanwhile, compared with at the end
    # Not right after a checkpoint step: the kill lands inside the next update's compute. A kill
    # inside the checkpoint write is sigkill-mid-checkpoint-write's (a poll cannot land there by chance).
    k = _rng(name).choice([s for s in range(1, STEPS) if s % EVERY])
    root = project_from_reference(tmp / "project")
    inputs = _inputs(root, PREPARED)
    details: dict[str, Any] = LAST.setdefault(name, {})
    details.clear()
    victim = start(["pretrain", MODALITY], root)
    try:
        seen = kill_when(victim, lambda: {"steps": steps_logged(root), "checkpoint": checkpoint_files(root)}
                         if steps_logged(root) >= k else None,
                         armed=lambda: steps_logged(root) >= k - 1)
        output = finish(victim)
    finally:
        reap(victim)
    details.update(victim_rc=victim.returncode, killed_after_steps=seen and seen["steps"],
                   victim_tail=output[-800:])
    after = _resume_after_kill(root, seen, details)
    intact, rerun_ok, equal, why, left = after.intact, after.rerun_ok, after.equal, after.why, after.left
    unchanged_inputs = _inputs(root, PREPARED) == inputs
    resumed = details.get("resumed_from")
    return FaultOutcome(
        fault=f"SIGKILL after {k} of {STEPS} updates (inside update {k + 1}; checkpoints every {EVERY})",
        target="pretrain",
        outcome=(f"killed (exit {victim.returncode}); --resume started at step {resumed}; "
                 + ("weights bit-identical" if equal else why)),
        partial_visible=after.partial_visible,
        published_changed=not intact or not unchanged_inputs,
        rerun_completed=rerun_ok,
        equals_undisturbed=equal,
        data_lost=after.data_lost,
        seconds=clock.seconds(),
    )


def _is_tmp_of(kind: str, name: str) -> bool:
    """The temporary name of the weights file (`.checkpoint.d2v-tmp-*.safetensors`) or of checkpoint.pt
    (`.checkpoint.pt.d2v-tmp-*`) while save_checkpoint writes it."""
    if kind == "weights":
        return name.startswith(".checkpoint.d2v-tmp-") and name.endswith(".safetensors")
    return name.startswith(".checkpoint.pt.d2v-tmp-")


def sigkill_mid_checkpoint_write(tmp: Path) -> FaultOutcome:
    """SIGKILL while a seeded choice of checkpoint (step 4 or 8) writes a seeded choice of its two
    files (the weights, or checkpoint.pt: the commit), then `--resume`."""
    name = "sigkill-mid-checkpoint-write"
    clock = _Clock()
    start_reference()
    rng = _rng(name)
    step = rng.choice([s for s in range(EVERY, STEPS, EVERY)])
    kind = rng.choice(["weights", "checkpoint.pt"])
    root = project_from_reference(tmp / "project")
    details: dict[str, Any] = LAST.setdefault(name, {})
    details.clear()

    def writing() -> dict[str, Any] | None:
        if steps_logged(root) < step or not (root / MODELS).is_dir():
            return None
        for entry in os.scandir(root / MODELS):
            if _is_tmp_of(kind, entry.name):
                return {"steps": steps_logged(root), "tmp": entry.name, "bytes": entry.stat().st_size,
                        "checkpoint": checkpoint_files(root)}
        return None

    victim = start(["pretrain", MODALITY], root)
    try:
        seen = kill_when(victim, writing, armed=lambda: steps_logged(root) >= step - 1, slice_s=0.001)
        output = finish(victim)
    finally:
        reap(victim)
    details.update(victim_rc=victim.returncode, kill_state=seen, victim_tail=output[-800:])
    after = _resume_after_kill(root, seen, details)
    intact, rerun_ok, equal, why, left = after.intact, after.rerun_ok, after.equal, after.why, after.left
    at = seen["steps"] if seen else step
    outcome = (f"killed (exit {victim.returncode}); --resume started at step {details.get('resumed_from')}; "
               + ("weights bit-identical" if equal else why))
    if left:
        outcome += f"; the killed write's temporary file is still in {MODELS}/ after the re-run"
    return FaultOutcome(
        fault=f"SIGKILL while the step-{at} checkpoint's {kind} file was being written (under its temporary name)",
        target="pretrain",
        outcome=outcome,
        partial_visible=after.partial_visible,
        published_changed=not intact,
        rerun_completed=rerun_ok,
        equals_undisturbed=equal,
        data_lost=after.data_lost,
        seconds=clock.seconds(),
    )


_EFBIG = ("File too large", "Errno 27", "os error 27", "No space left")
_NAMES_CHECKPOINT = re.compile(re.escape(str(MODELS)) + r"/\.?checkpoint")


def _full_disk(tmp: Path, name: str, kind: str) -> FaultOutcome:
    """RLIMIT_FSIZE set on the running trainer right after its step-4 checkpoint, at a seeded size
    inside the file `kind` of the step-8 save (every save writes files of the same sizes as the
    first); then `--resume` without the limit."""
    clock = _Clock()
    start_reference()
    fraction = _rng(name).uniform(0.2, 0.8)
    root = project_from_reference(tmp / "project")
    details: dict[str, Any] = LAST.setdefault(name, {})
    details.clear()
    victim = start(["pretrain", MODALITY], root)
    try:
        # Frozen once update EVERY + 1 is logged: the step-EVERY checkpoint is committed (saved before it).
        seen = stop_when(victim, lambda: steps_logged(root) > EVERY or None,
                         armed=lambda: steps_logged(root) >= EVERY - 1)
        if seen:
            before = checkpoint_files(root)
            loads_before, step_before, _ = _loads(root)
            weights_size = next((root / MODELS / n).stat().st_size for n in before or {} if n.endswith(".safetensors"))
            checkpoint_size = (root / CHECKPOINT).stat().st_size
            if kind == "weights":
                limit = int(weights_size * fraction)
                where = f"the weights file fails at {mib(limit)} of {mib(weights_size)}"
            else:  # the weights (smaller) are written whole; checkpoint.pt, the commit, fails
                assert checkpoint_size > weights_size, "checkpoint.pt must be the larger file"
                limit = weights_size + int((checkpoint_size - weights_size) * fraction)
                where = f"checkpoint.pt fails at {mib(limit)} of {mib(checkpoint_size)}"
            details.update(ignores_sigxfsz=ignores_sigxfsz(victim.pid), limit_bytes=limit,
                           checkpoint_step_before=step_before)
            resource.prlimit(victim.pid, resource.RLIMIT_FSIZE, (limit, limit))
            os.kill(victim.pid, signal.SIGCONT)
        output = finish(victim)
    finally:
        reap(victim)
    if not seen:
        raise RuntimeError(f"{name}: the trainer exited before its first checkpoint:\n{output[-3000:]}")
    lines = [line for line in output.splitlines() if line.strip()]
    last_line = lines[-1] if lines else ""
    efbig = any(marker in output for marker in _EFBIG)
    names_file = bool(_NAMES_CHECKPOINT.search(last_line)) and any(m in last_line for m in _EFBIG)
    after = checkpoint_files(root)
    loads_after, step_after, load_error = _loads(root)
    referenced = set(after or {})
    details.update(victim_rc=victim.returncode, efbig_seen=efbig, error_line=last_line,
                   error_names_file=names_file, traceback="Traceback (most recent call last)" in output,
                   checkpoint_step_after=step_after, load_error=load_error,
                   temporaries_after_failure=temporaries(root / MODELS),
                   unreferenced_weights_after_failure=sorted(
                       p.name for p in (root / MODELS).glob("checkpoint.*.safetensors") if p.name not in referenced),
                   victim_tail=output[-2500:])
    intact = after == before and loads_before and loads_after and step_after == step_before

    rerun_ok = _resume(root, details)
    loads_final, _, _ = _loads(root)
    left = temporaries(root / MODELS)
    details["temporaries_after_rerun"] = left
    equal, why = _equals_reference(root) if rerun_ok else (False, "re-run failed")
    cause = next((m for m in _EFBIG if m in output), "no EFBIG in its output")
    return FaultOutcome(
        fault=(f"disk full (RLIMIT_FSIZE {mib(limit)}, EFBIG: the stand-in for ENOSPC) from the step-{EVERY} "
               f"checkpoint on: in the step-{2 * EVERY} save {where}"),
        target="pretrain",
        outcome=(f"failed (exit {victim.returncode}, {cause}; message names the file: "
                 f"{'yes' if names_file else 'no'}); step-{step_before} checkpoint "
                 f"{'intact' if intact else 'CHANGED'}; --resume started at step {details.get('resumed_from')}; "
                 + ("weights bit-identical" if equal else why)),
        partial_visible=not loads_after or not loads_final or bool(left),
        published_changed=not intact,
        rerun_completed=rerun_ok,
        equals_undisturbed=equal,
        data_lost="none" if intact and equal else (why or f"the step-{step_before} checkpoint"),
        seconds=clock.seconds(),
    )


def full_disk_mid_weights_write(tmp: Path) -> FaultOutcome:
    return _full_disk(tmp, "full-disk-mid-weights-write", "weights")


def full_disk_mid_checkpoint_commit(tmp: Path) -> FaultOutcome:
    return _full_disk(tmp, "full-disk-mid-checkpoint-commit", "checkpoint.pt")


# ------------------------------------------------------------------------------ publish

# What a pretraining run publishes, in miniature: one file large enough to be killed inside.
RUN_FILES: dict[str, int] = {"config.yaml": 300, "metrics.json": 120, "model/encoder.pt": 32 << 20,
                             "model/head.pt": 1 << 20, "notes.md": 0}
_LOCK_NAME = ".d2v-cas.lock"


def _write_run(root: Path) -> dict[str, Path]:
    rng = random.Random(SEED)
    files = {}
    for rel, size in RUN_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        files[rel] = path
    return files


def _store_state(store: Path) -> dict[str, tuple[str, int, int]]:
    """Every object a reader can see (temporaries and the CAS lock left out): key -> (sha256, inode,
    mtime_ns); a rewrite with the same bytes counts as a change too."""
    state = {}
    for path in sorted(store.rglob("*")):
        if path.is_file() and path.name != _LOCK_NAME and not is_temporary(path.name):
            st = path.stat()
            state[path.relative_to(store).as_posix()] = (sha256_file(path), st.st_ino, st.st_mtime_ns)
    return state


def _reader_view(store: Path) -> dict[str, Any]:
    """What `d2v artifacts ls` / `pointers` would show: complete runs, pointers, and any listed key
    that a reader would fetch although it is half-written."""
    from d2v.artifacts.config import ArtifactsConfig
    from d2v.artifacts.store import ArtifactStore

    s = ArtifactStore.from_config(ArtifactsConfig(uri=f"file://{store}"))
    keys = [info.key for info in s.backend.list("runs/")]
    return {"runs": [r.run_id for r in s.list_runs()],
            "pointers": {f"{p.kind}:{p.modality}": p.run_id for p in s.pointers()},
            "temporaries_listed": [k for k in keys if is_temporary(k.rsplit("/", 1)[-1])]}


def _manifest_files(store: Path, run_id: str) -> list[tuple[str, int, str]]:
    manifest = json.loads((store / "runs" / run_id / "manifest.json").read_text())
    return [(f["path"], f["size"], f["sha256"]) for f in manifest["files"]]


def sigkill_mid_publish(tmp: Path) -> FaultOutcome:
    """`d2v artifacts publish` to a file:// store SIGKILLed at a seeded byte of its upload; re-run
    under a new run id (ids are never reused). `base` (the same files, published and promoted
    before) is the undisturbed publish and the already-published state."""
    name = "sigkill-mid-publish"
    clock = _Clock()
    details: dict[str, Any] = LAST.setdefault(name, {})
    details.clear()
    run_dir, store = tmp / "run", tmp / "store"
    files = _write_run(run_dir)
    uri = ["--uri", f"file://{store}"]
    run(["artifacts", "publish", str(run_dir), *uri, "--run-id", "base", "--modality", MODALITY], tmp)
    run(["artifacts", "promote", "base", "--modality", MODALITY, "--metric", "top1=0.8", *uri], tmp)
    before, view_before = _store_state(store), _reader_view(store)
    sizes = sorted((rel, path.stat().st_size) for rel, path in files.items())
    total = sum(size for _, size in sizes)
    target = _rng(name).randrange(1, total)
    done, in_flight = 0, sizes[-1][0]
    for rel, size in sizes:  # upload order: sorted run paths
        if done + size >= target:
            in_flight = rel
            break
        done += size
    victim_dir = store / "runs" / "victim"
    violations: list[str] = []

    def uploaded() -> dict[str, Any] | None:
        view = _reader_view(store)
        if view["runs"] != view_before["runs"] or view["pointers"] != view_before["pointers"] or view["temporaries_listed"]:
            violations.append(f"during upload: {view}")
        have = tree_size(victim_dir)
        return {"bytes": have} if have >= target else None

    victim = start(["artifacts", "publish", str(run_dir), *uri, "--run-id", "victim", "--modality", MODALITY], tmp)
    try:
        seen = kill_when(victim, uploaded, armed=victim_dir.exists, poll_s=0.001, slice_s=0.001)
        output = finish(victim)
    finally:
        reap(victim)
    view_after = _reader_view(store)
    cli_ls = json.loads(run(["artifacts", "ls", "--json", *uri], tmp))
    after = _store_state(store)
    changed = sorted(k for k in before if after.get(k) != before[k])
    details.update(victim_rc=victim.returncode, kill_state=seen, victim_tail=output[-800:],
                   reader_after_kill=view_after, cli_ls_after_kill=[r["run_id"] for r in cli_ls],
                   changed_by_kill=changed, litter=temporaries(store))
    if view_after != view_before or [r["run_id"] for r in cli_ls] != view_before["runs"]:
        violations.append(f"after the kill: {view_after}, ls: {[r['run_id'] for r in cli_ls]}")

    rerun = start(["artifacts", "publish", str(run_dir), *uri, "--run-id", "retry", "--modality", MODALITY], tmp)
    try:
        rerun_output = finish(rerun)
    finally:
        reap(rerun)
    rerun_ok = rerun.returncode == 0
    details.update(rerun_rc=rerun.returncode, rerun_tail=rerun_output[-800:] if not rerun_ok else "")
    final = _store_state(store)
    latest_key = f"pointers/{MODALITY}/latest.json"
    changed_overall = sorted(k for k in before if k != latest_key and final.get(k) != before[k])
    view_final = _reader_view(store)
    equal = False
    if rerun_ok:
        from d2v.artifacts.config import ArtifactsConfig
        from d2v.artifacts.store import ArtifactStore

        got = tmp / "downloaded"
        ArtifactStore.from_config(ArtifactsConfig(uri=f"file://{store}")).download("retry", got)
        equal = (_manifest_files(store, "retry") == _manifest_files(store, "base")
                 and all((got / rel).read_bytes() == path.read_bytes() for rel, path in files.items())
                 and view_final["runs"] == ["base", "retry"]
                 and view_final["pointers"] == {f"latest:{MODALITY}": "retry", f"champion:{MODALITY}": "base"})
    details.update(changed_overall=changed_overall, reader_final=view_final)
    lost = [k for k in before if k not in final]
    return FaultOutcome(
        fault=(f"SIGKILL at {mib(target)} of {mib(total)} uploaded ({in_flight} in flight), "
               "`d2v artifacts publish` to file://"),
        target="publish",
        outcome=(f"killed (exit {victim.returncode}); "
                 + ("no new run listed" if view_after["runs"] == view_before["runs"] else f"runs listed: {view_after['runs']}")
                 + f", latest:{MODALITY} "
                 + ("unchanged" if view_after["pointers"] == view_before["pointers"] else "MOVED")
                 + "; re-published under a new run id" + (": same files and sha256" if equal else ": NOT equal")),
        partial_visible=bool(violations),
        published_changed=bool(changed or changed_overall),
        rerun_completed=rerun_ok,
        equals_undisturbed=equal,
        data_lost="none" if not lost else f"objects gone: {', '.join(lost)}",
        seconds=clock.seconds(),
    )


# ------------------------------------------------------------------------------ evaluation

_EVAL_WORKERS = 6  # forked side by side: pretrained, random init, input baseline; probe, then fine-tuning


def _output_state(rel: Path, data: bytes | None, previous: bytes, expected: Any) -> str:
    """absent | previous (the earlier complete version, byte-equal) | complete (a complete new version,
    equal to the undisturbed run's) | partial (anything else: half-written, unparseable, wrong)."""
    if data is None:
        return "absent"
    if data == previous:
        return "previous"
    try:
        text = data.decode("utf-8")
        return "complete" if parse_eval_output(rel, text) == expected else "partial"
    except (ValueError, UnicodeDecodeError):
        return "partial"


def _previous_outputs(root: Path) -> dict[Path, bytes]:
    """An earlier evaluation's outputs, complete and different from this run's (other values)."""
    previous = {
        EVAL_OUTPUTS[0]: json.dumps({"linear_probe": {"task": "linear_probe", "metric": "top1", "pretrained": 0.5,
                                                      "random_init": 0.25, "delta": 0.25}}, indent=2) + "\n",
        EVAL_OUTPUTS[1]: "actual,predicted\n" + "".join(f"class{i % 10},class{i * 7 % 10}\n" for i in range(100)),
        EVAL_OUTPUTS[2]: json.dumps({"linear_probe": {"pretrained": 0.5, "random_init": 0.25, "delta": 0.25}}) + "\n",
    }
    for rel, text in previous.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return {rel: text.encode() for rel, text in previous.items()}


def sigkill_mid_evaluate(tmp: Path) -> FaultOutcome:
    """`d2v evaluate image` SIGKILLed at a seeded point (the k-th of its forked side-by-side workers
    started, or its first output file replaced), over an earlier evaluation's outputs; then re-run."""
    name = "sigkill-mid-evaluate"
    clock = _Clock()
    point = _rng(name).choice([*(("worker", k) for k in range(1, _EVAL_WORKERS + 1)), ("output", 1)])
    root = project_from_reference(tmp / "project", checkpoint=True)  # waits for the reference checkpoint
    start_reference(evaluated=True)  # the undisturbed evaluation runs meanwhile
    previous = _previous_outputs(root)
    confusion = root / EVAL_OUTPUTS[1]
    confusion_inode = confusion.stat().st_ino
    inputs = _inputs(root, PREPARED, MODELS)
    details: dict[str, Any] = LAST.setdefault(name, {})
    details.clear()
    workers: list[int] = []

    def track() -> bool:
        for pid in children_of(victim.pid):
            if pid not in workers:
                workers.append(pid)
        return bool(workers)

    def reached() -> dict[str, Any] | None:
        track()
        if point[0] == "worker":
            return {"workers": list(workers)} if len(workers) >= point[1] else None
        replaced = confusion.exists() and confusion.stat().st_ino != confusion_inode
        return {"workers": list(workers)} if replaced else None

    victim = start(["evaluate", MODALITY], root)
    orphans: list[int] = []
    outlived: list[int] = []
    try:
        # Runs freely through its imports; frozen in slices from its first forked worker on.
        seen = kill_when(victim, reached, armed=track, poll_s=0.005, slice_s=0.003)
        after_kill = {rel: (root / rel).read_bytes() if (root / rel).exists() else None for rel in EVAL_OUTPUTS}
        time.sleep(0.2)
        orphans = [pid for pid in workers if alive(pid)]
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in orphans) and time.monotonic() < deadline:
            time.sleep(0.05)
        outlived = [pid for pid in orphans if alive(pid)]
        for pid in outlived:  # forked by the victim: ours to end, so the re-run has the CPUs
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        output = finish(victim)
    finally:
        reap(victim)
    details.update(victim_rc=victim.returncode, kill_state=seen, orphaned_workers=len(orphans),
                   workers_alive_5s_after_kill=len(outlived), victim_tail=output[-800:],
                   temporaries_after_kill=temporaries(root / EVAL_DIR))

    rerun = start(["evaluate", MODALITY], root)
    try:
        rerun_output = finish(rerun)
    finally:
        reap(rerun)
    rerun_ok = rerun.returncode == 0
    inside = temporaries(root / EVAL_DIR / MODALITY)
    ref = reference(evaluated=True)
    assert ref.evaluation is not None
    states = {str(rel): _output_state(rel, after_kill[rel], previous[rel], ref.evaluation[str(rel)])
              for rel in EVAL_OUTPUTS}
    details.update(output_states_after_kill=states, rerun_rc=rerun.returncode,
                   rerun_tail=rerun_output[-1500:] if not rerun_ok else "",
                   temporaries_after_rerun=inside, litter=temporaries(root / EVAL_DIR))
    equal = rerun_ok and eval_record(root) == ref.evaluation
    unchanged_inputs = _inputs(root, PREPARED, MODELS) == inputs
    at = (f"once forked worker {point[1]} of {_EVAL_WORKERS} had started" if point[0] == "worker"
          else "right after its first output (image_confusion.csv) was replaced")
    return FaultOutcome(
        fault=f"SIGKILL {at} (`d2v evaluate {MODALITY}`, an earlier run's outputs in place)",
        target="evaluate",
        outcome=(f"killed (exit {victim.returncode}); outputs "
                 + ", ".join(sorted(set(states.values()))) + f" after the kill; {len(orphans)} orphaned "
                 "worker(s); re-run " + ("identical metrics" if equal else "DIFFERENT metrics")),
        partial_visible="partial" in states.values() or bool(inside),
        published_changed=not unchanged_inputs,
        rerun_completed=rerun_ok,
        equals_undisturbed=equal,
        data_lost="none" if equal and unchanged_inputs else "evaluation outputs differ",
        seconds=clock.seconds(),
    )


# ------------------------------------------------------------------------------ data stage

# Enough shards to be killed between two of them: 30 train + 5 valid + 5 test.
PREPARE_SIZES = {"train_size": 3000, "valid_size": 500, "test_size": 500, "shard_size": 100}
PREPARE_SHARDS = sum(-(-PREPARE_SIZES[k] // PREPARE_SIZES["shard_size"]) for k in ("train_size", "valid_size", "test_size"))


def sigkill_mid_prepare(tmp: Path) -> FaultOutcome:
    """`d2v data prepare image` SIGKILLed once a seeded number of its shards is written, over a
    previous complete output (another seed's); then re-run, against an undisturbed run's files."""
    name = "sigkill-mid-prepare"
    clock = _Clock()
    k = _rng(name).randint(1, PREPARE_SHARDS)
    details: dict[str, Any] = LAST.setdefault(name, {})
    details.clear()
    undisturbed = write_project(tmp / "undisturbed", image=PREPARE_SIZES)
    run(["data", "prepare", MODALITY], undisturbed)
    expected = tree_digest(undisturbed / PREPARED)
    root = write_project(tmp / "project", seed=1, image=PREPARE_SIZES)
    run(["data", "prepare", MODALITY], root)  # the previous version: another seed, other splits
    previous = tree_digest(root / PREPARED)
    write_project(root, image=PREPARE_SIZES)
    others = {p: sha256_file(root / p) for p in ("params.yaml",)}
    parent = (root / PREPARED).parent

    def staging() -> list[Path]:
        # prepare stages in a resumable directory named by its fingerprint (d2v/data/shards.py)
        return [p for p in parent.iterdir() if p.is_dir() and p.name.startswith(f".{MODALITY}.partial-")]

    def written() -> dict[str, Any] | None:
        shards = sum(1 for d in staging() for f in d.iterdir() if f.name.endswith(".npy"))
        return {"shards": shards} if shards >= k else None

    victim = start(["data", "prepare", MODALITY], root)
    try:
        seen = kill_when(victim, written, armed=lambda: bool(staging()), poll_s=0.002, slice_s=0.001)
        output = finish(victim)
    finally:
        reap(victim)
    state_digest = tree_digest(root / PREPARED)
    state = ("absent" if state_digest is None else "previous" if state_digest == previous
             else "complete" if state_digest == expected else "partial")
    litter = temporaries(parent)
    details.update(victim_rc=victim.returncode, kill_state=seen, output_after_kill=state, victim_tail=output[-800:],
                   litter_after_kill=litter, litter_bytes=sum(tree_size(parent / p) for p in litter))

    rerun = start(["data", "prepare", MODALITY], root)
    try:
        rerun_output = finish(rerun)
    finally:
        reap(rerun)
    rerun_ok = rerun.returncode == 0
    final = tree_digest(root / PREPARED)
    inside = temporaries(root / PREPARED)
    litter = temporaries(parent)
    details.update(rerun_rc=rerun.returncode, rerun_tail=rerun_output[-1500:] if not rerun_ok else "",
                   temporaries_after_rerun=inside, litter_after_rerun=litter,
                   litter_bytes_after_rerun=sum(tree_size(parent / p) for p in litter))
    equal = rerun_ok and final == expected
    outcome = (f"killed (exit {victim.returncode}); {PREPARED} {state} after the kill; re-run "
               + ("byte-identical" if equal else "DIFFERENT") + f" ({len(expected or {})} files)")
    if litter:
        outcome += f"; the killed run's staging directory stays beside it ({mib(details['litter_bytes_after_rerun'])})"
    return FaultOutcome(
        fault=f"SIGKILL once {k} of {PREPARE_SHARDS} shards were written (`d2v data prepare {MODALITY}`, previous output in place)",
        target="prepare",
        outcome=outcome,
        partial_visible=state == "partial" or bool(inside),
        published_changed=others != {p: sha256_file(root / p) for p in others},
        rerun_completed=rerun_ok,
        equals_undisturbed=equal,
        data_lost="none" if equal else "prepared files differ from an undisturbed run",
        seconds=clock.seconds(),
    )


SCENARIOS: dict[str, Scenario] = {
    "sigkill-mid-pretraining": sigkill_mid_pretraining,
    "sigkill-mid-checkpoint-write": sigkill_mid_checkpoint_write,
    "full-disk-mid-weights-write": full_disk_mid_weights_write,
    "full-disk-mid-checkpoint-commit": full_disk_mid_checkpoint_commit,
    "sigkill-mid-publish": sigkill_mid_publish,
    "sigkill-mid-evaluate": sigkill_mid_evaluate,
    "sigkill-mid-prepare": sigkill_mid_prepare,
}

__all__ = ["LAST", "SCENARIOS", "SEED"]
